"""A killed scan resumes only on the same slide (by content), model and grid; tile rows outside the
tissue mask never count.

A kill is simulated by cutting a finished scan's progress log back to its first rows and deleting
scan.json: the state a SIGKILL leaves (test_scan.py kills a real process).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.metadata import read_metadata, with_metadata
from edge_pcam.runtime.scan.store import PROGRESS_FILE, ResumeKey, TileStore, slide_digest
from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
BUNDLED_INT8 = Path(__file__).resolve().parents[2] / "edge_pcam" / "models" / "edge_pcam_int8.tflite"
KEPT_ROWS = 20
SIZE = (1600, 1400)  # level-0 pixels at 0.486 µm/px: a 16 x 14 grid at PCam's 0.972 µm/px


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> tuple[Path, Path]:
    """Two different slides of the same size in bytes (the smaller padded; TIFF readers ignore the tail)."""
    folder = tmp_path_factory.mktemp("slides")
    a = write_synthetic_slide(folder / "a.tif", *SIZE, mpp=0.486, tissue=(100, 100, 1500, 1300),
                              tumour=(300, 300, 800, 800), tile=256, seed=1).path
    b = write_synthetic_slide(folder / "b.tif", *SIZE, mpp=0.486, tissue=(100, 100, 1500, 1300),
                              tumour=(800, 600, 1300, 1100), tile=256, seed=2).path
    size = max(a.stat().st_size, b.stat().st_size)
    for path in (a, b):
        with open(path, "ab") as f:
            f.write(b"\0" * (size - path.stat().st_size))
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()
    return a, b


def scan(slide: Path, out: Path, *args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "edge_pcam", "scan", str(slide), "--out", str(out), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def killed_scan(slide: Path, out: Path, model: Path, *args) -> list[str]:
    """A finished scan cut back to KEPT_ROWS tile rows, as a kill leaves it; the rows kept."""
    result = scan(slide, out, "--model", model, *args)
    assert result.returncode == 0, result.stderr
    lines = (out / PROGRESS_FILE).read_text().splitlines()
    assert len(lines) > 2 + KEPT_ROWS
    (out / PROGRESS_FILE).write_text("\n".join(lines[:2 + KEPT_ROWS]) + "\n")
    (out / "scan.json").unlink()
    return lines[2:2 + KEPT_ROWS]


def assert_refused(result: subprocess.CompletedProcess, message: str, out: Path, rows: list[str]) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert (out / PROGRESS_FILE).read_text().splitlines()[2:] == rows  # nothing mixed in, nothing lost
    assert not (out / "scan.json").exists()


def test_same_slide_model_and_settings_resume(slides, tmp_path):
    slide = tmp_path / "slide.tif"
    shutil.copy(slides[0], slide)
    rows = killed_scan(slide, tmp_path / "out", FIXTURES / "tiny_int8.tflite")
    moved = tmp_path / "moved" / "renamed.tif"  # the same content elsewhere is the same slide
    moved.parent.mkdir()
    shutil.move(slide, moved)
    result = scan(moved, tmp_path / "out", "--model", FIXTURES / "tiny_int8.tflite")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert report["tiles"]["resumed"] == KEPT_ROWS
    assert report["tiles"]["computed"] == report["tiles"]["tissue"] - KEPT_ROWS
    assert (tmp_path / "out" / PROGRESS_FILE).read_text().splitlines()[2:2 + KEPT_ROWS] == rows


def test_another_slide_of_the_same_size_at_the_same_path_is_refused(slides, tmp_path):
    slide, out = tmp_path / "slide.tif", tmp_path / "out"
    shutil.copy(slides[0], slide)
    rows = killed_scan(slide, out, FIXTURES / "tiny_int8.tflite")
    shutil.copy(slides[1], slide)  # replaced in place: same path, same size, other content
    result = scan(slide, out, "--model", FIXTURES / "tiny_int8.tflite")
    assert_refused(result, "holds a scan of another slide", out, rows)


def test_another_model_is_refused_but_a_recalibrated_card_resumes(slides, tmp_path):
    out = tmp_path / "out"
    rows = killed_scan(slides[0], out, FIXTURES / "tiny_int8.tflite")
    assert_refused(scan(slides[0], out, "--model", BUNDLED_INT8), "holds a scan by another model", out, rows)

    # New thresholds in the card (what `calibrate` writes): the same weights, so the tiles still hold.
    recalibrated = tmp_path / "recalibrated.tflite"
    data = (FIXTURES / "tiny_int8.tflite").read_bytes()
    meta = read_metadata(FIXTURES / "tiny_int8.tflite")
    recalibrated.write_bytes(with_metadata(data, {**meta, "thresholds": {"decision": 0.3,
                                                                         "high_specificity": 0.8}}))
    result = scan(slides[0], out, "--model", recalibrated)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "scan.json").read_text())
    assert report["tiles"]["resumed"] == KEPT_ROWS
    assert report["tumour_burden"]["decision"]["threshold"] == 0.3


def test_other_settings_are_refused(slides, tmp_path):
    out = tmp_path / "out"
    rows = killed_scan(slides[0], out, FIXTURES / "tiny_int8.tflite")
    # The slide's µm/px given by hand: another grid's place on the slide.
    assert_refused(scan(slides[0], out, "--model", FIXTURES / "tiny_int8.tflite", "--mpp", "0.5"),
                   "slide_mpp 0.486 there, 0.5 now", out, rows)
    assert_refused(scan(slides[0], out, "--model", FIXTURES / "tiny_int8.tflite", "--stride", "64"),
                   "holds a scan with other settings (stride 96 there, 64 now", out, rows)
    # Another decoder may give other pixels.
    assert_refused(scan(slides[0], out, "--model", FIXTURES / "tiny_int8.tflite", "--reader", "openslide"),
                   "reader 'tifffile' there, 'openslide' now", out, rows)


def test_a_log_of_tiles_enlarged_by_another_filter_is_refused(slides, tmp_path):
    """A slide read from a level a little coarser than PCam's (here: its µm/px given as 1.0) is enlarged; a log
    from a version that enlarged with another filter (its key names none) holds other pixels: not resumed."""
    out = tmp_path / "out"
    rows = killed_scan(slides[0], out, FIXTURES / "tiny_int8.tflite", "--mpp", "1.0")
    lines = (out / PROGRESS_FILE).read_text().splitlines()
    header = json.loads(lines[0].removeprefix("# "))
    assert header["settings"]["enlarge"] == "nearest"
    del header["settings"]["enlarge"]  # as a build that enlarged bilinearly wrote it
    (out / PROGRESS_FILE).write_text("\n".join(["# " + json.dumps(header, sort_keys=True), *lines[1:]]) + "\n")
    assert_refused(scan(slides[0], out, "--model", FIXTURES / "tiny_int8.tflite", "--mpp", "1.0"),
                   "enlarge not recorded there, 'nearest' now", out, rows)
    # a slide read at its own level is not enlarged, and its key is as before
    plain = tmp_path / "plain"
    assert scan(slides[0], plain, "--model", FIXTURES / "tiny_int8.tflite").returncode == 0
    assert "enlarge" not in json.loads((plain / PROGRESS_FILE).read_text().splitlines()[0].removeprefix("# "))["settings"]


def test_a_tile_row_outside_the_tissue_mask_is_ignored(slides, tmp_path):
    out = tmp_path / "out"
    result = scan(slides[0], out, "--model", FIXTURES / "tiny_int8.tflite")
    assert result.returncode == 0, result.stderr
    clean = json.loads((out / "scan.json").read_text())
    lines = (out / PROGRESS_FILE).read_text().splitlines()
    grid = clean["tiles"]["grid"]
    tissue = {tuple(map(int, line.split(",")[:2])) for line in lines[2:]}
    glass = next((r, c) for r in range(grid[0]) for c in range(grid[1]) if (r, c) not in tissue)
    # A certain-tumour row for a glass tile, as a kill between two runs of different versions could leave.
    (out / PROGRESS_FILE).write_text("\n".join([*lines, f"{glass[0]},{glass[1]},0,0,1.000000,0.5"]) + "\n")
    (out / "scan.json").unlink()

    result = scan(slides[0], out, "--model", FIXTURES / "tiny_int8.tflite")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "scan.json").read_text())
    assert report["tiles"]["tissue"] == clean["tiles"]["tissue"] == report["tiles"]["resumed"]
    for point in ("decision", "high_specificity"):
        assert report["tumour_burden"][point] == clean["tumour_burden"][point]
    assert [t["probability"] for t in report["top_tiles"]] == [t["probability"] for t in clean["top_tiles"]]
    assert any("outside the tissue mask" in w for w in report["warnings"])
    assert (out / PROGRESS_FILE).read_text().splitlines() == lines  # the row is gone from the file too


def key(**changes) -> ResumeKey:
    fields = dict(slide_digest="ab" * 32, slide_bytes=1000, model_sha256="cd" * 32,
                  settings={"tile": 96, "stride": 96, "mpp": 0.972, "level": 1, "grid": [2, 4],
                            "slide_mpp": 0.486, "reader": "tifffile"}, slide="/slides/a.tif")
    return ResumeKey(**{**fields, **changes})


def test_resume_key_names_what_differs():
    base = key()
    assert base.differences(key(slide="/elsewhere/b.tif")) == []
    assert base.differences(ResumeKey.from_header(base.header())) == []
    assert [d.split(" (")[0] for d in base.differences(key(slide_digest="ef" * 32))] == ["of another slide"]
    assert [d.split(" (")[0] for d in base.differences(key(slide_bytes=999))] == ["of another slide"]
    assert [d.split(" (")[0] for d in base.differences(key(model_sha256="00" * 32))] == ["by another model"]
    for name, value in (("stride", 48), ("mpp", 0.95), ("level", 0), ("grid", [3, 4]), ("slide_mpp", 0.5),
                        ("reader", "openslide")):
        other = key(settings={**base.settings, name: value})
        assert base.differences(other) == [f"with other settings ({name} {value!r} there, {base.settings[name]!r} now)"]


def write_tiles(path: Path, key_: ResumeKey, rows: list[str], tail: str = "") -> None:
    path.write_text(f"{key_.header()}\nrow,col,x,y,probability,sharpness\n" + "".join(f"{r}\n" for r in rows) + tail)


def test_tile_store_keeps_tissue_rows_and_drops_a_line_cut_by_a_kill(tmp_path):
    path = tmp_path / PROGRESS_FILE
    tissue = np.array([[False, True, True, True], [False, True, True, False]])
    write_tiles(path, key(), ["0,1,96,0,0.250000,0.31", "0,2,192,0,0.750000,0.02", "0,0,0,0,0.990000,0.5",
                              "1,3,288,96,0.900000,0.5"], tail="1,1,96,96,0.5,0.4")  # no newline: the process died
    store = TileStore(tmp_path, key())
    store.open(tissue)
    store.append([(1, 2)], [(192, 96)], np.array([0.125]), np.array([0.0123456789]))
    store.close()
    expected = np.full((2, 4), np.nan, np.float32)
    expected[0, 1], expected[0, 2], expected[1, 2] = 0.25, 0.75, 0.125
    np.testing.assert_array_equal(store.probabilities, expected)
    expected[0, 1], expected[0, 2], expected[1, 2] = 0.31, 0.02, 0.0123457
    np.testing.assert_array_equal(store.sharpness, expected)
    assert store.ignored == 2
    assert path.read_text().splitlines()[2:] == ["0,1,96,0,0.250000,0.31", "0,2,192,0,0.750000,0.02",
                                                 "1,2,192,96,0.125000,0.0123457"]


@pytest.mark.parametrize("line", ["-1,1,0,0,0.5,0.1", "0,4,0,0,0.5,0.1", "2,0,0,0,0.5,0.1", "0,1,0,0,nan,0.1",
                                  "0,1,0,0,1.5,0.1", "0,1,0,0,0.5,-1", "0,1,0,0,0.5,inf", "0,1,0,0,0.5",
                                  "0,1,0,0,0.5,0.1,0", "a,b,c,d,e,f"])
def test_tile_store_refuses_a_damaged_row(tmp_path, line):
    path = tmp_path / PROGRESS_FILE
    write_tiles(path, key(), ["0,2,192,0,0.750000,0.1", line])
    with pytest.raises(EdgePcamError, match="damaged line"):
        TileStore(tmp_path, key()).open(np.ones((2, 4), bool))


def test_tile_store_refuses_another_key_and_an_earlier_format(tmp_path):
    path = tmp_path / PROGRESS_FILE
    write_tiles(path, key(model_sha256="00" * 32), ["0,2,192,0,0.750000,0.1"])
    with pytest.raises(EdgePcamError, match="holds a scan by another model"):
        TileStore(tmp_path, key()).check()
    path.write_text('# {"grid": [2, 4], "model_sha256": "x", "slide": "/a.tif", "slide_bytes": 1000, '
                    '"stride": 96}\nrow,col,x,y,probability\n0,2,192,0,0.750000\n')
    with pytest.raises(EdgePcamError, match="earlier edge-pcam"):
        TileStore(tmp_path, key()).check()
    assert path.read_text().endswith("0,2,192,0,0.750000\n")  # refused, not replaced
    # The same log under its name before edge-pcam 0.2 (tiles.csv) is refused just the same, and kept.
    legacy = tmp_path / "tiles.csv"
    path.rename(legacy)
    with pytest.raises(EdgePcamError, match="tiles.csv: written by an earlier edge-pcam"):
        TileStore(tmp_path, key()).open(np.ones((2, 4), bool))
    assert legacy.read_text().endswith("0,2,192,0,0.750000\n") and not path.exists()


def test_a_log_named_tiles_csv_by_an_earlier_version_resumes_and_becomes_the_progress_log(slides, tmp_path):
    out = tmp_path / "out"
    rows = killed_scan(slides[0], out, FIXTURES / "tiny_int8.tflite")
    (out / PROGRESS_FILE).rename(out / "tiles.csv")  # the layout before edge-pcam 0.2
    result = scan(slides[0], out, "--model", FIXTURES / "tiny_int8.tflite")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "scan.json").read_text())["tiles"]["resumed"] == KEPT_ROWS
    assert (out / PROGRESS_FILE).read_text().splitlines()[2:2 + KEPT_ROWS] == rows
    assert (out / "tiles.csv").read_text().startswith("x,y,width,height,probability,row,col\n")


def test_slide_digest_tells_same_sized_slides_apart_by_sampling_and_tile_tables(slides, tmp_path, monkeypatch):
    import edge_pcam.runtime.scan.store as store

    a, b = slides
    copy = tmp_path / "copy.tif"
    shutil.copy(a, copy)
    for whole in (store.WHOLE_FILE_BYTES, 0):  # hashed whole, and sampled as a multi-GB slide is
        assert slide_digest(a, whole) == slide_digest(copy, whole)
        assert slide_digest(a, whole) != slide_digest(b, whole)
    # With no bytes sampled at all, the tiles' offsets and lengths alone still tell them apart.
    monkeypatch.setattr(store, "_sample_spans", lambda size: [])
    assert slide_digest(a, 0) == slide_digest(copy, 0) != slide_digest(b, 0)


@pytest.mark.skipif(not Path("/proc/self/io").is_file(), reason="needs Linux's /proc/self/io")
def test_slide_digest_reads_a_few_mib_of_a_multi_gb_slide(tmp_path):
    big = tmp_path / "big.svs"
    with open(big, "wb") as f:  # 4 GiB, sparse: takes no disk
        f.write(b"II*\x00")
        f.truncate(4 << 30)

    def read_bytes() -> int:
        return int(Path("/proc/self/io").read_text().split("rchar:")[1].split()[0])

    before = read_bytes()
    slide_digest(big)
    assert read_bytes() - before < 16 << 20


E, SB = 1 << 20, 64 << 10  # the digest's edge spans and sample spans: the first and last MiB, 64 KiB samples


def _expected_digest(data: bytes, tables: list[bytes] = ()) -> str:
    """SHA-256 of the method, the size, the first MiB, 64 samples evenly from the end of the first MiB to
    SB before the last MiB, the last MiB, then any TIFF tables, as slide_digest's docstring describes."""
    import hashlib

    size = len(data)
    h = hashlib.sha256(f"sha256-sampled-1:{size}:".encode())
    h.update(data[:E])
    inner = size - 2 * E - SB
    if inner > 0:
        for i in range(64):
            start = E + inner * i // 63
            h.update(data[start:start + SB])
    h.update(data[max(0, size - E):])
    for t in tables:
        h.update(t)
    return h.hexdigest()


