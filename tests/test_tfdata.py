"""make_dataset: identical decoding to Pillow (proved on real subset files), every reader path,
augmentation deterministic under a seed and off for validation."""

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow")

from edge_pcam.data.augment import Augmentation, augment_batch  # noqa: E402
from edge_pcam.data.tfdata import make_dataset  # noqa: E402
from edge_pcam.errors import DataError, RecipeError  # noqa: E402
from edge_pcam.runtime.datasets import ArraySplit, open_dataset  # noqa: E402
from edge_pcam.runtime.datasets.folder import FileSplit  # noqa: E402
from edge_pcam.runtime.datasets.hdf5 import HDF5Split  # noqa: E402


def _collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def _array_split(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return ArraySplit("train", rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8), rng.integers(0, 2, n))


def test_jpeg_decoding_equals_pillow_on_real_subset_files(subset_dir):
    ds = open_dataset(str(subset_dir))
    files = ds.split("train").files()[::67] + ds.split("valid").files()[::30]   # 299 + 100 files
    split = FileSplit("valid", files, np.zeros(len(files)))
    x, _ = _collect(make_dataset(split, 64, training=False))
    pillow = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    assert np.array_equal(np.round(x * 255).astype(np.uint8), pillow)        # byte equality
    assert np.array_equal(x, pillow.astype(np.float32) / 255)                # and the exact float input
    # the check has teeth: TensorFlow's default DCT gives other pixels on these files
    default = np.stack([tf.io.decode_jpeg(tf.io.read_file(f)).numpy() for f in files[:20]])
    assert not np.array_equal(default, pillow[:20])


def test_validation_keeps_order_and_pixels_for_every_reader(tmp_path):
    arrays = _array_split(23)
    x, y = _collect(make_dataset(arrays, 8, training=False))
    assert x.dtype == np.float32 and x.shape == (23, 96, 96, 3) and y.shape == (23, 1)
    assert np.array_equal(x, arrays.images.astype(np.float32) / 255)
    assert np.array_equal(y[:, 0], arrays.labels)

    import h5py
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = arrays.images
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f["y"] = arrays.labels.reshape(-1, 1, 1, 1)
    x_h5, y_h5 = _collect(make_dataset(HDF5Split("valid", tmp_path / "x.h5", tmp_path / "y.h5"), 5, training=False))
    assert np.array_equal(x_h5, x) and np.array_equal(y_h5, y)

    paths = []
    for i, img in enumerate(arrays.images[:6]):
        suffix = ".png" if i % 2 else ".tif"       # PNG decoded in tf.data, TIFF through the numpy reader
        Image.fromarray(img).save(tmp_path / f"p{i}{suffix}")
        paths.append(str(tmp_path / f"p{i}{suffix}"))
    for chosen in (paths[1::2], paths):
        files = FileSplit("valid", chosen, np.ones(len(chosen)))
        x_f, _ = _collect(make_dataset(files, 4, training=False))
        expected = [arrays.images[int(p.rsplit("/p", 1)[1][0])] for p in chosen]
        assert np.array_equal(x_f, np.stack(expected).astype(np.float32) / 255)


def test_cache_gives_the_same_batches():
    split = _array_split(30)
    for training in (False, True):
        plain = _collect(make_dataset(split, 7, training=training, seed=4))
        cached = _collect(make_dataset(split, 7, training=training, seed=4, cache=True))
        assert np.array_equal(plain[0], cached[0]) and np.array_equal(plain[1], cached[1])


def test_augmentation_is_deterministic_under_a_seed_and_varies_by_epoch():
    split = _array_split(40)
    a = make_dataset(split, 16, training=True, seed=7)
    b = make_dataset(split, 16, training=True, seed=7)
    a1, a2 = _collect(a), _collect(a)        # two epochs of the same dataset
    b1, b2 = _collect(b), _collect(b)
    assert np.array_equal(a1[0], b1[0]) and np.array_equal(a2[0], b2[0]) and np.array_equal(a1[1], b1[1])
    assert not np.array_equal(a1[0], a2[0])                     # reshuffled and re-augmented each epoch
    c1 = _collect(make_dataset(split, 16, training=True, seed=8))
    assert not np.array_equal(a1[0], c1[0])
    assert a1[0].min() >= 0 and a1[0].max() <= 1 and a1[0].shape == (40, 96, 96, 3)
    # shuffling keeps image and label together
    plain = split.images.astype(np.float32) / 255
    x, y = _collect(make_dataset(split, 16, training=True, seed=7, augment=False))
    for img, label in zip(x, y[:, 0]):
        row = int(np.argmin(np.abs(plain - img).reshape(40, -1).sum(1)))
        assert np.array_equal(plain[row], img) and split.labels[row] == label
    assert sorted(y[:, 0]) == sorted(split.labels)


def test_validation_is_never_augmented_unless_asked():
    split = _array_split(12)
    x, _ = _collect(make_dataset(split, 12, training=False, seed=3))
    assert np.array_equal(x, split.images.astype(np.float32) / 255)
    x_aug, _ = _collect(make_dataset(split, 12, training=False, seed=3, augment=True))
    assert not np.array_equal(x_aug, x)


