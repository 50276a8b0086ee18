"""Per-subnet limits: the subnet map (certified ranges, cache, failed reads) and SubnetRates."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from test_limits import FakeClock, Waits

from canister_iface.errors import TransientError
from canister_iface.principal import Principal
from replicator.checkpoints import SqliteStore
from replicator.config import load_config
from replicator.errors import ConfigError
from replicator.fleetstore import MemberResult
from replicator.limits import CallSpec, LimitSettings, SubnetRates, build_caller
from replicator.subnets import SubnetInfo, SubnetMap


def cid(n: int) -> str:
    return Principal(n.to_bytes(8, "big") + b"\x01\x01").to_text()


def raw(n: int) -> bytes:
    return Principal.from_text(cid(n)).raw


# Two made-up subnets: canisters 0..99 on A, 100..199 on B.
A = SubnetInfo("subnet-a", ((raw(0), raw(99)),))
B = SubnetInfo("subnet-b", ((raw(100), raw(199)),))


class Reader:
    def __init__(self, *, fail: set[str] | None = None) -> None:
        self.reads: list[str] = []
        self.fail = fail or set()

    async def __call__(self, canister: Principal) -> SubnetInfo:
        text = canister.to_text()
        self.reads.append(text)
        if text in self.fail:
            raise TransientError("connection refused")
        for info in (A, B):
            if info.hosts(canister.raw):
                return info
        raise AssertionError(f"no subnet for {text}")


async def test_one_read_per_subnet_answers_for_every_canister_in_its_ranges() -> None:
    reader = Reader()
    subnets = SubnetMap(reader)
    found = await asyncio.gather(*(subnets.subnet_of(cid(n)) for n in range(0, 200, 7)))
    assert found == ["subnet-a" if n < 100 else "subnet-b" for n in range(0, 200, 7)]
    assert len(reader.reads) == 2  # concurrent look-ups wait for the read of their subnet
    assert await subnets.subnet_of("aaaaa-aa") is None  # the management canister: no subnet
    assert len(reader.reads) == 2


async def test_cached_pairs_need_no_read_and_a_failed_read_is_retried_later() -> None:
    clock = FakeClock()
    reader = Reader(fail={cid(5)})
    subnets = SubnetMap(reader, retry_after=60, clock=clock)
    subnets.learn([(cid(150), "subnet-b")])
    assert await subnets.subnet_of(cid(150)) == "subnet-b"
    assert reader.reads == []
    assert await subnets.subnet_of(cid(5)) is None  # the read failed: no subnet limit
    assert await subnets.subnet_of(cid(5)) is None
    assert reader.reads == [cid(5)]  # not asked again before retry_after
    clock.now += 61
    reader.fail.clear()
    assert await subnets.subnet_of(cid(5)) == "subnet-a"
    assert subnets.known(cid(42)) == "subnet-a"  # from A's certified ranges


async def subnet_of(canister: str) -> str | None:
    n = int.from_bytes(Principal.from_text(canister).raw[:8], "big")
    return "subnet-a" if n < 100 else "subnet-b"


class Counting:
    """The innermost caller: counts calls per subnet and when they ran."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.at: dict[str, list[float]] = {"subnet-a": [], "subnet-b": []}

    async def call(self, spec: CallSpec, perform):  # type: ignore[no-untyped-def]
        self.at[(await subnet_of(spec.canister_id)) or "?"].append(self.clock())
        return await perform()


async def nothing() -> None:
    return None


async def test_members_of_one_subnet_share_its_call_rate_and_others_are_not_held() -> None:
    clock, waits = FakeClock(), Waits()
    inner = Counting(clock)
    rates = SubnetRates(
        inner,  # type: ignore[arg-type]
        subnet_of,
        calls_per_second=10,
        bytes_per_second=None,
        observer=waits,
        clock=clock,
        sleep=clock.sleep,
    )
    # 50 calls to 50 different canisters of A, then one to B, all at once.
    calls = [rates.call(CallSpec(cid(n), "m"), nothing) for n in range(50)]
    calls += [rates.call(CallSpec(cid(100), "m"), nothing)]
    await asyncio.gather(*calls)
    a, b = inner.at["subnet-a"], inner.at["subnet-b"]
    assert len(a) == 50
    assert max(a) == pytest.approx(4.9, abs=0.01)  # 10 calls/s, a burst of 1
    assert len(b) == 1
    assert b[0] <= 0.1
    assert waits.seconds["subnet_calls_per_second"] > 0


async def test_subnet_bytes_per_second_holds_over_a_subnet_and_starts_empty() -> None:
    clock = FakeClock()
    inner = Counting(clock)
    rates = SubnetRates(
        inner,  # type: ignore[arg-type]
        subnet_of,
        calls_per_second=None,
        bytes_per_second=1000,
        clock=clock,
        sleep=clock.sleep,
    )
    await asyncio.gather(
        *(rates.call(CallSpec(cid(n), "m", bytes=500), nothing) for n in range(10))
    )
    assert max(inner.at["subnet-a"]) == pytest.approx(5.0, abs=0.01)  # 5000 bytes at 1000/s


async def test_build_caller_stacks_subnet_rates_only_with_settings_and_a_map() -> None:
    settings = LimitSettings(subnet_calls_per_second=5)
    assert build_caller(settings).subnets is None  # one-canister callers: no map, no wrapper
    assert build_caller(LimitSettings(), subnet_of=subnet_of).subnets is None
    stacked = build_caller(settings, subnet_of=subnet_of).subnets
    assert stacked is not None
    assert stacked.calls_per_second == 5
    with pytest.raises(ValueError, match="subnet_bytes_per_second must be positive"):
        LimitSettings(subnet_bytes_per_second=0)


async def test_the_member_table_caches_subnets_and_a_schema_4_store_is_migrated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    async with SqliteStore(path) as store:
        await store.fleets.sync("f", "local", [cid(1), cid(2)], 1.0)
    with sqlite3.connect(path) as db:  # shape it like a schema 4 file
        db.execute("ALTER TABLE fleet_members DROP COLUMN subnet")
        db.execute("PRAGMA user_version = 4")
    async with SqliteStore(path) as store:
        table = store.fleets
        assert {r.subnet for r in await table.members("f")} == {None}
        await table.finish("f", "local", "r1", MemberResult(cid(1), True, 2.0, 3.0, subnet="s-a"))
        await table.finish("f", "local", "r2", MemberResult(cid(1), False, 4.0, 5.0, error="x"))
        rows = {r.member: r.subnet for r in await table.members("f")}
        assert rows == {cid(1): "s-a", cid(2): None}  # a later run without it keeps it
    assert Counter(rows.values())[None] == 1


def test_the_config_sets_per_subnet_limits_per_network(tmp_path: Path) -> None:
    path = tmp_path / "replicator.toml"
    path.write_text(
        '[limits]\nsubnet_calls_per_second = 4\nsubnet_bytes_per_second = "1 MiB"\n'
        "[networks.local.limits]\nsubnet_calls_per_second = 50\n"
    )
    config = load_config(path)
    ic, local = config.limits_for("ic"), config.limits_for("local")
    assert (ic.subnet_calls_per_second, ic.subnet_bytes_per_second) == (4, 1024 * 1024)
    assert (local.subnet_calls_per_second, local.subnet_bytes_per_second) == (50, 1024 * 1024)
    path.write_text("[limits]\nsubnet_calls_per_second = 0\n")
    with pytest.raises(ConfigError, match="subnet_calls_per_second"):
        load_config(path)
