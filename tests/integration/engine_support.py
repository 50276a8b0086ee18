"""Shared setup of the engine's integration tests: localnet, the demo app, an engine.

Imported by ``test_engine_*.py`` (pytest puts this directory on ``sys.path``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from canister_iface.identity import Identity
from canister_iface.management import ManagementClient
from canister_iface.management_types import CanisterSettings
from canister_iface.principal import Principal
from localnet import LocalNet
from replicator import flows
from replicator.checkpoints import SqliteStore
from replicator.engine import Engine
from replicator.job import ArchiveRef, CanisterRef, JobOutcome
from replicator.limits import LimitSettings
from replicator.metrics import Metrics
from replicator.progress import RecordingProgress
from replicator.retry import RetryPolicy
from replicator.settings import EngineSettings

ROOT = Path(__file__).parents[2]
DEMO_WASM = (ROOT / "canister_iface" / "wasm" / "demo_app.wasm").read_bytes()
BACKUP_WASM = (ROOT / "canister_iface" / "wasm" / "backup.wasm").read_bytes()
COUNTER_WASM = (ROOT / "tests" / "canisters" / "wasm" / "counter.wasm").read_bytes()
LEDGER_WASM = (ROOT / "tests" / "canisters" / "wasm" / "cycles_ledger.wasm").read_bytes()
T = 10**12
NETWORK = "local"

SETTINGS = Types.Record(
    {
        "chunk_size": Types.Nat64,
        "journal_max_entries": Types.Nat,
        "journal_max_bytes": Types.Nat,
        "step_instructions": Types.Nat64,
        "step_bytes": Types.Nat64,
    }
)
BACKUP_INIT = Types.Record(
    {"source": Types.Principal, "keep": Types.Opt(Types.Nat), "peers": Types.Vec(Types.Principal)}
)

# Fast enough for tests, still every limit on.
FAST_LIMITS = LimitSettings(
    calls_per_second=500.0,
    bytes_per_second=512 * 1024 * 1024,
    in_flight=16,
    in_flight_per_canister=4,
)
FAST_RETRY = RetryPolicy(max_attempts=12, max_seconds=60.0, initial_wait=0.02, max_wait=0.2)


@dataclass
class World:
    net: LocalNet
    me: Identity
    agent: Agent
    stranger: Agent
    mgmt: ManagementClient
    tmp: Path
    metrics: Metrics = field(default_factory=Metrics)
    progress: RecordingProgress = field(default_factory=RecordingProgress)
    stores: list[SqliteStore] = field(default_factory=list)

    def store(self) -> SqliteStore:
        store = SqliteStore(self.tmp / "checkpoints.sqlite3")
        self.stores.append(store)
        return store

    def engine(self, *, agent: Agent | None = None, **changes: Any) -> Engine:
        settings = EngineSettings(**{"limits": FAST_LIMITS, "retry": FAST_RETRY, **changes})
        return Engine(
            settings,
            self.store(),
            self.metrics,
            self.progress,
            agents={NETWORK: agent or self.agent},
        )

    async def create(
        self, wasm: bytes, arg: bytes = b"DIDL\x00\x00", *, subnet: int = 0
    ) -> Principal:
        """A canister running ``wasm``, on localnet's subnet ``subnet``."""
        near = Principal(self.net.subnets[subnet].canister_ranges[0][0])
        canister = await self.mgmt.provisional_create_canister_with_cycles(
            amount=100 * T,
            settings=CanisterSettings(controllers=(self.me.principal,)),
            effective_canister_id=near if subnet else None,
        )
        await self.mgmt.install_code(canister, wasm, arg=arg)
        return canister

    async def demo(
        self,
        *,
        mib: int = 2,
        seed: int = 1,
        chunk_size: int = 256 * 1024,
        step_bytes: int = 64 << 20,
    ) -> Principal:
        """A demo app holding about ``mib`` MiB of users, posts and pictures.

        ``step_bytes`` bounds the work of one export or restore step.
        """
        demo = await self.create(DEMO_WASM)
        settings = {
            "chunk_size": chunk_size,
            "journal_max_entries": 1000,
            "journal_max_bytes": 1 << 20,
            "step_instructions": 20_000_000_000,
            "step_bytes": step_bytes,
        }
        await self.ok(demo, "set_replication_settings", encode_value(SETTINGS, settings))
        arg = encode_values([(Types.Nat, mib), (Types.Nat, seed)])
        for _ in range(200):
            progress = as_rec(await self.ok(demo, "generate", arg), "generate")
            if progress.boolean("finished"):
                return demo
        raise AssertionError("generate did not finish")

    async def backup_canister(
        self,
        source: Principal,
        *,
        keep: int | None = None,
        peers: tuple[Principal, ...] = (),
        subnet: int = 0,
    ) -> Principal:
        init: dict[str, Any] = {
            "source": source.raw,
            "keep": [] if keep is None else [keep],
            "peers": [p.raw for p in peers],
        }
        return await self.create(BACKUP_WASM, encode_value(BACKUP_INIT, init), subnet=subnet)

    async def ok(self, canister: Principal, method: str, arg: bytes) -> object:
        value = decode_single(await self.agent.update(canister, method, arg), method)
        tag, payload = as_variant(value, ("ok", "err"), method)
        assert tag == "ok", f"{method}: {payload}"
        return payload

    async def stats(self, canister: Principal) -> Rec:
        return Rec(decode_single(await self.agent.query(canister, "stats"), "stats"), "stats")

    async def fingerprint(self, canister: Principal) -> int:
        return (await self.stats(canister)).nat("fingerprint")

    async def add_user(self, canister: Principal, name: str) -> None:
        arg = encode_values([(Types.Text, name), (Types.Text, "added by a test")])
        await self.ok(canister, "create_user", arg)

    async def close(self) -> None:
        for store in self.stores:
            await store.close()


@asynccontextmanager
async def world(tmp: Path, *, subnets: int = 1) -> AsyncIterator[World]:
    me = Identity.generate_ed25519()
    async with LocalNet(subnets=subnets) as net:
        agent = Agent(net.url, me, network=NETWORK, root_key=net.root_key)
        stranger = Agent(
            net.url, Identity.generate_ed25519(), network=NETWORK, root_key=net.root_key
        )
        async with agent, stranger:
            w = World(net, me, agent, stranger, ManagementClient(agent), tmp)
            try:
                yield w
            finally:
                await w.close()


def ref(canister: Principal) -> CanisterRef:
    return CanisterRef(canister.to_text(), NETWORK)


# The built-in kinds through the engine, as the command line runs them.


async def run_backup(
    engine: Engine, source: CanisterRef, target: CanisterRef | None = None, **options: Any
) -> JobOutcome:
    return await engine.submit(flows.backup.request(source, target, **options))


async def run_restore(
    engine: Engine, source: CanisterRef, target: CanisterRef | None = None, **options: Any
) -> JobOutcome:
    return await engine.submit(flows.restore.request(source, target, **options))


async def run_archive_export(engine: Engine, source: CanisterRef, path: str | Path) -> JobOutcome:
    return await engine.submit(flows.archive.export_request(source, path))


async def run_archive_import(engine: Engine, path: str | Path, target: CanisterRef) -> JobOutcome:
    return await engine.submit(flows.archive.import_request(path, target))


async def run_verify(
    engine: Engine, source: CanisterRef | ArchiveRef, target: CanisterRef | ArchiveRef | None = None
) -> JobOutcome:
    return await engine.submit(flows.verify.request(source, target))


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
