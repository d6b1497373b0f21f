"""Test-time augmentation over the dihedral group of the square (numpy only).

A PCam label depends on the centre 32x32 pixels, which every rotation by 90
degrees and every flip keeps in place, and tissue has no up or left: the 8
symmetries of the square give 8 equally valid views of a patch. Averaging the
model's probabilities over them is the usual TTA for PCam.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

DIHEDRAL_NAMES = ("identity", "rot90", "rot180", "rot270",
                  "flip", "flip_rot90", "flip_rot180", "flip_rot270")


def dihedral(images: np.ndarray, k: int) -> np.ndarray:
    """Transform `k` (0-7) of patches (N, H, W, C): rotate by k*90 degrees (k < 4), or flip left-right
    and then rotate by (k-4)*90 degrees. Contiguous copies, ready for an interpreter."""
    if not 0 <= k < 8:
        raise ValueError(f"dihedral transform index must be 0-7, got {k}")
    x = np.asarray(images)
    if k >= 4:
        x = x[:, :, ::-1]
    return np.ascontiguousarray(np.rot90(x, k % 4, axes=(1, 2)))


def dihedral_views(images: np.ndarray) -> Iterator[np.ndarray]:
    """The 8 dihedral views of patches (N, H, W, C), identity first."""
    for k in range(8):
        yield dihedral(images, k)


def predict_tta(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    """Mean of `predict` (patches -> probabilities (N,)) over the 8 dihedral views."""
    return np.mean([predict(view) for view in dihedral_views(images)], axis=0)
