"""HED stain space and augmentation (numpy and TensorFlow), and the shift benchmark's transforms."""

from __future__ import annotations

import numpy as np
import pytest

from edge_pcam.data.stain import RGB_FROM_HED, hed_to_rgb, perturb_hed, random_hed, rgb_to_hed


def _fixed_patch() -> np.ndarray:
    """A deterministic H&E-like patch from the synthetic generator (float RGB in [0, 1])."""
    from edge_pcam.runtime.datasets import open_dataset
    return open_dataset("synthetic:8:3").split("train").read([0])[0].astype(np.float64) / 255.0


def test_pure_stain_colours_deconvolve_to_unit_densities():
    # A pixel that transmits exp(-OD) of a pure haematoxylin density 1 is exactly [1, 0, 0] in HED; by hand:
    # OD_rgb = 1 * RGB_FROM_HED[0], transmitted = exp(-OD_rgb).
    for stain in range(3):
        rgb = np.exp(-RGB_FROM_HED[stain])
        expected = np.zeros(3)
        expected[stain] = 1.0
        np.testing.assert_allclose(rgb_to_hed(rgb), expected, atol=1e-12)
    white = rgb_to_hed(np.ones(3))
    np.testing.assert_allclose(white, 0.0, atol=1e-12)


def test_hed_round_trip_and_identity_perturbation():
    patch = _fixed_patch()
    np.testing.assert_allclose(hed_to_rgb(rgb_to_hed(patch)), np.maximum(patch, 1e-6), atol=1e-9)
    np.testing.assert_allclose(perturb_hed(patch, np.ones(3), np.zeros(3)), np.maximum(patch, 1e-6), atol=1e-9)


def test_perturbation_scales_and_shifts_each_stain_channel():
    patch = _fixed_patch()
    alpha, beta = np.array([1.1, 0.9, 1.0]), np.array([0.02, -0.03, 0.0])
    out = perturb_hed(patch, alpha, beta)
    inside = np.all((out > 1e-3) & (out < 1 - 1e-3), axis=-1)  # unclipped pixels keep the linear relation
    assert inside.mean() > 0.9
    np.testing.assert_allclose(rgb_to_hed(out)[inside], (rgb_to_hed(patch) * alpha + beta)[inside], atol=1e-9)


