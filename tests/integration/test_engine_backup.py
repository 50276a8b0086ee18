"""Backups with the engine on localnet over HTTP: direct and relay paths."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import LEDGER_WASM, T, World, counter, ref, run_backup, world
from icp_candid import Types

from canister_iface.candid_value import encode_values
from canister_iface.cycles_ledger import ACCOUNT, Account, CyclesLedgerClient
from canister_iface.icrp import IcrpClient
from canister_iface.identity import Identity
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal
from replicator.checkpoints import SqliteStore
from replicator.job import Phase
from replicator.registry import Entry

pytestmark = pytest.mark.integration


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


@pytest.mark.parametrize("via", ["direct", "relay"])
async def test_backup_copies_the_image_and_the_backup_serves_it_back(w: World, via: str) -> None:
    demo = await w.demo(mib=2)
    backup = await w.backup_canister(demo)
    async with w.engine() as engine:
        outcome = await run_backup(engine, ref(demo), ref(backup), via=via)
    assert outcome.ok, outcome.error
    assert outcome.exit_code == 0
    assert outcome.route == via
    # One subnet: the pushes cross no block, and the "auto" byte budget meters them so.
    assert outcome.details["in_subnet"] == (True if via == "direct" else None)
    assert outcome.digest is not None
    assert outcome.target_digest == outcome.digest
    images = await IcrpClient(w.agent, backup).list_images()
    assert [t.digest for t in images] == [outcome.digest]
    assert images[0].origin is not None
    assert images[0].origin.source == demo
    assert outcome.bytes_copied == images[0].size
    assert counter(w.metrics, "replicator_copied_bytes_total", kind="backup", route=via) == (
        images[0].size
    )
    assert w.progress.phases()[-1] == Phase.DONE
    # The commit's certified answer named the digest the backup canister now
    # serves: no icrp_export_status after it, and the source's export was
    # ended while the target committed (one round trip after the copy, not two).
    assert (
        counter(w.metrics, "replicator_calls_total", method="icrp_export_status", outcome="ok") == 0
    )
    assert counter(w.metrics, "replicator_calls_total", method="icrp_end_export", outcome="ok") == 1
    # Each side is asked icrp_info once, however many steps want it at the same time.
    assert counter(w.metrics, "replicator_calls_total", method="icrp_info", outcome="ok") == 2


async def test_a_push_to_another_subnet_is_metered_as_bytes_a_block_carries(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, subnets=2) as w:
        demo = await w.demo(mib=1)
        backup = await w.backup_canister(demo, subnet=1)
        assert w.net.subnet_of(backup.raw).index == 1
        async with w.engine() as engine:
            outcome = await run_backup(engine, ref(demo), ref(backup), via="direct")
    assert outcome.ok, outcome.error
    assert outcome.route == "direct"
    assert outcome.details["in_subnet"] is False
    assert outcome.target_digest == outcome.digest


async def test_backup_without_target_creates_registers_and_reuses_a_backup_canister(
    w: World,
) -> None:
    demo = await w.demo(mib=1)
    operator = Identity.generate_ed25519().principal
    async with w.engine(controllers=(w.me.principal.to_text(), operator.to_text())) as engine:
        first = await run_backup(engine, ref(demo))
        assert first.ok, first.error
        assert any("creating a backup canister" in note for note in first.notes)
        # The image the source froze while its backup canister was created is the
        # one the job copied: the source was asked for an image once, not twice.
        assert any("frozen while planning" in note for note in first.notes)
        exports = ("replicator_calls_total", "icrp_begin_export")
        assert counter(w.metrics, exports[0], method=exports[1], outcome="ok") == 1
        assert first.job.target is not None
        backup = Principal.from_text(first.job.target.canister_id)  # type: ignore[union-attr]
        assert set(await w.agent.controllers(backup)) == {w.me.principal, operator}
        entry = await engine.store.registry.get("local", demo.to_text())
        assert entry is not None
        assert entry.state == "ready"
        assert entry.canister == backup.to_text()
        unchanged = await run_backup(engine, ref(demo))  # nothing changed: nothing to copy
        assert unchanged.ok, unchanged.error
        assert unchanged.job.id != first.job.id
        assert unchanged.bytes_copied == 0
        assert any("already holds this image" in note for note in unchanged.notes)
        await w.add_user(demo, "bob")
        second = await run_backup(engine, ref(demo))
    assert second.ok, second.error
    assert second.job.target == first.job.target  # the registered canister, not a new one
    images = await IcrpClient(w.agent, backup).list_images()
    assert [t.digest for t in images] == [first.digest, second.digest]
    assert counter(w.metrics, "replicator_canisters_created_total", network="local") == 1


async def test_a_created_backup_canister_may_exclude_the_orchestrator(w: World) -> None:
    demo = await w.demo(mib=1)
    operator = Identity.generate_ed25519().principal
    async with w.engine(controllers=(operator.to_text(),)) as engine:
        outcome = await run_backup(engine, ref(demo))
    assert outcome.ok, outcome.error
    backup = Principal.from_text(outcome.job.target.canister_id)  # type: ignore[union-attr]
    assert await w.agent.controllers(backup) == [operator]  # exactly the configured set
    # We stay a trusted peer, so later backups keep working.
    assert (await IcrpClient(w.agent, backup).info()).trusted


async def test_a_backup_canister_paid_through_the_cycles_ledger_is_created_once(
    w: World,
) -> None:
    demo = await w.demo(mib=1)
    ledger = await w.create(LEDGER_WASM)
    account = Account(w.me.principal)
    fund = encode_values([(ACCOUNT, account.to_candid()), (Types.Nat, 20 * T)])
    await w.agent.update(ledger, "test_fund", fund)
    client = CyclesLedgerClient(w.agent, ledger)
    # A run that paid the ledger and crashed before recording the canister:
    # the registry holds the intent and its deduplication time.
    when = time.time_ns()
    intent = Entry("local", demo.to_text(), "backup", None, "requested", when)
    async with SqliteStore(w.tmp / "checkpoints.sqlite3") as store:
        await store.registry.put(intent)
    settings = CanisterSettings(controllers=(w.me.principal,))
    paid = await client.create_canister(3 * T, settings=settings, created_at_time=when)
    balance = await client.balance_of(account)

    paying = {"create_with": "ledger", "cycles_ledger": ledger.to_text(), "initial_cycles": 3 * T}
    async with w.engine(**paying) as engine:
        outcome = await run_backup(engine, ref(demo))
        entry = await engine.store.registry.get("local", demo.to_text())
    assert outcome.ok, outcome.error
    assert outcome.job.target == ref(paid.canister_id)  # the ledger's duplicate, not a second one
    assert await client.balance_of(account) == balance
    assert (await IcrpClient(w.agent, paid.canister_id).list_images())[0].digest == outcome.digest
    assert entry is not None
    assert (entry.state, entry.request_ns) == ("ready", when)
