"""Creating canisters on demand: backup canisters, and canisters to restore into.

A backup without a target backs a source up into *its* backup canister: the
one the registry (:mod:`replicator.registry`) names, or one created now:

1. the intent is recorded (``requested``, with the time the cycles ledger
   uses to deduplicate a repeated creation);
2. the canister is created with ``initial_cycles`` — on a local network with
   ``provisional_create_canister_with_cycles``, on mainnet through the
   cycles ledger (an ingress message cannot carry cycles) — and recorded
   (``created``);
3. the shipped ``backup.wasm`` is installed (init: the source, ``keep``, and
   the orchestrator as a peer when it will not be a controller), unless a
   module is already there (an interrupted earlier run);
4. the controllers are set to *exactly* the configured set and checked with
   a certified ``read_state`` of ``/canister/<id>/controllers``; the entry
   becomes ``ready``.

Each step is repeatable, so re-running after a crash continues where it
stopped instead of creating a second canister.

With a warm pool (:mod:`replicator.pool`), :meth:`Provisioner.pooled_canister`
does steps 1-3 ahead of need for a canister of no source yet (installed
with the anonymous principal as its source, which can push nothing, and
the orchestrator still among its controllers); a source without a backup
canister then claims a ready one (:meth:`~replicator.registry.Registry.claim`)
instead of waiting for a creation, and it is reinstalled for its source
(``reinstall``: it holds nothing) before step 4.

Created backup canisters are kept alive (:mod:`replicator.topup` says how
many cycles they need): :meth:`Provisioner.balance` reads one's cycles with
``canister_status`` (as a controller), :meth:`Provisioner.top_up` sends it
cycles from the same source as creation — ``provisional_top_up_canister``
on local networks, the cycles ledger's ``withdraw`` (paid from the
identity's ledger account) on mainnet — charged to the cycles budget.  The orchestrator creates the
canister with itself as an extra controller only for as long as it installs
code; when the configured set does not include it, it keeps access through
ICRP's peer list (controllers only decide who may *change* the canister).

The Wasm ships inside the ``canister_iface`` package
(``canister_iface/wasm/*.wasm``) and is loaded with :mod:`importlib.resources`,
so an installed wheel works without the source tree.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from icp_candid import Types

from canister_iface import errors as ic
from canister_iface.agent import Agent
from canister_iface.candid_value import encode_value
from canister_iface.cycles_ledger import CYCLES_LEDGER_FEE, CyclesLedgerClient
from canister_iface.icrp import IcrpClient
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings, InstallMode
from canister_iface.principal import Principal
from replicator.calls import CallCost, CallRunner
from replicator.errors import JobFailed, UsageError
from replicator.metrics import Metrics
from replicator.registry import POOL_ROLE, Entry, Registry
from replicator.topup import Balance

log = logging.getLogger(__name__)
# install_code into a canister that has a module already.
NOT_EMPTY = "IC0514"
T = TypeVar("T")

BACKUP_ROLE = "backup"
BACKUP_INIT = Types.Record(
    {"source": Types.Principal, "keep": Types.Opt(Types.Nat), "peers": Types.Vec(Types.Principal)}
)
EMPTY_ARG = b"DIDL\x00\x00"
CreateMethod = Literal["provisional", "ledger"]


def shipped_wasm(name: str) -> bytes:
    """A Wasm module shipped in ``canister_iface/wasm`` (``"backup"``, ``"demo_app"``)."""
    resource = importlib.resources.files("canister_iface").joinpath("wasm", f"{name}.wasm")
    try:
        return resource.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"the package has no canister_iface/wasm/{name}.wasm; reinstall ic-replicator"
        ) from None


@dataclass(frozen=True)
class ProvisionSettings:
    """How canisters are created."""

    controllers: tuple[Principal, ...]  # exactly these control a created canister
    initial_cycles: int
    method: CreateMethod
    ledger: str | None = None  # the cycles ledger (None: mainnet's)

    def __post_init__(self) -> None:
        if not self.controllers:
            raise UsageError("a created canister needs at least one controller")
        if self.initial_cycles <= 0:
            raise UsageError(f"initial cycles must be positive, got {self.initial_cycles}")


class Provisioner:
    """Creates and installs canisters on one network."""

    def __init__(
        self,
        agent: Agent,
        runner: CallRunner,
        registry: Registry,
        metrics: Metrics,
        *,
        network: str,
        settings: ProvisionSettings,
        note: Callable[[str], None] | None = None,
        subnet_of: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self.agent = agent
        # Where a canister lives (the engine's certified, cached map): a backup
        # canister bought through the cycles ledger is placed on its source's subnet.
        self._subnet_of = subnet_of
        self.runner = runner
        self.registry = registry
        self.metrics = metrics
        self.network = network
        self.settings = settings
        self.mgmt = ManagementClient(agent)
        self._note = note or (lambda text: log.info("%s", text))
        self.me = agent.identity.principal

    @property
    def paid(self) -> bool:
        """Does creating a canister here cost real cycles (the cycles ledger)?"""
        return self.settings.method == "ledger"

    async def existing(self, key_source: str, key: str = BACKUP_ROLE) -> Principal | None:
        """The canister recorded for (``key_source``, ``key``), if one was created."""
        entry = await self.registry.get(self.network, key_source, key)
        return (
            None if entry is None or entry.canister is None else Principal.from_text(entry.canister)
        )

    # -------------------------------------------------------------- backups

    async def backup_canister_for(
        self, source: Principal, *, keep: int | None = None, key: str = BACKUP_ROLE
    ) -> Principal:
        """The registered backup canister of ``source``, created and installed if needed."""
        entry = await self.registry.get(self.network, source.to_text(), key)
        if entry is not None and entry.state == "ready" and entry.canister is not None:
            return Principal.from_text(entry.canister)
        if entry is None and (
            entry := await self.registry.claim(self.network, source.to_text(), key)
        ):
            self._note(f"backup canister {entry.canister} taken from the warm pool for {source}")
        arg = self._backup_init(source.raw, keep)
        if entry is not None and entry.state == "claimed" and entry.canister is not None:
            canister = Principal.from_text(entry.canister)
            await self._call(
                canister,
                "install_code",
                lambda: self.mgmt.install_code(
                    canister, shipped_wasm("backup"), arg=arg, mode=InstallMode.reinstall()
                ),
            )
        else:
            canister = await self._created(entry, source.to_text(), key, near=source)
            await self._installed(canister, shipped_wasm("backup"), arg)
        await self._settle_controllers(canister)
        await self._record(source.to_text(), key, canister, "ready")
        self._note(f"backup canister {canister} is ready for {source}")
        return canister

    async def pooled_canister(self, pool_key: str) -> Principal:
        """Create and install the warm-pool canister recorded under ``pool_key`` (see module)."""
        entry = await self.registry.get(self.network, pool_key, POOL_ROLE)
        if entry is not None and entry.state == "ready" and entry.canister is not None:
            return Principal.from_text(entry.canister)
        canister = await self._created(entry, pool_key, POOL_ROLE)
        placeholder = self._backup_init(Principal.anonymous().raw, None)
        await self._installed(canister, shipped_wasm("backup"), placeholder)
        await self._record(pool_key, POOL_ROLE, canister, "ready")
        return canister

    def _backup_init(self, source: bytes, keep: int | None) -> bytes:
        peers = () if self.me in self.settings.controllers else (self.me,)
        init = {
            "source": source,
            "keep": [] if keep is None else [keep],
            "peers": [p.raw for p in peers],
        }
        return encode_value(BACKUP_INIT, init)

    async def created_backup(self, canister: str) -> bool:
        """Is ``canister`` a backup canister the orchestrator created on this network?"""
        return await self.registry.holds(self.network, canister, BACKUP_ROLE)

    # ----------------------------------------------------------------- cycles

    async def balance(self, canister: Principal) -> Balance | None:
        """``canister``'s cycles (``None``: this identity may not read its status)."""
        try:
            status = await self._call(
                canister, "canister_status", lambda: self.mgmt.canister_status(canister)
            )
        except ic.AccessDenied:
            return None
        return Balance(
            cycles=status.cycles,
            idle_per_day=status.idle_cycles_burned_per_day,
            freezing_threshold=status.settings.freezing_threshold,
            reserved=status.reserved_cycles or 0,
        )

    async def top_up(self, canister: Principal, amount: int, *, source: str = "auto") -> None:
        """Send ``amount`` cycles to ``canister``; ``source``: :data:`replicator.topup.SOURCES`.

        One ledger transaction per call: its retries repeat ``created_at_time``,
        so the ledger sends the cycles once.
        """
        if amount <= 0:
            return
        method = self.settings.method if source == "auto" else source
        if method == "provisional":
            await self._call(
                "aaaaa-aa",
                "provisional_top_up_canister",
                lambda: self.mgmt.provisional_top_up_canister(canister, amount),
                spends=amount,
            )
            return
        ledger = self._ledger()
        at = time.time_ns()
        await self._call(
            ledger.ledger_id.to_text(),
            "withdraw",
            lambda: ledger.withdraw(amount, canister, created_at_time=at),
            spends=amount + CYCLES_LEDGER_FEE,
        )

    def _ledger(self) -> CyclesLedgerClient:
        ledger_id = self.settings.ledger
        return (
            CyclesLedgerClient(self.agent)
            if ledger_id is None
            else CyclesLedgerClient(self.agent, ledger_id)
        )

    # ----------------------------------------------------------- app canisters

    async def app_canister(
        self, key_source: str, key: str, wasm: bytes, *, arg: bytes = EMPTY_ARG
    ) -> Principal:
        """A new canister running ``wasm`` (recorded under ``key``), e.g. to restore into."""
        entry = await self.registry.get(self.network, key_source, key)
        if entry is not None and entry.state == "ready" and entry.canister is not None:
            return Principal.from_text(entry.canister)
        canister = await self._created(entry, key_source, key)
        await self._installed(canister, wasm, arg)
        if self.me not in self.settings.controllers:
            # Keep ICRP access for the restore once we are no longer a controller.
            client = IcrpClient(self.agent, canister)
            await self._call(canister, "icrp_set_peers", lambda: client.set_peers([self.me]))
        await self._settle_controllers(canister)
        await self._record(key_source, key, canister, "ready")
        return canister

    async def empty_canister(self, key_source: str, key: str) -> Principal:
        """A new canister without code (recorded under ``key``), e.g. to load a snapshot into.

        The identity stays one of its controllers (loading needs it) until
        :meth:`settle` gives it exactly the configured ones.
        """
        entry = await self.registry.get(self.network, key_source, key)
        return await self._created(entry, key_source, key)

    async def settle(self, canister: Principal, key_source: str, key: str) -> None:
        """A canister made by :meth:`empty_canister` gets exactly the configured controllers."""
        await self._settle_controllers(canister)
        await self._record(key_source, key, canister, "ready")

    # -------------------------------------------------------------- the steps

    async def _created(
        self, entry: Entry | None, source: str, key: str, *, near: Principal | None = None
    ) -> Principal:
        if entry is not None and entry.canister is not None:
            return Principal.from_text(entry.canister)
        request_ns = entry.request_ns if entry is not None else time.time_ns()
        if entry is None:
            await self.registry.put(Entry(self.network, source, key, None, "requested", request_ns))
        self._note(f"creating a {key} canister for {source} on {self.network}")
        canister = await self._create(request_ns, near)
        await self._record(source, key, canister, "created", request_ns)
        self.metrics.record_canister_created(self.network)
        return canister

    async def _create(self, request_ns: int, near: Principal | None) -> Principal:
        """A new canister, on the subnet of ``near`` when given (see :meth:`_subnet_near`)."""
        # We control the canister while installing it; _settle_controllers fixes the set.
        controllers = _unique([*self.settings.controllers, self.me])
        settings = CanisterSettings(controllers=controllers)
        amount = self.settings.initial_cycles
        if self.settings.method == "provisional":
            # The call's effective canister id picks the subnet that creates it.
            return await self._call(
                "aaaaa-aa",
                "provisional_create_canister_with_cycles",
                lambda: self.mgmt.provisional_create_canister_with_cycles(
                    amount=amount, settings=settings, effective_canister_id=near
                ),
                spends=amount,
            )
        ledger = self._ledger()
        subnet = await self._subnet_near(near)
        created = await self._call(
            ledger.ledger_id.to_text(),
            "create_canister",
            lambda: ledger.create_canister(
                amount, settings=settings, created_at_time=request_ns, subnet=subnet
            ),
            spends=amount,
        )
        return created.canister_id

    async def _subnet_near(self, near: Principal | None) -> Principal | None:
        """The subnet to ask the cycles ledger for: ``near``'s, if it can be read.

        A subnet that cannot be told leaves the choice to the ledger (as
        before): placement is an optimisation (same-subnet pushes carry up to
        10 MiB and skip XNet), never a reason to fail a creation.  Every retry
        of one creation asks for the same subnet (the map is cached).
        """
        if near is None or self._subnet_of is None:
            return None
        subnet = await self._subnet_of(near.to_text())
        return None if subnet is None else Principal.from_text(subnet)

    async def _installed(self, canister: Principal, wasm: bytes, arg: bytes) -> None:
        module = await self._call(
            canister, "module_hash", lambda: self.agent.module_hash(canister), cost="query"
        )
        if module is not None:
            return  # installed by an earlier, interrupted run
        try:
            await self._call(
                canister, "install_code", lambda: self.mgmt.install_code(canister, wasm, arg=arg)
            )
        except ic.CanisterReject as exc:
            # An attempt that timed out may have installed it after all: its retry is
            # then refused as "not empty" (IC0514), and the module says it is ours.
            if exc.error_code != NOT_EMPTY:
                raise
            module = await self._call(
                canister, "module_hash", lambda: self.agent.module_hash(canister), cost="query"
            )
            if module != hashlib.sha256(wasm).digest():
                raise
            log.info("canister %s was installed by an attempt that timed out", canister)

    async def _settle_controllers(self, canister: Principal) -> None:
        wanted = set(self.settings.controllers)
        current = await self._controllers(canister)
        if current != wanted:
            ordered = list(self.settings.controllers)
            await self._call(
                canister,
                "update_settings",
                lambda: self.mgmt.set_controllers(canister, ordered),
            )
            current = await self._controllers(canister)
        if current != wanted:
            raise JobFailed(
                f"canister {canister} has controllers {_names(current)}, not the configured "
                f"{_names(wanted)}; fix them with update_settings before using it"
            )

    async def _controllers(self, canister: Principal) -> set[Principal]:
        found = await self._call(
            canister, "controllers", lambda: self.agent.controllers(canister), cost="query"
        )
        return set(found)

    async def _call(
        self,
        canister: Principal | str,
        method: str,
        perform: Callable[[], Awaitable[T]],
        *,
        cost: CallCost = "update",
        spends: int = 0,
    ) -> T:
        cid = canister if isinstance(canister, str) else canister.to_text()
        what = f"{method} for {cid}"
        return await self.runner.call(cid, method, perform, cost=cost, what=what, spends=spends)

    async def _record(
        self,
        source: str,
        key: str,
        canister: Principal,
        state: Literal["created", "ready"],
        request_ns: int | None = None,
    ) -> None:
        if request_ns is None:  # keep the deduplication time of the recorded intent
            current = await self.registry.get(self.network, source, key)
            request_ns = current.request_ns if current is not None else 0
        await self.registry.put(
            Entry(self.network, source, key, canister.to_text(), state, request_ns)
        )


def _unique(principals: Sequence[Principal]) -> tuple[Principal, ...]:
    seen: dict[Principal, None] = {}
    for p in principals:
        seen.setdefault(p)
    return tuple(seen)


def _names(principals: set[Principal]) -> str:
    return "{" + ", ".join(sorted(p.to_text() for p in principals)) + "}"


__all__ = ["ProvisionSettings", "Provisioner", "shipped_wasm"]
