"""Several --data sources as one dataset (A+B), and source filters on an image folder's labels.csv."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets import open_dataset
from edge_pcam.runtime.datasets.combined import ConcatSplit, SubsetSplit, join_sources, split_sources
from edge_pcam.runtime.datasets.base import ArraySplit


def _patches(value: int, n: int) -> np.ndarray:
    """n patches whose every pixel is `value + row` (so a read names its row)."""
    return (np.arange(n, dtype=np.uint8)[:, None, None, None] + value + np.zeros((1, 96, 96, 3), np.uint8))


def test_concat_split_maps_rows_to_their_source_in_any_order():
    a = ArraySplit("train", _patches(0, 3), np.array([0, 1, 0]))
    b = ArraySplit("train", _patches(100, 2), np.array([1, 1]))
    both = ConcatSplit("train", [a, b])
    assert len(both) == 5
    assert both.labels.tolist() == [0, 1, 0, 1, 1]
    rows = both.read([4, 0, 3, 2])
    assert rows[:, 0, 0, 0].tolist() == [101, 0, 100, 2]
    assert both.ids() == ["train#0", "train#1", "train#2", "train#0", "train#1"]
    with pytest.raises(IndexError):
        both.read([5])


def test_subset_split_reads_through_its_indices():
    base = ArraySplit("train", _patches(10, 6), np.array([0, 0, 1, 1, 0, 1]))
    sub = SubsetSplit(base, [5, 1], "tuning")
    assert sub.labels.tolist() == [1, 0]
    assert sub.read([1, 0])[:, 0, 0, 0].tolist() == [11, 15]


def test_plus_joins_sources_and_keeps_each_split(tmp_path):
    one, two = open_dataset("synthetic:40"), open_dataset("synthetic:20:7")
    both = open_dataset("synthetic:40+synthetic:20:7")
    assert both.spec == "synthetic:40+synthetic:20:7"
    for name in one.splits:
        assert len(both.split(name)) == len(one.split(name)) + len(two.split(name))
        np.testing.assert_array_equal(both.split(name).labels,
                                      np.r_[one.split(name).labels, two.split(name).labels])
    last = len(both.split("train")) - 1
    np.testing.assert_array_equal(both.split("train").read([last]),
                                  two.split("train").read([len(two.split("train")) - 1]))


def test_split_sources_keeps_an_existing_path_with_a_plus_whole(tmp_path):
    odd = tmp_path / "a+b"
    odd.mkdir()
    assert split_sources(str(odd)) == [str(odd)]
    assert split_sources("x+y") == ["x", "y"]
    assert join_sources(["x", "y"]) == "x+y"
    with pytest.raises(DataError, match="empty source"):
        split_sources("x++y")


def _folder_with_sources(root):
    """train/{0,1}/ images and a labels.csv naming each file's source."""
    rows = []
    for i, (label, source) in enumerate([(0, "lab-a"), (1, "lab-a"), (0, "lab-b"), (0, "lab-c"), (1, "lab-c")]):
        path = root / "train" / str(label) / f"p{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((96, 96, 3), 10 * i, np.uint8)).save(path)
        rows.append({"file": f"train/{label}/p{i}.png", "label": label, "source": source})
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["file", "label", "source"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_source_filters_keep_or_drop_rows_by_labels_csv(tmp_path):
    root = _folder_with_sources(tmp_path / "extra")
    drop_b = open_dataset(f"{root}?exclude_source=lab-b").split("train")
    assert sorted(v // 10 for v in drop_b.read(range(len(drop_b)))[:, 0, 0, 0]) == [0, 1, 3, 4]
    only = open_dataset(f"{root}?source=lab-b,lab-c").split("train")
    assert sorted(v // 10 for v in only.read(range(len(only)))[:, 0, 0, 0]) == [2, 3, 4]
    assert only.labels.sum() == 1
    assert len(only.files()) == 3


def test_source_filter_errors_are_one_line(tmp_path):
    root = _folder_with_sources(tmp_path / "extra")
    with pytest.raises(DataError, match="lab-x is not a source"):
        open_dataset(f"{root}?exclude_source=lab-x")
    with pytest.raises(DataError, match="unknown filter"):
        open_dataset(f"{root}?colour=blue")
    (root / "labels.csv").write_text("file,label\ntrain/0/p0.png,0\n")
    with pytest.raises(DataError, match="'source' columns"):
        open_dataset(f"{root}?source=lab-a")


def test_real_subset_and_extra_join_without_the_hard_negatives(subset_dir, extra_dir):
    extra = extra_dir
    with open(extra / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if r["source"] != "MartiHan"]
    both = open_dataset(f"{subset_dir}+{extra}?exclude_source=MartiHan")
    train = both.split("train")
    assert len(train) == 20000 + len(kept)
    assert int(train.labels.sum()) == 10000 + sum(int(r["label"]) for r in kept)
    assert len(both.split("valid")) == 3000  # pcam-extra has no valid split
