"""Freed memory kept for reuse (glibc's malloc).

The scan's reading thread decodes, cuts and frees megabytes of tiles a second, and by default glibc
gives much of that back to the kernel at once, so the next block is fresh pages, each mapped and zeroed
on first touch (a page fault; on the scan benchmark's slide about a fifth of the decoding's CPU).
Raising the two thresholds to the most glibc's own adaptive rule ever sets them to (blocks up to
32 MiB from the heap, 64 MiB of free heap kept) keeps those pages: the process's memory stays near
its peak instead of shrinking between blocks.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: larger blocks are mapped on their own
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what the adaptive rule pairs with it


def keep_freed_memory() -> bool:
    """Set the thresholds for this whole process; True if it runs on glibc and took them, else a no-op."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return False
    took = [mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD), mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)]
    return all(took)
