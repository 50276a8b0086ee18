"""The Motoko reference canisters run message by message in localnet's sandbox.

Shared by the tests of the reference implementation: a built canister
(``canister_iface/wasm/*.wasm``, ``tests/canisters/wasm/*.wasm``) is executed
with :class:`localnet.sandbox.CanisterSandbox`, without a replica. Arguments
are encoded with the types of ``icrp.did`` (the authority) and, for the
canister's own methods, of the ``.did`` built next to its Wasm; replies are
decoded with them, so the tests also pin the canisters to the .did files.
Inter-canister calls are delivered by hand (:func:`deliver`), as the replica
would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from icp_candid import DIDLoader
from icp_candid.candid import Types, decode, encode

from localnet import ids
from localnet.execution import EntryKind, ExecResult, MessageContext, Reply, SystemState
from localnet.sandbox import CanisterSandbox, WasmEngine

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "canister_iface" / "wasm"
ICRP = DIDLoader().load_did_source((ROOT / "canister_iface" / "icrp.did").read_text())["methods"]
DEMO = DIDLoader().load_did_source((WASM / "demo_app.did").read_text())["methods"]
BACKUP = DIDLoader().load_did_source((WASM / "backup.did").read_text())["methods"]
PLATFORM = DIDLoader().load_did_source((WASM / "platform.did").read_text())["methods"]
START_NS = 1_700_000_000_000_000_000

CONTROLLER = bytes(range(1, 30))
STRANGER = b"\x05" * 29
ANONYMOUS = b"\x04"
UPDATE_LIMIT = 40_000_000_000
QUERY_LIMIT = 5_000_000_000
MAX_TRANSFER = 2_000_000


def _methods(did: Path) -> dict[str, Any]:
    """The methods a built canister's .did declares (none if it has no .did)."""
    if not did.exists():
        return {}
    methods: dict[str, Any] = DIDLoader().load_did_source(did.read_text())["methods"]
    return methods


class Canister:
    """One canister in a sandbox, called with Candid through icrp.did's types."""

    def __init__(self, engine: WasmEngine, wasm: Path, index: int, init_arg: bytes) -> None:
        self.id = ids.canister_id(index)
        self.engine = engine
        self.time_ns = START_NS  # the IC time the next message sees
        did = wasm.with_suffix(".did")
        self.methods = (
            DIDLoader().load_did_source(did.read_text())["methods"] if did.exists() else {}
        )
        self.sandbox = CanisterSandbox.load(engine, wasm.read_bytes())
        result = self.execute(EntryKind.INIT, "", init_arg, CONTROLLER)
        assert not result.trapped, result.trap_message

    def system(self) -> SystemState:
        return SystemState(
            canister_id=self.id,
            controllers=[CONTROLLER],
            cycles_balance=10**14,
            status=1,
            time_ns=self.time_ns,
            canister_version=1,
        )

    def execute(
        self, kind: EntryKind, method: str, arg: bytes, caller: bytes, **ctx: Any
    ) -> ExecResult:
        limit = QUERY_LIMIT if kind is EntryKind.QUERY else UPDATE_LIMIT
        context = MessageContext(kind, method, arg, caller=caller, **ctx)
        return self.sandbox.execute(context, self.system(), limit)

    def raw(self, method: str, *args: Any, caller: bytes = CONTROLLER) -> ExecResult:
        func = self.func(method)
        kind = EntryKind.QUERY if "query" in func.annotations else EntryKind.UPDATE
        arg = bytes(
            encode([{"type": t, "value": v} for t, v in zip(func.argTypes, args, strict=True)])
        )
        return self.execute(kind, method, arg, caller)

    def func(self, method: str) -> Any:
        """The method's type: icrp.did's for ICRP methods, else the canister's .did."""
        return ICRP.get(method) or self.methods[method]

    def call(self, method: str, *args: Any, caller: bytes = CONTROLLER) -> Any:
        result = self.raw(method, *args, caller=caller)
        assert not result.trapped, f"{method} trapped: {result.error_code} {result.trap_message}"
        assert isinstance(result.response, Reply), result.response
        func = self.func(method)
        values = [v["value"] for v in decode(result.response.data, func.retTypes)]
        return values[0] if len(values) == 1 else values

    def ok(self, method: str, *args: Any, caller: bytes = CONTROLLER) -> Any:
        reply = self.call(method, *args, caller=caller)
        assert "ok" in reply, f"{method}: {reply}"
        return reply["ok"]

    def err(self, method: str, *args: Any, caller: bytes = CONTROLLER) -> dict[str, Any]:
        reply = self.call(method, *args, caller=caller)
        assert "err" in reply, f"{method} should fail: {reply}"
        return dict(reply["err"])


_next_index = iter(range(100, 10_000))


