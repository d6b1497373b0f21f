"""Every reader on small data made here (image folders, PCam HDF5 and .h5.gz, Kaggle TIFFs),
the real subset, and one-line errors for bad input (library and command line)."""

import csv
import gzip
import subprocess
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets import open_dataset
from edge_pcam.runtime.datasets import hdf5 as hdf5_reader
from edge_pcam.runtime.datasets.kaggle import split_of
from edge_pcam.runtime.datasets.progress import silent


def _patches(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)


def _write_h5(folder, split, x, y, y_key="y", x_key="x"):
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / hdf5_reader.file_name(split, "x"), "w") as f:
        f.create_dataset(x_key, data=x, chunks=(1, *x.shape[1:]))
    with h5py.File(folder / hdf5_reader.file_name(split, "y"), "w") as f:
        f.create_dataset(y_key, data=np.asarray(y, np.uint8).reshape(-1, 1, 1, 1))


def _gzip(path):
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
    return gz


# --- image folders -------------------------------------------------------------------------------

def test_image_folder_labels_come_from_folder_names(tmp_path):
    pixels = _patches(7, 1)
    layout = [("train", "0", 0), ("train", "0", 1), ("train", "1", 2), ("train", "tumour", 3),
              ("valid", "normal", 4), ("valid", "1", 5), ("valid", "1", 6)]
    for split, label, i in layout:
        (tmp_path / split / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i]).save(tmp_path / split / label / f"p{i}.png")
    (tmp_path / "train" / "0" / "notes.txt").write_text("ignored")
    ds = open_dataset(str(tmp_path))
    assert ds.kind == "image folder"
    assert ds.counts() == {"train": {"normal": 2, "tumour": 2}, "valid": {"normal": 1, "tumour": 2}}
    train = ds.split("train")
    assert len(train.files()) == 4 and all(f.endswith(".png") for f in train.files())
    # rows keep their file: reading row r gives the pixels written to files()[r]
    for row, path in enumerate(train.files()):
        i = int(Path(path).stem[1:])
        assert np.array_equal(train.read([row])[0], pixels[i])
        assert train.labels[row] == (i >= 2)
    assert train.read([3, 0, 3]).shape == (3, 96, 96, 3)
    ds.check()


def test_image_folder_errors_name_the_file(tmp_path):
    (tmp_path / "train" / "0").mkdir(parents=True)
    (tmp_path / "train" / "1").mkdir(parents=True)
    with pytest.raises(DataError, match=r"train: label folders \(0, 1\) hold no images"):
        open_dataset(str(tmp_path))
    Image.fromarray(_patches(1)[0]).save(tmp_path / "train" / "0" / "good.png")
    Image.fromarray(_patches(1)[0][:64, :64]).save(tmp_path / "train" / "1" / "small.png")
    ds = open_dataset(str(tmp_path))          # opening lists names only
    with pytest.raises(DataError, match=r"small\.png: 64x64 RGB image, not a 96x96 RGB patch"):
        ds.check()
    with pytest.raises(DataError, match=r"small\.png"):
        ds.split("train").read([0, 1])