@pytest.mark.parametrize("inner", [63 * 1000, 1, 0, -SB - E - 1000])
def test_slide_digest_hashes_the_size_and_the_documented_spans(tmp_path, inner):
    data = b"DATA" + np.random.default_rng(inner % 7).bytes(2 * E + SB + inner - 4)
    path = tmp_path / "slide.bin"
    path.write_bytes(data)
    if inner == 63 * 1000:  # the samples start every 1,000 bytes from the end of the first MiB
        assert [E + inner * i // 63 for i in (0, 1, 63)] == [E, E + 1000, E + 63000]
    assert slide_digest(path, whole_file_bytes=0) == _expected_digest(data)
    import hashlib
    whole = hashlib.sha256(f"sha256-sampled-1:{len(data)}:".encode() + data).hexdigest()
    assert slide_digest(path, whole_file_bytes=len(data)) == whole  # up to the limit, hashed whole
    assert slide_digest(path, whole_file_bytes=len(data) - 1) == _expected_digest(data)


def test_slide_digest_adds_each_tiff_pages_tile_tables_up_to_1024_pages(tmp_path):
    import tifffile

    path = tmp_path / "pages.tif"
    tifffile.imwrite(path, np.arange(1025 * 64, dtype=np.uint8).reshape(1025, 8, 8))
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1025
        tables = [np.array(getattr(page, name), dtype="<u8").tobytes() for page in tif.pages[:1024]
                  for name in ("dataoffsets", "databytecounts")]
    assert slide_digest(path, whole_file_bytes=0) == _expected_digest(path.read_bytes(), tables)


def test_resume_key_header_is_sorted_json_and_other_versions_are_not_keys():
    k = key()
    assert k.header() == (
        '# {"model_sha256": "' + "cd" * 32 + '", "settings": {"grid": [2, 4], "level": 1, "mpp": 0.972, '
        '"reader": "tifffile", "slide_mpp": 0.486, "stride": 96, "tile": 96}, "slide": "/slides/a.tif", '
        '"slide_bytes": 1000, "slide_digest": "' + "ab" * 32 + '", "version": 2}')
    assert ResumeKey.from_header(k.header().replace('"version": 2', '"version": 1')) is None


def test_resume_key_differences_in_words():
    base = key(model_sha256="a" * 12 + "1" * 52)
    other = key(model_sha256="b" * 12 + "2" * 52, settings={**base.settings, "tile": 128, "stride": 64})
    assert base.differences(other) == [  # the first 12 hex digits of each model's SHA-256
        "by another model (sha256 bbbbbbbbbbbb there, aaaaaaaaaaaa now)",
        "with other settings (tile 128 there, 96 now; stride 64 there, 96 now)"]
