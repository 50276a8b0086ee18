"""Which pages of a memory region were written: userfaultfd write-protection.

Rolling back a trapped message must not copy a canister's whole heap (it can
be hundreds of MiB), so the sandbox needs to know which pages a message
wrote. Linux ≥ 6.7 offers exactly that without signal handlers:

* a userfaultfd with ``UFFD_FEATURE_WP_ASYNC`` (+ ``WP_UNPOPULATED``) is
  registered in write-protect mode over the Wasm memory's whole reservation.
  A write to a protected page is resolved by the kernel itself (no fault
  message, no handler thread): it just drops the page's protection bit;
* the ``PAGEMAP_SCAN`` ioctl on ``/proc/self/pagemap`` lists the pages whose
  bit is gone (``PAGE_IS_WRITTEN``) and, with ``PM_SCAN_WP_MATCHING``,
  re-protects them in the same atomic step.

The soft-dirty bit would be the older alternative, but kernels built without
``CONFIG_MEM_SOFT_DIRTY`` (like the one localnet is developed on) lack it.

Registering the full reservation (not just the currently accessible pages)
covers ``memory.grow``: wasmtime grows a non-moving memory by ``mprotect``
inside the same mapping, the new pages inherit the registration, and since
nobody protected them yet they are reported as written on the next scan.

Everything here is ctypes over raw syscalls; :func:`probe` tells whether the
running kernel and process may use it (root or ``vm.unprivileged_userfaultfd``).

:func:`populated` answers a simpler question with the same ioctl and no
userfaultfd: which pages of a region hold memory at all. A page never
written is zero and costs no RSS; copying or saving it would make it cost
some, so the shadow copy and the images of sleeping canisters skip it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

_SYS_USERFAULTFD = 323  # x86_64
_UFFD_API = 0xAA
_UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
_UFFD_FEATURE_WP_ASYNC = 1 << 15
_UFFDIO_REGISTER_MODE_WP = 1 << 1
_UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0

_PAGE_IS_WRITTEN = 1 << 1
_PAGE_IS_PRESENT = 1 << 3
_PAGE_IS_SWAPPED = 1 << 4
_PAGE_IS_PFNZERO = 1 << 5  # mapped to the shared zero page (read, never written)
_PM_SCAN_WP_MATCHING = 1 << 0
_PM_SCAN_CHECK_WPASYNC = 1 << 1

_PROT_NONE = 0
_PROT_READ_WRITE = 3
_MAP_PRIVATE = 0x02
_MAP_ANONYMOUS = 0x20
_MAP_NORESERVE = 0x4000
_MAP_FAILED = ctypes.c_void_p(-1).value
_MREMAP_MAYMOVE = 1
_MADV_DONTNEED = 4
_MADV_NOHUGEPAGE = 15


def _iowr(kind: int, nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (kind << 8) | nr


def _ior(kind: int, nr: int, size: int) -> int:
    return (2 << 30) | (size << 16) | (kind << 8) | nr


class _UffdioApi(ctypes.Structure):
    _fields_ = [
        ("api", ctypes.c_uint64),
        ("features", ctypes.c_uint64),
        ("ioctls", ctypes.c_uint64),
    ]


class _UffdioRange(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _UffdioRegister(ctypes.Structure):
    _fields_ = [("range", _UffdioRange), ("mode", ctypes.c_uint64), ("ioctls", ctypes.c_uint64)]


class _UffdioWriteprotect(ctypes.Structure):
    _fields_ = [("range", _UffdioRange), ("mode", ctypes.c_uint64)]


class _PageRegion(ctypes.Structure):
    _fields_ = [
        ("start", ctypes.c_uint64),
        ("end", ctypes.c_uint64),
        ("categories", ctypes.c_uint64),
    ]


_PM_SCAN_FIELDS = (
    "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
    "category_inverted", "category_mask", "category_anyof_mask", "return_mask",
)  # fmt: skip


class _PmScanArg(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in _PM_SCAN_FIELDS]


_UFFDIO_API = _iowr(_UFFD_API, 0x3F, ctypes.sizeof(_UffdioApi))
_UFFDIO_REGISTER = _iowr(_UFFD_API, 0x00, ctypes.sizeof(_UffdioRegister))
_UFFDIO_UNREGISTER = _ior(_UFFD_API, 0x01, ctypes.sizeof(_UffdioRange))
_UFFDIO_WRITEPROTECT = _iowr(_UFFD_API, 0x06, ctypes.sizeof(_UffdioWriteprotect))
_PAGEMAP_SCAN = _iowr(ord("f"), 16, ctypes.sizeof(_PmScanArg))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.ioctl.restype = ctypes.c_int
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.munmap.restype = ctypes.c_int
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mprotect.restype = ctypes.c_int
_libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
_libc.mremap.restype = ctypes.c_void_p
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.restype = ctypes.c_int


class DirtyTrackingUnavailable(OSError):
    """The kernel or the process's privileges do not allow WP_ASYNC tracking."""