def test_repeat_and_drop_remainder():
    split = _array_split(10)
    batches = list(make_dataset(split, 4, training=True, repeat=True, drop_remainder=True).take(7))
    assert len(batches) == 7 and all(x.shape == (4, 96, 96, 3) and y.shape == (4, 1) for x, y in batches)
    assert [b[0].shape[0] for b in make_dataset(split, 4, training=False)] == [4, 4, 2]


def test_each_augmentation_does_what_it_says():
    rng = np.random.default_rng(1)
    images = tf.constant(rng.uniform(0.3, 0.7, (32, 96, 96, 3)).astype(np.float32))
    seed = tf.constant([5, 6], tf.int64)
    off = dict(flips=False, brightness=0.0, contrast=None)

    flipped = augment_batch(images, seed, Augmentation(flips=True, brightness=0.0, contrast=None)).numpy()
    x = images.numpy()
    kinds = set()
    for i in range(32):
        options = [x[i], x[i, :, ::-1], x[i, ::-1], x[i, ::-1, ::-1]]
        kinds.add(next(k for k, o in enumerate(options) if np.array_equal(flipped[i], o)))
    assert kinds == {0, 1, 2, 3}

    rotated = augment_batch(images, seed, Augmentation(**{**off, "rotate90": True})).numpy()
    assert all(any(np.array_equal(rotated[i], np.rot90(x[i], k)) for k in range(4)) for i in range(32))

    bright = augment_batch(images, seed, Augmentation(**{**off, "brightness": 0.1})).numpy() - x
    shift = bright.reshape(32, -1)
    assert np.allclose(shift, shift[:, :1], atol=1e-6) and np.abs(shift).max() <= 0.1 + 1e-6
    # 32 draws of U(-0.1, 0.1): both directions used, spread like a uniform's (std 0.058)
    assert shift[:, 0].min() < -0.03 and shift[:, 0].max() > 0.03 and 0.03 < shift[:, 0].std() < 0.09

    contrast = augment_batch(images, seed, Augmentation(**{**off, "contrast": (0.8, 1.2)})).numpy()
    assert np.allclose(contrast.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1e-5)
    ratio = (contrast - contrast.mean(axis=(1, 2), keepdims=True)) / (x - x.mean(axis=(1, 2), keepdims=True))
    factors = np.median(ratio.reshape(32, -1), axis=1)
    assert factors.min() >= 0.8 - 1e-3 and factors.max() <= 1.2 + 1e-3
    assert factors.min() < 0.9 and factors.max() > 1.1  # 32 draws of U(0.8, 1.2) reach both ends

    same = augment_batch(images, seed, Augmentation(**{**off, "hue": 0.0, "saturation": (1.0, 1.0)})).numpy()
    assert np.allclose(same, x, atol=1e-5)
    colour = augment_batch(images, seed, Augmentation(**{**off, "hue": 0.04, "saturation": (0.75, 1.25)})).numpy()
    assert colour.min() >= 0 and colour.max() <= 1 and np.abs(colour - x).max() > 0.01


def test_augmentation_from_recipe_values():
    aug = Augmentation.from_dict({"rotate90": True, "hue": 0.04, "saturation": [0.75, 1.25]})
    assert aug.rotate90 and aug.hue == 0.04 and aug.saturation == (0.75, 1.25) and aug.contrast == (0.8, 1.2)
    assert Augmentation.from_dict(aug.to_dict()) == aug
    with pytest.raises(RecipeError, match="unknown augmentation keys"):
        Augmentation.from_dict({"zoom": 0.1})
    with pytest.raises(RecipeError, match="contrast"):
        Augmentation.from_dict({"contrast": [1.2, 0.8]})
    with pytest.raises(RecipeError, match="flips must be true or false"):
        Augmentation.from_dict({"flips": "yes"})


def test_bad_image_in_a_folder_is_a_data_error_before_training(tmp_path):
    good = np.zeros((96, 96, 3), np.uint8)
    Image.fromarray(good).save(tmp_path / "a.jpg")
    Image.fromarray(good[:80]).save(tmp_path / "b.jpg")
    split = FileSplit("train", [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")], np.array([0, 1]))
    with pytest.raises(DataError, match=r"b\.jpg: 96x80 RGB image, not a 96x96 RGB patch"):
        make_dataset(split, 2, training=True)


def test_streaming_reader_hook_is_used():
    images = _array_split(9).images

    class Streaming(ArraySplit):
        def tf_elements(self, shuffle_files, seed):
            labels = self.labels.astype(np.float32).reshape(-1, 1)
            return tf.data.Dataset.from_tensor_slices((self.images, labels))

        def read(self, indices):
            raise AssertionError("a streaming split must not be read by index")

    split = Streaming("train", images, np.arange(9) % 2)
    x, y = _collect(make_dataset(split, 4, training=False))
    assert np.array_equal(x, images.astype(np.float32) / 255) and np.array_equal(y[:, 0], np.arange(9) % 2)
    x_t, _ = _collect(make_dataset(split, 4, training=True, seed=1))
    assert x_t.shape == (9, 96, 96, 3)
