"""Creating and topping up canisters on mainnet: the cycles ledger.

An ingress message cannot attach cycles, so a user (or the orchestrator)
cannot call the management canister's ``create_canister`` directly.  The
cycles ledger (``um5iw-rqaaa-aaaaq-qaaba-cai``) holds cycles per ICRC-1
account and creates a canister paid from the caller's balance: ``amount``
cycles go to the new canister, the ledger keeps its fee (100 M cycles).
Types follow ``cycles-ledger.did``.

Retries are safe when ``created_at_time`` is set: the ledger deduplicates a
transaction with the same caller, subaccount, ``created_at_time`` and amount
within 24 h and answers ``Duplicate`` with the canister it created the first
time, which :meth:`CyclesLedgerClient.create_canister` returns as success.
Generate the time once per intended canister and pass it on every attempt.

``withdraw`` sends cycles from the caller's account to a canister (a top-up:
the ledger calls the management canister's ``deposit_cycles``), for
``amount`` plus the fee; it deduplicates the same way (same receiver too),
and :meth:`CyclesLedgerClient.withdraw` returns a ``Duplicate`` as success.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from icp_candid import Types

from canister_iface.caller import Caller
from canister_iface.candid_value import (
    EMPTY_ARGS,
    Rec,
    as_nat,
    as_rec,
    as_variant,
    decode_single,
    encode_value,
)
from canister_iface.errors import PermanentError, TransientError
from canister_iface.management_types import CanisterRef, CanisterSettings
from canister_iface.principal import Principal

CYCLES_LEDGER_ID = Principal.from_text("um5iw-rqaaa-aaaaq-qaaba-cai")
# What the ledger charges per transaction (create_canister, withdraw) on top of the amount.
CYCLES_LEDGER_FEE = 100_000_000
# The settings the ledger forwards (its CanisterSettings type); set the others
# with update_settings once the canister exists.
LEDGER_SETTINGS = (
    "controllers",
    "compute_allocation",
    "memory_allocation",
    "freezing_threshold",
    "reserved_cycles_limit",
)

_BLOB = Types.Vec(Types.Nat8)
ACCOUNT = Types.Record({"owner": Types.Principal, "subaccount": Types.Opt(_BLOB)})
_SETTINGS = Types.Record(
    {
        "controllers": Types.Opt(Types.Vec(Types.Principal)),
        "compute_allocation": Types.Opt(Types.Nat),
        "memory_allocation": Types.Opt(Types.Nat),
        "freezing_threshold": Types.Opt(Types.Nat),
        "reserved_cycles_limit": Types.Opt(Types.Nat),
    }
)
_SUBNET_SELECTION = Types.Variant(
    {
        "Subnet": Types.Record({"subnet": Types.Principal}),
        "Filter": Types.Record({"subnet_type": Types.Opt(Types.Text)}),
    }
)
CREATE_CANISTER_ARGS = Types.Record(
    {
        "from_subaccount": Types.Opt(_BLOB),
        "created_at_time": Types.Opt(Types.Nat64),
        "amount": Types.Nat,
        "creation_args": Types.Opt(
            Types.Record(
                {"settings": Types.Opt(_SETTINGS), "subnet_selection": Types.Opt(_SUBNET_SELECTION)}
            )
        ),
    }
)
WITHDRAW_ARGS = Types.Record(
    {
        "amount": Types.Nat,
        "from_subaccount": Types.Opt(_BLOB),
        "to": Types.Principal,
        "created_at_time": Types.Opt(Types.Nat64),
    }
)
_WITHDRAW_ERRORS = (
    "GenericError",
    "TemporarilyUnavailable",
    "Duplicate",
    "BadFee",
    "InvalidReceiver",
    "CreatedInFuture",
    "TooOld",
    "InsufficientFunds",
    "FailedToWithdraw",
)
_REJECTION_CODES = (
    "NoError",
    "SysFatal",
    "SysTransient",
    "DestinationInvalid",
    "CanisterReject",
    "CanisterError",
    "Unknown",
)
_ERRORS = (
    "InsufficientFunds",
    "TooOld",
    "CreatedInFuture",
    "TemporarilyUnavailable",
    "Duplicate",
    "FailedToCreate",
    "GenericError",
)


# ----------------------------------------------------------------------- errors


class CyclesLedgerError(PermanentError):
    """The cycles ledger refused the transaction."""


class InsufficientFunds(CyclesLedgerError):
    """The account holds less than amount + fee."""

    def __init__(self, message: str, *, balance: int) -> None:
        super().__init__(message)
        self.balance = balance


class CreationFailed(CyclesLedgerError):
    """The ledger could not create the canister; it kept its fee and refunded the amount."""

    def __init__(
        self, message: str, *, reason: str, fee_block: int | None, refund_block: int | None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.fee_block = fee_block
        self.refund_block = refund_block


class CyclesLedgerUnavailable(TransientError):
    """Try again later: the ledger is busy, or its clock is behind ``created_at_time``."""


class WithdrawFailed(CyclesLedgerError):
    """The ledger could not deliver the cycles; it kept its fee and refunded the amount."""

    def __init__(self, message: str, *, rejection_code: str, fee_block: int | None) -> None:
        super().__init__(message)
        self.rejection_code = rejection_code
        self.fee_block = fee_block


# ------------------------------------------------------------------------ types


@dataclass(frozen=True)
class Account:
    """An ICRC-1 account: an owner and an optional 32-byte subaccount."""

    owner: Principal
    subaccount: bytes | None = None

    def __post_init__(self) -> None:
        if self.subaccount is not None and len(self.subaccount) != 32:
            raise ValueError(f"a subaccount has 32 bytes, got {len(self.subaccount)}")

    @classmethod
    def of(cls, value: Account | CanisterRef) -> Account:
        return value if isinstance(value, Account) else cls(Principal.of(value))

    def to_candid(self) -> dict[str, Any]:
        return {
            "owner": self.owner.raw,
            "subaccount": [] if self.subaccount is None else [self.subaccount],
        }


@dataclass(frozen=True)
class CreatedCanister:
    canister_id: Principal
    block_id: int  # the ledger block that paid for it
    duplicate: bool = False  # True: an earlier attempt of the same transaction created it


def ledger_settings(settings: CanisterSettings) -> dict[str, Any]:
    """``settings`` as the ledger's CanisterSettings; other fields are refused.

    The ledger would silently drop fields it does not know; refusing them
    here keeps a wasm memory limit or a visibility from being lost unnoticed.
    """
    extra = [name for name in settings.set_fields() if name not in LEDGER_SETTINGS]
    if extra:
        raise ValueError(
            f"the cycles ledger cannot set {', '.join(extra)} at creation; create the canister "
            "with the ledger's settings and call update_settings afterwards"
        )
    full = settings.to_candid()
    return {name: full[name] for name in LEDGER_SETTINGS}


# ----------------------------------------------------------------------- client


class CyclesLedgerClient:
    """The cycles ledger's account and canister-creation methods."""

    def __init__(self, agent: Caller, ledger_id: CanisterRef = CYCLES_LEDGER_ID) -> None:
        self.agent = agent
        self.ledger_id = Principal.of(ledger_id)

    async def fee(self) -> int:
        reply = await self.agent.query(self.ledger_id.raw, "icrc1_fee", EMPTY_ARGS)
        return as_nat(decode_single(reply, "icrc1_fee"), "icrc1_fee")

    async def balance_of(self, account: Account | CanisterRef) -> int:
        arg = encode_value(ACCOUNT, Account.of(account).to_candid())
        reply = await self.agent.query(self.ledger_id.raw, "icrc1_balance_of", arg)
        return as_nat(decode_single(reply, "icrc1_balance_of"), "icrc1_balance_of")

    async def create_canister(
        self,
        amount: int,
        *,
        settings: CanisterSettings | None = None,
        from_subaccount: bytes | None = None,
        created_at_time: int | None = None,
        subnet: CanisterRef | None = None,
        subnet_type: str | None = None,
    ) -> CreatedCanister:
        """Create a canister holding ``amount`` cycles, paid from the caller's account.

        Without ``settings.controllers`` the caller becomes the only controller.
        ``created_at_time`` (ns) defaults to now; pass the same value on every
        retry of one creation so that the ledger deduplicates (module docstring).
        ``subnet`` or ``subnet_type`` choose where the canister is created.
        """
        if subnet is not None and subnet_type is not None:
            raise ValueError("give subnet or subnet_type, not both")
        arg = {
            "from_subaccount": [] if from_subaccount is None else [from_subaccount],
            "created_at_time": [time.time_ns() if created_at_time is None else created_at_time],
            "amount": amount,
            "creation_args": [
                {
                    "settings": [] if settings is None else [ledger_settings(settings)],
                    "subnet_selection": _subnet_selection(subnet, subnet_type),
                }
            ],
        }
        reply = await self.agent.update(
            self.ledger_id.raw, "create_canister", encode_value(CREATE_CANISTER_ARGS, arg)
        )
        return _create_result(decode_single(reply, "create_canister"), amount)

    async def withdraw(
        self,
        amount: int,
        to: CanisterRef,
        *,
        from_subaccount: bytes | None = None,
        created_at_time: int | None = None,
    ) -> Withdrawal:
        """Send ``amount`` cycles to the canister ``to``, paid (plus the fee) from the caller.

        ``created_at_time`` (ns) defaults to now; pass the same value on every
        retry of one top-up so that the ledger deduplicates (module docstring).
        """
        arg = {
            "amount": amount,
            "from_subaccount": [] if from_subaccount is None else [from_subaccount],
            "to": Principal.of(to).raw,
            "created_at_time": [time.time_ns() if created_at_time is None else created_at_time],
        }
        reply = await self.agent.update(
            self.ledger_id.raw, "withdraw", encode_value(WITHDRAW_ARGS, arg)
        )
        return _withdraw_result(decode_single(reply, "withdraw"), amount, Principal.of(to))


