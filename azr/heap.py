"""The trainer process's memory: its RSS for the step metrics, and glibc's allocator settings.

Why the allocator matters: glibc serves a large allocation with its own ``mmap`` (returned to the OS on free) only
while it is above a threshold that glibc *raises* each time such a block is freed, up to 32 MiB. After a few
steps of a training loop almost every activation and gradient buffer falls under it and comes from the heap,
where freed blocks stay mapped and fragment, so RSS keeps what the biggest step ever needed and creeps up.
Fixing the threshold (``mallopt(M_MMAP_THRESHOLD)``, which also turns the raising off) sends every block above it
back to the OS when torch frees it, at the cost of a page fault per page when the next one is made.

Everything here is a no-op off glibc (macOS, musl): the settings are glibc's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
GIB = 2**30


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def set_mmap_threshold(mib: int) -> bool:
    """Serve every allocation of at least `mib` MiB with its own mmap, returned to the OS when freed (0: leave
    glibc's dynamic threshold alone). True when the allocator took the setting."""
    libc = _libc()
    if not mib or libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(mib << 20)))


def trim() -> bool:
    """Give the heap's free memory back to the OS (glibc ``malloc_trim(0)``), so that RSS shows what is in use. True
    when some memory was released."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def rss_bytes() -> int:
    """This process's resident set size now (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


_peak_before_reset = 0
"""The highest RSS seen before the last `reset_peak`: what `peak_rss_bytes` adds to the kernel's mark after it."""


def peak_since_reset_bytes() -> int:
    """The highest RSS since the last successful `reset_peak` (since the start, if none): the kernel's high-water
    mark, VmHWM, else ru_maxrss (KiB on Linux), which it updates lazily; or the RSS now if that is higher."""
    try:
        with open("/proc/self/status") as f:
            hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, ValueError, IndexError, StopIteration):
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return max(hwm, rss_bytes())


def reset_peak() -> bool:
    """Start a new high-water mark at the RSS now (Linux: write 5 to /proc/self/clear_refs), so that
    `peak_since_reset_bytes` measures one stretch of work, such as a stage of a step. The process's overall peak
    is kept for `peak_rss_bytes`. False where the kernel does not allow it; the mark then runs on."""
    global _peak_before_reset
    _peak_before_reset = max(_peak_before_reset, peak_since_reset_bytes())
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """The highest RSS this process has had so far, across resets."""
    return max(_peak_before_reset, peak_since_reset_bytes())


def memory_metrics() -> dict[str, float]:
    """``memory/rss_gib`` (now, at the end of a step) and ``memory/peak_rss_gib`` (the process's highest so far)."""
    return {"memory/rss_gib": rss_bytes() / GIB, "memory/peak_rss_gib": peak_rss_bytes() / GIB}
