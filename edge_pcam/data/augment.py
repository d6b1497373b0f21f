"""On-the-fly augmentation of float image batches in [0, 1], deterministic under a seed.

The design's recipe: random horizontal and vertical flips, brightness +-0.1,
contrast 0.8-1.2. Other recipes may add random 90-degree rotations, hue and
saturation jitter. Every random draw is a stateless op keyed by a per-batch
seed, so the same seed gives the same pixels on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import tensorflow as tf

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
            for key in ("brightness", "hue"):
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

    def uniform(i: int, low: float, high: float) -> tf.Tensor:
        return tf.random.stateless_uniform([batch, 1, 1, 1], seeds[i], low, high)

    x = images
    if aug.flips:
        coins = tf.random.stateless_uniform([batch, 2], seeds[0]) < 0.5
        x = tf.where(coins[:, 0, None, None, None], tf.reverse(x, axis=[2]), x)
        x = tf.where(coins[:, 1, None, None, None], tf.reverse(x, axis=[1]), x)
    if aug.rotate90:
        k = tf.random.stateless_uniform([batch], seeds[1], 0, 4, dtype=tf.int32)
        rotations = tf.stack([x] + [tf.image.rot90(x, i) for i in (1, 2, 3)], axis=1)  # square patches
        x = tf.gather(rotations, k, axis=1, batch_dims=1)
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
    return tf.clip_by_value(x, 0.0, 1.0)