@dataclass(frozen=True)
class Withdrawal:
    block_index: int  # the ledger block that paid for it
    duplicate: bool = False  # True: an earlier attempt of the same transaction did it


def _subnet_selection(subnet: CanisterRef | None, subnet_type: str | None) -> list[object]:
    if subnet is not None:
        return [{"Subnet": {"subnet": Principal.of(subnet).raw}}]
    if subnet_type is not None:
        return [{"Filter": {"subnet_type": [subnet_type]}}]
    return []


def _create_result(value: object, amount: int) -> CreatedCanister:
    what = "create_canister"
    tag, payload = as_variant(value, ("Ok", "Err"), what)
    if tag == "Ok":
        ok = as_rec(payload, f"{what}.Ok")
        return CreatedCanister(ok.principal("canister_id"), ok.nat("block_id"))
    error, detail = as_variant(payload, _ERRORS, f"{what}.Err")
    rec = as_rec(detail, f"{what}.Err.{error}") if isinstance(detail, dict) else None
    if error == "Duplicate" and rec is not None:
        canister = rec.opt_principal("canister_id")
        if canister is not None:
            return CreatedCanister(canister, rec.nat("duplicate_of"), duplicate=True)
    raise _create_error(error, rec, amount)


def _create_error(error: str, rec: Rec | None, amount: int) -> Exception:
    if rec is None:
        if error == "TemporarilyUnavailable":
            return CyclesLedgerUnavailable("the cycles ledger is temporarily unavailable: retry")
        if error == "TooOld":
            return CyclesLedgerError(
                "the cycles ledger refused the transaction as too old (created_at_time more than "
                "24 h ago): retry with a new created_at_time after checking that no canister "
                "was created"
            )
        return CyclesLedgerError(f"the cycles ledger refused the transaction: {error}")
    if error == "InsufficientFunds":
        balance = rec.nat("balance")
        return InsufficientFunds(
            f"the account holds {balance:,} cycles, less than the {amount:,} requested plus the "
            "ledger's fee: top up the account (e.g. dfx cycles convert) or ask for fewer",
            balance=balance,
        )
    if error == "CreatedInFuture":
        return CyclesLedgerUnavailable(
            f"the cycles ledger's time ({rec.nat('ledger_time')} ns) is behind created_at_time: "
            "check the local clock, retry shortly"
        )
    if error == "FailedToCreate":
        reason = rec.text("error")
        return CreationFailed(
            f"the cycles ledger could not create the canister ({reason}); it kept its fee and "
            "refunded the amount",
            reason=reason,
            fee_block=rec.opt_nat("fee_block"),
            refund_block=rec.opt_nat("refund_block"),
        )
    if error == "Duplicate":
        return CyclesLedgerError(
            f"the cycles ledger saw this transaction before (block {rec.nat('duplicate_of')}) "
            "but created no canister: use a new created_at_time"
        )
    return CyclesLedgerError(
        f"the cycles ledger refused the transaction: {rec.text('message')} "
        f"(error code {rec.nat('error_code')})"
    )


