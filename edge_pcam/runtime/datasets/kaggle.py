"""Kaggle's "Histopathologic Cancer Detection" layout: `train/<id>.tif` and `train_labels.csv` (`id,label`).

Kaggle gives one labelled split (its test/ folder has no public labels), so
rows are divided into train and valid by a hash of the id: the same id always
lands in the same split, whatever order or subset of the files is present.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets.base import PatchDataset
from edge_pcam.runtime.datasets.folder import FileSplit

LABELS_CSV = "train_labels.csv"
IMAGE_DIR = "train"
VALID_PERCENT = 10


def recognises(path: Path) -> bool:
    """True when `path` holds train_labels.csv and a train/ folder."""
    return (Path(path) / LABELS_CSV).is_file() and (Path(path) / IMAGE_DIR).is_dir()


def split_of(patch_id: str) -> str:
    """'valid' for about VALID_PERCENT% of ids (by MD5 of the id), else 'train'."""
    bucket = int(hashlib.md5(patch_id.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "valid" if bucket < VALID_PERCENT else "train"


def open(path: Path) -> PatchDataset:  # noqa: A001 - the reader interface of datasets.spec
    """Read train_labels.csv, check every listed image exists, and divide the rows into train/valid."""
    path = Path(path)
    csv_path, image_dir = path / LABELS_CSV, path / IMAGE_DIR
    present = {e.name for e in os.scandir(image_dir)}
    rows: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "valid": ([], [])}
    # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of the header
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            _read_rows(csv_path, csv.reader(fh), image_dir, present, rows)
    except UnicodeDecodeError as exc:
        raise DataError(f"{csv_path}: not UTF-8 text (found byte 0x{exc.object[exc.start]:02x}); "
                        "save it as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{csv_path}: not a readable CSV file ({exc})") from None
    if not any(paths for paths, _ in rows.values()):
        raise DataError(f"{csv_path}: no rows")
    splits = {name: FileSplit(name, paths, np.array(labels, np.uint8))
              for name, (paths, labels) in rows.items() if paths}
    return PatchDataset(spec=str(path), kind="kaggle", splits=splits)


def _read_rows(csv_path: Path, reader, image_dir: Path, present: set[str],
               rows: dict[str, tuple[list[str], list[int]]]) -> None:
    """Check the header, then add each `id,label` row to its split in `rows`."""
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header[:2]] != ["id", "label"]:
        raise DataError(f"{csv_path}: expected a header 'id,label', got {header!r}")
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < 2 or row[1].strip() not in ("0", "1"):
            raise DataError(f"{csv_path}: line {line}: expected '<id>,<0 or 1>', got {','.join(row)!r}")
        patch_id = row[0].strip()
        name = f"{patch_id}.tif"
        if name not in present:
            raise DataError(f"{csv_path}: line {line}: image {image_dir / name} not found")
        paths, labels = rows[split_of(patch_id)]
        paths.append(str(image_dir / name))
        labels.append(int(row[1]))
