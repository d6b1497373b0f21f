"""The scan keeps freed memory for reuse (glibc): a thread that allocates and frees megabytes, as the
reading thread does with decoded tiles, no longer gets fresh pages (page faults) every time.

Each case runs in its own Python, so that the setting starts from glibc's defaults; the page faults are
the thread's own (minor faults in /proc/thread-self/stat), counted here, not by the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_pcam.runtime.synthetic_slide import write_synthetic_slide


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


pytestmark = pytest.mark.skipif(not _glibc() or not Path("/proc/thread-self/stat").exists(),
                                reason="glibc's malloc and Linux's per-thread fault counts only")

CHURN = textwrap.dedent("""
    import json, sys, threading
    import numpy as np

    def faults():
        return int(open("/proc/thread-self/stat").read().rsplit(")", 1)[1].split()[7])

    def churn():  # six 1 MiB blocks made, written and freed, 20 times, in a thread of its own
        counted = []
        def run():
            for _ in range(3):
                blocks = [np.ones(1 << 20, np.uint8) for _ in range(6)]
                del blocks
            start = faults()
            for _ in range(20):
                blocks = [np.ones(1 << 20, np.uint8) for _ in range(6)]
                del blocks
            counted.append(faults() - start)
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return counted[0]

    before = churn()
    {step}
    print(json.dumps([before, churn()]))
""")


def churn_faults(step: str) -> tuple[int, int]:
    """Page faults of the churning thread before and after `step` (Python source) in a fresh process."""
    done = subprocess.run([sys.executable, "-c", CHURN.format(step=step)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    return before, after


def test_keeping_freed_memory_ends_the_fresh_pages():
    pages = 20 * 6 * (1 << 20) // 4096
    before, after = churn_faults("from edge_pcam.runtime.malloc import keep_freed_memory; "
                                 "assert keep_freed_memory()")
    assert before > pages // 2  # glibc's default: freed blocks go back to the kernel
    assert after < pages // 100
    before, after = churn_faults("pass")  # nothing set: no change
    assert after > pages // 2


def test_a_scan_sets_it_before_it_reads(tmp_path, monkeypatch):
    """Wired in scan_slide (so the CLI, the batch, the watch folder and the benchmark all get it), before the
    first region is read. (After a scan, glibc's own adaptive rule may have raised the thresholds too, so
    the wiring is checked here by call order, not by page faults.)"""
    from edge_pcam.runtime.scan import pipeline
    from edge_pcam.runtime.slide_base import Slide

    calls: list[str] = []
    monkeypatch.setattr(pipeline, "keep_freed_memory", lambda: calls.append("keep") or True)
    read_scaled = Slide.read_scaled
    monkeypatch.setattr(Slide, "read_scaled", lambda self, *a: calls.append("read") or read_scaled(self, *a))
    slide = write_synthetic_slide(tmp_path / "small.tif", 1200, 1000, mpp=0.972, tissue=(100, 100, 1100, 900))
    pipeline.scan_slide(slide.path, tmp_path / "out")
    assert calls[0] == "keep" and "read" in calls