def _withdraw_result(value: object, amount: int, to: Principal) -> Withdrawal:
    what = "withdraw"
    tag, payload = as_variant(value, ("Ok", "Err"), what)
    if tag == "Ok":
        return Withdrawal(as_nat(payload, f"{what}.Ok"))
    error, detail = as_variant(payload, _WITHDRAW_ERRORS, f"{what}.Err")
    rec = as_rec(detail, f"{what}.Err.{error}") if isinstance(detail, dict) else None
    if error == "Duplicate" and rec is not None:
        return Withdrawal(rec.nat("duplicate_of"), duplicate=True)
    raise _withdraw_error(error, rec, amount, to)


def _withdraw_error(error: str, rec: Rec | None, amount: int, to: Principal) -> Exception:
    if rec is None:
        if error == "TemporarilyUnavailable":
            return CyclesLedgerUnavailable("the cycles ledger is temporarily unavailable: retry")
        if error == "TooOld":
            return CyclesLedgerError(
                "the cycles ledger refused the withdrawal as too old (created_at_time more than "
                "24 h ago): check the canister's balance, then retry with a new created_at_time"
            )
        return CyclesLedgerError(f"the cycles ledger refused the withdrawal: {error}")
    if error == "InsufficientFunds":
        balance = rec.nat("balance")
        return InsufficientFunds(
            f"the account holds {balance:,} cycles, less than the {amount:,} to send to {to} plus "
            "the ledger's fee: top up the account (e.g. dfx cycles convert)",
            balance=balance,
        )
    if error == "CreatedInFuture":
        return CyclesLedgerUnavailable(
            f"the cycles ledger's time ({rec.nat('ledger_time')} ns) is behind created_at_time: "
            "check the local clock, retry shortly"
        )
    if error == "InvalidReceiver":
        return CyclesLedgerError(f"the cycles ledger cannot send cycles to {to}: not a canister")
    if error == "BadFee":
        return CyclesLedgerError(
            f"the cycles ledger expects a fee of {rec.nat('expected_fee'):,} cycles"
        )
    if error == "FailedToWithdraw":
        code, _ = as_variant(rec.get("rejection_code"), _REJECTION_CODES, "rejection_code")
        return WithdrawFailed(
            f"the cycles ledger could not send the cycles to {to} ({code}: "
            f"{rec.text('rejection_reason')}); it kept its fee and refunded the amount",
            rejection_code=code,
            fee_block=rec.opt_nat("fee_block"),
        )
    return CyclesLedgerError(
        f"the cycles ledger refused the withdrawal: {rec.text('message')} "
        f"(error code {rec.nat('error_code')})"
    )