def demo(engine: WasmEngine, mib: int = 0, seed: int = 1) -> Canister:
    canister = Canister(engine, WASM / "demo_app.wasm", next(_next_index), b"DIDL\x00\x00")
    if mib:
        generate(canister, mib, seed)
    return canister


def platform(engine: WasmEngine) -> Canister:
    return Canister(engine, WASM / "platform.wasm", next(_next_index), b"DIDL\x00\x00")


def generate(canister: Canister, mib: int, seed: int) -> None:
    for _ in range(100):
        if canister.ok("generate", mib, seed)["finished"]:
            return
    raise AssertionError("generate did not finish")


BACKUP_INIT = Types.Record(
    {"source": Types.Principal, "keep": Types.Opt(Types.Nat), "peers": Types.Vec(Types.Principal)}
)


def backup_arg(source: Canister, keep: int | None, peers: list[bytes]) -> bytes:
    value = {"source": source.id, "keep": [] if keep is None else [keep], "peers": peers}
    return bytes(encode([{"type": BACKUP_INIT, "value": value}]))


def backup(engine: WasmEngine, source: Canister, keep: int | None, peers: list[bytes]) -> Canister:
    arg = backup_arg(source, keep, peers)
    return Canister(engine, WASM / "backup.wasm", next(_next_index), arg)


def export(canister: Canister) -> dict[str, Any]:
    """A ready export ticket (continuing a stepwise preparation)."""
    ticket = canister.ok("icrp_begin_export")
    for _ in range(1000):
        if "ready" in ticket["state"]:
            return dict(ticket)
        ticket = canister.ok("icrp_export_status", ticket["snapshot_id"])
    raise AssertionError("export did not become ready")


def read_all(canister: Canister, ticket: dict[str, Any], piece: int = MAX_TRANSFER) -> bytes:
    data = bytearray()
    while len(data) < ticket["size"]:
        chunk = bytes(canister.ok("icrp_read", ticket["snapshot_id"], len(data), piece))
        assert chunk, "icrp_read returned nothing before the end of the image"
        data += chunk
    return bytes(data)


def digests(canister: Canister, ticket: dict[str, Any]) -> list[bytes]:
    return [bytes(d) for d in canister.ok("icrp_chunk_digests", ticket["snapshot_id"], 0, 50_000)]


def spec_of(source: Canister, ticket: dict[str, Any], with_digests: bool = True) -> dict[str, Any]:
    return {
        "source": source.id,
        "snapshot_id": ticket["snapshot_id"],
        "size": ticket["size"],
        "chunk_size": ticket["chunk_size"],
        "digest": bytes(ticket["digest"][0]),
        "chunk_digests": [digests(source, ticket)] if with_digests else [],
        "journal_seq": ticket["journal_seq"],
    }


def pieces(size: int, step: int) -> Iterator[tuple[int, int]]:
    for offset in range(0, size, step):
        yield offset, min(step, size - offset)


def relay(source: Canister, target: Canister, step: int = 1_500_000) -> tuple[Any, dict[str, Any]]:
    """Copy the source's current image into the target (relay path, pieces
    in reverse order) and commit; returns the commit state and the ticket."""
    ticket = export(source)
    data = read_all(source, ticket)
    import_id = target.ok("icrp_begin_import", spec_of(source, ticket))
    for offset, n in reversed(list(pieces(len(data), step))):
        target.ok("icrp_write", import_id, offset, data[offset : offset + n])
    return commit(target, import_id), ticket


def commit(target: Canister, import_id: int) -> Any:
    for _ in range(1000):
        state = target.ok("icrp_commit_import", import_id)
        if "committed" in state:
            return state["committed"]
    raise AssertionError("commit did not finish")


def stats(canister: Canister) -> dict[str, Any]:
    """The demo's stats, without its memory figures (they are not state)."""
    figures = dict(canister.call("stats"))
    memory = ("heap_bytes", "max_live_bytes", "memory_bytes")
    return {k: v for k, v in figures.items() if k not in memory}


def deliver(source: Canister, sent: ExecResult, target: Canister, func: Any) -> Any:
    """Run the one call ``sent`` made on ``target``, feed its reply back to
    ``source`` and return the answer of ``source``'s method (of type ``func``)."""
    (call,) = sent.calls
    assert call.callee == target.id, call.callee
    done = target.execute(EntryKind.UPDATE, call.method, call.arg, source.id)
    assert not done.trapped, done.trap_message
    assert isinstance(done.response, Reply), done.response
    back = source.execute(
        EntryKind.REPLY_CALLBACK, "", done.response.data, target.id, callback=call.on_reply
    )
    assert not back.trapped, back.trap_message
    assert isinstance(back.response, Reply), back.response
    return decode(back.response.data, func.retTypes)[0]["value"]
