"""The tf.data adapter: any `Split` from edge_pcam.runtime.datasets as batches for Keras.

JPEG and PNG files are read and decoded inside tf.data (JPEG with
`dct_method="INTEGER_ACCURATE"`, which gives exactly Pillow's pixels, so the
model trains on the pixels the device runtime will see). Every other split
(HDF5, TIFF, in-memory arrays) is read by row index through the split's own
numpy reader, a batch of rows at a time, so memory stays bounded. A split
with a `tf_elements(shuffle_files, seed)` method (TFDS) streams its own records
through a shuffle buffer.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from edge_pcam.data.augment import DESIGN, Augmentation, augment_batch
from edge_pcam.runtime.datasets.base import PATCH_SHAPE, Split

NATIVE_SUFFIXES = (".jpg", ".jpeg", ".png")
CACHE_READ_ROWS = 512
STREAM_SHUFFLE_BUFFER = 16384  # patches (450 MB) for readers without random access


def make_dataset(split: Split, batch_size: int, *, training: bool, seed: int = 0,
                 augment: bool | None = None, repeat: bool = False, drop_remainder: bool = False,
                 augmentation: Augmentation = DESIGN, cache: bool = False,
                 check_files: bool = True) -> tf.data.Dataset:
    """Batches of (float32 images (B, 96, 96, 3) in [0, 1], float32 labels (B, 1)).

    `training` shuffles (reshuffled every pass, deterministic under `seed`) and,
    unless `augment` says otherwise, augments with `augmentation` (the design's
    flips, brightness and contrast by default). Without `training` the rows come
    in the split's order, unaugmented. `repeat` makes the dataset endless.
    `cache` keeps the decoded uint8 patches in memory after the first pass
    (about 27.6 kB a patch). `check_files` runs `split.check()` first (image
    folders read every file's header), so a file that is not a 96x96 RGB patch
    is a DataError naming it rather than an error in the middle of training.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    augment = training if augment is None else augment
    files = split.files()
    native = files is not None and all(f.lower().endswith(NATIVE_SUFFIXES) for f in files)
    if native and check_files:
        split.check()
    n = len(split)
    labels = split.labels.astype(np.float32).reshape(-1, 1)

    def shuffled(ds: tf.data.Dataset) -> tf.data.Dataset:
        if training:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        return ds.repeat() if repeat else ds

    stream = getattr(split, "tf_elements", None)
    if callable(stream):  # a reader that streams itself into tf.data (TFDS records)
        ds = stream(shuffle_files=training, seed=seed)
        ds = ds.cache() if cache else ds
        if training:
            ds = ds.shuffle(min(n, STREAM_SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
        ds = (ds.repeat() if repeat else ds).batch(batch_size, drop_remainder=drop_remainder)
    elif native:
        decode = _decoder(any(f.lower().endswith(".png") for f in files))
        ds = tf.data.Dataset.from_tensor_slices((files, labels))
        if cache:
            ds = shuffled(ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache())
        else:
            ds = shuffled(ds).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    else:
        read = _index_reader(split, labels)
        if cache:
            ds = (tf.data.Dataset.range(n).batch(CACHE_READ_ROWS).map(read).unbatch().cache())
            ds = shuffled(ds).batch(batch_size, drop_remainder=drop_remainder)
        else:
            ds = shuffled(tf.data.Dataset.range(n)).batch(batch_size, drop_remainder=drop_remainder)
            ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE)

    if augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: (augment_batch(_to_float(batch[0]), s, augmentation), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (_to_float(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _to_float(images: tf.Tensor) -> tf.Tensor:
    return tf.cast(images, tf.float32) / 255.0


def _decoder(with_png: bool):
    def decode(path: tf.Tensor, label: tf.Tensor):
        data = tf.io.read_file(path)
        if with_png:
            image = tf.cond(tf.io.is_jpeg(data),
                            lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                            lambda: tf.io.decode_png(data, channels=3))
        else:
            image = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
        return tf.ensure_shape(image, PATCH_SHAPE), label
    return decode


def _index_reader(split: Split, labels: np.ndarray):
    """Read a batch of row indices through the split's numpy reader."""
    def read_numpy(indices: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(split.read(indices), dtype=np.uint8)

    def read(indices: tf.Tensor):
        images = tf.numpy_function(read_numpy, [indices], tf.uint8, stateful=False)
        images = tf.ensure_shape(images, (None, *PATCH_SHAPE))
        return images, tf.gather(labels, indices)
    return read

