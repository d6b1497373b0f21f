"""Parse a `--data` spec and open the dataset it names."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from edge_pcam.errors import DataError
from edge_pcam.runtime.datasets.base import PatchDataset
from edge_pcam.runtime.datasets.combined import combine, filter_by_source, parse_filter, split_sources

SCHEME_ENTRY_POINTS = "edge_pcam.data_schemes"  # entry-point group: data scheme -> opener(spec)


def open_dataset(spec: str) -> PatchDataset:
    """Open the dataset named by `spec` (see the package docstring for the forms; `A+B` joins sources)."""
    spec = str(spec)
    sources = split_sources(spec)
    if len(sources) > 1:
        return combine([_open_one(s) for s in sources], spec)
    return _open_one(spec)


def _open_one(spec: str) -> PatchDataset:
    path, filters = parse_filter(spec)
    if filters:
        return filter_by_source(_open_folder(Path(path)), Path(path), filters, spec)
    scheme = spec.split(":", 1)[0] if ":" in spec and not Path(spec).exists() else ""
    if scheme == "synthetic":
        from edge_pcam.runtime.datasets.synthetic import open_synthetic
        return open_synthetic(spec)
    opener = _scheme_opener(scheme) if scheme else None
    if opener is not None:
        return opener(spec)
    if scheme:
        raise DataError(f"{spec}: unknown data scheme '{scheme}:' (use synthetic:N, tfds:patch_camelyon or a folder)")
    return _open_folder(Path(spec))


def _scheme_opener(scheme: str) -> Callable[[str], PatchDataset] | None:
    """The opener another part of the package (or another package) registers for `scheme:`.

    `tfds:` is the workstation side's (`edge_pcam.data.tfds`), registered as an entry point
    so that the device side imports it only when asked for.
    """
    found = entry_points(group=SCHEME_ENTRY_POINTS, name=scheme)
    return next(iter(found)).load() if found else None


def _open_folder(path: Path) -> PatchDataset:
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder (give a folder of PCam files, or synthetic:N)")
    from edge_pcam.runtime.datasets import folder, hdf5, kaggle
    for reader in (hdf5, kaggle, folder):
        if reader.recognises(path):
            return reader.open(path)
    raise DataError(f"{path}: no PCam data found (expected camelyonpatch_*.h5[.gz], "
                    "train/ + train_labels.csv, or {split}/{label}/ image folders)")
