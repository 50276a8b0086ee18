"""Dirty-page tracking with userfaultfd WP_ASYNC and PAGEMAP_SCAN (localnet.dirty)."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import pytest

from localnet import dirty

PAGE = dirty.PAGE_SIZE
RESERVED = 64 * PAGE
ACCESSIBLE = 16 * PAGE


@pytest.fixture
def region() -> Iterator[int]:
    """A Wasm-like reservation: PROT_NONE with an accessible prefix."""
    reason = dirty.probe()
    if reason is not None:
        pytest.skip(f"dirty-page tracking unavailable here: {reason}")
    addr = dirty._libc.mmap(None, RESERVED, 0, 0x02 | 0x20 | 0x4000, -1, 0)
    assert addr not in (None, dirty._MAP_FAILED)
    assert dirty._libc.mprotect(addr, ACCESSIBLE, 3) == 0
    yield addr
    dirty._libc.munmap(addr, RESERVED)


def spans(regions: list[dirty.Region]) -> list[tuple[int, int]]:
    return [(r.start // PAGE, r.end // PAGE) for r in regions]


def test_reports_written_pages_and_rearms(region: int) -> None:
    tracker = dirty.WriteTracker(region, RESERVED)
    try:
        tracker.protect(0, ACCESSIBLE)
        assert tracker.scan(ACCESSIBLE, rearm=True) == []
        ctypes.memset(region + 3 * PAGE + 100, 1, 1)
        ctypes.memset(region + 4 * PAGE, 1, PAGE)  # adjacent: one region
        ctypes.memset(region + 9 * PAGE + PAGE - 1, 1, 2)  # straddles pages 9 and 10
        _ = ctypes.string_at(region + 12 * PAGE, 10)  # reads are not writes
        assert spans(tracker.scan(ACCESSIBLE, rearm=False)) == [(3, 5), (9, 11)]
        # Without rearm the pages stay reported; with it they are protected again.
        assert spans(tracker.scan(ACCESSIBLE, rearm=True)) == [(3, 5), (9, 11)]
        assert tracker.scan(ACCESSIBLE, rearm=True) == []
        ctypes.memset(region + 4 * PAGE, 2, 1)
        assert spans(tracker.scan(ACCESSIBLE, rearm=True)) == [(4, 5)]
    finally:
        tracker.close()


def test_grown_memory_is_reported_until_protected(region: int) -> None:
    tracker = dirty.WriteTracker(region, RESERVED)
    try:
        tracker.protect(0, ACCESSIBLE)
        grown = 2 * ACCESSIBLE
        assert dirty._libc.mprotect(region, grown, 3) == 0  # like memory.grow
        ctypes.memset(region + ACCESSIBLE + 2 * PAGE, 7, 1)
        regions = tracker.scan(grown, rearm=True)
        assert all(r.start >= ACCESSIBLE for r in regions)
        present = [r for r in regions if r.present]
        assert spans(present) == [(18, 19)]
        assert sum(r.end - r.start for r in regions) == ACCESSIBLE  # all new pages, once
        assert tracker.scan(grown, rearm=True) == []
        ctypes.memset(region + ACCESSIBLE + 5 * PAGE, 1, 1)
        assert spans(tracker.scan(grown, rearm=True)) == [(21, 22)]
    finally:
        tracker.close()


def test_more_regions_than_one_scan_returns(region: int) -> None:
    size = 16 * 1024 * 1024
    shadow = dirty.AnonMemory(size)
    tracker = dirty.WriteTracker(shadow.address, size)
    try:
        tracker.protect(0, size)
        pages = range(0, size // PAGE, 2)  # every other page: no merging
        for p in pages:
            ctypes.memset(shadow.address + p * PAGE, 1, 1)
        assert len(pages) > dirty.WriteTracker._VEC_LEN
        assert spans(tracker.scan(size, rearm=True)) == [(p, p + 1) for p in pages]
    finally:
        tracker.close()
        shadow.close()


def test_anon_memory_is_zeroed_and_lazy() -> None:
    mem = dirty.AnonMemory(1 << 30)  # a GiB of address space, no RSS
    try:
        assert ctypes.string_at(mem.address + (1 << 29), 16) == bytes(16)
    finally:
        mem.close()
    assert mem.address == 0
