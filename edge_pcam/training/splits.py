"""Row subsets of a split, and the tuning set carved out of the training split.

`tune_from_train = N` in a recipe holds out N training patches (half of each
label when the split allows, chosen by the recipe's seed) for checkpoint
selection and threshold choice, so the real validation split is only ever used
for reporting.
"""

from __future__ import annotations

import numpy as np

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets.base import Split
from edge_pcam.runtime.datasets.combined import SubsetSplit


def balanced_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` sorted row indices, half of each label where possible (a short label gives its remainder)."""
    rng = np.random.default_rng(seed)
    by_label = [np.flatnonzero(labels == c) for c in (0, 1)]
    want = [n // 2, n - n // 2]
    take = [min(want[c], len(by_label[c])) for c in (0, 1)]
    for c in (0, 1):
        take[c] += min(n - sum(take), len(by_label[c]) - take[c])
    return np.sort(np.concatenate([rng.permutation(by_label[c])[:take[c]] for c in (0, 1)]))


def carve_tuning(train: Split, n: int, seed: int) -> tuple[Split, Split]:
    """Split `train` into (remaining train, tuning set of `n` rows, balanced by label)."""
    if n >= len(train):
        raise DataError(f"tune_from_train = {n}: the train split has only {len(train)} patches")
    chosen = balanced_indices(train.labels, n, seed)
    rest = np.setdiff1d(np.arange(len(train)), chosen, assume_unique=True)
    return SubsetSplit(train, rest, "train"), SubsetSplit(train, chosen, "tuning")


def limit_train(train: Split, n: int, seed: int) -> Split:
    """At most `n` rows of `train`, balanced by label (short demo and smoke runs)."""
    if n >= len(train):
        return train
    return SubsetSplit(train, balanced_indices(train.labels, n, seed), "train")
