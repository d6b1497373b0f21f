"""The device-side Grad-CAM formula (no TensorFlow), against maps computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edge_pcam.runtime.cam import cam_from_gradients, upsample_cam

# A 2 x 2 map with 2 channels whose gradients vary across channels and positions, so that the mean
# (Grad-CAM's channel weight) differs from the maximum, the sum of absolute values and so on.
FEATURES = np.stack([[[1.0, 2.0], [3.0, 4.0]],      # channel 0
                     [[4.0, 0.0], [0.0, 1.0]]], -1)  # channel 1
GRADIENTS = np.stack([[[1.0, 3.0], [-1.0, 1.0]],     # channel 0: mean 1, max 3
                      [[-2.0, 0.0], [0.0, -2.0]]], -1)  # channel 1: mean -1, max 0


def test_hand_computed_map_with_gradients_varying_over_channels_and_positions():
    # weights (mean over positions) = [1, -1]; weighted sum = f0 - f1 = [[-3, 2], [3, 3]];
    # ReLU -> [[0, 2], [3, 3]]; divided by its maximum 3:
    expected = np.array([[0.0, 2.0 / 3.0], [1.0, 1.0]])
    cam = cam_from_gradients(FEATURES, GRADIENTS)
    assert cam.shape == (2, 2)
    np.testing.assert_allclose(cam, expected, rtol=0, atol=1e-12)
    # What plausible mistakes would give instead (each differs from the map above):
    #   max-weighting [3, 0] -> 3 f0 / 12 = [[.25, .5], [.75, 1]]
    #   min-max scaling of the weighted sum -> [[0, 5/6], [1, 1]]
    #   no ReLU -> [[-1, 2/3], [1, 1]]
    for wrong in ([[0.25, 0.5], [0.75, 1.0]], [[0.0, 5 / 6], [1.0, 1.0]], [[-1.0, 2 / 3], [1.0, 1.0]]):
        assert not np.allclose(cam, wrong)


def test_channel_weights_are_spatial_means_on_a_larger_map():
    # 12 x 12 x 3: channel weights by hand from sums of arithmetic grids, not from numpy's mean.
    y, x = np.mgrid[0:12, 0:12].astype(np.float64)
    f = np.stack([np.ones((12, 12)), x / 11.0, y / 11.0], -1)
    g = np.stack([x - 5.5,            # mean 0 (positive on the right, negative on the left)
                  np.full((12, 12), 2.0),  # mean 2
                  y - 4.5], -1)        # mean 1 ((0 + ... + 11) / 12 - 4.5)
    # cam = relu(0 * 1 + 2 * x/11 + 1 * y/11) / max = (2x + y) / 33
    np.testing.assert_allclose(cam_from_gradients(f, g), (2 * x + y) / 33.0, rtol=0, atol=1e-12)


def test_cam_is_zero_when_nothing_contributes_positively():
    f = np.ones((12, 12, 2))
    g = np.full((12, 12, 2), -1.0)
    cam = cam_from_gradients(f, g)
    assert cam.shape == (12, 12) and not cam.any() and np.isfinite(cam).all()


def test_cam_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="both be"):
        cam_from_gradients(np.zeros((12, 12, 3)), np.zeros((12, 12, 4)))
    with pytest.raises(ValueError, match="both be"):
        cam_from_gradients(np.zeros((12, 12)), np.zeros((12, 12)))


def _bilinear(cam: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize written out: output pixel centres mapped to input coordinates, edges clamped."""
    n = cam.shape[0]
    src = (np.arange(size) + 0.5) * n / size - 0.5
    lo = np.floor(src).astype(int)
    frac = src - lo
    a, b = np.clip(lo, 0, n - 1), np.clip(lo + 1, 0, n - 1)
    m = np.zeros((size, n))
    np.add.at(m, (np.arange(size), a), 1 - frac)
    np.add.at(m, (np.arange(size), b), frac)
    return m @ cam @ m.T


def test_upsample_cam_is_bilinear():
    cam = np.zeros((12, 12), np.float32)
    cam[6, 6] = 1.0
    cam[2, 9] = 0.5
    up = upsample_cam(cam, 96)
    assert up.shape == (96, 96) and up.dtype == np.float32
    np.testing.assert_allclose(up, _bilinear(cam.astype(np.float64), 96), atol=1e-6)
    # the peak: input pixel 6 is centred on output 51.5, so outputs 51 and 52 get weight 15/16 per axis
    assert up.max() == pytest.approx((15 / 16) ** 2, abs=1e-6)
    assert {tuple(p) for p in np.argwhere(up == up.max())} == {(51, 51), (51, 52), (52, 51), (52, 52)}


def test_a_map_whose_peak_is_below_one_is_still_scaled_to_one():
    # weights [0.1]; weighted sum 0.1 * [[1, 2], [3, 4]]: peak 0.4 < 1, scaled to [[.25, .5], [.75, 1]]
    f = np.array([[1.0, 2.0], [3.0, 4.0]])[..., None]
    np.testing.assert_allclose(cam_from_gradients(f, np.full((2, 2, 1), 0.1)), [[0.25, 0.5], [0.75, 1.0]],
                               rtol=0, atol=1e-15)


def test_float32_interpreter_outputs_are_weighted_in_float64():
    rng = np.random.default_rng(0)
    f = rng.random((12, 12, 256)).astype(np.float32)
    g = rng.normal(0.0, 1.0, (12, 12, 256)).astype(np.float32)
    # the formula written out with float64 loops over channels
    f64, g64 = f.astype(np.float64), g.astype(np.float64)
    weighted = sum(f64[:, :, c] * (g64[:, :, c].sum() / 144) for c in range(256))
    expected = np.maximum(weighted, 0) / np.maximum(weighted, 0).max()
    cam = cam_from_gradients(f, g)
    assert cam.dtype == np.float64
    np.testing.assert_allclose(cam, expected, rtol=0, atol=1e-12)


def test_upsample_cam_defaults_to_a_pcam_patch_and_takes_integer_maps():
    cam = np.array([[0, 2], [4, 6]])
    up = upsample_cam(cam)
    assert up.shape == (96, 96) and up.dtype == np.float32
    np.testing.assert_allclose(up, _bilinear(cam.astype(np.float64), 96), atol=1e-5)
    with pytest.raises(ValueError, match="cam must be 2-D, got shape"):
        upsample_cam(np.zeros((2, 2, 1)))
