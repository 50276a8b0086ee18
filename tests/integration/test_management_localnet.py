"""ManagementClient and CyclesLedgerClient against localnet, over HTTP with the real agent.

Everything goes through ``canister_iface.agent.Agent`` as against mainnet:
signed envelopes, certified replies under ``net.root_key``, the management
canister reached through effective canister ids.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from icp_candid import Types

from canister_iface import candid_value as candid
from canister_iface.agent import Agent
from canister_iface.candid_value import encode_values
from canister_iface.cycles_ledger import (
    ACCOUNT,
    Account,
    CyclesLedgerClient,
    InsufficientFunds,
)
from canister_iface.errors import AccessDenied, CanisterNotFound, CanisterReject, IcError
from canister_iface.identity import Identity
from canister_iface.management import DIRECT_INSTALL_LIMIT, ManagementClient
from canister_iface.management_types import CanisterSettings, UploadTarget
from canister_iface.principal import Principal
from canister_iface.rihash import uleb128
from localnet import LocalNet

pytestmark = pytest.mark.integration

WASM_DIR = Path(__file__).parents[1] / "canisters" / "wasm"
COUNTER = (WASM_DIR / "counter.wasm").read_bytes()
LEDGER = (WASM_DIR / "cycles_ledger.wasm").read_bytes()
T = 10**12


@dataclass
class Env:
    net: LocalNet
    me: Identity
    agent: Agent
    mgmt: ManagementClient


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    me = Identity.generate_ed25519()
    async with LocalNet() as net:
        agent = Agent(net.url, me, root_key=net.root_key)
        async with agent:
            yield Env(net, me, agent, ManagementClient(agent))


async def _counter(env: Env) -> Principal:
    canister = await env.mgmt.provisional_create_canister_with_cycles(
        amount=100 * T, settings=CanisterSettings(controllers=(env.me.principal,))
    )
    await env.mgmt.install_code(canister, COUNTER)
    return canister


async def _count(env: Env, canister: Principal) -> int:
    return candid.decode_nat(await env.agent.query(canister, "get"))


def _padded(wasm: bytes, total: int) -> bytes:
    """``wasm`` with a custom section that makes it ``total`` bytes long (still valid)."""
    name = b"padding"
    payload = len(name).to_bytes(1, "big") + name
    fill = total - len(wasm) - 1 - len(payload) - 4
    body = payload + b"\x00" * fill
    padded = wasm + b"\x00" + uleb128(len(body)) + body
    assert len(padded) >= total - 4
    return padded


async def test_create_install_status(env: Env) -> None:
    canister = await env.mgmt.provisional_create_canister_with_cycles(
        amount=50 * T,
        settings=CanisterSettings(controllers=(env.me.principal,), freezing_threshold=86_400),
    )
    status = await env.mgmt.canister_status(canister)
    assert status.status == "running"
    assert status.module_hash is None
    assert status.settings.controllers == (env.me.principal,)
    assert status.settings.freezing_threshold == 86_400
    assert 49 * T < status.cycles <= 50 * T

    await env.mgmt.install_code(canister, COUNTER)
    status = await env.mgmt.canister_status(canister)
    assert status.module_hash == hashlib.sha256(COUNTER).digest()
    assert status.memory_metrics is not None
    assert status.memory_metrics.wasm_binary_size == len(COUNTER)


async def test_upgrade_keeps_state_and_reinstall_resets_it(env: Env) -> None:
    canister = await _counter(env)
    await env.agent.update(canister, "set", candid.encode_nat(41))
    await env.mgmt.upgrade_code(canister, COUNTER, wasm_memory_persistence="keep")
    assert await _count(env, canister) == 41
    await env.mgmt.reinstall_code(canister, COUNTER)
    assert await _count(env, canister) == 0


async def test_a_module_over_two_mib_installs_through_the_chunk_store(env: Env) -> None:
    canister = await _counter(env)
    await env.agent.update(canister, "set", candid.encode_nat(7))
    big = _padded(COUNTER, DIRECT_INSTALL_LIMIT + 200_000)
    assert len(big) > 2 * 1024 * 1024
    await env.mgmt.upgrade_code(canister, big, wasm_memory_persistence="keep")
    status = await env.mgmt.canister_status(canister)
    assert status.module_hash == hashlib.sha256(big).digest()
    assert await env.mgmt.stored_chunks(canister) == []  # cleared after the install
    assert await _count(env, canister) == 7


async def test_controllers_are_exactly_the_given_set(env: Env) -> None:
    canister = await _counter(env)
    other = Identity.generate_ed25519().principal
    await env.mgmt.set_controllers(canister, [env.me.principal, other])
    controllers = (await env.mgmt.canister_status(canister)).settings.controllers
    assert set(controllers) == {env.me.principal, other}
    await env.mgmt.set_controllers(canister, [env.me.principal])
    assert (await env.mgmt.canister_status(canister)).settings.controllers == (env.me.principal,)
    await env.mgmt.update_settings(canister, CanisterSettings(wasm_memory_limit=3 * 2**30))
    status = await env.mgmt.canister_status(canister)
    assert status.settings.wasm_memory_limit == 3 * 2**30
    assert status.settings.controllers == (env.me.principal,)


async def test_a_stranger_is_refused(env: Env) -> None:
    canister = await _counter(env)
    stranger = Agent(env.net.url, Identity.generate_ed25519(), root_key=env.net.root_key)
    async with stranger:
        with pytest.raises(AccessDenied):
            await ManagementClient(stranger).canister_status(canister)
        with pytest.raises(AccessDenied):
            await ManagementClient(stranger).stop_canister(canister)


async def test_stop_start_delete(env: Env) -> None:
    canister = await _counter(env)
    await env.mgmt.stop_canister(canister)
    assert (await env.mgmt.canister_status(canister)).status == "stopped"
    with pytest.raises(IcError):
        await env.agent.update(canister, "inc")
    await env.mgmt.start_canister(canister)
    assert (await env.mgmt.canister_status(canister)).status == "running"
    await env.agent.update(canister, "inc")
    await env.mgmt.stop_canister(canister)
    await env.mgmt.delete_canister(canister)
    with pytest.raises(CanisterNotFound):
        await env.mgmt.canister_status(canister)


async def test_deposit_cycles_is_for_canisters_only(env: Env) -> None:
    canister = await _counter(env)
    with pytest.raises(CanisterReject, match="Only canisters can call"):
        await env.mgmt.deposit_cycles(canister)
    before = (await env.mgmt.canister_status(canister)).cycles
    await env.mgmt.provisional_top_up_canister(canister, 3 * T)
    assert (await env.mgmt.canister_status(canister)).cycles > before + 2 * T


async def test_a_snapshot_copied_to_another_canister_carries_its_state(env: Env) -> None:
    source = await _counter(env)
    await env.agent.update(source, "set", candid.encode_nat(1234))
    await env.mgmt.stop_canister(source)
    snapshot = await env.mgmt.take_canister_snapshot(source)
    await env.mgmt.start_canister(source)
    assert [s.id for s in await env.mgmt.list_canister_snapshots(source)] == [snapshot.id]
    meta = await env.mgmt.read_canister_snapshot_metadata(source, snapshot.id)
    assert meta.wasm_module_size == len(COUNTER)

    target = await _counter(env)
    await env.mgmt.stop_canister(target)
    assert meta.wasm_chunk_store == ()
    new_id = await env.mgmt.upload_canister_snapshot_metadata(target, meta.for_upload())
    for memory in ("wasm_module", "wasm_memory", "stable_memory"):
        async for offset, data in env.mgmt.stream_snapshot_memory(
            source, snapshot.id, memory, size=meta.size_of(memory)
        ):
            await env.mgmt.upload_canister_snapshot_data(
                target, new_id, UploadTarget(memory, offset), data
            )
    await env.mgmt.load_canister_snapshot(target, new_id)
    await env.mgmt.start_canister(target)
    assert await _count(env, target) == 1234

    await env.mgmt.delete_canister_snapshot(source, snapshot.id)
    assert await env.mgmt.list_canister_snapshots(source) == []


async def test_the_whole_wasm_memory_streams_in_slices(env: Env) -> None:
    canister = await _counter(env)
    await env.agent.update(canister, "fill", candid.encode_nat(2))  # 4 MiB more heap
    await env.mgmt.stop_canister(canister)
    snapshot = await env.mgmt.take_canister_snapshot(canister)
    meta = await env.mgmt.read_canister_snapshot_metadata(canister, snapshot.id)
    slices = [
        (offset, len(data))
        async for offset, data in env.mgmt.stream_snapshot_memory(
            canister, snapshot.id, "wasm_memory"
        )
    ]
    assert sum(n for _, n in slices) == meta.wasm_memory_size
    assert all(n <= 2_000_000 for _, n in slices)
    assert [o for o, _ in slices] == list(range(0, meta.wasm_memory_size, 2_000_000))


# ------------------------------------------------------------------ cycles ledger


async def _ledger(env: Env) -> tuple[Principal, CyclesLedgerClient]:
    ledger = await env.mgmt.provisional_create_canister_with_cycles(
        amount=1000 * T, settings=CanisterSettings(controllers=(env.me.principal,))
    )
    await env.mgmt.install_code(ledger, LEDGER)
    arg = encode_values([(ACCOUNT, Account(env.me.principal).to_candid()), (Types.Nat, 20 * T)])
    await env.agent.update(ledger, "test_fund", arg)
    return ledger, CyclesLedgerClient(env.agent, ledger)


async def test_cycles_ledger_creates_a_canister_owned_by_the_caller(env: Env) -> None:
    _, client = await _ledger(env)
    fee = await client.fee()
    assert await client.balance_of(env.me.principal) == 20 * T
    when = time.time_ns()
    created = await client.create_canister(
        3 * T,
        settings=CanisterSettings(freezing_threshold=7200),
        created_at_time=when,
    )
    assert await client.balance_of(env.me.principal) == 17 * T - fee
    status = await env.mgmt.canister_status(created.canister_id)
    assert status.settings.controllers == (env.me.principal,)
    assert status.settings.freezing_threshold == 7200
    assert 2 * T < status.cycles <= 3 * T  # minus the subnet's creation fee

    again = await client.create_canister(
        3 * T, settings=CanisterSettings(freezing_threshold=7200), created_at_time=when
    )
    assert again.duplicate
    assert again.canister_id == created.canister_id
    assert await client.balance_of(env.me.principal) == 17 * T - fee

    await env.mgmt.install_code(created.canister_id, COUNTER)
    assert await _count(env, created.canister_id) == 0


async def test_cycles_ledger_refuses_more_than_the_balance(env: Env) -> None:
    _, client = await _ledger(env)
    with pytest.raises(InsufficientFunds) as caught:
        await client.create_canister(50 * T)
    assert caught.value.balance == 20 * T
