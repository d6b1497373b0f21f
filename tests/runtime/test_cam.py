"""The device-side Grad-CAM formula (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_pcam.runtime.cam import cam_from_gradients, upsample_cam


def test_cam_weights_channels_by_mean_gradient():
    rng = np.random.default_rng(0)
    f = rng.random((12, 12, 4))
    g = np.zeros((12, 12, 4))
    g[..., 1] = 2.0  # only channel 1 matters, positively
    cam = cam_from_gradients(f, g)
    assert cam.shape == (12, 12)
    np.testing.assert_allclose(cam, f[..., 1] / f[..., 1].max())


def test_cam_keeps_positive_part_and_zero_when_nothing_positive():
    f = np.ones((12, 12, 2))
    g = np.full((12, 12, 2), -1.0)
    assert not cam_from_gradients(f, g).any()
    f[3, 4, 0] = 5.0
    g[..., 0] = 1.0
    g[..., 1] = -1.0
    cam = cam_from_gradients(f, g)
    assert cam.max() == 1.0 and cam[3, 4] == 1.0 and cam.min() >= 0.0
    assert np.count_nonzero(cam) == 1


def test_cam_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        cam_from_gradients(np.zeros((12, 12, 3)), np.zeros((12, 12, 4)))


def test_upsample_cam_size_and_range():
    cam = np.zeros((12, 12), np.float32)
    cam[6, 6] = 1.0
    up = upsample_cam(cam, 96)
    assert up.shape == (96, 96) and up.dtype == np.float32
    assert 0.0 <= up.min() and up.max() <= 1.0
    y, x = np.unravel_index(np.argmax(up), up.shape)
    assert 48 <= y < 56 and 48 <= x < 56
