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
_PM_SCAN_WP_MATCHING = 1 << 0
_PM_SCAN_CHECK_WPASYNC = 1 << 1

_PROT_NONE = 0
_PROT_READ_WRITE = 3
_MAP_PRIVATE = 0x02
_MAP_ANONYMOUS = 0x20
_MAP_NORESERVE = 0x4000
_MAP_FAILED = ctypes.c_void_p(-1).value


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
        self.uffd = -1
        self.pagemap = -1

    def get(self) -> tuple[int, int]:
        with self._lock:
            if self._pid != os.getpid():
                uffd = _open_uffd()
                try:
                    pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    os.close(uffd)
                    raise
                self.uffd, self.pagemap, self._pid = uffd, pagemap, os.getpid()
            return self.uffd, self.pagemap


_fds = _SharedFds()


@dataclass(frozen=True)
class Region:
    """Written bytes ``[start, end)``, as offsets into the tracked region."""

    start: int
    end: int
    present: bool  # False: never populated, so its content is all zeros


class AnonMemory:
    """A private anonymous mapping: zero-filled, populated only where written.

    Used for the shadow copy of a heap, so that a canister's shadow costs RSS
    only for the bytes its heap really has.
    """

    def __init__(self, size: int) -> None:
        self.size = max(size, PAGE_SIZE)
        addr = _libc.mmap(
            None, self.size, _PROT_READ_WRITE, _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0
        )
        if addr in (None, _MAP_FAILED):
            raise MemoryError(
                f"mmap of {self.size} bytes failed: {os.strerror(ctypes.get_errno())}"
            )
        self.address: int = addr

    def close(self) -> None:
        if self.address:
            _libc.munmap(self.address, self.size)
            self.address = 0

    def __del__(self) -> None:
        self.close()


class WriteTracker:
    """Tracks written pages of ``[base, base + reservation)`` (page aligned).

    ``protect`` arms the pages, ``scan`` lists what was written since and
    (optionally) re-arms exactly those pages atomically.
    """

    _VEC_LEN = 512

    def __init__(self, base: int, reservation: int) -> None:
        if base % PAGE_SIZE or reservation % PAGE_SIZE:
            raise ValueError("the tracked region must be page aligned")
        self.base = base
        self.reservation = reservation
        self._uffd, self._pagemap = _fds.get()
        self._vec = (_PageRegion * self._VEC_LEN)()
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
        vec_addr = ctypes.addressof(self._vec)
        while start < end:
            arg = _PmScanArg(
                ctypes.sizeof(_PmScanArg), flags, start, end, 0, vec_addr, self._VEC_LEN,
                0, 0, _PAGE_IS_WRITTEN, 0, _PAGE_IS_WRITTEN | _PAGE_IS_PRESENT,
            )  # fmt: skip
            n = _ioctl(self._pagemap, _PAGEMAP_SCAN, arg, "PAGEMAP_SCAN")
            for i in range(n):
                r = self._vec[i]
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
