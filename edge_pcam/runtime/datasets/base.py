"""The one interface every PCam reader gives: per split, labels up front and pixels on demand."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_pcam.errors import DataError
from edge_pcam.runtime.constants import PATCH_SHAPE

SPLITS = ("train", "valid", "test")
LABEL_NAMES = ("normal", "tumour")


class Split(ABC):
    """One split of a patch dataset.

    `labels` is a uint8 array of 0/1, known without reading pixels; `read`
    returns uint8 patches of shape (k, 96, 96, 3) for the given row indices.
    """

    name: str
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @abstractmethod
    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Patches at `indices` (in that order) as uint8 (k, 96, 96, 3)."""

    @abstractmethod
    def ids(self) -> list[str]:
        """A readable identifier per row: a file path, or `file.h5#index`."""

    def files(self) -> list[str] | None:
        """Image file per row when each patch is its own file (lets tf.data decode natively)."""
        return None

    def check(self) -> None:
        """Raise a DataError naming the first patch that cannot be read as 96x96 RGB, without decoding pixels
        where the format allows. Readers that validate everything when opened have nothing left to check."""

    def batches(self, batch_size: int, indices: np.ndarray | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (images, labels, row indices) in order, `batch_size` rows at a time."""
        order = np.arange(len(self)) if indices is None else np.asarray(indices)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield self.read(idx), self.labels[idx], idx


class ArraySplit(Split):
    """A split held in memory (synthetic data, small test sets)."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray, prefix: str = ""):
        if images.shape[1:] != PATCH_SHAPE or images.dtype != np.uint8:
            raise DataError(f"{prefix or name}: patches must be uint8 96x96x3, got {images.dtype} {images.shape[1:]}")
        if len(images) != len(labels):
            raise DataError(f"{prefix or name}: {len(images)} images but {len(labels)} labels")
        self.name = name
        self.images = images
        self.labels = np.asarray(labels, dtype=np.uint8).reshape(-1)
        self._prefix = prefix or name

    def read(self, indices):
        return self.images[np.asarray(indices, dtype=np.int64)]

    def ids(self) -> list[str]:
        return [f"{self._prefix}#{i}" for i in range(len(self))]


@dataclass
class PatchDataset:
    """A dataset opened from a `--data` spec: a name and its splits."""

    spec: str
    kind: str
    splits: dict[str, Split] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DataError(f"{self.spec}: no '{name}' split (has: {have})")
        return self.splits[name]

    def check(self) -> None:
        """Check every split (see Split.check)."""
        for split in self.splits.values():
            split.check()

    def counts(self) -> dict[str, dict[str, int]]:
        """Patches per split and label, e.g. {'train': {'normal': 10, 'tumour': 10}}."""
        out = {}
        for name, split in self.splits.items():
            bins = np.bincount(split.labels, minlength=2)
            out[name] = {LABEL_NAMES[i]: int(bins[i]) for i in range(2)}
        return out
