"""What a run was made with: package versions, Python, the machine, the git commit."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

from edge_pcam.runtime.machine import describe_machine, package_versions

PACKAGES = ("edge-pcam", "tensorflow", "tf-keras", "tensorflow-model-optimization", "numpy", "h5py",
            "pillow", "ai-edge-litert")


def git_commit() -> str | None:
    """The repository's HEAD commit when run from a git checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def versions() -> dict:
    """A JSON-ready record of the software and machine."""
    machine = describe_machine()
    return {"python": sys.version.split()[0], "packages": package_versions(PACKAGES),
            "platform": platform.platform(), "machine": {"cpu": machine["cpu"], "cores": machine["cores"]},
            "git_commit": git_commit()}
