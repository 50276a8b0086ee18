"""Sleeping canisters behave exactly as before: a random workload on two replicas.

Both replicas get the same ingress messages, queries, timer ticks and
management calls (install, upgrade, snapshots) for five Motoko canisters
(two ``sysapi``, ``rollback``, ``journal``, ``mg_state``). In one, every
sandbox is put to sleep after every execution, so each message, callback,
timer and query wakes its canister from a page image; the other never
sleeps. After every step the answers and every canister's observable state
(memories, globals, cycles, certified data, timer, version, history,
snapshots, logs) must be identical.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from icp_candid import Types, decode, encode
from test_sandbox_rollback import EndingType, Model, OpType, random_op

from localnet import ids
from localnet.clock import Clock
from localnet.errors import Reject
from localnet.execution import Reply, Response
from localnet.management import effective_canister_id
from localnet.mgmt_types import decode_result, encode_args, principal_bytes
from localnet.node_api import Request
from localnet.replica import Replica
from localnet.residency import Residency, ResidencyLimits, Sleeper
from localnet.sandbox import WasmEngine

WASM = Path(__file__).resolve().parents[1] / "canisters" / "wasm"
USER = b"\x01" * 29
T0 = 1_700_000_000_000_000_000
STEPS = 160
NAMES = ("sysapi", "sysapi", "rollback", "journal", "mg_state")


class SleepAfterEveryUse(Residency):
    """Every sandbox goes to sleep as soon as an execution ends."""

    @contextmanager
    def using(self, sandbox: Sleeper) -> Iterator[None]:
        with super().using(sandbox):
            yield
        self.sleep_all()


class World:
    def __init__(self, engine: WasmEngine) -> None:
        self.replica = Replica(engine=engine, clock=Clock(frozen_at_ns=T0))
        self.replica.data_certificate = lambda cid: b"certificate of " + cid
        self._ids = 0
        self.canisters: list[bytes] = []

    def _request(self, kind: str, canister: bytes, method: str, arg: bytes) -> Request:
        self._ids += 1
        effective = canister
        if canister == ids.MANAGEMENT_CANISTER:  # the target named in the argument
            effective = effective_canister_id(method, arg) or ids.canister_id(0)
        return Request(
            request_type=kind,  # type: ignore[arg-type]
            request_id=self._ids.to_bytes(32, "big"),
            sender=USER,
            ingress_expiry=0,
            effective_canister_id=effective,
            canister_id=canister,
            method_name=method,
            arg=arg,
        )

    def call(self, canister: bytes, method: str, arg: bytes) -> tuple[Any, ...]:
        request = self._request("call", canister, method, arg)
        try:
            self.replica.submit_ingress(request)
        except Reject as exc:  # a refusal at induction is an answer too
            return ("refused", str(exc), exc.code)
        self.replica.run_until_idle()
        record = self.replica.requests[request.request_id]
        return (record.status, record.reply, record.reject)

    def query(self, canister: bytes, method: str, arg: bytes) -> Response:
        return self.replica.query(self._request("query", canister, method, arg))

    def management(self, method: str, args: dict[str, Any]) -> bytes:
        arg = encode_args(method, args)
        status, reply, reject = self.call(ids.MANAGEMENT_CANISTER, method, arg)
        assert status == "replied", reject
        return bytes(reply)

    def tick(self, seconds: float) -> None:
        self.replica.clock.advance(seconds)
        self.replica.fire_due_timers()
        self.replica.expire_deadlines()
        self.replica.run_until_idle()


def install(world: World, name: str) -> bytes:
    method = "provisional_create_canister_with_cycles"
    reply = world.management(
        method, {"amount": [10**14], "settings": [{"controllers": [[USER]]}], "specified_id": []}
    )
    canister = principal_bytes(decode_result(method, reply)["canister_id"])
    world.canisters.append(canister)
    install_code(world, canister, name, {"install": None})
    return canister


def install_code(world: World, canister: bytes, name: str, mode: dict[str, Any]) -> None:
    world.management(
        "install_code",
        {
            "mode": mode,
            "canister_id": canister,
            "wasm_module": (WASM / f"{name}.wasm").read_bytes(),
            "arg": b"DIDL\x00\x00",
            "sender_canister_version": [],
        },
    )


def candid(*typed: tuple[Any, Any]) -> bytes:
    return bytes(encode([{"type": t, "value": v} for t, v in typed]))


class Workload:
    """Random steps; each returns what both worlds must agree on."""

    def __init__(self, rng: random.Random, canisters: list[bytes]) -> None:
        self.rng = rng
        self.a, self.b, self.rollback, self.journal, self.state = canisters

    def step(self, world: World) -> Any:
        kind = self.rng.choices(
            ["sysapi", "rollback", "journal", "state", "query", "tick", "snapshot", "upgrade"],
            weights=[30, 18, 10, 10, 18, 8, 4, 2],
        )[0]
        return kind, getattr(self, f"_{kind}")(world)

    def _sysapi(self, world: World) -> Any:
        rng = self.rng
        me, other = rng.choice([(self.a, self.b), (self.b, self.a)])
        choice = rng.randrange(7)
        if choice == 0:
            return world.call(me, "inc", candid((Types.Nat, rng.randrange(100))))
        if choice == 1:
            return world.call(me, "certify", candid((Types.Vec(Types.Nat8), rng.randbytes(8))))
        if choice == 2:
            return world.call(me, "startTimer", candid((Types.Nat, rng.randrange(1, 30))))
        if choice == 3:
            arg = candid((Types.Principal, other), (Types.Nat, 3), (Types.Nat, 0))
            return world.call(me, "relay", arg)
        if choice == 4:
            return world.call(me, "relayCatching", candid((Types.Principal, other)))
        if choice == 5:
            return world.call(me, "fail", candid((Types.Text, "on purpose")))
        return world.call(me, "print", candid((Types.Text, f"line {rng.randrange(1000)}")))

    def _rollback(self, world: World) -> Any:
        ops = [random_op(self.rng, Model()) for _ in range(self.rng.randrange(1, 4))]
        ending = self.rng.choices(["commit", "trap"], weights=[70, 30])[0]
        arg = candid((Types.Vec(OpType), ops), (EndingType, {ending: None}))
        return world.call(self.rollback, "apply", arg)

    def _journal(self, world: World) -> Any:
        return world.call(self.journal, "add", candid((Types.Nat64, self.rng.randrange(2**32))))

    def _state(self, world: World) -> Any:
        rng = self.rng
        choice = rng.randrange(4)
        if choice == 0:
            return world.call(self.state, "inc", candid())
        if choice == 1:
            return world.call(self.state, "add_note", candid((Types.Text, f"n{rng.random()}")))
        if choice == 2:
            return world.call(
                self.state, "store", candid((Types.Vec(Types.Nat8), rng.randbytes(40)))
            )
        return world.call(self.state, "arm_timer", candid((Types.Nat, rng.randrange(1, 30))))

    def _query(self, world: World) -> Any:
        target, method, arg = self.rng.choice(
            [
                (self.a, "get", candid()),
                (self.b, "fired", candid()),
                (self.a, "balance", candid()),
                (self.b, "certificate", candid()),
                (self.a, "peek", candid((Types.Principal, self.b))),
                (self.rollback, "summary", candid()),
                (self.journal, "state", candid()),
                (self.state, "get_notes", candid()),
                (self.state, "load", candid((Types.Nat, 40))),
            ]
        )
        return world.query(target, method, arg)

    def _tick(self, world: World) -> Any:
        world.tick(self.rng.choice([0.5, 5, 20]))
        return None

    def _snapshot(self, world: World) -> Any:
        # Decided from the world's own state, which both worlds share.
        target = self.rng.choice([self.state, self.journal, self.a])
        existing = sorted(world.replica.canisters[target].snapshots)
        if existing and self.rng.random() < 0.4:
            method = "load_canister_snapshot"
            args: dict[str, Any] = {"snapshot_id": self.rng.choice(existing)}
        else:
            method = "take_canister_snapshot"
            replace = [existing[0]] if len(existing) >= 3 else []
            args = {"replace_snapshot": replace, "uninstall_code": []}
        args.update(canister_id=target, sender_canister_version=[])
        return world.call(ids.MANAGEMENT_CANISTER, method, encode_args(method, args))

    def _upgrade(self, world: World) -> Any:
        mode = {"upgrade": [{"skip_pre_upgrade": [], "wasm_memory_persistence": [{"keep": None}]}]}
        install_code(world, self.state, "mg_state", mode)
        return None


def observable(world: World, *, memories: bool) -> dict[bytes, Any]:
    out = {}
    for cid, c in sorted(world.replica.canisters.items()):
        sandbox = c.sandbox
        assert sandbox is not None
        state: dict[str, Any] = {
            "status": c.status,
            "cycles": c.cycles,
            "burned": c.cycles_burned,
            "certified": c.certified_data,
            "timer": c.global_timer,
            "version": c.canister_version,
            "history": c.history,
            "contexts": c.open_call_contexts,
            "module": c.module_hash,
            "sizes": (sandbox.heap_size, sandbox.stable_size),
            "globals": sandbox.global_values(),
            "snapshots": {
                sid: (s.heap, s.stable, s.globals, s.certified_data, s.global_timer)
                for sid, s in c.snapshots.items()
            },
            "logs": world.replica.canister_logs(cid),
        }
        if memories:
            image = sandbox.capture()
            state["heap"], state["stable"] = image.heap, image.stable
        out[cid] = state
    return out


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[WasmEngine, WasmEngine]:
    cache = tmp_path_factory.mktemp("compiled")
    never = ResidencyLimits(max_resident=None, idle_seconds=None)
    return (
        WasmEngine(cache_dir=cache, residency=never),
        WasmEngine(cache_dir=cache, residency=SleepAfterEveryUse(never)),
    )


def test_canisters_that_sleep_after_every_execution_match_their_twins(
    engines: tuple[WasmEngine, WasmEngine],
) -> None:
    awake, sleeping = World(engines[0]), World(engines[1])
    canisters = [install(awake, name) for name in NAMES]
    assert [install(sleeping, name) for name in NAMES] == canisters
    workload = Workload(random.Random(51), canisters)
    sleeper_stats = engines[1].residency.stats
    kinds: dict[str, int] = {}
    for i in range(STEPS):
        state = workload.rng.getstate()
        expected = workload.step(awake)
        workload.rng.setstate(state)
        assert workload.step(sleeping) == expected, f"step {i}: {expected[0]} answered differently"
        kinds[expected[0]] = kinds.get(expected[0], 0) + 1
        assert all(
            c.sandbox is not None and c.sandbox.asleep for c in sleeping.replica.canisters.values()
        )
        assert observable(sleeping, memories=i % 5 == 0) == observable(awake, memories=i % 5 == 0)
    assert observable(sleeping, memories=True) == observable(awake, memories=True)
    # The workload really exercised what it claims to.
    assert set(kinds) == {
        "sysapi",
        "rollback",
        "journal",
        "state",
        "query",
        "tick",
        "snapshot",
        "upgrade",
    }
    assert sleeper_stats.wakes > STEPS
    fired = decode(_reply(sleeping.query(workload.b, "fired", candid())), [Types.Nat])[0]["value"]
    assert fired + _notes_timers(sleeping, workload.state) > 0, "no timer fired"


def _reply(response: Response) -> bytes:
    assert isinstance(response, Reply), response
    return response.data


def _notes_timers(world: World, state: bytes) -> int:
    count = decode(_reply(world.query(state, "get", candid())), [Types.Nat])[0]["value"]
    return int(count) // 100
