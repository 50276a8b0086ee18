"""``LocalNet``: a whole local IC in one object, for tests, the demo and the CLI.

    async with LocalNet() as net:
        canister = await net.create_canister(controllers=[me])
        await net.install_code(canister, wasm)
        # talk to net.url with any IC agent, trusting net.root_key

Helpers such as :meth:`LocalNet.create_canister` call the management canister
directly on the execution thread (no HTTP), as PocketIC's admin API does;
everything a test wants to check about the HTTP interface goes through
``net.url`` like a real client.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from localnet import ids, persist
from localnet.callcount import CallCount
from localnet.certification import NodeSigner, RootKey
from localnet.clock import Clock
from localnet.errors import Reject, RejectCode
from localnet.execution import Reply, Response
from localnet.fabric import Fabric
from localnet.faults import Faults
from localnet.http import HttpServer
from localnet.limits import Limits
from localnet.management import effective_canister_id, handle_management_call
from localnet.mgmt_types import decode_result, encode_args, principal_bytes
from localnet.node import Node
from localnet.replica import Replica
from localnet.residency import ResidencyLimits
from localnet.sandbox import WasmEngine
from localnet.subnet_model import SubnetModel
from localnet.subnets import Subnet, Topology, check_subnet_count

log = logging.getLogger("localnet")

DEFAULT_CYCLES = 100_000_000_000_000  # 100 T, what PocketIC gives a new canister
# A folder of compiled modules shared by every LocalNet that names it (also in
# child processes, which inherit the environment): compiling a canister module
# takes a second or two, loading it from here milliseconds. The folder must be
# trusted: its files are loaded as machine code. Unset: every LocalNet compiles.
COMPILE_CACHE_ENV = "LOCALNET_COMPILE_CACHE"
_MANAGEMENT_ROUNDS = 1000  # a management call waiting for rounds gives up after these
_STOP_ROUNDS = 100  # a clean stop with a model runs at most these to empty the queues


class LocalNet:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | str | None = None,
        limits: Limits | None = None,
        seed: int = 0,
        rollback: str = "auto",
        clock: Clock | None = None,
        sync_call_timeout: float = 10.0,
        residency: ResidencyLimits | None = None,
        subnets: int = 1,
        subnet_model: SubnetModel | None = None,
        compile_cache: Path | str | None = None,
    ) -> None:
        """``residency``: how many canisters stay live (``localnet.residency``);
        ``subnets``: how many subnets (the first is the root subnet);
        ``subnet_model``: execute in rounds with block limits (``localnet.fabric``);
        None (the default) runs every message at once;
        ``compile_cache``: a trusted folder of compiled modules to reuse and
        fill (default: ``$LOCALNET_COMPILE_CACHE``, or none)."""
        check_subnet_count(subnets)
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.clock = clock or Clock()
        self.faults = Faults(seed=seed)
        self.calls = CallCount()  # what tests watch (``GET /_/calls``)
        # How many canisters stay live; one engine, so one policy, for all subnets.
        self.engine = WasmEngine(cache_dir=_compile_cache(compile_cache), residency=residency)
        self.subnet_model = subnet_model
        replicas = [
            Replica(
                engine=self.engine,
                limits=limits or Limits(),
                clock=self.clock,
                faults=self.faults,
                rollback=rollback,
                call_count=self.calls,
            )
            for _ in range(subnets)
        ]
        self.replica = replicas[0]  # the root subnet's, as before there were several
        folders = persist.subnet_dirs(self.state_dir, subnets) if self.state_dir else []
        root = Subnet(0, replicas[0], *_load_subnet(replicas[0], folders[:1]))
        others = [
            Subnet(i, replicas[i], *_load_subnet(replicas[i], folders[i : i + 1]), root=root)
            for i in range(1, subnets)
        ]
        self.topology = Topology([root, *others])
        self.fabric = Fabric(self.topology, subnet_model)
        self.node = Node(self.fabric)
        # Crash consistency: each subnet's drain is a commit point, journaled
        # before its replies leave (the fabric drains subnet by subnet).
        self._journals = [
            persist.Journal(subnet.replica, folder, _subnet_keys(subnet))
            for subnet, folder in zip(self.subnets[: len(folders)], folders, strict=True)
        ]
        self._journal = self._journals[0] if self._journals else None  # the root subnet's
        self._server = HttpServer.for_node(
            self.node,
            self.faults,
            host=host,
            port=port,
            limits=self.replica.limits,
            sync_call_timeout_s=sync_call_timeout,
            clock=self.clock.peek_ns,
            admin=self.fabric.describe,
            calls=self.calls,
        )

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> LocalNet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        await self.node.start()
        await self._server.start()
        log.info("localnet listening on %s", self.url)

    async def stop(self) -> None:
        """Stop serving, drain queued messages and save the state (with --state-dir)."""
        await self._server.stop()
        await self.node.executor.run(self._drain_everything)
        for journal in self._journals:
            await self.node.executor.run(journal.checkpoint)
            journal.close()
        await self.node.close()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def root_key(self) -> bytes:
        """DER-encoded BLS root key; agents must trust it for this network only."""
        return self.node.root_key

    @property
    def subnets(self) -> list[Subnet]:
        return self.topology.subnets

    @property
    def subnet_id(self) -> bytes:
        """The root subnet's id (the self-authenticating id of the root key)."""
        return self.topology.root.subnet_id

    def subnet_of(self, canister_id: bytes) -> Subnet:
        """The subnet whose canister range holds ``canister_id``."""
        subnet = self.topology.hosting(canister_id)
        if subnet is None:
            raise ValueError(f"no subnet of this localnet hosts {ids.to_text(canister_id)}")
        return subnet

    # --- helpers for tests and the demo -------------------------------------------------

    async def create_canister(
        self,
        *,
        controllers: list[bytes] | None = None,
        cycles: int = DEFAULT_CYCLES,
        subnet: int = 0,
        specified_id: bytes | None = None,
    ) -> bytes:
        """Create an empty canister on subnet ``subnet`` (0: the root subnet), or
        with ``specified_id`` on the subnet hosting it; controllers default to the
        anonymous principal."""
        if not 0 <= subnet < len(self.topology):
            raise ValueError(f"subnet must be 0 to {len(self.topology) - 1}, got {subnet}")
        settings = {"controllers": [list(controllers or [ids.ANONYMOUS])]}
        arg = encode_args(
            "provisional_create_canister_with_cycles",
            {
                "amount": [cycles],
                "settings": [settings],
                "specified_id": [] if specified_id is None else [specified_id],
            },
        )
        caller = (controllers or [ids.ANONYMOUS])[0]
        target = self.topology.subnets[subnet]
        if specified_id is not None:
            target = self.subnet_of(specified_id)
        reply = await self.management(
            "provisional_create_canister_with_cycles", arg, caller=caller, subnet=target.index
        )
        return _decode_canister_id(reply)

    async def install_code(
        self,
        canister_id: bytes,
        wasm: bytes,
        arg: bytes = b"DIDL\x00\x00",
        *,
        mode: str = "install",
        caller: bytes | None = None,
    ) -> None:
        """Install, reinstall or upgrade (``mode="upgrade"`` keeps Wasm memory, as Motoko needs)."""
        mode_value: dict[str, Any]
        if mode == "upgrade":
            mode_value = {
                "upgrade": [{"skip_pre_upgrade": [], "wasm_memory_persistence": [{"keep": None}]}]
            }
        else:
            mode_value = {mode: None}
        payload = encode_args(
            "install_code",
            {
                "mode": mode_value,
                "canister_id": canister_id,
                "wasm_module": wasm,
                "arg": arg,
                "sender_canister_version": [],
            },
        )
        await self.management("install_code", payload, caller=caller or ids.ANONYMOUS)

    async def management(
        self, method: str, arg: bytes, *, caller: bytes, subnet: int | None = None
    ) -> bytes:
        """Call the management canister as ``caller``; raises :class:`Reject` on a reject.

        It runs on the subnet of the canister the call is about (``subnet``
        for a creation). With a subnet model, a call that waits for rounds
        (``stop_canister`` with calls in flight) waits for them.
        """
        replica = self._management_replica(method, arg, subnet)
        answers: list[Response] = []
        await self.node.executor.run(self._call_management, replica, caller, method, arg, answers)
        for _ in range(_MANAGEMENT_ROUNDS):
            if answers:
                break
            await self._next_round()
        if not answers:
            raise RuntimeError(f"management method {method} did not answer")
        response = answers[0]
        if isinstance(response, Reply):
            return response.data
        raise Reject(RejectCode(response.code), response.message, response.error_code or None)

    async def tick(self) -> None:
        """Fire due timers, expire best-effort deadlines and run what is queued (for tests);
        with a subnet model: one round."""
        if self.subnet_model is not None:
            await self.run_rounds(1)
        else:
            await self.node.executor.run(self.fabric.drain)

    async def run_rounds(self, count: int) -> None:
        """Execute ``count`` rounds now (with a model; ``rounds_per_second=0`` for manual ones)."""
        for _ in range(count):
            await self.node.executor.run(self.fabric.run_round)

    @property
    def round(self) -> int:
        """Rounds executed so far (0 without a subnet model)."""
        return self.fabric.round

    async def _next_round(self) -> None:
        model = self.subnet_model
        if model is None:
            raise RuntimeError("a management call did not answer although nothing is pending")
        if model.rounds_per_second == 0:
            await self.run_rounds(1)
        else:
            await asyncio.sleep(model.round_seconds / 2)

    def _management_replica(self, method: str, arg: bytes, subnet: int | None) -> Replica:
        if subnet is not None:
            return self.topology.subnets[subnet].replica
        target = effective_canister_id(method, arg)
        hosting = self.topology.hosting(target) if target is not None else None
        return (hosting or self.topology.root).replica

    def _call_management(
        self, replica: Replica, caller: bytes, method: str, arg: bytes, answers: list[Response]
    ) -> None:
        handle_management_call(
            replica,
            caller=caller,
            method=method,
            arg=arg,
            cycles=0,
            via_ingress=True,
            respond=lambda response, _refund: answers.append(response),
        )
        self.fabric.drain()

    def _drain_everything(self) -> None:
        """Before stopping, run what is queued (a clean stop keeps its effects):
        without a model at once, with one round after round, unpaced."""
        if self.subnet_model is None:
            self.fabric.drain()
            return
        for _ in range(_STOP_ROUNDS):
            if self.fabric.idle():
                return
            self.fabric.run_round()
        log.warning("localnet stopped with messages still in flight after %d rounds", _STOP_ROUNDS)


def _load_subnet(replica: Replica, folder: list[Path]) -> tuple[RootKey, NodeSigner]:
    """Restore ``replica`` from its state folder (if any); its subnet key and node key."""
    keys = persist.load(replica, folder[0]) if folder else None
    if keys is None:
        return RootKey.generate(), NodeSigner.generate()
    return RootKey.from_bytes(keys["root"]), NodeSigner.from_bytes(keys["node"])


def _subnet_keys(subnet: Subnet) -> dict[str, bytes]:
    # "root": subnet 0's key is the root key; the name is what one-subnet state dirs hold.
    return {"root": subnet.key.to_bytes(), "node": subnet.signer.to_bytes()}


def _decode_canister_id(reply: bytes) -> bytes:
    return principal_bytes(
        decode_result("provisional_create_canister_with_cycles", reply)["canister_id"]
    )


def _compile_cache(folder: Path | str | None) -> Path | None:
    if folder is None:
        folder = os.environ.get(COMPILE_CACHE_ENV) or None
    return Path(folder) if folder is not None else None
