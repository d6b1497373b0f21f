"""Representative data for full-integer calibration: balanced patches from the train split.

The int8 file takes raw uint8 pixels: its input must have scale 1/255 and zero
point 0, which the converter derives from the smallest and largest input value
it sees during calibration. Real H&E patches rarely hold a pure black and a
pure white pixel, so `calibration_batches` pins one pixel of the first patch
to 0 and one to 1 (two pixels in 500 patches; the activations' ranges are
unaffected in practice), and `edge_pcam.export.tflite` asserts the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets.base import Split

DEFAULT_COUNT = 500


def representative_images(split: Split, count: int = DEFAULT_COUNT, seed: int = 0) -> np.ndarray:
    """Up to `count` uint8 patches from `split`, half of each label where the split allows.

    A label with too few patches is topped up from the other. DataError when the
    split is empty or `count` is not positive.
    """
    if count < 1:
        raise DataError(f"representative data: need at least 1 patch, asked for {count}")
    n = len(split)
    if n == 0:
        raise DataError(f"split '{split.name}' is empty: no representative data for int8 calibration")
    rng = np.random.default_rng(seed)
    by_label = [rng.permutation(np.flatnonzero(split.labels == label)) for label in (0, 1)]
    want = (count - count // 2, count // 2)
    take = [min(len(by_label[label]), want[label]) for label in (0, 1)]
    short = count - sum(take)
    for label in (0, 1):  # top up from the other label
        extra = min(short, len(by_label[label]) - take[label])
        take[label] += extra
        short -= extra
    chosen = np.sort(np.concatenate([by_label[label][:take[label]] for label in (0, 1)]))
    images = split.read(chosen)
    if images.shape[0] == 0:
        raise DataError(f"split '{split.name}': no patches could be read for int8 calibration")
    return images


def calibration_batches(images: np.ndarray, batch: int = 1) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A `representative_dataset` for the TFLite converter: float32 (batch, 96, 96, 3) in [0, 1].

    Pins one pixel of the first patch to 0.0 and one to 1.0 so that the input
    quantization spans exactly [0, 1] (scale 1/255, zero point 0 for uint8).
    Patches are cycled to fill the last batch of a batched conversion.
    """
    if len(images) == 0:
        raise DataError("representative data is empty: cannot calibrate an int8 model")
    x = np.asarray(images, dtype=np.float32) / np.float32(255.0)
    x[0, 0, 0, :] = 0.0
    x[0, 0, 1, :] = 1.0
    rows = int(np.ceil(len(x) / batch)) * batch
    order = np.arange(rows) % len(x)

    def generate() -> Iterator[list[np.ndarray]]:
        for start in range(0, rows, batch):
            yield [x[order[start:start + batch]]]

    return generate
