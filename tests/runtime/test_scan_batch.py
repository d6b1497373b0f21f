"""Many slides per run on JPEG-tiled SVS files: a bad, a half-written and a damaged slide and a full disk are
rows with their reasons while the others go on; nothing written earlier is lost or overwritten; a batch
killed mid-slide resumes (done slides skipped, the interrupted one resumed); the folder-name rule."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tifffile

from edge_pcam.errors import DataError, EdgePcamError
from edge_pcam.runtime.results import ResultsFolder, output_name
from edge_pcam.runtime.scan.batch import SlideScanner, batch_slides, scan_batch
from edge_pcam.runtime.scan.inference import LOG_GROUP
from edge_pcam.runtime.scan.store import PROGRESS_FILE
from edge_pcam.runtime.summary import read_summary
from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

pytest.importorskip("imagecodecs", reason="writes the JPEG tiles")
MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "tiny_int8.tflite"
OUTPUTS = ["annotations.xml", "heatmap.png", "scan.geojson", "scan.json", "thumbnail.png", "tiles.csv", "top"]


@pytest.fixture(scope="module")
def small_svs(tmp_path_factory) -> Path:
    """4,000 x 4,000 pixels at 0.25 µm/px (40x), JPEG tiles: about 50 tissue tiles."""
    return write_synthetic_slide(tmp_path_factory.mktemp("small") / "small.svs", 4000, 4000, mpp=0.25,
                                 container="svs", compression="jpeg", tissue=(400, 400, 3600, 3600),
                                 tumour=(1000, 1000, 1800, 1800)).path


@pytest.fixture(scope="module")
def large_svs(tmp_path_factory) -> Path:
    """8,000 x 8,000 pixels at 0.25 µm/px, JPEG tiles, tissue over most of it (about 900 tiles at stride 48)."""
    return write_synthetic_slide(tmp_path_factory.mktemp("large") / "large.svs", 8000, 8000, mpp=0.25,
                                 container="svs", compression="jpeg", tissue=(800, 800, 7200, 7200),
                                 tumour=(2000, 2000, 3500, 3500), seed=3).path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_scan(*args, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "edge_pcam", "scan", *map(str, args), "--model", str(MODEL)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)


def damaged_copy(slide: Path, path: Path, x: int, y: int) -> Path:
    """`slide` with the JPEG tile holding level-0 pixel (x, y) zeroed in level 2 (1 µm/px), the level the scan
    reads: opening it works (the probes decode the finest and coarsest levels), the scan fails part-way."""
    data = bytearray(slide.read_bytes())
    with tifffile.TiffFile(slide) as tif:
        level = tif.series[0].levels[2]
        page = level.keyframe
        scale = page.imagewidth / tif.series[0].levels[0].keyframe.imagewidth
        nx = -(-page.imagewidth // page.tilewidth)
        index = int(y * scale) // page.tilelength * nx + int(x * scale) // page.tilewidth
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    data[offset:offset + count] = bytes(count)
    path.write_bytes(bytes(data))
    return path


def test_a_folder_with_a_bad_and_a_half_written_slide(small_svs, tmp_path):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    (inbox / "day 2").mkdir(parents=True)
    shutil.copy(small_svs, inbox / "good.svs")
    data = small_svs.read_bytes()
    (inbox / "day 2" / "half.svs").write_bytes(data[:len(data) // 2])  # a copy still under way
    (inbox / "notes.svs").write_text("not a slide\n")
    (inbox / "readme.txt").write_text("not a slide either, and not one by its name\n")
    result = run_scan(inbox, "--out", out)
    assert result.returncode == 1, result.stderr  # some slides failed
    rows = {row["file"]: row for row in read_summary(out / "summary.csv")}
    assert sorted(rows) == sorted(str(inbox / name) for name in ("good.svs", "day 2/half.svs", "notes.svs"))
    good = rows[str(inbox / "good.svs")]
    assert good["status"] == "ok" and good["out"] == "good" and good["sha256"] == sha256(small_svs)
    half, notes = rows[str(inbox / "day 2" / "half.svs")]["status"], rows[str(inbox / "notes.svs")]["status"]
    assert "truncated" in half and "copy the file again" in half
    assert "not an image or slide edge-pcam can read" in notes
    # The good slide's row says what its report says.
    report = json.loads((out / "good" / "scan.json").read_text())
    assert int(good["tissue_tiles"]) == report["tiles"]["tissue"] > 0
    assert float(good["burden_decision"]) == pytest.approx(report["tumour_burden"]["decision"]["fraction"], abs=1e-6)
    assert float(good["burden_high_specificity"]) == pytest.approx(
        report["tumour_burden"]["high_specificity"]["fraction"], abs=1e-6)
    assert float(good["top_probability"]) == pytest.approx(report["top_tiles"][0]["probability"], abs=1e-6)
    assert good["model_sha256"] == report["model"]["sha256"] == sha256(MODEL)
    assert good["reader"] == report["slide"]["reader"] == "tifffile"
    # its warnings too: the synthetic slide is softer than PCam's patches, and a lab's table must say so
    assert good["warnings"] == " | ".join(report["warnings"]) and "softer than the images" in good["warnings"]
    assert rows[str(inbox / "notes.svs")]["warnings"] == ""
    slide_result = report["slide_result"]  # the slide-level columns are the slide result's
    assert float(good["burden_adjusted"]) == pytest.approx(slide_result["burden"], abs=1e-6)
    assert [float(good["burden_adjusted_low"]), float(good["burden_adjusted_high"])] == pytest.approx(
        slide_result["burden_ci"], abs=1e-6)
    assert float(good["largest_region_mm"]) == pytest.approx(slide_result["largest_region_mm"], abs=1e-6)
    assert good["largest_region_class"] == slide_result["category"]
    assert float(good["seconds"]) > 0
    # Its folder holds every output and scan.json lists them; the failed slides left no folder.
    assert sorted(p.name for p in (out / "good").iterdir() if not p.name.startswith(".")) == OUTPUTS
    assert all((out / "good" / name).is_file() for name in report["files"].values())
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "events.jsonl", "good", "summary.csv"]
    assert "1 ok, 2 failed" in result.stdout


def test_a_damaged_slide_and_a_full_disk_go_on_and_nothing_written_is_lost(small_svs, large_svs, monkeypatch,
                                                                           tmp_path):
    slides, out = tmp_path / "slides", tmp_path / "out"
    slides.mkdir()
    good, other = Path(shutil.copy(small_svs, slides / "good.svs")), slides / "other.svs"
    write_synthetic_slide(other, 3000, 3000, mpp=0.25, container="svs", compression="jpeg",
                          tissue=(300, 300, 2700, 2700), tumour=(600, 600, 1200, 1200), seed=4)
    scanner = SlideScanner(MODEL)
    import edge_pcam.runtime.scan.outputs as outputs

    write_viewer_files = outputs.write_viewer_files

    def disk_full_for_other(out_dir, *args, **kwargs):
        if out_dir.name == "other":
            raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / "scan.geojson"))
        return write_viewer_files(out_dir, *args, **kwargs)

    monkeypatch.setattr(outputs, "write_viewer_files", disk_full_for_other)
    first = scan_batch(batch_slides([good, other]), out, scanner)
    assert [(r["file"], r["status"]) for r in first][0] == (str(good), "ok")
    assert "No space left on device" in first[1]["status"] and "\n" not in first[1]["status"]
    monkeypatch.setattr(outputs, "write_viewer_files", write_viewer_files)  # room again
    kept = {p.relative_to(out): p.read_bytes() for p in (out / "good").rglob("*") if p.is_file()}

    # good.svs replaced by a damaged slide: a new slide by content, into a new folder; it fails part-way
    # (the damaged tile is in the second row of the regions the scan reads, in the tissue).
    damaged_copy(large_svs, good, 3000, 6500)
    second = scan_batch(batch_slides([good, other]), out, scanner)
    assert {p.relative_to(out): p.read_bytes() for p in (out / "good").rglob("*") if p.is_file()} == kept
    damaged, retried = second
    assert damaged["out"] == f"good-{sha256(good)[:8]}" and damaged["out"] != "good"
    assert "cannot be decoded" in damaged["status"] and "damaged" in damaged["status"]
    progress = (out / damaged["out"] / PROGRESS_FILE).read_text().splitlines()
    assert len(progress) > 2  # the tiles read before the damaged one are kept for a later run
    assert not (out / damaged["out"] / "scan.json").exists()
    # The slide the full disk stopped is tried again; its tiles survived the failure.
    assert retried["status"] == "ok" and retried["out"] == "other"
    report = json.loads((out / "other" / "scan.json").read_text())
    assert report["tiles"]["resumed"] == report["tiles"]["tissue"] > 0 and report["tiles"]["computed"] == 0
    assert [r["status"] == "ok" for r in read_summary(out / "summary.csv")] == [True, False, False, True]


def test_a_killed_batch_resumes(small_svs, large_svs, tmp_path):
    slides, out = tmp_path / "slides", tmp_path / "out"
    slides.mkdir()
    for name, source in (("a.svs", small_svs), ("b.svs", large_svs), ("c.svs", small_svs)):
        shutil.copy(source, slides / name)
    args = [slides / "a.svs", slides / "b.svs", slides / "c.svs", "--out", out, "--stride", "48"]
    command = [sys.executable, "-m", "edge_pcam", "scan", *map(str, args), "--model", str(MODEL)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "b" / PROGRESS_FILE
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and log.read_bytes().count(b"\n") >= 2 + LOG_GROUP:  # b under way
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the batch ended before it could be killed"
    assert [r["file"] for r in read_summary(out / "summary.csv")] == [str(slides / "a.svs")]
    a_report = (out / "a" / "scan.json").stat().st_mtime_ns
    done_before = log.read_bytes().count(b"\n") - 2

    result = run_scan(*args)
    assert result.returncode == 0, result.stderr
    rows = read_summary(out / "summary.csv")
    assert [(r["file"], r["status"], r["out"]) for r in rows] == [
        (str(slides / name), "ok", name[0]) for name in ("a.svs", "b.svs", "c.svs")]  # each once
    assert (out / "a" / "scan.json").stat().st_mtime_ns == a_report  # not scanned again
    assert f"skipped {slides / 'a.svs'}: done in an earlier run" in result.stderr
    tiles = json.loads((out / "b" / "scan.json").read_text())["tiles"]
    assert tiles["resumed"] >= done_before >= LOG_GROUP and tiles["computed"] == tiles["tissue"] - tiles["resumed"]


def test_a_second_writer_and_a_folder_without_slides_are_refused(small_svs, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no slides in this folder"):
        batch_slides([tmp_path / "empty"])
    with ResultsFolder(tmp_path / "out"):
        result = run_scan(small_svs, small_svs, "--out", tmp_path / "out")
    assert result.returncode == 2 and "another edge-pcam watch or scan is writing here" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_folder_names(tmp_path):
    digest, other = "ab" * 32, "cd" * 32
    assert output_name("x/slide 1.svs", digest, set(), tmp_path) == "slide 1"
    assert output_name("y/slide 1.svs", digest, {"slide 1"}, tmp_path) == "slide 1-abababab"
    (tmp_path / "kept").mkdir()  # results of an earlier run, not listed anywhere: never written into
    assert output_name("kept.svs", digest, set(), tmp_path) == "kept-abababab"
    assert output_name("kept.svs", digest, {"kept-abababab"}, tmp_path) == "kept-abababab-2"
    with ResultsFolder(tmp_path / "out") as folder:
        assert folder.folder_name("a.svs", digest, by_content=True) == "a"
        assert folder.folder_name("renamed.svs", digest, by_content=True) == "a"  # the watcher: by content
        assert folder.folder_name("copy/a.svs", digest, by_content=False) == "a-abababab"  # a batch: by file
        assert folder.folder_name("a.svs", other, by_content=False) == "a-cdcdcdcd"
        folder.event("start", file="b.svs", sha256=other, out="b-elsewhere")
    with ResultsFolder(tmp_path / "out") as folder:  # started again: the folders come from the events
        assert folder.folder_name("b.svs", other, by_content=False) == "b-elsewhere"


def test_a_summary_that_cannot_be_written_stops_the_batch(small_svs, tmp_path, monkeypatch):
    import edge_pcam.runtime.results as results

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "append_summary_row", full)
    with pytest.raises(EdgePcamError, match="summary.csv: cannot record the results \\(No space left on device\\)"):
        scan_batch(batch_slides([small_svs]), tmp_path / "out", lambda path, out: {})
