"""`synthetic:N[:SEED]`: H&E-like patches whose label depends on the centre 32x32, as in PCam.

Every patch has pink stroma and small, round, purple lymphocyte nuclei. A tumour
patch (label 1) also has a cluster of large, irregular, dark nuclei inside the
centre 32x32 pixels; a normal patch may have a few large nuclei, but only
outside the centre, so the label cannot be read from anywhere but the centre.
Patch i depends only on (seed, i): the same spec always gives the same pixels,
and rows are divided into train/valid/test as 8:1:1 by index.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets.base import ArraySplit, PatchDataset

SIZE = 96
CENTRE = (32, 64)  # the centre 32x32 box, [32, 64) on both axes
STROMA = np.array([232.0, 168.0, 205.0])
LYMPHOCYTE = np.array([92.0, 60.0, 150.0])
TUMOUR_NUCLEUS = np.array([70.0, 30.0, 110.0])
DEFAULT_SEED = 0


def paint_tissue(rng: np.random.Generator, height: int, width: int,
                 tumour_boxes: list[tuple[int, int, int, int]] = (),
                 decoy_large: int = 0) -> np.ndarray:
    """Paint an H&E-like RGB uint8 image.

    `tumour_boxes` are (y0, y1, x0, x1) regions filled with clusters of large
    irregular nuclei; `decoy_large` scatters that many large nuclei anywhere
    outside those boxes' rows/cols (used by normal patches, outside the centre).
    """
    img = np.empty((height, width, 3), np.float32)
    # Stroma: base colour, a low-frequency stain variation and grain.
    coarse = rng.normal(0, 1, (max(2, height // 32), max(2, width // 32), 3)).astype(np.float32)
    low = np.stack([np.asarray(Image.fromarray(coarse[..., c], mode="F").resize((width, height), Image.BILINEAR))
                    for c in range(3)], axis=-1)
    img[:] = STROMA + 10 * low + rng.normal(0, 6, (height, width, 3))

    n_small = int(height * width / 9216 * rng.integers(25, 45))
    _nuclei(img, rng, n_small, (0, height, 0, width), (2.0, 3.2), LYMPHOCYTE, irregular=0.1)
    for box in tumour_boxes:
        area = (box[1] - box[0]) * (box[3] - box[2])
        _nuclei(img, rng, max(4, int(area / 1024 * rng.integers(5, 8))), box, (4.5, 7.5),
                TUMOUR_NUCLEUS, irregular=0.35)
    if decoy_large:
        _nuclei(img, rng, decoy_large, (0, height, 0, width), (4.5, 7.5), TUMOUR_NUCLEUS,
                irregular=0.35, avoid=CENTRE if (height, width) == (SIZE, SIZE) else None)
    return np.clip(img, 0, 255).astype(np.uint8)


def _nuclei(img: np.ndarray, rng: np.random.Generator, count: int,
            box: tuple[int, int, int, int], radius: tuple[float, float],
            colour: np.ndarray, irregular: float, avoid: tuple[int, int] | None = None) -> None:
    """Draw `count` dark ellipses with wobbly outlines, centred inside `box`."""
    y0, y1, x0, x1 = box
    height, width = img.shape[:2]
    drawn = 0
    for _ in range(count * 4):
        if drawn == count:
            break
        cy, cx = rng.uniform(y0, y1), rng.uniform(x0, x1)
        if avoid and avoid[0] - 8 <= cy < avoid[1] + 8 and avoid[0] - 8 <= cx < avoid[1] + 8:
            continue
        a, b = rng.uniform(*radius), rng.uniform(*radius)
        theta = rng.uniform(0, np.pi)
        wobble = rng.uniform(0, 2 * np.pi, 3)
        r = int(max(a, b) * (1 + irregular)) + 2
        ys, xs = slice(max(0, int(cy) - r), min(height, int(cy) + r + 1)), \
            slice(max(0, int(cx) - r), min(width, int(cx) + r + 1))
        yy, xx = np.mgrid[ys, xs]
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(theta) + dy * np.sin(theta)
        w = -dx * np.sin(theta) + dy * np.cos(theta)
        angle = np.arctan2(w, u)
        edge = 1 + irregular * (np.sin(3 * angle + wobble[0]) * 0.6 + np.sin(5 * angle + wobble[1]) * 0.4)
        inside = (u / a) ** 2 + (w / b) ** 2 <= edge ** 2
        shade = colour + rng.normal(0, 8, 3)
        img[ys, xs][inside] = 0.15 * img[ys, xs][inside] + 0.85 * shade
        drawn += 1


def synthetic_patch(seed: int, index: int) -> tuple[np.ndarray, int]:
    """Patch `index` of the synthetic set with `seed`, and its label."""
    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(0, 2))
    if label:
        # A cluster covering part of the centre box.
        cy, cx = rng.uniform(38, 58, 2)
        half = rng.uniform(9, 14)
        box = (int(max(CENTRE[0], cy - half)), int(min(CENTRE[1], cy + half)),
               int(max(CENTRE[0], cx - half)), int(min(CENTRE[1], cx + half)))
        return paint_tissue(rng, SIZE, SIZE, [box]), 1
    return paint_tissue(rng, SIZE, SIZE, decoy_large=int(rng.integers(0, 4))), 0


def split_of(index: int) -> str:
    """Rows 0-7 of every ten go to train, row 8 to valid, row 9 to test."""
    return {8: "valid", 9: "test"}.get(index % 10, "train")


def open_synthetic(spec: str) -> PatchDataset:
    """Open `synthetic:N` or `synthetic:N:SEED`."""
    parts = spec.split(":")[1:]
    try:
        count = int(parts[0])
        seed = int(parts[1]) if len(parts) > 1 else DEFAULT_SEED
        if len(parts) > 2 or count < 1:
            raise ValueError
    except (ValueError, IndexError):
        raise DataError(f"{spec}: expected synthetic:N or synthetic:N:SEED with N >= 1") from None
    rows: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for i in range(count):
        rows[split_of(i)].append(i)
    splits = {}
    for name, idx in rows.items():
        if not idx:
            continue
        pairs = [synthetic_patch(seed, i) for i in idx]
        images = np.stack([p[0] for p in pairs])
        labels = np.array([p[1] for p in pairs], np.uint8)
        splits[name] = ArraySplit(name, images, labels, prefix=f"synthetic:{seed}:{name}")
    return PatchDataset(spec=spec, kind="synthetic", splits=splits)
