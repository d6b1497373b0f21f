"""Image folders in the `{split}/{label}/*` layout, e.g. ../shared/data/pcam-subset.

The folder name is the label: `0` or `normal` (no tumour), `1`, `tumour` or
`tumor` (tumour tissue in the centre 32x32). Opening a folder only lists file
names; pixels are decoded on demand, and any image that is not 96x96 RGB is a
DataError naming the file when it is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets.base import SPLITS, PatchDataset, Split
from edge_pcam.runtime.images import IMAGE_SUFFIXES, check_patch_files, load_patches

LABEL_FOLDERS = {"0": 0, "normal": 0, "1": 1, "tumour": 1, "tumor": 1}


class FileSplit(Split):
    """A split whose patches are one image file each."""

    def __init__(self, name: str, paths: Sequence[str], labels: np.ndarray):
        if len(paths) != len(labels):
            raise DataError(f"{name}: {len(paths)} files but {len(labels)} labels")
        self.name = name
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.uint8).reshape(-1)
        self._checked = False

    def read(self, indices):
        return load_patches([self.paths[int(i)] for i in np.asarray(indices).reshape(-1)], crop=False, strict=True)

    def ids(self) -> list[str]:
        return list(self.paths)

    def files(self) -> list[str]:
        return list(self.paths)

    def check(self) -> None:
        """Check every file's header (size and mode) without decoding: a DataError names the first bad file.
        A split that passed once is not checked again."""
        if not self._checked:
            check_patch_files(self.paths)
            self._checked = True


def recognises(path: Path) -> bool:
    """True when `path` holds at least one split folder with a label folder inside."""
    return any(_label_dirs(path / split) for split in SPLITS)


def open(path: Path) -> PatchDataset:  # noqa: A001 - the reader interface of datasets.spec
    """Open every split folder under `path` (file names only; nothing is decoded)."""
    path = Path(path)
    splits: dict[str, Split] = {}
    for split in SPLITS:
        dirs = _label_dirs(path / split)
        if not dirs:
            continue
        paths: list[str] = []
        labels: list[int] = []
        for label_dir, label in dirs:
            names = sorted(e.name for e in os.scandir(label_dir)
                           if e.name.lower().endswith(IMAGE_SUFFIXES) and not e.name.startswith("."))
            paths.extend(os.path.join(label_dir, n) for n in names)
            labels.extend([label] * len(names))
        if not paths:
            folders = ", ".join(d.name for d, _ in dirs)
            raise DataError(f"{path / split}: label folders ({folders}) hold no images "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        splits[split] = FileSplit(split, paths, np.array(labels, np.uint8))
    if not splits:
        raise DataError(f"{path}: no {{split}}/{{label}}/ image folders (expected e.g. train/0/, train/1/)")
    return PatchDataset(spec=str(path), kind="image folder", splits=splits)


def _label_dirs(split_dir: Path) -> list[tuple[Path, int]]:
    if not split_dir.is_dir():
        return []
    found = [(split_dir / name, label) for name, label in LABEL_FOLDERS.items() if (split_dir / name).is_dir()]
    return sorted(found, key=lambda d: (d[1], d[0].name))
