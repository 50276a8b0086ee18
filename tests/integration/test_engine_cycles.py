"""Created backup canisters do not die of cycles: read on every run, topped up in time.

Localnet keeps the IC's cycle accounts: ``canister_status`` reports the
balance, the idle burn of the canister's memory and its freezing threshold;
``provisional_top_up_canister`` adds cycles; the test cycles ledger's
``withdraw`` sends them from an account, as on mainnet.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from engine_support import LEDGER_WASM, T, World, counter, ref, run_backup, run_restore, world
from icp_candid import Types

from canister_iface.candid_value import encode_values
from canister_iface.cycles_ledger import ACCOUNT, CYCLES_LEDGER_FEE, Account, CyclesLedgerClient
from canister_iface.identity import Identity
from canister_iface.principal import Principal
from replicator.flow import Action, Verb
from replicator.flows import backup as backup_flow
from replicator.job import JobOutcome
from replicator.limits import LimitSettings
from replicator.topup import Balance, TopUpPolicy

pytestmark = pytest.mark.integration

# A created canister starts with 1 T (installing the backup Wasm costs about half);
# the policy keeps a reserve of 2 T: so it needs a top-up at once.
LOW = T
NEEDY = TopUpPolicy(reserve=2 * T)


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    async with world(tmp_path) as w:
        yield w


async def balance(w: World, canister: Principal) -> Balance:
    status = await w.mgmt.canister_status(canister)
    return Balance(
        status.cycles,
        status.idle_cycles_burned_per_day,
        status.settings.freezing_threshold,
        status.reserved_cycles or 0,
    )


def target_of(outcome: JobOutcome) -> Principal:
    assert outcome.job.target is not None
    return Principal.from_text(outcome.job.target.canister_id)  # type: ignore[union-attr]


def gauge(w: World, name: str) -> float:
    value = w.metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


async def test_a_created_backup_canister_low_on_cycles_is_topped_up_before_the_copy(
    w: World,
) -> None:
    demo = await w.demo(mib=1)
    policy = NEEDY
    async with w.engine(initial_cycles=LOW, top_up=policy) as engine:
        first = await run_backup(engine, ref(demo))
        assert first.ok, first.error
        backup = target_of(first)
        topped = await balance(w, backup)
        # Topped up to the policy's target: the freezing limit, 90 days of idle
        # burn and twice the reserve for its own work, less what the backup cost.
        assert topped.cycles > 1.9 * policy.reserve  # one reserve for the work, one more
        assert topped.days_left > policy.below_days
        assert any("topped" in n and "up with" in n for n in first.notes), first.notes
        assert counter(w.metrics, "replicator_backup_canister_top_ups_total", outcome="ok") == 1
        sent = counter(w.metrics, "replicator_backup_canister_top_up_cycles_total")
        assert sent > 0
        assert counter(w.metrics, "replicator_cycles_spent_total") >= sent  # charged to the budget
        assert gauge(w, "replicator_backup_canisters_watched") == 1
        assert policy.below_days < gauge(w, "replicator_backup_canister_freeze_days_min") < math.inf
        assert gauge(w, "replicator_backup_canister_cycles_min") >= topped.cycles
        assert gauge(w, "replicator_backup_canisters_low") == 0

        await w.add_user(demo, "bob")
        second = await run_backup(engine, ref(demo))  # read again; no top-up needed now
    assert second.ok, second.error
    assert counter(w.metrics, "replicator_backup_canister_top_ups_total", outcome="ok") == 1
    assert counter(w.metrics, "replicator_backup_canister_checks_total", outcome="ok") == 2


async def test_a_backup_canister_given_by_hand_is_not_touched(w: World) -> None:
    demo = await w.demo(mib=1)
    backup = await w.backup_canister(demo)
    before = (await balance(w, backup)).cycles
    async with w.engine(top_up=TopUpPolicy(reserve=1000 * T)) as engine:
        outcome = await run_backup(engine, ref(demo), ref(backup))
    assert outcome.ok, outcome.error
    assert (await balance(w, backup)).cycles <= before  # the tool did not create it
    assert counter(w.metrics, "replicator_backup_canister_checks_total", outcome="ok") == 0


async def test_a_restore_tops_up_the_created_backup_canister_it_reads(w: World) -> None:
    demo = await w.demo(mib=1)
    async with w.engine() as engine:
        backed = await run_backup(engine, ref(demo))
        assert backed.ok, backed.error
    backup = target_of(backed)
    needy = TopUpPolicy(reserve=(await balance(w, backup)).cycles + T)  # now below its floor
    async with w.engine(top_up=needy) as engine:
        restored = await run_restore(engine, ref(backup), ref(demo))
    assert restored.ok, restored.error
    assert counter(w.metrics, "replicator_backup_canister_top_ups_total", outcome="ok") == 1
    assert (await balance(w, backup)).cycles > needy.reserve


async def test_a_top_up_beyond_the_cycles_budget_fails_loudly_and_the_backup_goes_on(
    w: World,
) -> None:
    demo = await w.demo(mib=1)
    budget = LimitSettings(calls_per_second=None, bytes_per_second=None, cycles_budget=2 * T)
    async with w.engine(initial_cycles=LOW, limits=budget, top_up=NEEDY) as engine:
        outcome = await run_backup(engine, ref(demo))
    assert outcome.ok, outcome.error
    assert any("could not top up" in n and "budget" in n for n in outcome.notes), outcome.notes
    assert counter(w.metrics, "replicator_backup_canister_top_ups_total", outcome="failed") == 1
    assert gauge(w, "replicator_backup_canisters_low") == 1
    assert (await balance(w, target_of(outcome))).cycles < LOW


async def test_with_top_ups_off_a_needed_one_is_counted_and_nothing_is_sent(w: World) -> None:
    demo = await w.demo(mib=1)
    off = TopUpPolicy(source="off", reserve=NEEDY.reserve)
    async with w.engine(initial_cycles=LOW, top_up=off) as engine:
        outcome = await run_backup(engine, ref(demo))
    assert outcome.ok, outcome.error
    assert any("top-ups are off" in n for n in outcome.notes), outcome.notes
    assert counter(w.metrics, "replicator_backup_canister_top_ups_total", outcome="off") == 1
    assert counter(w.metrics, "replicator_backup_canister_top_up_cycles_total") == 0
    assert gauge(w, "replicator_backup_canisters_low") == 1


async def test_a_canister_whose_status_the_identity_may_not_read_is_reported(w: World) -> None:
    demo = await w.demo(mib=1)
    operator = Identity.generate_ed25519().principal
    async with w.engine(controllers=(operator.to_text(),)) as engine:
        outcome = await run_backup(engine, ref(demo))  # created, then handed to the operator
        assert outcome.ok, outcome.error
        again = await run_backup(engine, ref(demo))
    assert again.ok, again.error
    assert any("cannot read the cycles" in n for n in again.notes), again.notes
    assert counter(w.metrics, "replicator_backup_canister_checks_total", outcome="unreadable") >= 1


async def test_a_dry_run_announces_the_top_up_and_sends_nothing(w: World) -> None:
    demo = await w.demo(mib=1)
    async with w.engine(initial_cycles=LOW, top_up=TopUpPolicy(source="off")) as engine:
        first = await run_backup(engine, ref(demo))
        backup = target_of(first)
        before = (await balance(w, backup)).cycles
    async with w.engine(top_up=NEEDY) as engine:
        planned = await engine.dry_run(backup_flow.request(ref(demo)))
    spends = [a for a in planned.actions if a.verb == Verb.SPEND]
    assert len(spends) == 1
    assert str(backup) in spends[0].what
    assert spends[0].cycles > 0
    assert not spends[0].consent  # local cycles cost nothing
    assert (await balance(w, backup)).cycles <= before


async def test_on_mainnet_a_top_up_is_paid_through_the_cycles_ledger_with_consent(
    w: World,
) -> None:
    demo = await w.demo(mib=1)
    ledger = await w.create(LEDGER_WASM)
    account = Account(w.me.principal)
    fund = encode_values([(ACCOUNT, account.to_candid()), (Types.Nat, 20 * T)])
    await w.agent.update(ledger, "test_fund", fund)
    client = CyclesLedgerClient(w.agent, ledger)
    created = 2 * T  # the ledger pays the 0.5 T creation fee out of it
    paying = {
        "create_with": "ledger",
        "cycles_ledger": ledger.to_text(),
        "initial_cycles": created,
        "top_up": TopUpPolicy(reserve=4 * T),
    }
    asked: list[Sequence[Action]] = []

    async def consent(actions: Sequence[Action]) -> None:
        asked.append(actions)

    async with w.engine(**paying) as engine:
        funds = await client.balance_of(account)
        outcome = await engine.submit(backup_flow.request(ref(demo)), consent=consent)
    assert outcome.ok, outcome.error
    verbs = [a.verb for actions in asked for a in actions]
    assert verbs == [Verb.CREATE, Verb.SPEND]  # the creation, then the top-up: both asked
    sent = counter(w.metrics, "replicator_backup_canister_top_up_cycles_total")
    assert sent > 0
    spent = funds - await client.balance_of(account)
    assert spent == created + CYCLES_LEDGER_FEE + sent + CYCLES_LEDGER_FEE  # create + withdraw
    assert (await balance(w, target_of(outcome))).cycles > sent
