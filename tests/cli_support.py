"""Running the `edge-pcam` entry point in-process, and the folders the output tests need.

`run_cli` is what `edge-pcam ARGS` does in a shell, without a new Python:
(exit code, stdout, stderr). `snapshot` records a folder's files (name, size,
modification time, bytes digest) so a test can show that nothing was written
or lost.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest


def run_cli(args, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run the console entry point in-process; (exit code, stdout, stderr)."""
    from edge_pcam.cli import main

    monkeypatch.setattr(sys, "argv", ["edge-pcam", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    """The only `edge-pcam: error:` line of `err` (asserting there is one and no traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("edge-pcam: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under `folder` (hidden ones too) as relative path -> (size, SHA-256), every folder as
    `path/` -> (0, "folder"); {} for no folder."""
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix() + "/" * p.is_dir():
            (0, "folder") if p.is_dir() else (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*"))}


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write to (root ignores permissions: a read-only mount then)."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    for candidate in (Path("/sys/fs"), Path("/proc/sys")):
        if candidate.is_dir() and not _writable(candidate):
            return candidate
    pytest.skip("running as root with no read-only folder at hand")


def _writable(folder: Path) -> bool:
    try:
        (folder / ".edge-pcam-probe").touch()
    except OSError:
        return False
    (folder / ".edge-pcam-probe").unlink()
    return True
