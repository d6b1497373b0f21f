"""A stand-in for the slide scan, for the watch-folder tests, and a command line that runs the watcher
with it in a child process (kill and SIGTERM tests):

    python tests/runtime/watch_support.py INBOX OUT [--once]      (FAKE_SCAN_SECONDS=0.5 slows each scan)
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

from edge_pcam.errors import DataError


def fake_scan(path: Path, out: Path) -> dict:
    """Reads the whole file; files starting with b"BAD" fail like a bad slide; records each call in
    OUT/calls.log and the content's SHA-256 in OUT/result.txt."""
    data = path.read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "calls.log", "a") as f:
        f.write(f"{len(data)}\n")
    time.sleep(float(os.environ.get("FAKE_SCAN_SECONDS", "0")))
    if data.startswith(b"BAD"):
        raise DataError(f"{path}: not a slide (test)")
    (out / "result.txt").write_text(hashlib.sha256(data).hexdigest())
    return {"tissue_tiles": len(data), "top_probability": 0.5, "model_sha256": "f" * 64}


def main() -> None:
    from edge_pcam.runtime.watch import Watcher

    inbox, out = sys.argv[1], sys.argv[2]
    Watcher(inbox, out, fake_scan, settle_seconds=0.0, poll_seconds=0.05).run(once="--once" in sys.argv)


if __name__ == "__main__":
    main()