def test_missing_empty_and_unknown_specs(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        open_dataset(str(tmp_path / "absent"))
    with pytest.raises(DataError, match="no PCam data found"):
        open_dataset(str(tmp_path))
    with pytest.raises(DataError, match="unknown data scheme 'gcs:'"):
        open_dataset("gcs:bucket/pcam")
    with pytest.raises(DataError, match="tfds:other: only tfds:patch_camelyon"):
        open_dataset("tfds:other")


def test_real_subset_counts_and_labels(subset_dir):
    ds = open_dataset(str(subset_dir))
    assert ds.counts() == {"train": {"normal": 10000, "tumour": 10000}, "valid": {"normal": 1500, "tumour": 1500}}
    with (subset_dir / "labels.csv").open() as fh:
        expected = {str(subset_dir / r["path"]): int(r["label"]) for r in csv.DictReader(fh)}
    for split in ds.splits.values():
        assert {f: int(l) for f, l in zip(split.files(), split.labels)} == \
            {f: l for f, l in expected.items() if f"/{split.name}/" in f}
    valid = ds.split("valid")
    rows = np.arange(0, len(valid), 300)
    images = valid.read(rows)
    assert images.shape == (len(rows), 96, 96, 3) and images.dtype == np.uint8
    assert np.array_equal(images[1], np.asarray(Image.open(valid.files()[rows[1]])))


# --- official HDF5 -------------------------------------------------------------------------------

def test_hdf5_reads_rows_in_any_order(tmp_path):
    x, y = _patches(30, 2), np.arange(30) % 3 == 0
    _write_h5(tmp_path, "valid", x, y)
    _write_h5(tmp_path, "test", x[:10], y[:10])
    ds = open_dataset(str(tmp_path))
    assert ds.kind == "pcam hdf5" and set(ds.splits) == {"valid", "test"}
    valid = ds.split("valid")
    assert np.array_equal(valid.labels, y.astype(np.uint8))
    for idx in ([5, 6, 7, 8], [29, 0, 14, 14, 3], [12]):
        assert np.array_equal(valid.read(idx), x[idx])
    assert valid.ids()[4].endswith("split_valid_x.h5#4") and valid.files() is None
    with pytest.raises(IndexError):
        valid.read([30])


def test_hdf5_open_does_not_load_the_images(tmp_path):
    x = _patches(600, 3)   # 16.6 MB of pixels
    _write_h5(tmp_path, "train", x, np.zeros(600))
    del x
    tracemalloc.start()
    ds = open_dataset(str(tmp_path))
    _, peak = tracemalloc.get_traced_memory()
    batch = ds.split("train").read(np.arange(64))
    _, peak_read = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(ds.split("train")) == 600 and batch.shape == (64, 96, 96, 3)
    assert peak < 2_000_000 and peak_read < 8_000_000


def test_hdf5_gz_is_decompressed_once_and_resumes(tmp_path):
    x, y = _patches(40, 4), np.arange(40) % 2
    _write_h5(tmp_path, "train", x, y)
    xh5 = tmp_path / hdf5_reader.file_name("train", "x")
    original = xh5.read_bytes()
    for array in ("x", "y"):
        _gzip(tmp_path / hdf5_reader.file_name("train", array))
        (tmp_path / hdf5_reader.file_name("train", array)).unlink()
    # An interrupted earlier run left the first third in the part file.
    part = xh5.with_name(xh5.name + ".part")
    part.write_bytes(original[: len(original) // 3])
    ds = hdf5_reader.open(tmp_path, progress=silent)
    assert xh5.read_bytes() == original and not part.exists()
    assert np.array_equal(ds.split("train").read([3, 39]), x[[3, 39]])
    assert np.array_equal(ds.split("train").labels, y)
    # A second open reuses the decompressed file.
    mtime = xh5.stat().st_mtime_ns
    open_dataset(str(tmp_path))
    assert xh5.stat().st_mtime_ns == mtime


def test_stale_part_file_restarts_and_corrupt_gzip_is_an_error(tmp_path):
    payload = np.random.default_rng(5).bytes(300_000)
    gz = tmp_path / "a.h5.gz"
    gz.write_bytes(gzip.compress(payload))
    (tmp_path / "a.h5.part").write_bytes(b"x" * 400_000)   # longer than the stream: stale
    assert hdf5_reader.decompress(gz, progress=silent).read_bytes() == payload
    bad = tmp_path / "b.h5.gz"
    bad.write_bytes(gzip.compress(payload)[:5000])
    with pytest.raises(DataError, match=r"b\.h5\.gz: corrupt or truncated gzip"):
        hdf5_reader.decompress(bad, progress=silent)
    assert not (tmp_path / "b.h5").exists()


def test_hdf5_errors_name_the_file_and_problem(tmp_path):
    x = _patches(5)
    _write_h5(tmp_path / "nox", "valid", x, np.zeros(5), x_key="images")
    with pytest.raises(DataError, match=r"split_valid_x\.h5: no 'x' dataset \(has: images\)"):
        open_dataset(str(tmp_path / "nox"))
    _write_h5(tmp_path / "noy", "valid", x, np.zeros(5), y_key="labels")
    with pytest.raises(DataError, match=r"split_valid_y\.h5: no 'y' dataset"):
        open_dataset(str(tmp_path / "noy"))
    _write_h5(tmp_path / "short", "valid", x, np.zeros(4))
    with pytest.raises(DataError, match=r"split_valid_x\.h5: 5 patches but camelyonpatch_level_2_split_valid_y\.h5 has 4"):
        open_dataset(str(tmp_path / "short"))
    _write_h5(tmp_path / "half", "test", x, np.zeros(5))
    (tmp_path / "half" / hdf5_reader.file_name("test", "y")).unlink()
    with pytest.raises(DataError, match=r"split_test_y\.h5: missing"):
        open_dataset(str(tmp_path / "half"))
    _write_h5(tmp_path / "shape", "test", x[:, :64], np.zeros(5))
    with pytest.raises(DataError, match=r"'x' is uint8 \(5, 64, 96, 3\)"):
        open_dataset(str(tmp_path / "shape"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / hdf5_reader.file_name("valid", "x")).write_text("not hdf5")
    (tmp_path / "junk" / hdf5_reader.file_name("valid", "y")).write_text("not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        open_dataset(str(tmp_path / "junk"))


# --- Kaggle ----------------------------------------------------------------------------------------

def _kaggle(folder, n, seed=6):
    (folder / "train").mkdir(parents=True)
    pixels = _patches(n, seed)
    ids = [f"{i:040x}" for i in np.random.default_rng(seed).integers(0, 2**62, n)]
    with (folder / "train_labels.csv").open("w") as fh:
        fh.write("id,label\n")
        for i, patch_id in enumerate(ids):
            tifffile.imwrite(folder / "train" / f"{patch_id}.tif", pixels[i], photometric="rgb")
            fh.write(f"{patch_id},{i % 2}\n")
    return ids, pixels


def test_kaggle_split_is_a_deterministic_hash_of_the_id(tmp_path):
    ids, pixels = _kaggle(tmp_path, 60)
    ds = open_dataset(str(tmp_path))
    assert ds.kind == "kaggle"
    by_file = {}
    for split in ds.splits.values():
        for row, path in enumerate(split.files()):
            patch_id = Path(path).stem
            assert split_of(patch_id) == split.name
            by_file[patch_id] = (split, row)
    assert sorted(by_file) == sorted(ids)
    for i in (0, 7, 31):
        split, row = by_file[ids[i]]
        assert np.array_equal(split.read([row])[0], pixels[i]) and split.labels[row] == i % 2
    # the division depends only on the id: rows listed in another order fall the same way
    csv_path = tmp_path / "train_labels.csv"
    header, *rows = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([header, *reversed(rows)]) + "\n")
    reordered = open_dataset(str(tmp_path))
    assert {n: sorted(s.files()) for n, s in reordered.splits.items()} == \
        {n: sorted(s.files()) for n, s in ds.splits.items()}
    shares = np.mean([split_of(f"{i:08d}") == "valid" for i in range(5000)])
    assert 0.08 < shares < 0.12


def test_kaggle_errors(tmp_path):
    ids, _ = _kaggle(tmp_path / "k", 4)
    (tmp_path / "k" / "train" / f"{ids[2]}.tif").unlink()
    with pytest.raises(DataError, match=rf"line 4: image .*{ids[2]}\.tif not found"):
        open_dataset(str(tmp_path / "k"))
    (tmp_path / "k" / "train_labels.csv").write_text("name,class\nabc,1\n")
    with pytest.raises(DataError, match=r"train_labels\.csv: expected a header 'id,label'"):
        open_dataset(str(tmp_path / "k"))


# --- the command line --------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "edge_pcam", *args], capture_output=True, text=True, timeout=120)


def test_cli_bad_input_is_one_line_without_traceback(tmp_path):
    _write_h5(tmp_path / "noy", "valid", _patches(3), np.zeros(3), y_key="labels")
    (tmp_path / "img" / "valid" / "1").mkdir(parents=True)
    Image.fromarray(_patches(1)[0][..., 0], "L").save(tmp_path / "img" / "valid" / "1" / "grey.png")
    (tmp_path / "empty").mkdir()
    cases = [(["data", "info", str(tmp_path / "absent")], "no such file or folder"),
             (["data", "info", str(tmp_path / "empty")], "no PCam data found"),
             (["data", "info", "ftp:pcam"], "unknown data scheme"),
             (["data", "info", str(tmp_path / "noy")], "no 'y' dataset"),
             (["data", "info", "--check", str(tmp_path / "img")], "grey.png: 96x96 L image")]
    for args, message in cases:
        run = _cli(*args)
        assert run.returncode != 0, args
        assert "Traceback" not in run.stderr, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edge-pcam: error:") and message in lines[0], run.stderr


def test_cli_info_counts_a_folder(tmp_path):
    _write_h5(tmp_path, "valid", _patches(6), [0, 1, 1, 0, 1, 1])
    run = _cli("data", "info", str(tmp_path))
    assert run.returncode == 0, run.stderr
    row = next(line for line in run.stdout.splitlines() if "valid" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["valid", "2", "4", "6"]
