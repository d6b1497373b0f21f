"""The official PCam files: `camelyonpatch_level_2_split_{split}_{x,y}.h5`, read lazily with h5py.

`x` is N x 96 x 96 x 3 uint8 (7 GB for train), `y` is N x 1 x 1 x 1 uint8.
Only the labels are loaded; patches are read from disk a batch at a time, so
memory stays bounded. HDF5 cannot be read lazily inside gzip, so a `.h5.gz`
file is decompressed once beside itself (streamed through a `.h5.part` file;
an interrupted run resumes where the part file ends).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import h5py
import numpy as np

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets.base import PATCH_SHAPE, SPLITS, PatchDataset, Split
from edge_pcam.runtime.datasets.progress import ByteProgress, rich_bar
from edge_pcam.runtime.fileio import commit_file

PREFIX = "camelyonpatch_level_2_split_"
CHUNK = 1 << 20


def file_name(split: str, array: str) -> str:
    """Official name of one uncompressed file, e.g. camelyonpatch_level_2_split_valid_x.h5."""
    return f"{PREFIX}{split}_{array}.h5"


class HDF5Split(Split):
    """One split from an x file and a y file; x stays on disk."""

    def __init__(self, name: str, x_path: Path, y_path: Path):
        self.name = name
        self.x_path, self.y_path = Path(x_path), Path(y_path)
        labels = read_labels(self.y_path)
        count = patch_rows(self.x_path)
        if count != labels.size:
            raise DataError(f"{self.x_path}: {count} patches but {self.y_path.name} has {labels.size} labels")
        self.labels = labels
        self._handle: tuple[int, h5py.File] | None = None

    def _x(self) -> h5py.Dataset:
        # One handle per process: an h5py file must not be shared across fork().
        if self._handle is None or self._handle[0] != os.getpid():
            self._handle = (os.getpid(), _open_h5(self.x_path))
        return self._handle[1]["x"]

    def read(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.zeros((0, *PATCH_SHAPE), np.uint8)
        if idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(f"{self.x_path}: row index out of range 0..{len(self) - 1}")
        x = self._x()
        try:
            if np.all(np.diff(idx) == 1):
                return x[int(idx[0]):int(idx[-1]) + 1]
            # Row by row: h5py's fancy indexing is 5-100x slower (very slow on chunked files).
            out = np.empty((idx.size, *PATCH_SHAPE), np.uint8)
            for pos in np.argsort(idx, kind="stable"):
                out[pos] = x[int(idx[pos])]
            return out
        except (OSError, RuntimeError, ValueError, TypeError) as exc:  # damaged chunks, unknown filters
            raise DataError(f"{self.x_path}: cannot read patches {idx.min()}..{idx.max()} of 'x' ({exc}); "
                            "the file is damaged: download or copy it again") from None

    def ids(self) -> list[str]:
        return [f"{self.x_path.name}#{i}" for i in range(len(self))]


def recognises(path: Path) -> bool:
    """True when `path` holds any official PCam file (.h5 or .h5.gz)."""
    return any(Path(path).glob(f"{PREFIX}*_[xy].h5")) or any(Path(path).glob(f"{PREFIX}*_[xy].h5.gz"))


def open(path: Path, progress: ByteProgress = rich_bar) -> PatchDataset:  # noqa: A001 - reader interface
    """Open every split whose x and y files are present, decompressing .h5.gz files first."""
    path = Path(path)
    splits: dict[str, Split] = {}
    for split in SPLITS:
        found = {a: _find(path, split, a) for a in ("x", "y")}
        if not any(found.values()):
            continue
        for array, other in (("x", "y"), ("y", "x")):
            if found[array] is None:
                raise DataError(f"{path / file_name(split, array)}: missing (found {found[other].name}); "
                                f"download it with `edge-pcam data download {path} --split {split}`")
        x_path = _uncompressed(found["x"], progress)
        y_path = _uncompressed(found["y"], progress)
        splits[split] = HDF5Split(split, x_path, y_path)
    if not splits:
        raise DataError(f"{path}: no {PREFIX}{{split}}_{{x,y}}.h5[.gz] files")
    return PatchDataset(spec=str(path), kind="pcam hdf5", splits=splits)


def decompress(gz_path: Path, progress: ByteProgress = rich_bar) -> Path:
    """Decompress `X.h5.gz` to `X.h5` beside it, once; resumable through `X.h5.part`."""
    gz_path = Path(gz_path)
    target = gz_path.with_suffix("")
    if target.exists():
        return target
    part = target.with_name(target.name + ".part")
    for attempt in (1, 2):
        done = part.stat().st_size if part.exists() else 0
        try:
            if _stream(gz_path, part, done, progress):
                break
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise DataError(f"{gz_path}: corrupt or truncated gzip file ({exc}); "
                            "download it again (edge-pcam data download resumes and checks the MD5)") from None
        part.unlink()  # the part file is longer than the stream: stale, start again
    else:
        raise DataError(f"{gz_path}: could not decompress to {target}")
    commit_file(part, target)
    return target


def _stream(gz_path: Path, part: Path, done: int, progress: ByteProgress) -> bool:
    """Append the decompressed stream past `done` bytes to `part`; False if the stream is shorter than that."""
    total = gz_path.stat().st_size
    with gz_path.open("rb") as raw, gzip.GzipFile(fileobj=raw) as stream, \
            progress(f"decompressing {gz_path.name.removeprefix(PREFIX)}", total) as advance:
        last = 0

        def report() -> None:
            nonlocal last
            now = raw.tell()
            advance(now - last)
            last = now

        skipped = 0
        while skipped < done:
            chunk = stream.read(min(CHUNK, done - skipped))
            if not chunk:
                return False
            skipped += len(chunk)
            report()
        with part.open("ab") as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
                report()
    return True


def _find(path: Path, split: str, array: str) -> Path | None:
    plain = path / file_name(split, array)
    if plain.is_file():
        return plain
    gz = plain.with_name(plain.name + ".gz")
    return gz if gz.is_file() else None


def _uncompressed(found: Path, progress: ByteProgress) -> Path:
    return decompress(found, progress) if found.suffix == ".gz" else found


def read_labels(path: Path) -> np.ndarray:
    """The `y` dataset of a PCam label file as uint8 0/1, shape (N,).

    Integers (or booleans) must be 0 or 1; floats must be exactly 0.0 or 1.0.
    Anything else (0.9, 2, NaN, text) is a DataError naming the file: a label
    is never rounded or cast into a class it does not say.
    """
    with _open_h5(path) as f:
        y = _dataset(f, path, "y")
        if y.ndim < 1 or int(np.prod(y.shape[1:])) != 1:
            raise DataError(f"{path}: 'y' has shape {y.shape}, expected (N, 1, 1, 1)")
        kind = y.dtype.kind
        if kind not in "biuf":
            raise DataError(f"{path}: 'y' holds {y.dtype} values, expected integer labels 0 or 1")
        labels = _read(path, y).reshape(-1)
    bad = np.flatnonzero((labels != 0) & (labels != 1))  # NaN compares unequal to both
    if bad.size:
        row = int(bad[0])
        raise DataError(f"{path}: labels must be 0 or 1, found {labels[row]!s} at row {row} "
                        f"({bad.size:,} such row{'s' * (bad.size > 1)})")
    return labels.astype(np.uint8)


def patch_rows(path: Path) -> int:
    """The number of patches in a PCam `x` file, after checking it holds uint8 (N, 96, 96, 3)."""
    with _open_h5(path) as f:
        x = _dataset(f, path, "x")
        if tuple(x.shape[1:]) != PATCH_SHAPE or x.dtype != np.uint8:
            raise DataError(f"{path}: 'x' is {x.dtype} {tuple(x.shape)}, expected uint8 (N, 96, 96, 3)")
        return int(x.shape[0])


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None


def _dataset(f: h5py.File, path: Path, key: str) -> h5py.Dataset:
    try:
        item = f.get(key)
    except (KeyError, OSError, RuntimeError) as exc:  # a dangling link, an unreadable object header
        raise DataError(f"{path}: cannot read '{key}' ({exc})") from None
    if not isinstance(item, h5py.Dataset):
        what = f"'{key}' is a {type(item).__name__.lower()}, not a dataset" if item is not None else f"no '{key}' dataset"
        raise DataError(f"{path}: {what} (has: {_names(f)})")
    return item


def _names(f: h5py.File) -> str:
    """The file's top-level names for a message, or why they cannot be listed."""
    try:
        return ", ".join(k if isinstance(k, str) else repr(k) for k in f.keys()) or "nothing"  # a damaged name: bytes
    except (KeyError, OSError, RuntimeError) as exc:  # a damaged group index
        return f"its index cannot be read: {exc}"


def _read(path: Path, dataset: h5py.Dataset) -> np.ndarray:
    try:
        return np.asarray(dataset[...])
    except (OSError, RuntimeError, ValueError, TypeError) as exc:  # damaged chunks, unknown filters
        raise DataError(f"{path}: cannot read '{dataset.name.lstrip('/')}' ({exc})") from None
