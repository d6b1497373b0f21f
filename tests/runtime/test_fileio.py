"""The output-file guarantees: atomic replacement (even under SIGKILL), fsync order, new-file mode,
output checks before work, JSON of numpy values."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_support import read_only_folder

import edge_pcam.runtime.fileio as fileio
from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.fileio import (atomic_path, atomic_write_bytes, atomic_write_json, check_output_file,
                                      prepare_output_folder, to_json)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_file_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_error_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old" and leftovers(tmp_path) == []


def test_a_kill_while_writing_leaves_the_old_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    child = ("import sys, time\nfrom edge_pcam.runtime.fileio import atomic_path\n"
             "with atomic_path(sys.argv[1]) as tmp:\n"
             "    f = open(tmp, 'w'); f.write('half'); f.flush()\n"
             "    print('writing', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", child, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_text() == "old"


def test_data_then_rename_then_folder_are_synced(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync folder" if Path(f"/proc/self/fd/{fd}").resolve() == tmp_path else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    monkeypatch.setattr(fileio.os, "replace", replace)
    atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert events == ["fsync file", "rename", "fsync folder"]
    assert (tmp_path / "x.bin").read_bytes() == b"data" and leftovers(tmp_path) == []


def test_json_of_numpy_values_keeps_their_types(tmp_path):
    data = {"count": np.int64(12), "p": np.float32(0.25), "ok": np.bool_(True), "grid": np.arange(3),
            "path": Path("runs/a"), "name": "caf\udce9.png"}  # a file name that is not valid UTF-8
    atomic_write_json(tmp_path / "a.json", data)
    text = (tmp_path / "a.json").read_text(encoding="ascii")
    assert json.loads(text) == {"count": 12, "p": 0.25, "ok": True, "grid": [0, 1, 2], "path": "runs/a",
                                "name": "caf\udce9.png"}
    assert '"count": 12,' in text and text.endswith("}\n")
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        to_json({"x": object()})


def test_output_folder_is_created_and_checked_before_work(tmp_path):
    assert prepare_output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir() and leftovers(tmp_path / "a" / "b") == []
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(EdgePcamError, match=r"a_file/sub: cannot write the run folder \(") as info:
        prepare_output_folder(blocker / "sub", "run folder")
    assert "\n" not in str(info.value)


def test_read_only_destinations_are_one_line_errors(tmp_path):
    folder = read_only_folder(tmp_path)
    with pytest.raises(EdgePcamError, match="cannot write the output folder"):
        prepare_output_folder(folder)
    with pytest.raises(EdgePcamError, match=f"cannot write in {folder}"):
        check_output_file(folder / "out.csv")


def test_output_file_check(tmp_path):
    assert check_output_file(tmp_path / "out.csv") == tmp_path / "out.csv"
    assert not (tmp_path / "out.csv").exists() and leftovers(tmp_path) == []
    with pytest.raises(EdgePcamError, match="the folder .*missing does not exist"):
        check_output_file(tmp_path / "missing" / "out.csv")
    with pytest.raises(EdgePcamError, match="is a folder, not a file"):
        check_output_file(tmp_path)


def test_two_writers_of_one_file_do_not_collide(tmp_path):
    """Temporary names are unique: each writer has its own, and the last to finish wins."""
    with atomic_path(tmp_path / "a.txt") as first, atomic_path(tmp_path / "a.txt") as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_text("1")
        second.write_text("2")
    assert (tmp_path / "a.txt").read_text() == "1"  # the outer block ends last
    assert leftovers(tmp_path) == []
