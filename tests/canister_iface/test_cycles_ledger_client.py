"""CyclesLedgerClient against a fake that decodes with the test ledger's generated .did.

The Motoko stand-in (tests/canisters/src/cycles_ledger) declares the real
ledger's types; moc's .did of it is what the fake decodes requests with and
encodes replies with, so a field the client spells differently fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from icp_candid import DIDLoader, decode, encode

from canister_iface.cycles_ledger import (
    CYCLES_LEDGER_ID,
    Account,
    CreationFailed,
    CyclesLedgerClient,
    CyclesLedgerError,
    CyclesLedgerUnavailable,
    InsufficientFunds,
    WithdrawFailed,
)
from canister_iface.errors import PermanentError, TransientError
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal

DID = Path(__file__).parents[1] / "canisters/wasm/cycles_ledger.did"
METHODS = DIDLoader().load_did_source(DID.read_text())["methods"]
ALICE = Principal(b"\x01" * 29)
NEW = Principal(bytes.fromhex("00000000000000070101"))


@dataclass
class FakeLedger:
    calls: list[tuple[str, list[Any]]] = field(default_factory=list)
    answer: Callable[[str, list[Any]], Any] = lambda method, args: None

    async def query(self, canister_id: bytes, method: str, arg: bytes) -> bytes:
        return self._run(canister_id, method, arg)

    async def update(
        self,
        canister_id: bytes,
        method: str,
        arg: bytes,
        *,
        effective_canister_id: bytes | None = None,
    ) -> bytes:
        assert effective_canister_id is None
        return self._run(canister_id, method, arg)

    def _run(self, canister_id: bytes, method: str, arg: bytes) -> bytes:
        assert canister_id == CYCLES_LEDGER_ID.raw
        func = METHODS[method]
        args = [v["value"] for v in decode(arg, func.argTypes)] if func.argTypes else []
        self.calls.append((method, args))
        value = self.answer(method, args)
        return bytes(encode([{"type": func.retTypes[0], "value": value}]))


def _ok(method: str, args: list[Any]) -> Any:
    if method == "create_canister":
        return {"Ok": {"block_id": 42, "canister_id": NEW.raw}}
    return 100_000_000


async def test_create_canister_sends_the_ledger_types_and_returns_the_canister() -> None:
    fake = FakeLedger(answer=_ok)
    client = CyclesLedgerClient(fake)
    created = await client.create_canister(
        2 * 10**12,
        settings=CanisterSettings(controllers=(ALICE,), freezing_threshold=100),
        created_at_time=1_700_000_000_000_000_000,
        subnet_type="application",
    )
    assert (created.canister_id, created.block_id, created.duplicate) == (NEW, 42, False)
    ((method, (arg,)),) = fake.calls
    assert method == "create_canister"
    assert arg["amount"] == 2 * 10**12
    assert arg["created_at_time"] == [1_700_000_000_000_000_000]
    assert arg["from_subaccount"] == []
    (creation,) = arg["creation_args"]
    (settings,) = creation["settings"]
    assert [bytes(p.bytes) for p in settings["controllers"][0]] == [ALICE.raw]
    assert settings["freezing_threshold"] == [100]
    assert creation["subnet_selection"] == [{"Filter": {"subnet_type": ["application"]}}]


async def test_created_at_time_defaults_to_now_so_the_ledger_can_deduplicate() -> None:
    fake = FakeLedger(answer=_ok)
    await CyclesLedgerClient(fake).create_canister(10**12)
    ((_, (arg,)),) = fake.calls
    assert len(arg["created_at_time"]) == 1
    assert arg["creation_args"][0] == {"settings": [], "subnet_selection": []}


async def test_a_duplicate_with_a_canister_is_the_earlier_success() -> None:
    fake = FakeLedger(
        answer=lambda m, a: {"Err": {"Duplicate": {"duplicate_of": 7, "canister_id": [NEW.raw]}}}
    )
    created = await CyclesLedgerClient(fake).create_canister(10**12, created_at_time=5)
    assert (created.canister_id, created.block_id, created.duplicate) == (NEW, 7, True)


@pytest.mark.parametrize(
    ("err", "kind", "words"),
    [
        ({"InsufficientFunds": {"balance": 5}}, InsufficientFunds, "holds 5 cycles"),
        ({"TooOld": None}, CyclesLedgerError, "too old"),
        ({"CreatedInFuture": {"ledger_time": 9}}, CyclesLedgerUnavailable, "check the local"),
        ({"TemporarilyUnavailable": None}, CyclesLedgerUnavailable, "temporarily"),
        ({"Duplicate": {"duplicate_of": 3, "canister_id": []}}, CyclesLedgerError, "block 3"),
        (
            {"FailedToCreate": {"fee_block": [1], "refund_block": [2], "error": "out of space"}},
            CreationFailed,
            "out of space",
        ),
        ({"GenericError": {"message": "nope", "error_code": 17}}, CyclesLedgerError, "code 17"),
    ],
)
async def test_ledger_errors_become_exceptions(
    err: dict[str, Any], kind: type[Exception], words: str
) -> None:
    fake = FakeLedger(answer=lambda m, a: {"Err": err})
    with pytest.raises(kind, match=words) as caught:
        await CyclesLedgerClient(fake).create_canister(10**12)
    transient = kind is CyclesLedgerUnavailable
    assert isinstance(caught.value, TransientError) is transient
    assert isinstance(caught.value, PermanentError) is not transient
    if isinstance(caught.value, CreationFailed):
        assert (caught.value.fee_block, caught.value.refund_block) == (1, 2)
    if isinstance(caught.value, InsufficientFunds):
        assert caught.value.balance == 5


async def test_settings_the_ledger_cannot_forward_are_refused() -> None:
    fake = FakeLedger(answer=_ok)
    with pytest.raises(ValueError, match=r"wasm_memory_limit.*update_settings"):
        await CyclesLedgerClient(fake).create_canister(
            10**12, settings=CanisterSettings(wasm_memory_limit=1 << 30)
        )
    assert fake.calls == []


async def test_balance_and_fee_are_queries() -> None:
    fake = FakeLedger(answer=lambda m, a: 123 if m == "icrc1_balance_of" else 100_000_000)
    client = CyclesLedgerClient(fake)
    sub = bytes(31) + b"\x01"
    assert await client.balance_of(Account(ALICE, sub)) == 123
    assert await client.balance_of(ALICE) == 123
    assert await client.fee() == 100_000_000
    accounts = [args[0] for method, args in fake.calls if method == "icrc1_balance_of"]
    assert accounts[0]["subaccount"] == [sub]
    assert accounts[1]["subaccount"] == []


def test_subaccounts_have_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Account(ALICE, b"short")


# ------------------------------------------------------------------ withdraw


async def test_withdraw_sends_the_ledger_types_and_returns_the_block() -> None:
    fake = FakeLedger(answer=lambda m, a: {"Ok": 9})
    done = await CyclesLedgerClient(fake).withdraw(5 * 10**11, NEW, created_at_time=77)
    assert (done.block_index, done.duplicate) == (9, False)
    ((method, (arg,)),) = fake.calls
    assert method == "withdraw"
    assert arg["amount"] == 5 * 10**11
    assert bytes(arg["to"].bytes) == NEW.raw
    assert arg["created_at_time"] == [77]
    assert arg["from_subaccount"] == []


async def test_a_repeated_withdrawal_is_the_earlier_success() -> None:
    fake = FakeLedger(answer=lambda m, a: {"Err": {"Duplicate": {"duplicate_of": 4}}})
    done = await CyclesLedgerClient(fake).withdraw(10**12, NEW, created_at_time=5)
    assert (done.block_index, done.duplicate) == (4, True)


@pytest.mark.parametrize(
    ("err", "kind", "words"),
    [
        ({"InsufficientFunds": {"balance": 5}}, InsufficientFunds, "holds 5 cycles"),
        ({"TooOld": None}, CyclesLedgerError, "too old"),
        ({"CreatedInFuture": {"ledger_time": 9}}, CyclesLedgerUnavailable, "check the local"),
        ({"TemporarilyUnavailable": None}, CyclesLedgerUnavailable, "temporarily"),
        ({"InvalidReceiver": {"receiver": NEW.raw}}, CyclesLedgerError, "not a canister"),
        ({"BadFee": {"expected_fee": 7}}, CyclesLedgerError, "fee of 7"),
        (
            {
                "FailedToWithdraw": {
                    "fee_block": [1],
                    "rejection_code": {"DestinationInvalid": None},
                    "rejection_reason": "no such canister",
                }
            },
            WithdrawFailed,
            "no such canister",
        ),
        ({"GenericError": {"message": "nope", "error_code": 17}}, CyclesLedgerError, "code 17"),
    ],
)
async def test_withdraw_errors_become_exceptions(
    err: dict[str, Any], kind: type[Exception], words: str
) -> None:
    fake = FakeLedger(answer=lambda m, a: {"Err": err})
    with pytest.raises(kind, match=words) as caught:
        await CyclesLedgerClient(fake).withdraw(10**12, NEW)
    transient = kind is CyclesLedgerUnavailable
    assert isinstance(caught.value, TransientError) is transient
    if isinstance(caught.value, WithdrawFailed):
        assert (caught.value.rejection_code, caught.value.fee_block) == ("DestinationInvalid", 1)
