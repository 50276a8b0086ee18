"""Sleeping sandboxes (localnet.residency, localnet.spill): the policy, the page
images, and a sandbox put to sleep after every message against a twin that
never sleeps. Also the sparse memories that make a live canister cheap."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import random
from pathlib import Path

import pytest
from icp_candid import Types
from sandbox_util import CONTROLLER, candid, canister_wasm, decoded, load_installed, run
from test_sandbox_rollback import (
    Model,
    assert_same_state,
    check_against_model,
    step,
)

from localnet import dirty, spill
from localnet.execution import EntryKind
from localnet.residency import Residency, ResidencyLimits
from localnet.sandbox import CanisterSandbox, InvalidModule, MemoryDelta, SparseImage, WasmEngine
from localnet.spill import PageImage, Spill, SpillError

# --- the policy, with stand-in sandboxes ------------------------------------------------


class FakeSandbox:
    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name = name
        self.busy = 0
        self.fail = fail
        self.events: list[str] = []
        self._asleep = False

    @property
    def asleep(self) -> bool:
        return self._asleep

    def sleep(self, spill_: Spill) -> None:
        if self.fail:
            raise OSError(28, "No space left on device")
        self._asleep = True
        self.events.append("sleep")

    def wake(self, spill_: Spill) -> None:
        self._asleep = False
        self.events.append("wake")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def use(residency: Residency, sandbox: FakeSandbox) -> None:
    with residency.using(sandbox):
        assert not sandbox.asleep


def test_the_least_recently_used_sleep_beyond_the_bound() -> None:
    residency = Residency(ResidencyLimits(max_resident=2, idle_seconds=None))
    a, b, c = FakeSandbox("a"), FakeSandbox("b"), FakeSandbox("c")
    for s in (a, b, c):
        residency.admit(s)
    assert [a.asleep, b.asleep, c.asleep] == [True, False, False]
    use(residency, b)  # c is now the least recently used
    use(residency, a)  # wakes a, which puts c to sleep
    assert [a.asleep, b.asleep, c.asleep] == [False, False, True]
    assert a.events == ["sleep", "wake"]
    assert residency.resident == 2
    assert (residency.stats.sleeps, residency.stats.wakes) == (2, 1)


def test_idle_sandboxes_sleep_after_the_limit() -> None:
    clock = FakeClock()
    residency = Residency(ResidencyLimits(max_resident=None, idle_seconds=10), clock=clock)
    a, b = FakeSandbox("a"), FakeSandbox("b")
    residency.admit(a)
    residency.admit(b)
    clock.now = 5
    use(residency, b)
    clock.now = 12
    assert residency.evict_idle() == 1
    assert (a.asleep, b.asleep) == (True, False)
    clock.now = 100
    use(residency, a)  # using one also puts the idle others to sleep
    assert (a.asleep, b.asleep) == (False, True)


def test_a_sandbox_in_use_never_sleeps() -> None:
    residency = Residency(ResidencyLimits(max_resident=1, idle_seconds=0))
    a, b = FakeSandbox("a"), FakeSandbox("b")
    residency.admit(a)
    with residency.using(a):
        residency.admit(b)  # a is busy: both stay live for now
        assert not a.asleep
        assert not b.asleep
        assert residency.evict_idle() == 1  # b is idle (and the bound is 1), a busy
        assert not a.asleep
        assert b.asleep
        assert residency.sleep_all() == 0
    c = FakeSandbox("c")
    residency.admit(c)
    assert a.asleep
    assert not c.asleep
    assert residency.sleep_all() == 1


def test_a_sandbox_that_cannot_sleep_stays_awake(caplog: pytest.LogCaptureFixture) -> None:
    residency = Residency(ResidencyLimits(max_resident=1, idle_seconds=None))
    full = FakeSandbox("full", fail=True)
    residency.admit(full)
    with caplog.at_level(logging.WARNING, "localnet.residency"):
        residency.admit(FakeSandbox("next"))
    assert not full.asleep
    assert "No space left on device" in caplog.text
    assert residency.resident == 2


def test_a_dropped_sandbox_is_forgotten() -> None:
    residency = Residency(ResidencyLimits(max_resident=1, idle_seconds=None))
    residency.admit(FakeSandbox("dropped"))  # no reference kept, as a sandbox never closed
    gc.collect()
    kept = FakeSandbox("kept")
    residency.admit(kept)
    assert residency.resident == 1
    assert not kept.asleep


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_resident": 0}, "max_resident must be at least 1"),
        ({"idle_seconds": -1}, "idle_seconds must not be negative"),
    ],
)
def test_limits_are_checked(limits: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResidencyLimits(**limits)  # type: ignore[arg-type]


# --- page images ------------------------------------------------------------------------


def page(fill: int) -> bytes:
    return bytes([fill]) * spill.PAGE


def test_page_images_round_trip_in_an_unlinked_file(tmp_path: Path) -> None:
    store = Spill(tmp_path)
    image = PageImage(heap=[(0, page(1)), (8 * spill.PAGE, page(2))], stable=[(4096, page(3))])
    ref = store.put(image)
    empty = store.put(PageImage([], []))
    assert list(tmp_path.iterdir()) == []  # nothing to clean up after a crash
    assert store.get(ref) == image
    assert store.get(empty) == PageImage([], [])
    assert (store.images, store.bytes) == (2, ref.length + empty.length)
    store.free(ref)
    store.free(empty)
    assert (store.images, store.bytes) == (0, 0)
    store.close()
    assert ref.segment.closed


def test_a_full_segment_is_replaced_and_closed_with_its_last_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spill, "SEGMENT_BYTES", 3 * spill.PAGE)
    store = Spill(tmp_path)
    image = PageImage(heap=[(0, page(7))], stable=[])
    first = store.put(image)  # two pages: header, then the page
    second = store.put(image)  # does not fit: a new segment
    assert first.segment is not second.segment
    assert store.get(first) == store.get(second) == image
    store.free(first)
    assert first.segment.closed
    assert not second.segment.closed
    store.free(second)
    store.close()
    assert second.segment.closed


def test_an_image_larger_than_one_system_call_moves_in_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Linux moves < 2 GiB per read/write call; a 2 GiB heap's image must loop.
    # The piece size is shrunk so that a few pages stand for gigabytes.
    monkeypatch.setattr(spill, "_IO_MAX", spill.PAGE + 100)
    store = Spill(tmp_path)
    image = PageImage(heap=[(i * spill.PAGE, page(i + 1)) for i in range(5)], stable=[])
    ref = store.put(image)
    assert ref.length > 4 * spill._IO_MAX
    assert store.get(ref) == image
    store.close()


def test_a_damaged_image_is_refused(tmp_path: Path) -> None:
    store = Spill(tmp_path)
    ref = store.put(PageImage(heap=[(0, page(1))], stable=[]))
    os.pwrite(ref.segment.fd, b"XXXX", ref.offset)
    with pytest.raises(SpillError, match="damaged"):
        store.get(ref)


def test_an_unusable_spill_dir_is_named(tmp_path: Path) -> None:
    store = Spill(tmp_path / "missing")
    with pytest.raises(SpillError, match=r"missing.*--spill-dir"):
        store.put(PageImage([], []))


# --- real sandboxes -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sleeper_engine(tmp_path_factory: pytest.TempPathFactory) -> WasmEngine:
    """An engine whose sandboxes sleep only when a test says so."""
    limits = ResidencyLimits(max_resident=None, idle_seconds=None)
    return WasmEngine(cache_dir=tmp_path_factory.mktemp("compiled"), residency=limits)


def modes() -> list[str]:
    return ["copy"] + (["dirty"] if dirty.probe() is None else [])


# The full-copy reference copies the whole heap per message: fewer of them.
OPS = {"dirty": 150, "copy": 60}


@pytest.mark.parametrize("mode", modes())
def test_a_sandbox_put_to_sleep_after_every_message_matches_its_twin(
    engine: WasmEngine, sleeper_engine: WasmEngine, mode: str
) -> None:
    """The rollback canister's random workload (commits, traps, instruction-limit
    spins, heap growth, stable memory growth and writes) on a sandbox that never
    sleeps and on one that sleeps after every message: same results, same
    memories, same globals, and the same --state-dir deltas."""
    rng = random.Random(20261205)
    awake = load_installed(engine, "rollback", rollback=mode)
    sleeper = load_installed(sleeper_engine, "rollback", rollback=mode)
    spill_ = sleeper_engine.residency.spill
    model = Model()
    for sb in (awake, sleeper):
        sb.take_delta()
    try:
        for i in range(OPS[mode]):
            model, _ = step(rng, (awake, sleeper), model)
            sleeper.sleep(spill_)
            assert sleeper.asleep
            if i % 4 == 0:
                assert_same_state(awake, sleeper)  # read from the image, without waking
                assert sleeper.asleep
            if i % 3 == 0:
                assert_same_delta(awake.take_delta(), sleeper.take_delta())
                sleeper.sleep(spill_)
            if i % 10 == 0:
                for sb in (awake, sleeper):
                    check_against_model(sb, model)
                sleeper.sleep(spill_)
        assert_same_state(awake, sleeper)
    finally:
        awake.close()
        sleeper.close()
    assert spill_.images == 0  # closing frees the image


def assert_same_delta(a: MemoryDelta, b: MemoryDelta) -> None:
    assert (a.heap_size, a.stable_size, a.globals) == (b.heap_size, b.stable_size, b.globals)
    assert a.heap == b.heap
    assert a.stable == b.stable


def test_a_sandbox_loaded_asleep_equals_one_loaded_awake(
    engine: WasmEngine, sleeper_engine: WasmEngine
) -> None:
    source = load_installed(engine, "sysapi")
    try:
        run(source, EntryKind.UPDATE, "inc", candid((Types.Nat, 41)))
        image = source.capture()
    finally:
        source.close()
    wasm = canister_wasm("sysapi")
    kw = {"heap": image.heap, "stable": image.stable, "globals": image.globals}
    awake = CanisterSandbox.load(engine, wasm, **kw)  # type: ignore[arg-type]
    sparse = SparseImage.of(image.heap, image.stable, image.globals)
    asleep = CanisterSandbox.load_sleeping(sleeper_engine, wasm, sparse)
    try:
        assert asleep.asleep
        assert (asleep.heap_size, asleep.stable_size) == (awake.heap_size, awake.stable_size)
        assert asleep.capture() == awake.capture()
        for sb in (awake, asleep):
            assert decoded(run(sb, EntryKind.QUERY, "get", candid()), Types.Nat) == [41]
        assert not asleep.asleep
        assert asleep.capture() == awake.capture()
    finally:
        awake.close()
        asleep.close()


def test_a_sleeping_sandbox_needs_the_modules_globals(sleeper_engine: WasmEngine) -> None:
    with pytest.raises(InvalidModule, match="0 global values given"):
        CanisterSandbox.load_sleeping(
            sleeper_engine, canister_wasm("counter"), SparseImage(0, [], 0, [], [])
        )


def test_a_sleeping_sandbox_holds_no_instance_and_a_small_image(
    sleeper_engine: WasmEngine,
) -> None:
    sb = load_installed(sleeper_engine, "counter")
    try:
        spill_ = sleeper_engine.residency.spill
        before = spill_.bytes
        sb.sleep(spill_)
        assert sb.asleep
        assert sb._store is None
        assert sb._instance is None
        assert sb._stable._mem is None
        # A 5 MiB heap and 384 KiB of stable memory, a few dozen KiB of image.
        assert sb.heap_size > 4 * 1024 * 1024
        assert spill_.bytes - before < 128 * 1024
        run(sb, EntryKind.UPDATE, "inc", candid(), caller=CONTROLLER)
        assert not sb.asleep
        assert spill_.bytes == before  # the image went stale with the commit
    finally:
        sb.close()


# --- sparse memories ---------------------------------------------------------------------


def populated_bytes(address: int, length: int) -> int:
    return sum(end - start for start, end in dirty.populated(address, length))


@pytest.mark.usefixtures("needs_dirty_tracking")
def test_the_shadow_copy_holds_only_the_written_pages(engine: WasmEngine) -> None:
    sb = load_installed(engine, "counter", rollback="dirty")
    try:
        shadow = sb._rollback._shadow  # type: ignore[union-attr]
        assert shadow is not None
        assert sb.heap_size > 4 * 1024 * 1024
        assert populated_bytes(shadow.address, sb.heap_size) < 512 * 1024
    finally:
        sb.close()


def test_stable_memory_zero_fill_costs_no_pages(engine: WasmEngine) -> None:
    sb = load_installed(engine, "counter")  # Motoko zero-fills what it grows
    try:
        stable = sb._stable
        assert stable.size >= 6 * 65536
        assert populated_bytes(stable._address, stable.size) <= 2 * dirty.PAGE_SIZE
        assert len(stable.nonzero_pages()) == 1
    finally:
        sb.close()


def test_anon_memory_grows_without_copying_and_discards() -> None:
    mem = dirty.AnonMemory(4 * dirty.PAGE_SIZE)
    try:
        ctypes.memset(mem.address + dirty.PAGE_SIZE, 9, 10)
        mem.resize(1 << 30)
        assert ctypes.string_at(mem.address + dirty.PAGE_SIZE, 10) == b"\x09" * 10
        assert dirty.populated(mem.address, mem.size) == [(dirty.PAGE_SIZE, 2 * dirty.PAGE_SIZE)]
        mem.discard(dirty.PAGE_SIZE + 5, 3 * dirty.PAGE_SIZE)
        assert ctypes.string_at(mem.address + dirty.PAGE_SIZE, 10) == b"\x09" * 5 + bytes(5)
        mem.discard(0, 2 * dirty.PAGE_SIZE)
        assert dirty.populated(mem.address, mem.size) == []
    finally:
        mem.close()
