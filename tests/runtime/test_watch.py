"""The watch folder with a stand-in scan (watch_support.fake_scan) and real files: a half-copied file
is not read, a duplicate or a renamed slide is not scanned twice, a new slide under an old name is,
a bad slide is a row and the watcher goes on, a full disk is retried, an unreadable folder is logged;
killed at random moments and restarted, nothing is lost or done twice; SIGTERM stops it cleanly."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from watch_support import fake_scan

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.fileio import prepare_output_folder
from edge_pcam.runtime.summary import read_summary
from edge_pcam.runtime.results import EVENTS_FILE, describe_event
from edge_pcam.runtime.slide_files import slide_stem
from edge_pcam.runtime.watch import RETRY_SECONDS, Watcher

SUPPORT = Path(__file__).with_name("watch_support.py")
SETTLE = 10.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def events(out: Path) -> list[dict]:
    """The event log; each event also goes through the console's description (a KeyError there would stop
    the service)."""
    logged = [json.loads(line) for line in (out / EVENTS_FILE).read_text().splitlines()]
    assert all(describe_event(e).strip() for e in logged)
    return logged


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def folders(tmp_path):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    return inbox, out


def watcher(inbox, out, clock, scan=fake_scan):
    return Watcher(inbox, out, scan, settle_seconds=SETTLE, poll_seconds=1.0, clock=clock)


def test_a_file_still_being_copied_is_not_read(folders):
    inbox, out = folders
    clock = Clock()
    w = watcher(inbox, out, clock)
    slide = inbox / "a.svs"
    slide.write_bytes(b"x" * 1000)  # the copy has begun
    w.poll()
    clock.now = 6.0
    with open(slide, "ab") as f:  # ... and goes on
        f.write(b"y" * 1000)
    w.poll()
    clock.now = 12.0  # 12 s since the first sight, but only 6 since the size last changed
    w.poll()
    assert read_summary(out / "summary.csv") == []
    clock.now = 16.5
    w.poll()
    rows = read_summary(out / "summary.csv")
    assert [(r["file"], r["status"], r["tissue_tiles"]) for r in rows] == [("a.svs", "ok", "2000")]
    assert (out / "a" / "calls.log").read_text().split() == ["2000"]  # read once, whole


def test_duplicates_renames_and_a_new_slide_under_an_old_name(folders):
    inbox, out = folders
    clock = Clock()
    w = watcher(inbox, out, clock)
    first = b"slide one" * 100
    (inbox / "a.svs").write_bytes(first)
    (inbox / "notes.txt").write_text("not a slide")
    (inbox / ".a.svs.part").write_bytes(b"partial")
    w.poll()
    clock.now += SETTLE + 1
    w.poll()
    shutil.copy(inbox / "a.svs", inbox / "copy.svs")  # the same slide copied again
    os.rename(inbox / "a.svs", inbox / "renamed.svs")  # and the first one renamed
    for _ in range(3):
        clock.now += SETTLE + 1
        w.poll()
    second = b"slide two" * 100
    (inbox / "a.svs").write_bytes(second)  # a different slide under the old name
    for _ in range(2):
        clock.now += SETTLE + 1
        w.poll()
    rows = read_summary(out / "summary.csv")
    assert [(r["file"], r["sha256"], r["out"]) for r in rows] == [
        ("a.svs", digest(first), "a"), ("a.svs", digest(second), f"a-{digest(second)[:8]}")]
    assert (out / "a" / "result.txt").read_text() == digest(first)  # the first results are kept
    duplicates = sorted((e["file"], e["same_as"]) for e in events(out) if e["event"] == "duplicate")
    assert duplicates == [("copy.svs", "a.svs"), ("renamed.svs", "a.svs")]  # each logged once


def test_a_bad_slide_is_a_row_and_the_next_is_scanned(folders):
    inbox, out = folders
    clock = Clock()
    w = watcher(inbox, out, clock)
    (inbox / "bad.svs").write_bytes(b"BAD slide")
    sub = inbox / "2026-12-01"
    sub.mkdir()
    (sub / "good.ndpi").write_bytes(b"good slide")
    w.poll()
    clock.now += SETTLE + 1
    w.poll()
    rows = {r["file"]: r for r in read_summary(out / "summary.csv")}
    assert rows["bad.svs"]["status"] == f"{inbox / 'bad.svs'}: not a slide (test)"
    assert rows["2026-12-01/good.ndpi"]["status"] == "ok" and rows["2026-12-01/good.ndpi"]["out"] == "good"
    assert [e["event"] for e in events(out)] == ["start", "failed", "start", "done"]
    clock.now += SETTLE + 1
    w.poll()  # a failed slide is not tried again: its content is what failed
    assert len(read_summary(out / "summary.csv")) == 2


def test_a_full_disk_is_retried_later_not_recorded_as_the_slides_failure(folders):
    inbox, out = folders
    clock = Clock()
    calls = []

    def scan(path, out_dir):
        calls.append(clock.now)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return fake_scan(path, out_dir)

    w = watcher(inbox, out, clock, scan)
    (inbox / "a.svs").write_bytes(b"slide")
    w.poll()
    clock.now += SETTLE + 1
    w.poll()
    failed = [e for e in events(out) if e["event"] == "failed"]
    assert failed[0]["retry_in_seconds"] == RETRY_SECONDS[0] and "No space left" in failed[0]["error"]
    assert read_summary(out / "summary.csv") == []
    clock.now += RETRY_SECONDS[0] / 2
    w.poll()
    assert len(calls) == 1
    clock.now += RETRY_SECONDS[0]
    w.poll()
    assert [r["status"] for r in read_summary(out / "summary.csv")] == ["ok"] and len(calls) == 2


def test_a_disk_too_full_for_the_slides_folder_is_retried(folders, monkeypatch):
    """The scan turns a folder it cannot create into a one-line error (the slide's failure); the watcher
    creates the folder first, so a full disk there is the machine's and the slide is tried again."""
    inbox, out = folders
    clock = Clock()
    mkdir = Path.mkdir
    full = [True]

    def no_space(self, *args, **kwargs):
        if self.name == "a" and full[0]:
            full[0] = False
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return mkdir(self, *args, **kwargs)

    def scan(path, out_dir):
        prepare_output_folder(out_dir)  # what scan_slide does: EdgePcamError if it cannot be written
        return fake_scan(path, out_dir)

    monkeypatch.setattr(Path, "mkdir", no_space)
    w = watcher(inbox, out, clock, scan)
    (inbox / "a.svs").write_bytes(b"slide")
    w.poll()
    clock.now += SETTLE + 1
    w.poll()
    assert read_summary(out / "summary.csv") == [] and not (out / "a").exists()
    assert [e["retry_in_seconds"] for e in events(out) if e["event"] == "failed"] == [RETRY_SECONDS[0]]
    clock.now += RETRY_SECONDS[0] + 1
    w.poll()
    assert [(r["status"], r["out"]) for r in read_summary(out / "summary.csv")] == [("ok", "a")]


def test_an_unreadable_folder_is_logged_once_and_the_rest_goes_on(folders, monkeypatch):
    inbox, out = folders
    clock = Clock()
    w = watcher(inbox, out, clock)
    (inbox / "locked").mkdir()
    (inbox / "a.svs").write_bytes(b"slide")
    scandir = os.scandir

    def refusing(path="."):
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    for _ in range(3):
        w.poll()
        clock.now += SETTLE + 1
    unreadable = [e for e in events(out) if e["event"] == "unreadable"]
    assert [(e["file"], "Permission denied" in e["error"]) for e in unreadable] == [("locked", True)]
    assert [r["file"] for r in read_summary(out / "summary.csv")] == ["a.svs"]


def test_one_watcher_per_output_folder_and_a_missing_inbox(folders):
    inbox, out = folders
    w = watcher(inbox, out, Clock())
    with pytest.raises(EdgePcamError, match="another edge-pcam watch or scan is writing here"):
        watcher(inbox, out, Clock())
    del w
    with pytest.raises(EdgePcamError, match="no such folder"):
        watcher(inbox / "missing", out / "2", Clock())


def test_slide_stem():
    assert [slide_stem(n) for n in ("a/b.ome.tif", "c.SVS", "d.mrxs", "e.tar")] == ["b", "c", "d", "e.tar"]


def run_watcher(inbox, out, *args, delay=0.0):
    env = {**os.environ, "FAKE_SCAN_SECONDS": str(delay)}
    return subprocess.Popen([sys.executable, str(SUPPORT), str(inbox), str(out), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_killed_at_random_moments_nothing_is_lost_or_done_twice(folders):
    inbox, out = folders
    contents = [f"slide {i}".encode() * 1000 for i in range(4)]
    for i, data in enumerate(contents):
        (inbox / f"s{i}.svs").write_bytes(data)
    shutil.copy(inbox / "s1.svs", inbox / "s1 copy.svs")
    rng = np.random.default_rng(0)
    for _ in range(6):
        child = run_watcher(inbox, out, delay=0.3)
        time.sleep(rng.uniform(0.3, 1.2))  # past start-up, at some point of some scan
        child.kill()
        child.wait()
    final = run_watcher(inbox, out, "--once")
    assert final.wait(timeout=60) == 0, final.stderr.read()
    rows = read_summary(out / "summary.csv")
    assert sorted(r["sha256"] for r in rows) == sorted(digest(d) for d in contents)  # each once
    assert all(r["status"] == "ok" for r in rows)
    for row in rows:
        assert (out / row["out"] / "result.txt").read_text() == row["sha256"]
    assert all(isinstance(e, dict) for e in events(out))  # every line of the log whole


def stopped_during_a_scan(inbox: Path, out: Path) -> None:
    """A watcher on `inbox` stopped by SIGTERM while it scans a.svs (a 30-second stand-in scan)."""
    (inbox / "a.svs").write_bytes(b"a slide")
    child = run_watcher(inbox, out, delay=30)
    calls = out / "a" / "calls.log"
    # the (stand-in) scan is under way and has recorded its call: the file exists from its open(), before
    # the record is written, and a SIGTERM in between left it empty (seen once under load)
    assert wait_for(lambda: calls.exists() and calls.read_text().strip() != "")
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=15) == 0, child.stderr.read()


def test_sigterm_stops_a_scan_cleanly_and_the_next_start_takes_it_up(folders):
    inbox, out = folders
    stopped_during_a_scan(inbox, out)
    assert [e["event"] for e in events(out)][-2:] == ["interrupted", "stopped"]
    assert events(out)[-1]["reason"] == "SIGTERM"
    assert read_summary(out / "summary.csv") == []
    again = run_watcher(inbox, out, "--once")
    assert again.wait(timeout=60) == 0, again.stderr.read()
    assert [(r["file"], r["status"], r["out"]) for r in read_summary(out / "summary.csv")] == [("a.svs", "ok", "a")]


def test_the_command_scans_a_jpeg_svs_with_the_real_scan(folders):
    """`edge-pcam watch --once` end to end: the slide scan, the reader it used, one row per distinct slide."""
    model = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "tiny_int8.tflite"
    if not model.is_file():
        pytest.skip(f"{model} not found: run tests/fixtures/make_fixtures.py")
    from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

    pytest.importorskip("imagecodecs", reason="writes the JPEG tiles")
    inbox, out = folders
    write_synthetic_slide(inbox / "slide.svs", 4000, 4000, mpp=0.25, container="svs", compression="jpeg")
    (inbox / "broken.svs").write_bytes(b"not a slide")
    data = (inbox / "slide.svs").read_bytes()
    (inbox / "half.svs").write_bytes(data[:len(data) // 2])  # settled, but the copy was cut off
    result = subprocess.run([sys.executable, "-m", "edge_pcam", "watch", str(inbox), "--out", str(out), "--once",
                             "--settle", "0", "--poll", "0.1", "--model", str(model)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {r["file"]: r for r in read_summary(out / "summary.csv")}
    assert rows["slide.svs"]["status"] == "ok" and int(rows["slide.svs"]["tissue_tiles"]) > 0
    assert rows["slide.svs"]["reader"] == "tifffile"  # auto's first choice for an SVS
    report = json.loads((out / "slide" / "scan.json").read_text())
    assert rows["slide.svs"]["model_sha256"] == report["model"]["sha256"]
    assert rows["slide.svs"]["sha256"] == hashlib.sha256((inbox / "slide.svs").read_bytes()).hexdigest()
    assert int(rows["slide.svs"]["tissue_tiles"]) == report["tiles"]["tissue"]
    assert float(rows["slide.svs"]["top_probability"]) == pytest.approx(report["top_tiles"][0]["probability"],
                                                                         abs=1e-6)
    assert sorted(report["files"]) == ["asap_xml", "geojson", "heatmap", "thumbnail", "tiles"]
    assert all((out / "slide" / name).is_file() for name in report["files"].values())
    assert "not an image or slide" in rows["broken.svs"]["status"]
    assert "truncated" in rows["half.svs"]["status"] and "\n" not in rows["half.svs"]["status"]
    assert "done slide.svs" in result.stdout and "failed broken.svs" in result.stdout


def test_a_slide_renamed_while_its_scan_was_stopped_goes_back_into_its_folder(folders):
    """The watcher knows a slide by its content: renamed after an interrupted scan, it resumes in its folder."""
    inbox, out = folders
    stopped_during_a_scan(inbox, out)
    os.rename(inbox / "a.svs", inbox / "renamed.svs")
    again = run_watcher(inbox, out, "--once")
    assert again.wait(timeout=60) == 0, again.stderr.read()
    assert [(r["file"], r["out"]) for r in read_summary(out / "summary.csv")] == [("renamed.svs", "a")]
    assert (out / "a" / "calls.log").read_text().split() == ["7", "7"]  # the same folder, twice
