"""`tfds:patch_camelyon`: PCam as prepared by TensorFlow Datasets (workstation side).

The runtime's `open_dataset` finds `open_tfds` through the `edge_pcam.data_schemes`
entry point (pyproject.toml), so the device side never imports this module
unless a `tfds:` spec is given; TensorFlow Datasets is imported only then. The data must already be prepared (`tfds build
patch_camelyon`, honouring TFDS_DATA_DIR). Labels are read once without
decoding images; patches are read in order by a streaming reader (sequential
batches are fast, arbitrary rows cost a skip through the records), and the
tf.data adapter streams the records directly (`tf_elements`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets.base import PATCH_SHAPE, PatchDataset, Split

DATASET = "patch_camelyon"
SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}


class TfdsSplit(Split):
    """One TFDS split: labels up front, images streamed from the prepared records."""

    def __init__(self, name: str, builder: Any, tfds_split: str):
        import tensorflow_datasets as tfds
        self.name, self._builder, self._tfds_split = name, builder, tfds_split
        labels = builder.as_dataset(split=tfds_split, shuffle_files=False,
                                    decoders={"image": tfds.decode.SkipDecoding()})
        labels = labels.map(lambda ex: ex["label"]).batch(8192)
        self.labels = np.concatenate([np.asarray(b) for b in tfds.as_numpy(labels)]).astype(np.uint8)
        self._cursor: tuple[int, Any] | None = None  # (next row, numpy iterator)

    def _images(self, start: int):
        import tensorflow_datasets as tfds
        ds = self._builder.as_dataset(split=self._tfds_split, shuffle_files=False)
        return iter(tfds.as_numpy(ds.skip(start).map(lambda ex: ex["image"])))

    def read(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((idx.size, *PATCH_SHAPE), np.uint8)
        last = -1
        for pos in np.argsort(idx, kind="stable"):
            row = int(idx[pos])
            if row == last:
                out[pos] = image
                continue
            last = row
            if not 0 <= row < len(self):
                raise IndexError(f"tfds:{DATASET}/{self._tfds_split}: row {row} out of range")
            if self._cursor is None or self._cursor[0] > row:
                self._cursor = (row, self._images(row))
            nxt, it = self._cursor
            while True:
                image = next(it)
                nxt += 1
                if nxt - 1 == row:
                    break
            out[pos] = image
            self._cursor = (nxt, it)
        return out

    def ids(self) -> list[str]:
        return [f"tfds:{DATASET}/{self._tfds_split}#{i}" for i in range(len(self))]

    def tf_elements(self, shuffle_files: bool, seed: int):
        """(uint8 image (96, 96, 3), float32 label (1,)) elements straight from the records."""
        import tensorflow as tf
        import tensorflow_datasets as tfds
        config = tfds.ReadConfig(shuffle_seed=seed) if shuffle_files else None
        ds = self._builder.as_dataset(split=self._tfds_split, shuffle_files=shuffle_files, read_config=config)
        return ds.map(lambda ex: (ex["image"], tf.reshape(tf.cast(ex["label"], tf.float32), [1])),
                      num_parallel_calls=tf.data.AUTOTUNE)


def open_tfds(spec: str) -> PatchDataset:
    """Open `tfds:patch_camelyon` (a DataError explains what is missing otherwise)."""
    name = spec.split(":", 1)[1]
    if name != DATASET:
        raise DataError(f"{spec}: only tfds:{DATASET} is supported")
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(f"{spec}: tensorflow-datasets is not installed "
                        f"(pip install tensorflow-datasets, then `tfds build {DATASET}`)") from None
    try:
        builder = tfds.builder(DATASET)
        prepared = {s: n for s, n in SPLIT_NAMES.items() if n in builder.info.splits}
    except Exception as exc:  # tfds raises many types (registry, file system, version)
        raise DataError(f"{spec}: cannot open the TFDS builder ({type(exc).__name__}: {exc})") from None
    if not prepared:
        raise DataError(f"{spec}: not prepared in {builder.data_dir} (run `tfds build {DATASET}`, "
                        "or set TFDS_DATA_DIR to where it was prepared)")
    splits = {ours: TfdsSplit(ours, builder, theirs) for ours, theirs in prepared.items()}
    return PatchDataset(spec=spec, kind="tfds", splits=splits)
