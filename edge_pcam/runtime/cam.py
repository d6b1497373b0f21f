"""The Grad-CAM formula in plain numpy (device side; no TensorFlow).

Given the pool3 feature map of one patch and the gradient of the logit with
respect to it (from the Grad-CAM companion .tflite), Grad-CAM weights each
channel by the spatial mean of its gradient, sums the weighted channels, keeps
the positive part and scales it to [0, 1] (Selvaraju et al. 2017).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def cam_from_gradients(features: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM (H, W) in [0, 1] from features and gradients of shape (H, W, C).

    All zeros when no location contributes positively to the logit.
    """
    f = np.asarray(features, dtype=np.float64)
    g = np.asarray(gradients, dtype=np.float64)
    if f.ndim != 3 or f.shape != g.shape:
        raise ValueError(f"features and gradients must both be (H, W, C); got {f.shape} and {g.shape}")
    weights = g.mean(axis=(0, 1))
    cam = np.maximum(np.tensordot(f, weights, axes=([2], [0])), 0.0)
    peak = cam.max()
    return cam / peak if peak > 0 else cam


def upsample_cam(cam: np.ndarray, size: int = 96) -> np.ndarray:
    """Bilinear resize of a (h, w) map to (size, size), float32, values kept in the input's range."""
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"cam must be 2-D, got shape {cam.shape}")
    out = np.asarray(Image.fromarray(cam, mode="F").resize((size, size), Image.BILINEAR), dtype=np.float32)
    return np.clip(out, float(cam.min()), float(cam.max()))
