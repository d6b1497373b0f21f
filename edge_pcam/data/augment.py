"""On-the-fly augmentation of float image batches in [0, 1], deterministic under a seed.

The design's recipe: random horizontal and vertical flips, brightness +-0.1,
contrast 0.8-1.2. Other recipes may add random 90-degree rotations, stain
variation in HED space (Tellez et al. 2019; edge_pcam.data.stain), hue and
saturation jitter, and JPEG re-encoding at a random quality. Every random
draw is a stateless op keyed by a per-batch seed, so the same seed gives the
same pixels on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import tensorflow as tf

from edge_pcam.data.stain import FLOOR, HED_FROM_RGB, RGB_FROM_HED
from edge_pcam.errors import RecipeError


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations to apply and how strongly (the defaults are the design's)."""

    flips: bool = True
    brightness: float = 0.1                      # add U(-b, b)
    contrast: tuple[float, float] | None = (0.8, 1.2)  # scale about the per-channel mean
    rotate90: bool = False                        # random multiple of 90 degrees
    hue: float = 0.0                              # add U(-h, h) to hue (fraction of a turn)
    saturation: tuple[float, float] | None = None  # multiply saturation
    hed: float = 0.0                              # stain variation: HED x -> U(1-s, 1+s) x + U(-s, s)
    jpeg: tuple[int, int] | None = None           # re-encode at a JPEG quality drawn from [low, high]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "augmentation") -> Augmentation:
        """Build from a recipe table, e.g. {"rotate90": true, "hue": 0.04, "saturation": [0.75, 1.25]}."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RecipeError(f"{source}: unknown augmentation keys {unknown} (known: {sorted(known)})")
        kwargs = dict(values)
        try:
            for key in ("contrast", "saturation"):
                if kwargs.get(key) is not None:
                    low, high = (float(v) for v in kwargs[key])
                    if not 0 <= low <= high:
                        raise ValueError(f"{key} must be [low, high] with 0 <= low <= high")
                    kwargs[key] = (low, high)
            if kwargs.get("jpeg") is not None:
                low, high = (int(v) for v in kwargs["jpeg"])
                if not 1 <= low <= high <= 100:
                    raise ValueError("jpeg must be [low, high] qualities with 1 <= low <= high <= 100")
                kwargs["jpeg"] = (low, high)
            for key in ("brightness", "hue", "hed"):
                if key in kwargs:
                    kwargs[key] = float(kwargs[key])
                    if kwargs[key] < 0:
                        raise ValueError(f"{key} must be >= 0")
            for key in ("flips", "rotate90"):
                if key in kwargs and not isinstance(kwargs[key], bool):
                    raise ValueError(f"{key} must be true or false")
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"{source}: {exc}") from None
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a run's recipe record."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


DESIGN = Augmentation()


def augment_batch(images: tf.Tensor, seed: tf.Tensor, aug: Augmentation = DESIGN) -> tf.Tensor:
    """Augment a float32 batch (B, H, W, 3) in [0, 1]; `seed` is an int64 [2] tensor. Result clipped to [0, 1]."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    # Draws added after the first six are folded in, so the first six streams stay as they were.
    folded = [tf.cast(tf.random.experimental.stateless_fold_in(seed, i), seeds.dtype) for i in (6, 7, 8)]
    seeds = tf.concat([seeds, tf.stack(folded)], 0)

    def uniform(i: int, low: float, high: float, channels: int = 1) -> tf.Tensor:
        return tf.random.stateless_uniform([batch, 1, 1, channels], seeds[i], low, high)

    x = images
    if aug.flips:
        coins = tf.random.stateless_uniform([batch, 2], seeds[0]) < 0.5
        x = tf.where(coins[:, 0, None, None, None], tf.reverse(x, axis=[2]), x)
        x = tf.where(coins[:, 1, None, None, None], tf.reverse(x, axis=[1]), x)
    if aug.rotate90:
        k = tf.random.stateless_uniform([batch], seeds[1], 0, 4, dtype=tf.int32)
        rotations = tf.stack([x] + [tf.image.rot90(x, i) for i in (1, 2, 3)], axis=1)  # square patches
        x = tf.gather(rotations, k, axis=1, batch_dims=1)
    if aug.hed:
        x = perturb_hed(x, uniform(6, 1 - aug.hed, 1 + aug.hed, channels=3), uniform(7, -aug.hed, aug.hed, channels=3))
    if aug.brightness:
        x = x + uniform(2, -aug.brightness, aug.brightness)
    if aug.contrast is not None:
        mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        x = (x - mean) * uniform(3, *aug.contrast) + mean
    if aug.hue or aug.saturation is not None:
        hsv = tf.image.rgb_to_hsv(tf.clip_by_value(x, 0.0, 1.0))
        h, s, v = tf.unstack(hsv, axis=-1)
        if aug.hue:
            h = tf.math.floormod(h + uniform(4, -aug.hue, aug.hue)[..., 0], 1.0)
        if aug.saturation is not None:
            s = tf.clip_by_value(s * uniform(5, *aug.saturation)[..., 0], 0.0, 1.0)
        x = tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1))
    x = tf.clip_by_value(x, 0.0, 1.0)
    if aug.jpeg is not None:
        image_seeds = tf.random.experimental.stateless_split(seeds[8], num=batch)
        low, high = aug.jpeg
        if low == high:
            x = tf.map_fn(lambda image: tf.image.adjust_jpeg_quality(image, low), x)
        else:  # the quality is drawn from [low, high)
            x = tf.map_fn(lambda args: tf.image.stateless_random_jpeg_quality(args[0], low, high, args[1]),
                          (x, image_seeds), fn_output_signature=tf.float32)
    return x


def perturb_hed(images: tf.Tensor, alpha: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    """Float RGB (B, H, W, 3) with each stain density scaled by `alpha` and shifted by `beta`
    ((B, 1, 1, 3) each): edge_pcam.data.stain.perturb_hed in TensorFlow, clipped to [0, 1]."""
    od = -tf.math.log(tf.maximum(images, FLOOR))
    hed = tf.einsum("bhwc,cd->bhwd", od, tf.constant(HED_FROM_RGB, tf.float32)) * alpha + beta
    return tf.clip_by_value(tf.exp(-tf.einsum("bhwd,dc->bhwc", hed, tf.constant(RGB_FROM_HED, tf.float32))), 0.0, 1.0)