def test_random_hed_draws_stay_within_sigma_and_fill_the_range():
    # A patch spanning haematoxylin and eosin densities 0.2-1.0 independently (no DAB), so each stain's
    # (alpha, beta) can be read back by a straight-line fit.
    h, e = np.meshgrid(np.linspace(0.2, 1.0, 96), np.linspace(0.2, 1.0, 96))
    patch = (hed_to_rgb(np.stack([h, e, np.zeros_like(h)], -1)) * 255).round().astype(np.uint8)
    batch = np.repeat(patch[None], 200, axis=0)
    sigma = 0.05
    out = random_hed(batch, sigma, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == batch.shape
    # Recover each patch's (alpha, beta) per stain by least squares over its unclipped pixels.
    src = rgb_to_hed(batch[0] / 255.0).reshape(-1, 3)
    fitted = []
    for image in out:
        dst = rgb_to_hed(image / 255.0).reshape(-1, 3)
        keep = np.all((image.reshape(-1, 3) > 0) & (image.reshape(-1, 3) < 255), axis=1)  # unclipped
        fitted.append([np.polyfit(src[keep, c], dst[keep, c], 1) for c in range(2)])  # H and E
    fitted = np.array(fitted)  # (200, 2 stains, [alpha, beta])
    tol = 0.01  # uint8 rounding
    assert fitted[..., 0].min() > 1 - sigma - tol and fitted[..., 0].max() < 1 + sigma + tol
    assert fitted[..., 1].min() > -sigma - tol and fitted[..., 1].max() < sigma + tol
    assert abs(fitted[..., 0].mean() - 1) < 0.01 and abs(fitted[..., 1].mean()) < 0.01
    assert fitted[..., 0].max() - fitted[..., 0].min() > 1.6 * sigma  # the draws span the range


@pytest.mark.tf
def test_tensorflow_hed_equals_numpy_and_is_deterministic_under_a_seed():
    import tensorflow as tf

    from edge_pcam.data.augment import Augmentation, augment_batch, perturb_hed as tf_perturb
    from edge_pcam.runtime.datasets import open_dataset
    x = open_dataset("synthetic:16:1").split("train").read(range(8)).astype(np.float32) / 255.0
    rng = np.random.default_rng(1)
    alpha, beta = rng.uniform(0.8, 1.2, (8, 1, 1, 3)), rng.uniform(-0.2, 0.2, (8, 1, 1, 3))
    got = tf_perturb(tf.constant(x), tf.constant(alpha, tf.float32), tf.constant(beta, tf.float32)).numpy()
    np.testing.assert_allclose(got, perturb_hed(x, alpha, beta), atol=2e-5)

    hed_only = Augmentation(flips=False, brightness=0.0, contrast=None, hed=0.05)
    seed = tf.constant([3, 4], tf.int64)
    a, b = (augment_batch(tf.constant(x), seed, hed_only).numpy() for _ in range(2))
    c = augment_batch(tf.constant(x), tf.constant([3, 5], tf.int64), hed_only).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.01
    assert 0.001 < np.abs(a - x).mean() < 0.1  # light: a visible but small change


@pytest.mark.tf
def test_hed_and_jpeg_leave_the_other_augmentations_streams_unchanged():
    import tensorflow as tf

    from edge_pcam.data.augment import Augmentation, augment_batch
    from edge_pcam.runtime.datasets import open_dataset
    x = tf.constant(open_dataset("synthetic:16:2").split("train").read(range(4)).astype(np.float32) / 255.0)
    seed = tf.constant([7, 9], tf.int64)
    plain = augment_batch(x, seed, Augmentation(rotate90=True)).numpy()
    with_jpeg = augment_batch(x, seed, Augmentation(rotate90=True, jpeg=(100, 100))).numpy()
    # JPEG is the last step and draws from its own stream: the rest of the pixels' history is unchanged.
    expected = np.stack([tf.image.adjust_jpeg_quality(p, 100).numpy() for p in plain])
    np.testing.assert_allclose(with_jpeg, expected, atol=1e-6)
    low = augment_batch(x, seed, Augmentation(rotate90=True, jpeg=(20, 20))).numpy()
    assert np.abs(plain - low).mean() > np.abs(plain - with_jpeg).mean()


def test_shifts_are_reproducible_shape_preserving_and_of_ordered_strength():
    from edge_pcam.bench.shift import IDENTITY, SHIFTS, shifted
    from edge_pcam.runtime.datasets import open_dataset
    x = open_dataset("synthetic:32:5").split("train").read(range(16))
    assert shifted(x, IDENTITY, 0) is x
    change = {}
    for name in SHIFTS:
        y = shifted(x, name, 0)
        assert y.shape == x.shape and y.dtype == np.uint8, name
        np.testing.assert_array_equal(y, shifted(x, name, 0), err_msg=name)
        change[name] = np.abs(y.astype(int) - x).mean()
        assert change[name] > 0.5, name
    assert change["hed-strong"] > 2 * change["hed-light"]
    assert not np.array_equal(shifted(x, "hed-light", 0), shifted(x, "hed-light", 1))


def test_scale_shift_keeps_the_centre_and_magnifies_about_it():
    from edge_pcam.bench.shift import shifted
    ramp = np.tile(np.arange(96, dtype=np.uint8)[None, :, None], (96, 1, 3))[None] * 2  # value = 2 * column
    zoom_in, zoom_out = shifted(ramp, "scale-1.1", 0)[0, 48, :, 0], shifted(ramp, "scale-0.9", 0)[0, 48, :, 0]
    # 1.1x: a column step of about 2 / 1.1 grey levels per pixel near the centre; 0.9x: about 2 / 0.9.
    assert np.mean(np.diff(zoom_in[30:66].astype(float))) == pytest.approx(2 / 1.1, abs=0.05)
    assert np.mean(np.diff(zoom_out[30:66].astype(float))) == pytest.approx(2 / 0.9, abs=0.05)
    assert abs(int(zoom_in[48]) - 96) <= 2 and abs(int(zoom_out[48]) - 96) <= 2


def test_shift_benchmark_scores_each_model_and_averages_the_shifts():
    from edge_pcam.bench.shift import IDENTITY, shift_benchmark
    from edge_pcam.runtime.datasets import open_dataset
    split = open_dataset("synthetic:64:4").split("train")
    x, y = split.read(range(len(split))), split.labels
    perfect = {tuple(p.ravel()[:64]): float(t) for p, t in zip(x, y)}
    models = {"oracle": lambda b: np.array([perfect.get(tuple(p.ravel()[:64]), 0.4) for p in b]),
              "constant": lambda b: np.full(len(b), 0.7)}
    result = shift_benchmark(models, x, y, shifts=["blur", "jpeg"], batch=7)
    oracle, constant = result["models"]["oracle"], result["models"]["constant"]
    assert oracle[IDENTITY]["accuracy"] == 1.0 and oracle[IDENTITY]["auc"] == 1.0
    assert oracle["blur"]["accuracy"] == pytest.approx(np.mean(y == 0))  # shifted pixels are unknown to it: 0.4
    assert constant[IDENTITY]["accuracy"] == pytest.approx(np.mean(y == 1))
    assert oracle["mean"]["accuracy"] == pytest.approx((oracle["blur"]["accuracy"] + oracle["jpeg"]["accuracy"]) / 2)
    assert oracle["drop"]["accuracy"] == pytest.approx(1.0 - oracle["mean"]["accuracy"])