def _errno_error(what: str) -> DirtyTrackingUnavailable:
    err = ctypes.get_errno()
    return DirtyTrackingUnavailable(err, f"{what} failed: {os.strerror(err)}")


def _ioctl(fd: int, request: int, arg: ctypes.Structure, what: str) -> int:
    rc = int(_libc.ioctl(fd, request, ctypes.byref(arg)))
    if rc < 0:
        raise _errno_error(what)
    return rc


def _open_uffd() -> int:
    fd = _libc.syscall(_SYS_USERFAULTFD, os.O_CLOEXEC | os.O_NONBLOCK)
    if fd < 0:
        raise _errno_error("userfaultfd()")
    api = _UffdioApi(_UFFD_API, _UFFD_FEATURE_WP_ASYNC | _UFFD_FEATURE_WP_UNPOPULATED, 0)
    try:
        _ioctl(fd, _UFFDIO_API, api, "UFFDIO_API with WP_ASYNC")
    except BaseException:
        os.close(fd)
        raise
    return int(fd)


class _SharedFds:
    """One userfaultfd and one pagemap fd for the whole process.

    A userfaultfd can hold any number of registered ranges, and WP_ASYNC
    never produces events to read, so every tracker shares it: a localnet
    with thousands of canisters must not need thousands of descriptors.
    Both are tied to the process that opened them, hence reopened after fork.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._uffd_pid = 0
        self.uffd = -1
        self.pagemap = -1

    def get_pagemap(self) -> int:
        with self._lock:
            if self._pid != os.getpid():
                self.pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
                self._pid = os.getpid()
            return self.pagemap

    def get(self) -> tuple[int, int]:
        pagemap = self.get_pagemap()
        with self._lock:
            if self._uffd_pid != os.getpid():
                self.uffd, self._uffd_pid = _open_uffd(), os.getpid()
            return self.uffd, pagemap


_fds = _SharedFds()


@dataclass(frozen=True)
class Region:
    """Written bytes ``[start, end)``, as offsets into the tracked region."""

    start: int
    end: int
    present: bool  # False: never populated, so its content is all zeros


class AnonMemory:
    """A private anonymous mapping: zero-filled, populated only where written.

    Used for the shadow copy of a heap and for stable memory, so that they
    cost RSS only for the bytes really written. :meth:`resize` moves the
    pages with ``mremap`` instead of copying them (a copy would populate the
    zero pages too). Transparent huge pages are declined: one written byte
    must cost a 4 KiB page, not 2 MiB.
    """

    def __init__(self, size: int) -> None:
        self.size = _page_round(max(size, PAGE_SIZE))
        addr = _libc.mmap(
            None, self.size, _PROT_READ_WRITE, _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0
        )
        if addr in (None, _MAP_FAILED):
            raise MemoryError(
                f"mmap of {self.size} bytes failed: {os.strerror(ctypes.get_errno())}"
            )
        self.address: int = addr
        _libc.madvise(addr, self.size, _MADV_NOHUGEPAGE)

    def resize(self, size: int) -> None:
        """Grow or shrink to ``size`` bytes (rounded up to pages); contents are kept.

        The address may change. Pages cut off by shrinking are released.
        """
        size = _page_round(max(size, PAGE_SIZE))
        if size == self.size:
            return
        addr = _libc.mremap(self.address, self.size, size, _MREMAP_MAYMOVE)
        if addr in (None, _MAP_FAILED):
            raise MemoryError(f"mremap to {size} bytes failed: {os.strerror(ctypes.get_errno())}")
        self.address, self.size = addr, size
        _libc.madvise(addr, size, _MADV_NOHUGEPAGE)

    def discard(self, start: int, end: int) -> None:
        """Make ``[start, end)`` zero again and release its pages."""
        discard(self.address, start, end)

    def close(self) -> None:
        if self.address:
            _libc.munmap(self.address, self.size)
            self.address = 0

    def __del__(self) -> None:
        self.close()


def _page_round(n: int) -> int:
    return -(-n // PAGE_SIZE) * PAGE_SIZE


_VEC_LEN = 512
_scan_buffers = threading.local()


def _scan_buffer() -> ctypes.Array[_PageRegion]:
    """The PAGEMAP_SCAN result buffer of this thread (12 KiB, not one per canister)."""
    vec: ctypes.Array[_PageRegion] | None = getattr(_scan_buffers, "vec", None)
    if vec is None:
        vec = _scan_buffers.vec = (_PageRegion * _VEC_LEN)()
    return vec


def discard(address: int, start: int, end: int) -> None:
    """Zero ``[address + start, address + end)`` of private anonymous memory.

    Whole pages are given back to the kernel (``MADV_DONTNEED``: they read as
    zero and cost no RSS until written again); partial pages are cleared.
    """
    if end <= start:
        return
    first, last = _page_round(start), end - end % PAGE_SIZE
    if last <= first:
        ctypes.memset(address + start, 0, end - start)
        return
    if first > start:
        ctypes.memset(address + start, 0, first - start)
    _libc.madvise(address + first, last - first, _MADV_DONTNEED)
    if end > last:
        ctypes.memset(address + last, 0, end - last)


def decline_huge_pages(address: int, length: int) -> None:
    """Ask for 4 KiB pages in ``[address, address + length)`` (best effort)."""
    _libc.madvise(address, length, _MADV_NOHUGEPAGE)


def populated(address: int, length: int) -> list[tuple[int, int]]:
    """Offsets ``[start, end)`` of the pages of a region that hold memory.

    A page never written (or only read: the shared zero page) is left out;
    its content is zero. Needs ``PAGEMAP_SCAN`` (Linux >= 6.7) but no
    userfaultfd; without it every page is reported (still correct, slower).
    Swapped-out pages are reported, and so are a :class:`WriteTracker`'s
    markers on never-written pages (the kernel files both as swap entries).
    """
    if length <= 0:
        return []
    try:
        fd = _fds.get_pagemap()
    except OSError:
        return [(0, length)]
    vec = _scan_buffer()
    out: list[tuple[int, int]] = []
    start, end = address, address + _page_round(length)
    while start < end:
        arg = _PmScanArg(
            ctypes.sizeof(_PmScanArg), 0, start, end, 0, ctypes.addressof(vec), len(vec), 0,
            _PAGE_IS_PFNZERO, _PAGE_IS_PFNZERO, _PAGE_IS_PRESENT | _PAGE_IS_SWAPPED,
            _PAGE_IS_PRESENT | _PAGE_IS_SWAPPED,
        )  # fmt: skip
        n = int(_libc.ioctl(fd, _PAGEMAP_SCAN, ctypes.byref(arg)))
        if n < 0:
            return [(0, length)]
        for i in range(n):
            a, b = vec[i].start - address, min(vec[i].end - address, length)
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
        start = arg.walk_end
    return out


_ZERO_PAGE = bytes(PAGE_SIZE)


def nonzero_pages(address: int, length: int) -> list[tuple[int, bytes]]:
    """(offset, content) of the pages of ``[address, address + length)`` that hold
    anything but zeros; only populated pages are read (see :func:`populated`).

    Not for a region registered with a :class:`WriteTracker`: its write
    protection markers look like swapped-out pages, so all of it is read.
    """
    out = []
    for start, end in populated(address, length):
        for offset in range(start, end, PAGE_SIZE):
            data = ctypes.string_at(address + offset, min(PAGE_SIZE, length - offset))
            if data != _ZERO_PAGE[: len(data)]:
                out.append((offset, data))
    return out


class WriteTracker:
    """Tracks written pages of ``[base, base + reservation)`` (page aligned).

    ``protect`` arms the pages, ``scan`` lists what was written since and
    (optionally) re-arms exactly those pages atomically.
    """

    _VEC_LEN = _VEC_LEN

    def __init__(self, base: int, reservation: int) -> None:
        if base % PAGE_SIZE or reservation % PAGE_SIZE:
            raise ValueError("the tracked region must be page aligned")
        self.base = base
        self.reservation = reservation
        self._uffd, self._pagemap = _fds.get()
        reg = _UffdioRegister(_UffdioRange(base, reservation), _UFFDIO_REGISTER_MODE_WP, 0)
        _ioctl(self._uffd, _UFFDIO_REGISTER, reg, "UFFDIO_REGISTER (write-protect mode)")
        self._registered = True

    def protect(self, start: int, length: int) -> None:
        """Arm ``[start, start + length)`` (offsets): later writes are reported."""
        if length <= 0:
            return
        wp = _UffdioWriteprotect(
            _UffdioRange(self.base + start, length), _UFFDIO_WRITEPROTECT_MODE_WP
        )
        _ioctl(self._uffd, _UFFDIO_WRITEPROTECT, wp, "UFFDIO_WRITEPROTECT")

    def scan(self, length: int, *, rearm: bool) -> list[Region]:
        """Pages of ``[0, length)`` written since they were last armed.

        With ``rearm`` the reported pages are protected again in the same
        ioctl, so a page written concurrently is never lost.
        """
        regions: list[Region] = []
        start, end = self.base, self.base + length
        flags = _PM_SCAN_CHECK_WPASYNC | (_PM_SCAN_WP_MATCHING if rearm else 0)
        vec = _scan_buffer()
        vec_addr = ctypes.addressof(vec)
        while start < end:
            arg = _PmScanArg(
                ctypes.sizeof(_PmScanArg), flags, start, end, 0, vec_addr, self._VEC_LEN,
                0, 0, _PAGE_IS_WRITTEN, 0, _PAGE_IS_WRITTEN | _PAGE_IS_PRESENT,
            )  # fmt: skip
            n = _ioctl(self._pagemap, _PAGEMAP_SCAN, arg, "PAGEMAP_SCAN")
            for i in range(n):
                r = vec[i]
                regions.append(
                    Region(
                        r.start - self.base,
                        r.end - self.base,
                        bool(r.categories & _PAGE_IS_PRESENT),
                    )
                )
            start = arg.walk_end
        return regions

    def close(self) -> None:
        """Unregister the range (harmless if its memory is already unmapped)."""
        if self._registered:
            self._registered = False
            rng = _UffdioRange(self.base, self.reservation)
            _libc.ioctl(self._uffd, _UFFDIO_UNREGISTER, ctypes.byref(rng))

    def __del__(self) -> None:
        self.close()


_probe_result: str | None = None


def probe() -> str | None:
    """``None`` if dirty tracking works here, else the reason it does not.

    Tries the whole cycle on a scratch mapping once per process: register,
    protect, write, scan, grow-by-mprotect.
    """
    global _probe_result
    if _probe_result is None:
        _probe_result = _probe_once()
    return _probe_result or None


def _probe_once() -> str:
    size = 16 * PAGE_SIZE
    addr = _libc.mmap(None, size, _PROT_NONE, _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
    if addr in (None, _MAP_FAILED):
        return "mmap failed"
    try:
        _libc.mprotect(addr, 4 * PAGE_SIZE, _PROT_READ_WRITE)
        tracker = WriteTracker(addr, size)
        try:
            tracker.protect(0, 4 * PAGE_SIZE)
            ctypes.memset(addr + PAGE_SIZE + 7, 1, 1)
            first = tracker.scan(4 * PAGE_SIZE, rearm=True)
            _libc.mprotect(addr, 8 * PAGE_SIZE, _PROT_READ_WRITE)
            ctypes.memset(addr + 6 * PAGE_SIZE, 1, 1)
            second = tracker.scan(8 * PAGE_SIZE, rearm=True)
        finally:
            tracker.close()
    except OSError as exc:
        return str(exc)
    finally:
        _libc.munmap(addr, size)
    if [(r.start, r.end) for r in first] != [(PAGE_SIZE, 2 * PAGE_SIZE)]:
        return f"PAGEMAP_SCAN reported {first} instead of the one written page"
    if not any(r.start <= 6 * PAGE_SIZE < r.end and r.present for r in second):
        return f"a write to grown memory was not reported ({second})"
    return ""
