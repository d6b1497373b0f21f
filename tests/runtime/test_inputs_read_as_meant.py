"""Inputs are read as meant or refused in one line naming the file (issue 14, item 2).

Each class of input is a table of cases (`LABEL_CASES`, `BAD_HDF5`, ...) with
the outcome it must have, so the rows can join the bad-input matrix. Runs in
both venvs.
"""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from edge_pcam.errors import DataError, EdgePcamError
from edge_pcam.runtime.classify import classify
from edge_pcam.runtime.datasets import open_dataset
from edge_pcam.runtime.datasets.synthetic import synthetic_patch
from edge_pcam.runtime.interpreter import load_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INT8 = FIXTURES / "models" / "tiny_int8.tflite"
VALID_X = "camelyonpatch_level_2_split_valid_x.h5"
VALID_Y = "camelyonpatch_level_2_split_valid_y.h5"


@pytest.fixture(scope="module")
def model():
    return load_model(INT8, threads=1)


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_pcam", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command (asserting there is no traceback and exit code 2)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("edge-pcam: error: ")
    return lines[0]


def patch(i: int = 0) -> np.ndarray:
    return synthetic_patch(0, i)[0]


def png_header(width: int, height: int) -> bytes:
    """A PNG that announces `width` x `height` (its pixels are not there: only the header is read)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


# --- folders: only PCam's label files are skipped ------------------------------------------

def test_images_named_like_label_files_are_patches_and_only_hdf5_labels_are_skipped(tmp_path, model):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("slide_y.png", "a_y.jpg", "plain.png"):
        Image.fromarray(patch()).save(folder / name)
    with h5py.File(folder / VALID_X, "w") as f:
        f["x"] = np.stack([patch(i) for i in range(3)])
    for name in (VALID_Y, "other_y.hdf5"):
        with h5py.File(folder / name, "w") as f:
            f["y"] = np.zeros((3, 1, 1, 1), np.uint8)
    (folder / "camelyonpatch_level_2_split_test_y.h5.gz").write_bytes(b"labels, gzipped")
    (folder / "camelyonpatch_level_2_split_test_x.h5.gz").write_bytes(b"patches, gzipped")
    result = classify([folder], model)
    names = sorted(Path(p.path.split("#")[0]).name for p in result.predictions)
    assert names == sorted(["a_y.jpg", "plain.png", "slide_y.png", VALID_X, VALID_X, VALID_X])
    # the gzipped patch file is not silently ignored: it is reported; the gzipped labels are skipped
    assert [(Path(e.path).name, "decompress" in e.error) for e in result.errors] == [
        ("camelyonpatch_level_2_split_test_x.h5.gz", True)]


# --- HDF5 labels: integers, or floats that are exactly 0 or 1 -----------------------------

LABEL_CASES = [  # (labels in y, expected: counts (normal, tumour) or the error's text)
    (np.array([0, 1, 1], np.uint8), (1, 2)),
    (np.array([0, 1, 0], np.int64), (2, 1)),
    (np.array([True, False, True]), (1, 2)),
    (np.array([0.0, 1.0, 1.0], np.float32), (1, 2)),
    (np.array([0.0, 0.9, 1.0]), "found 0.9 at row 1 (1 such row)"),
    (np.array([0.1, 0.9, 0.9], np.float32), "at row 0 (3 such rows)"),
    (np.array([0, 2, 1], np.int64), "found 2 at row 1"),
    (np.array([0, -1, 1], np.int8), "found -1 at row 1"),
    (np.array([0.0, 1.0, np.nan]), "found nan at row 2"),
    (np.array([b"0", b"1", b"1"]), "holds |S1 values, expected integer labels 0 or 1"),
]


@pytest.mark.parametrize("labels,expected", LABEL_CASES, ids=lambda v: str(getattr(v, "dtype", v)))
def test_hdf5_labels_are_integers_or_exact_floats(tmp_path, labels, expected):
    with h5py.File(tmp_path / VALID_X, "w") as f:
        f["x"] = np.zeros((3, 96, 96, 3), np.uint8)
    with h5py.File(tmp_path / VALID_Y, "w") as f:
        f["y"] = labels.reshape(3, 1, 1, 1)
    if isinstance(expected, tuple):
        counts = open_dataset(str(tmp_path)).counts()["valid"]
        assert (counts["normal"], counts["tumour"]) == expected
        return
    with pytest.raises(DataError) as err:
        open_dataset(str(tmp_path))
    message = str(err.value)
    assert message.startswith(f"{tmp_path / VALID_Y}: labels must be 0 or 1") or "expected integer" in message
    assert expected in message and "\n" not in message


def test_cli_data_info_refuses_fractional_labels_in_one_line(tmp_path):
    with h5py.File(tmp_path / VALID_X, "w") as f:
        f["x"] = np.zeros((2, 96, 96, 3), np.uint8)
    with h5py.File(tmp_path / VALID_Y, "w") as f:
        f["y"] = np.array([0.9, 0.2]).reshape(2, 1, 1, 1)  # read as 0 and 0 ("0 tumour") before
    line = one_line_error(cli("data", "info", str(tmp_path)))
    assert VALID_Y in line and "found 0.9 at row 0" in line


# --- HDF5 files whose x or y is not a dataset ----------------------------------------------

def _group_x(f):
    f.create_group("x")


def _dangling_x(f):
    f["x"] = h5py.SoftLink("/nowhere")


def _external_x(f):
    f["x"] = h5py.ExternalLink("missing-file.h5", "/x")


BAD_HDF5 = [  # (how x is made, what the error says)
    (_group_x, "'x' is a group, not a dataset"),
    (_dangling_x, "no 'x' dataset"),
    (_external_x, "x"),
]


@pytest.mark.parametrize("make,expected", BAD_HDF5, ids=["group", "dangling-link", "external-link"])
def test_predict_reports_an_hdf5_without_an_x_dataset_and_goes_on(tmp_path, model, make, expected):
    bad = tmp_path / "bad_x.h5"
    with h5py.File(bad, "w") as f:
        make(f)
    good = tmp_path / "good.png"
    Image.fromarray(patch()).save(good)
    result = classify([bad, good], model)
    assert [Path(p.path).name for p in result.predictions] == ["good.png"]
    assert len(result.errors) == 1 and Path(result.errors[0].path).name == "bad_x.h5"
    assert expected in result.errors[0].error


def test_data_spec_with_y_a_group_is_one_line(tmp_path):
    with h5py.File(tmp_path / VALID_X, "w") as f:
        f["x"] = np.zeros((2, 96, 96, 3), np.uint8)
    with h5py.File(tmp_path / VALID_Y, "w") as f:
        f.create_group("y")
    line = one_line_error(cli("data", "info", str(tmp_path)))
    assert VALID_Y in line and "'y' is a group, not a dataset" in line


# --- images above Pillow's size limit -------------------------------------------------------

@pytest.mark.parametrize("side", [20_000, 10_000], ids=["over-twice-the-limit", "over-the-limit"])
def test_decompression_bomb_is_a_per_file_error(tmp_path, model, side):
    assert side * side > Image.MAX_IMAGE_PIXELS  # 10,000^2 is only warned about by Pillow itself
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(png_header(side, side))
    good = tmp_path / "good.png"
    Image.fromarray(patch()).save(good)
    result = classify([bomb, good], model)
    assert [Path(p.path).name for p in result.predictions] == ["good.png"]
    assert [Path(e.path).name for e in result.errors] == ["huge.png"]
    assert "Pillow's safety limit" in result.errors[0].error


def test_cli_predict_goes_on_after_a_bomb(tmp_path):
    (tmp_path / "huge.png").write_bytes(png_header(30_000, 30_000))
    Image.fromarray(patch()).save(tmp_path / "good.png")
    proc = cli("predict", str(tmp_path), "--model", str(INT8))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    rows = list(csv.DictReader(proc.stdout.splitlines()))
    assert [Path(r["path"]).name for r in rows] == ["good.png"]
    assert "skipped" in proc.stderr and "huge.png" in proc.stderr and "safety limit" in proc.stderr


# --- Kaggle label CSVs ----------------------------------------------------------------------

def _kaggle(folder: Path, csv_bytes: bytes) -> None:
    (folder / "train").mkdir(parents=True)
    for name in ("aaa", "bbb"):
        Image.fromarray(patch()).save(folder / "train" / f"{name}.tif")
    (folder / "train_labels.csv").write_bytes(csv_bytes)


KAGGLE_CSV = [  # (file bytes, expected: number of rows or the error's text)
    (b"id,label\naaa,1\nbbb,0\n", 2),
    (b"\xef\xbb\xbfid,label\naaa,1\nbbb,0\n", 2),  # a byte-order mark, as spreadsheets write
    ("id,label\naaa,1\nbbb,0\n".encode("utf-16"), "not UTF-8 text (found byte 0xff)"),
    (b"id,label\naaa,1\nbbb\xe9,0\n", "not UTF-8 text (found byte 0xe9)"),
    (b"id,label\n" + b"a" * 200_000 + b",1\n", "not a readable CSV file (field larger than field limit"),
]


@pytest.mark.parametrize("content,expected", KAGGLE_CSV, ids=["utf8", "bom", "utf16", "latin1", "huge-field"])
def test_kaggle_label_csv_encodings(tmp_path, content, expected):
    _kaggle(tmp_path, content)
    if isinstance(expected, int):
        ds = open_dataset(str(tmp_path))
        assert sum(len(s) for s in ds.splits.values()) == expected
        return
    line = one_line_error(cli("data", "info", str(tmp_path)))
    assert "train_labels.csv" in line and expected in line


# --- file names that are not valid UTF-8 ----------------------------------------------------

LATIN1 = b"na\xefve.png"  # "naive" with a diaeresis, in Latin-1: not valid UTF-8


@pytest.fixture
def odd_names(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    try:
        Image.fromarray(patch()).save(os.path.join(os.fsencode(folder), LATIN1))
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    Image.fromarray(patch(1)).save(folder / "été.png")  # valid UTF-8: written as it is
    return folder


def test_predict_writes_undecodable_names_escaped_and_whole(odd_names, tmp_path):
    out_csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    out_csv.write_text("an earlier file that must be replaced whole\n" * 50)
    proc = cli("predict", str(odd_names), "--model", str(INT8), "--csv", str(out_csv), "--json", str(out_json))
    assert proc.returncode == 0, proc.stderr
    expected = {f"{odd_names}/na\\xefve.png", f"{odd_names}/été.png"}
    rows = list(csv.DictReader(out_csv.read_text(encoding="utf-8").splitlines()))
    assert {r["path"] for r in rows} == expected and "earlier" not in out_csv.read_text()
    doc = json.loads(out_json.read_bytes().decode("utf-8"))  # strict UTF-8: no lone surrogates
    assert {p["path"] for p in doc["predictions"]} == expected
    # the documented way back to the name's bytes
    escaped = next(p for p in expected if "xef" in p)
    import re
    raw = re.sub(rb"\\x([89a-f][0-9a-f])", lambda m: bytes.fromhex(m[1].decode()), escaped.encode())
    assert os.path.isfile(raw) and raw.endswith(LATIN1)
    stdout = cli("predict", str(odd_names), "--model", str(INT8))  # CSV on stdout too
    assert stdout.returncode == 0 and f"{odd_names}/na\\xefve.png," in stdout.stdout


def test_gradcam_index_takes_undecodable_names(odd_names, tmp_path):
    out = tmp_path / "cams"
    proc = cli("gradcam", str(odd_names), "--model", str(INT8), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((out / "gradcam.csv").read_text(encoding="utf-8").splitlines()))
    assert {r["path"] for r in rows} == {f"{odd_names}/na\\xefve.png", f"{odd_names}/été.png"}
    assert all((out / r["overlay"]).is_file() for r in rows)


def test_unreadable_file_with_an_undecodable_name_is_reported(odd_names, model):
    (Path(os.fsdecode(os.path.join(os.fsencode(odd_names), b"bro\xefken.png")))).write_bytes(b"not an image")
    result = classify([odd_names], model)
    assert [e.path for e in result.errors] == [f"{odd_names}/bro\\xefken.png"]
    json.dumps([e.path for e in result.errors], ensure_ascii=False).encode("utf-8")  # encodable


# --- thread counts ---------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [0, -3, 65, 100_000, 3_000_000_000])
def test_thread_counts_outside_what_an_interpreter_can_start_are_refused(threads):
    with pytest.raises(EdgePcamError, match=f"threads must be 1 to 64 .*got {threads}"):
        load_model(INT8, threads=threads)


def test_cli_refuses_a_huge_thread_count_in_one_line_before_any_output(tmp_path):
    Image.fromarray(patch()).save(tmp_path / "p.png")
    line = one_line_error(cli("predict", str(tmp_path / "p.png"), "--model", str(INT8), "--threads", "100000",
                              "--csv", str(tmp_path / "out.csv")))  # crashed with SIGSEGV before
    assert "threads must be 1 to 64" in line and not (tmp_path / "out.csv").exists()
    line = one_line_error(cli("bench", "--data", "synthetic:20", "--out", str(tmp_path / "bench"),
                              "--threads", "1,100000", "--no-cold-start", "--no-peak", "--no-paired"))
    assert "--threads 1,100000" in line and not (tmp_path / "bench").exists()


# --- evaluate on data with one class only ----------------------------------------------------

def test_cli_evaluate_on_one_class_warns_and_gives_no_auc(tmp_path):
    folder = tmp_path / "lab" / "valid" / "tumour"
    folder.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(patch(i)).save(folder / f"p{i}.png")
    proc = cli("evaluate", str(INT8), "--data", str(tmp_path / "lab"), "--json", str(tmp_path / "m.json"))
    assert proc.returncode == 0, proc.stderr
    assert "edge-pcam: warning: only tumour patches (4)" in proc.stderr
    assert "nan" not in proc.stdout.lower()
    doc = json.loads((tmp_path / "m.json").read_text())
    assert set(doc["metrics"]) == {"decision", "triage"} and doc["warnings"]
    assert all(p["auc"] is None and p["specificity"] is None for p in doc["metrics"].values())
