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

import logging
from pathlib import Path
from typing import Any

from localnet import ids, persist
from localnet.certification import Certifier, NodeSigner, RootKey
from localnet.clock import Clock
from localnet.errors import Reject, RejectCode
from localnet.execution import Reply, Response
from localnet.faults import Faults
from localnet.http import HttpServer
from localnet.limits import Limits
from localnet.management import handle_management_call
from localnet.mgmt_types import decode_result, encode_args, principal_bytes
from localnet.node import SUBNET_ID, Node
from localnet.replica import Replica
from localnet.residency import ResidencyLimits
from localnet.sandbox import WasmEngine

log = logging.getLogger("localnet")

DEFAULT_CYCLES = 100_000_000_000_000  # 100 T, what PocketIC gives a new canister


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
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.clock = clock or Clock()
        self.faults = Faults(seed=seed)
        self.engine = WasmEngine(residency=residency)  # how many canisters stay live
        self.replica = Replica(
            engine=self.engine,
            limits=limits or Limits(),
            clock=self.clock,
            faults=self.faults,
            rollback=rollback,
            subnet_id=SUBNET_ID,
        )
        keys = self._load_state()
        self._root_key = RootKey.from_bytes(keys["root"]) if keys else RootKey.generate()
        signer = NodeSigner.from_bytes(keys["node"]) if keys else NodeSigner.generate()
        self.node = Node(self.replica, Certifier(self._root_key), signer)
        self._signer = signer
        # Crash consistency: every drain is journaled before its replies leave.
        self._journal = (
            persist.Journal(self.replica, self.state_dir, self._keys())
            if self.state_dir is not None
            else None
        )
        self._server = HttpServer.for_node(
            self.node,
            self.faults,
            host=host,
            port=port,
            limits=self.replica.limits,
            sync_call_timeout_s=sync_call_timeout,
            clock=self.clock.peek_ns,
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
        await self.node.executor.run(self.replica.run_until_idle)
        if self._journal is not None:
            await self.node.executor.run(self._journal.checkpoint)
            self._journal.close()
        await self.node.close()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def root_key(self) -> bytes:
        """DER-encoded BLS root key; agents must trust it for this network only."""
        return self.node.root_key

    # --- helpers for tests and the demo -------------------------------------------------

    async def create_canister(
        self, *, controllers: list[bytes] | None = None, cycles: int = DEFAULT_CYCLES
    ) -> bytes:
        """Create an empty canister; controllers default to the anonymous principal."""
        settings = {"controllers": [list(controllers or [ids.ANONYMOUS])]}
        arg = encode_args(
            "provisional_create_canister_with_cycles",
            {"amount": [cycles], "settings": [settings], "specified_id": []},
        )
        caller = (controllers or [ids.ANONYMOUS])[0]
        reply = await self.management("provisional_create_canister_with_cycles", arg, caller=caller)
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

    async def management(self, method: str, arg: bytes, *, caller: bytes) -> bytes:
        """Call the management canister as ``caller``; raises :class:`Reject` on a reject."""
        response: Response = await self.node.executor.run(
            self._call_management, caller, method, arg
        )
        if isinstance(response, Reply):
            return response.data
        raise Reject(RejectCode(response.code), response.message, response.error_code or None)

    async def tick(self) -> None:
        """Fire due timers, expire best-effort deadlines, run what is queued (for tests)."""

        def step() -> None:
            self.replica.fire_due_timers()
            self.replica.expire_deadlines()
            self.replica.run_until_idle()

        await self.node.executor.run(step)

    def _call_management(self, caller: bytes, method: str, arg: bytes) -> Response:
        answers: list[Response] = []
        handle_management_call(
            self.replica,
            caller=caller,
            method=method,
            arg=arg,
            cycles=0,
            via_ingress=True,
            respond=lambda response, _refund: answers.append(response),
        )
        self.replica.run_until_idle()
        if not answers:
            raise RuntimeError(f"management method {method} did not answer after draining")
        return answers[0]

    # --- state-dir ------------------------------------------------------------------------

    def _load_state(self) -> dict[str, bytes] | None:
        if self.state_dir is None:
            return None
        return persist.load(self.replica, self.state_dir)

    def _keys(self) -> dict[str, bytes]:
        return {"root": self._root_key.to_bytes(), "node": self._signer.to_bytes()}


def _decode_canister_id(reply: bytes) -> bytes:
    return principal_bytes(
        decode_result("provisional_create_canister_with_cycles", reply)["canister_id"]
    )
