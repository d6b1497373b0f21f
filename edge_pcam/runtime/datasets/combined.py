"""Several `--data` sources as one dataset, and row subsets of a split.

`A+B` (or `--data A --data B` where a command takes it more than once) opens
each source and joins splits of the same name, rows of A first, then B. A
folder source may carry a filter on the `source` column of its `labels.csv`
(as `../shared/data/pcam-extra` has):

    ../shared/data/pcam-extra?exclude_source=MartiHan     every row but those
    ../shared/data/pcam-extra?source=tanquangduong         only those (comma-separated list)

Everything here is plain numpy: the device reads the same specs.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets.base import PATCH_SHAPE, PatchDataset, Split

SEPARATOR = "+"
FILTER_KEYS = ("source", "exclude_source")


class SubsetSplit(Split):
    """The rows `indices` of `base`, in that order, under a new name."""

    def __init__(self, base: Split, indices: Sequence[int] | np.ndarray, name: str):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.name = name
        self.labels = base.labels[self.indices]

    def read(self, indices):
        return self.base.read(self.indices[np.asarray(indices, dtype=np.int64)])

    def ids(self) -> list[str]:
        ids = self.base.ids()
        return [ids[i] for i in self.indices]

    def files(self) -> list[str] | None:
        files = self.base.files()
        return None if files is None else [files[i] for i in self.indices]

    def check(self) -> None:
        self.base.check()  # validates the base split's files (once: readers remember)


class ConcatSplit(Split):
    """Splits of the same name from several sources, one after the other."""

    def __init__(self, name: str, parts: Sequence[Split]):
        self.name = name
        self.parts = list(parts)
        self.labels = np.concatenate([p.labels for p in self.parts]).astype(np.uint8)
        self._starts = np.cumsum([0] + [len(p) for p in self.parts])

    def read(self, indices):
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.name}: row index out of range 0..{len(self) - 1}")
        out = np.empty((idx.size, *PATCH_SHAPE), np.uint8)
        part_of = np.searchsorted(self._starts, idx, side="right") - 1
        for k, part in enumerate(self.parts):
            rows = np.flatnonzero(part_of == k)
            if rows.size:
                out[rows] = part.read(idx[rows] - self._starts[k])
        return out

    def ids(self) -> list[str]:
        return [i for p in self.parts for i in p.ids()]

    def files(self) -> list[str] | None:
        files = [p.files() for p in self.parts]
        return None if any(f is None for f in files) else [f for fs in files for f in fs]

    def check(self) -> None:
        for part in self.parts:
            part.check()


def split_sources(spec: str) -> list[str]:
    """The sources of `A+B+...`; a spec that is itself an existing path is one source."""
    if SEPARATOR not in spec or Path(spec).exists():
        return [spec]
    parts = [p.strip() for p in spec.split(SEPARATOR)]
    if any(not p for p in parts):
        raise DataError(f"{spec}: empty source in a '{SEPARATOR}'-joined --data spec")
    return parts


def join_sources(specs: Sequence[str]) -> str:
    """One spec string naming every source (what a run folder records)."""
    return SEPARATOR.join(specs)


def combine(datasets: Sequence[PatchDataset], spec: str) -> PatchDataset:
    """One dataset whose splits join the sources' splits of the same name."""
    names = [n for ds in datasets for n in ds.splits]
    splits: dict[str, Split] = {}
    for name in dict.fromkeys(names):
        parts = [ds.splits[name] for ds in datasets if name in ds.splits]
        splits[name] = parts[0] if len(parts) == 1 else ConcatSplit(name, parts)
    kinds = " + ".join(dict.fromkeys(ds.kind for ds in datasets))
    return PatchDataset(spec=spec, kind=f"{kinds} ({len(datasets)} sources)", splits=splits)


def parse_filter(spec: str) -> tuple[str, dict[str, set[str]]]:
    """`PATH?key=a,b&key2=c` -> (PATH, {key: {a, b}, ...}); no `?` -> (spec, {})."""
    if "?" not in spec or Path(spec).exists():
        return spec, {}
    path, _, query = spec.partition("?")
    filters: dict[str, set[str]] = {}
    for item in query.split("&"):
        key, sep, values = item.partition("=")
        if not sep or key not in FILTER_KEYS or not values:
            raise DataError(f"{spec}: unknown filter '{item}' (use ?source=NAME[,NAME] or ?exclude_source=NAME[,NAME])")
        filters[key] = {v.strip() for v in values.split(",") if v.strip()}
    return path, filters


def filter_by_source(dataset: PatchDataset, folder: Path, filters: dict[str, set[str]], spec: str) -> PatchDataset:
    """Keep the rows whose `labels.csv` source passes `filters` (a folder dataset's file rows only)."""
    sources = _sources(folder)
    known = set(sources.values())
    for key, values in filters.items():
        unknown = sorted(values - known)
        if unknown:
            raise DataError(f"{spec}: {key}={','.join(unknown)} is not a source in {folder / 'labels.csv'} "
                            f"(sources: {', '.join(sorted(known))})")
    keep_only, drop = filters.get("source"), filters.get("exclude_source", set())
    splits: dict[str, Split] = {}
    for name, split in dataset.splits.items():
        files = split.files()
        if files is None:
            raise DataError(f"{spec}: source filters need an image folder ({dataset.kind} has no files per row)")
        rows = []
        for i, f in enumerate(files):
            source = sources.get(Path(f).resolve().relative_to(folder.resolve()).as_posix())
            if (keep_only is None or source in keep_only) and source not in drop:
                rows.append(i)
        if rows:
            splits[name] = SubsetSplit(split, rows, name)
    if not splits:
        raise DataError(f"{spec}: the source filter leaves no patches")
    return PatchDataset(spec=spec, kind=f"{dataset.kind}, filtered by source", splits=splits)


def _sources(folder: Path) -> dict[str, str]:
    """file (relative to `folder`) -> source, from `folder/labels.csv`."""
    table = folder / "labels.csv"
    try:
        with open(table, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{table}: cannot read the source column ({exc})") from None
    if not rows or "source" not in rows[0] or not ({"file", "path"} & set(rows[0])):
        raise DataError(f"{table}: needs 'file' (or 'path') and 'source' columns for a source filter")
    key = "file" if "file" in rows[0] else "path"
    return {r[key]: r["source"] for r in rows}
