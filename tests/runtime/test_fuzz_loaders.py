"""Property-based fuzzing of the loaders (issue 14, item 7): damaged images, HDF5 files, slides and model
files give edge-pcam's one-line errors (EdgePcamError) or load; never another exception, never a crash.

Each target runs in a child process (`fuzz_support.py`), so a native crash fails its test instead of
killing pytest. Examples are derandomized (the same 60 per target on every run, as in CI); set
EDGE_PCAM_FUZZ_EXAMPLES (and EDGE_PCAM_FUZZ_SEED, for other examples) for a longer hunt.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz_support import TARGETS

pytest.importorskip("hypothesis")
SUPPORT = Path(__file__).resolve().parent / "fuzz_support.py"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_damaged_files_give_one_line_errors_or_load(target, tmp_path):
    proc = subprocess.run([sys.executable, str(SUPPORT), target, str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode < 0:
        left = sorted(p.name for p in tmp_path.glob("current.*"))
        pytest.fail(f"{target}: the loader crashed the process ({signal.Signals(-proc.returncode).name}) on "
                    f"{tmp_path}/{left[0] if left else '?'}\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, f"{target}: an exception other than EdgePcamError escaped\n{proc.stderr[-6000:]}"
