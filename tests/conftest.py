"""Shared fixtures: where the real PCam subset is, and markers for TensorFlow-only tests."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBSET = Path(os.environ.get("EDGE_PCAM_SUBSET", REPO.parent / "shared" / "data" / "pcam-subset"))
HAVE_TF = importlib.util.find_spec("tensorflow") is not None


def pytest_collection_modifyitems(config, items):
    skip_tf = pytest.mark.skip(reason="TensorFlow is not installed in this environment (device-side venv)")
    for item in items:
        if "tf" in item.keywords and not HAVE_TF:
            item.add_marker(skip_tf)


@pytest.fixture(scope="session")
def subset_dir() -> Path:
    """The real PCam subset (../shared/data/pcam-subset); skips with the reason where absent."""
    if not (SUBSET / "labels.csv").is_file():
        pytest.skip(f"real PCam subset not found at {SUBSET} (set EDGE_PCAM_SUBSET to point at it)")
    return SUBSET
