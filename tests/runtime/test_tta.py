"""Test-time augmentation: the dihedral group of the square, in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from edge_pcam.runtime.tta import DIHEDRAL_NAMES, dihedral, dihedral_views, predict_tta


def _patches(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)


def test_eight_distinct_views_identity_first():
    x = _patches()
    views = list(dihedral_views(x))
    assert len(views) == len(DIHEDRAL_NAMES) == 8
    np.testing.assert_array_equal(views[0], x)
    keys = {v.tobytes() for v in views}
    assert len(keys) == 8
    for v in views:
        assert v.shape == x.shape and v.dtype == x.dtype and v.flags["C_CONTIGUOUS"]


def test_views_form_a_group_and_keep_the_centre():
    x = _patches(1)
    views = {v.tobytes() for v in dihedral_views(x)}
    for k in range(8):  # closed under composition: every view of a view is a view
        for j in range(8):
            assert dihedral(dihedral(x, k), j).tobytes() in views
    np.testing.assert_array_equal(dihedral(x, 2), x[:, ::-1, ::-1])
    np.testing.assert_array_equal(dihedral(x, 4), x[:, :, ::-1])
    # the centre 32x32 (which decides the PCam label) maps onto itself
    centre = x[:, 32:64, 32:64]
    for k in range(8):
        assert sorted(dihedral(x, k)[:, 32:64, 32:64].ravel()) == sorted(centre.ravel())


def test_predict_tta_averages_over_views():
    x = _patches(3)
    seen = []

    def top_left_red(images):  # not invariant: depends on orientation
        seen.append(images.copy())
        return images[:, 0, 0, 0].astype(np.float64)

    out = predict_tta(top_left_red, x)
    assert len(seen) == 8
    expected = np.mean([v[:, 0, 0, 0] for v in dihedral_views(x)], axis=0)
    np.testing.assert_allclose(out, expected)
    corners = np.stack([x[:, 0, 0, 0], x[:, 0, -1, 0], x[:, -1, 0, 0], x[:, -1, -1, 0]], 1).mean(1)
    np.testing.assert_allclose(out, corners)  # each corner seen twice among the 8 views


def test_bad_index_refused():
    with pytest.raises(ValueError, match="dihedral transform index must be 0-7, got"):
        dihedral(_patches(1), 8)
