"""H&E stain space (Ruifrok & Johnston colour deconvolution), in numpy.

`rgb_to_hed` and `hed_to_rgb` follow scikit-image's `rgb2hed`/`hed2rgb` as they
were until version 0.18 (same matrix and 1e-6 floor; stains as optical
densities, -ln of the transmitted fraction), the version Tellez et al. 2019
used; scikit-image 0.19 divides the densities by -ln(1e-6), which makes the
same beta about 14 times stronger. So the stain variation of Tellez et al. 2019 ("Quantifying the effects of data
augmentation and stain color normalization in convolutional neural networks
for computational pathology") reads as in their paper: per stain channel
x -> alpha * x + beta with alpha in [1 - sigma, 1 + sigma] and beta in
[-sigma, sigma]. The training pipeline (edge_pcam.data.augment) does the same
in TensorFlow with these constants; the shift benchmark uses this module.
"""

from __future__ import annotations

import numpy as np

# Rows: the RGB optical-density vectors of haematoxylin, eosin and DAB (scikit-image's rgb_from_hed).
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29],
                         [0.07, 0.99, 0.11],
                         [0.27, 0.57, 0.78]], dtype=np.float64)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
FLOOR = 1e-6  # transmitted fraction below which a pixel counts as black


def rgb_to_hed(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] (..., 3) -> stain densities (..., 3): haematoxylin, eosin, DAB.
    Not clipped at zero (as scikit-image <= 0.18), so `hed_to_rgb` inverts it exactly."""
    rgb = np.maximum(np.asarray(rgb, dtype=np.float64), FLOOR)
    return -np.log(rgb) @ HED_FROM_RGB


def hed_to_rgb(hed: np.ndarray) -> np.ndarray:
    """Stain concentrations (..., 3) -> float RGB in [0, 1]."""
    return np.clip(np.exp(-np.asarray(hed, dtype=np.float64) @ RGB_FROM_HED), 0.0, 1.0)


def perturb_hed(rgb: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Float RGB (..., H, W, 3) with every stain channel scaled by `alpha` and shifted by `beta`
    (each broadcastable to (..., 1, 1, 3)): Tellez et al.'s HED augmentation."""
    hed = rgb_to_hed(rgb)
    return hed_to_rgb(hed * alpha + beta)


def random_hed(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 patches (N, H, W, 3) under a random HED perturbation of strength `sigma` each (uint8 out)."""
    n = images.shape[0]
    alpha = rng.uniform(1 - sigma, 1 + sigma, size=(n, 1, 1, 3))
    beta = rng.uniform(-sigma, sigma, size=(n, 1, 1, 3))
    out = perturb_hed(images.astype(np.float64) / 255.0, alpha, beta)
    return np.round(out * 255.0).astype(np.uint8)
