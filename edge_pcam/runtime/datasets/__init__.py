"""PCam readers in plain numpy (no TensorFlow): one interface for every source.

`open_dataset(spec)` turns a `--data` argument into a `PatchDataset`:

    synthetic:N[:SEED]        generated H&E-like patches (tests, offline demos)
    tfds:patch_camelyon       TensorFlow Datasets, where it is installed and prepared
    DIR                       official PCam HDF5 files (.h5 or .h5.gz), an image
                              folder {split}/{label}/*, or Kaggle's train/ + train_labels.csv
    DIR?exclude_source=NAME   an image folder without the rows of a source named in its labels.csv
                              (?source=NAME[,NAME] keeps only those)
    A+B                       several sources as one dataset: splits of the same name joined
"""

from edge_pcam.runtime.datasets.base import LABEL_NAMES, PATCH_SHAPE, SPLITS, ArraySplit, PatchDataset, Split
from edge_pcam.runtime.datasets.spec import open_dataset

__all__ = ["ArraySplit", "LABEL_NAMES", "PATCH_SHAPE", "PatchDataset", "SPLITS", "Split", "open_dataset"]
