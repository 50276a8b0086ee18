"""The ICRP conformance suite against the Motoko reference canisters on localnet.

The demo app and the backup canister (``canister_iface/wasm``) run in
localnet; the suite talks to them with the real agent over HTTP, as
``replicator check-canister`` will, with a second identity for the access
checks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from icp_candid import Types

from canister_iface.agent import Agent
from canister_iface.candid_value import (
    Rec,
    as_rec,
    as_variant,
    decode_single,
    encode_value,
    encode_values,
)
from canister_iface.conformance import Report, check_canister
from canister_iface.icrp import IcrpClient
from canister_iface.icrp_types import ImportSpec, KeyRange
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal
from localnet import LocalNet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
DEMO_WASM = (ROOT / "canister_iface" / "wasm" / "demo_app.wasm").read_bytes()
BACKUP_WASM = (ROOT / "canister_iface" / "wasm" / "backup.wasm").read_bytes()
COUNTER_WASM = (ROOT / "tests" / "canisters" / "wasm" / "counter.wasm").read_bytes()
T = 10**12

_SETTINGS = Types.Record(
    {
        "chunk_size": Types.Nat64,
        "journal_max_entries": Types.Nat,
        "journal_max_bytes": Types.Nat,
        "step_instructions": Types.Nat64,
        "step_bytes": Types.Nat64,
    }
)
_BACKUP_INIT = Types.Record(
    {"source": Types.Principal, "keep": Types.Opt(Types.Nat), "peers": Types.Vec(Types.Principal)}
)


@dataclass
class Env:
    net: LocalNet
    me: Identity
    agent: Agent
    stranger: Agent
    mgmt: ManagementClient

    async def create(self, wasm: bytes, arg: bytes = b"DIDL\x00\x00") -> Principal:
        canister = await self.mgmt.provisional_create_canister_with_cycles(
            amount=100 * T, settings=CanisterSettings(controllers=(self.me.principal,))
        )
        await self.mgmt.install_code(canister, wasm, arg=arg)
        return canister


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    me = Identity.generate_ed25519()
    async with LocalNet() as net:
        agent = Agent(net.url, me, root_key=net.root_key)
        stranger = Agent(net.url, Identity.generate_ed25519(), root_key=net.root_key)
        async with agent, stranger:
            yield Env(net, me, agent, stranger, ManagementClient(agent))


async def _ok(agent: Agent, canister: Principal, method: str, arg: bytes) -> object:
    value = decode_single(await agent.update(canister, method, arg), method)
    tag, payload = as_variant(value, ("ok", "err"), method)
    assert tag == "ok", f"{method}: {payload}"
    return payload


async def _demo(env: Env, *, mib: int = 1, seed: int = 1) -> Principal:
    """A demo app holding about ``mib`` MiB of users, with a small journal and chunks."""
    demo = await env.create(DEMO_WASM)
    settings = {
        "chunk_size": 65_536,
        "journal_max_entries": 50,
        "journal_max_bytes": 1 << 20,
        "step_instructions": 20_000_000_000,
        "step_bytes": 64 << 20,
    }
    await _ok(env.agent, demo, "set_replication_settings", encode_value(_SETTINGS, settings))
    arg = encode_values([(Types.Nat, mib), (Types.Nat, seed)])
    for _ in range(100):
        progress = as_rec(await _ok(env.agent, demo, "generate", arg), "generate")
        if progress.boolean("finished"):
            return demo
    raise AssertionError("generate did not finish")


async def _fingerprint(env: Env, canister: Principal) -> int:
    stats = Rec(decode_single(await env.agent.query(canister, "stats"), "stats"), "stats")
    return stats.nat("fingerprint")


def _summary(report: Report) -> dict[str, str]:
    return {r.id: r.status for r in report.results}


def _skipped(report: Report) -> set[str]:
    return {r.id for r in report.results if r.status == "skipped"}


async def test_the_demo_app_conforms(env: Env) -> None:
    demo = await _demo(env)
    before = await _fingerprint(env, demo)
    target = await env.create(DEMO_WASM)
    await IcrpClient(env.agent, demo).set_peers([target])
    await IcrpClient(env.agent, target).set_peers([demo])

    report = await check_canister(
        env.agent, demo, identity_other=env.stranger, allow_commit=True, push_target=target
    )
    assert report.ok, report.render()
    assert _skipped(report) == {"key_range.out_of_range", "fleet.members"}, report.render()
    assert report.result("fleet.members").detail.startswith("not applicable: the canister does not")
    assert "range_changes" in report.capabilities
    assert _summary(report)["journal.range_filter"] == "passed", report.render()
    assert report.role == "app"
    assert await _fingerprint(env, demo) == before  # the suite changed no data
    assert "export.stale_snapshot" in report.render()


async def test_a_demo_shard_conforms(env: Env) -> None:
    demo = await _demo(env)
    lower = (5).to_bytes(8, "big")
    await IcrpClient(env.agent, demo).set_key_range(KeyRange(lower, None))
    report = await check_canister(env.agent, demo, identity_other=env.stranger)
    assert report.ok, report.render()
    assert report.role == "shard"
    assert _summary(report)["key_range.out_of_range"] == "passed"
    assert _summary(report)["key_range.export"] == "passed"


async def _relay(env: Env, source: Principal, backup: Principal) -> int:
    """Copy the source's current image into the backup; returns the backup's snapshot id."""
    src, dst = IcrpClient(env.agent, source), IcrpClient(env.agent, backup)
    ticket = await src.wait_ready(await src.begin_export())
    import_id = await dst.begin_import(ImportSpec.for_ticket(source, ticket))
    for offset in range(0, ticket.size, 1_000_000):
        await dst.write(import_id, offset, await src.read(ticket.snapshot_id, offset, 1_000_000))
    state = await dst.commit(import_id)
    assert state.snapshot_id is not None
    return state.snapshot_id


async def test_the_backup_canister_conforms(env: Env) -> None:
    demo = await _demo(env)
    init: dict[str, Any] = {"source": demo.raw, "keep": [1], "peers": []}
    backup = await env.create(BACKUP_WASM, encode_value(_BACKUP_INIT, init))
    empty = await check_canister(env.agent, backup, identity_other=env.stranger)
    assert empty.ok, empty.render()
    assert "holds no image yet" in empty.result("export.ready").detail
    assert "import_source" in empty.result("import.idempotent_write").detail
    assert _summary(empty)["access.reads_refused"] == "passed"
    told = await check_canister(env.agent, backup, identity_other=env.stranger, import_source=demo)
    assert told.ok, told.render()
    assert _summary(told)["import.digest_mismatch"] == "passed"
    assert _summary(told)["access.writes_refused"] == "passed"

    first = await _relay(env, demo, backup)
    user = encode_values([(Types.Text, "alice"), (Types.Text, "a new user")])
    await _ok(env.agent, demo, "create_user", user)
    second = await _relay(env, demo, backup)
    assert second > first  # keep = 1: the first image is evicted, its id stale

    report = await check_canister(env.agent, backup, identity_other=env.stranger)
    assert report.ok, report.render()
    assert report.role == "backup"
    summary = _summary(report)
    for check in (
        "export.chunk_digests",
        "export.stale_snapshot",
        "import.digest_mismatch",
        "access.reads_refused",
        "access.writes_refused",
        "peers.compare_and_set",
    ):
        assert summary[check] == "passed", report.render()
    assert {"journal.changes", "apply.gap", "key_range.export"} <= _skipped(report)


async def test_a_canister_without_icrp_is_not_conformant(env: Env) -> None:
    counter = await env.create(COUNTER_WASM)
    report = await check_canister(env.agent, counter, identity_other=env.stranger)
    assert not report.ok
    failed = report.result("info.well_formed")
    assert failed.status == "failed"
    assert "icrp_info" in failed.detail
    assert report.count("failed") == 1  # everything else is skipped for want of info
