"""Shared fixtures: where the real PCam subset is, and markers for TensorFlow-only tests.

Real-data tests skip with the reason where ../shared/data/pcam-subset (or
EDGE_PCAM_SUBSET) is absent, unless EDGE_PCAM_REQUIRE_REAL_DATA=1 (set by
.ci/run): then its absence fails them, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBSET = Path(os.environ.get("EDGE_PCAM_SUBSET", REPO.parent / "shared" / "data" / "pcam-subset"))
HAVE_TF = importlib.util.find_spec("tensorflow") is not None
REQUIRE_REAL_DATA = os.environ.get("EDGE_PCAM_REQUIRE_REAL_DATA") == "1"


def pytest_collection_modifyitems(config, items):
    skip_tf = pytest.mark.skip(reason="TensorFlow is not installed in this environment (device-side venv)")
    for item in items:
        if "tf" in item.keywords and not HAVE_TF:
            item.add_marker(skip_tf)
        if "real_data" in item.keywords and not {"subset_dir", "extra_dir"} & set(getattr(item, "fixturenames", ())):
            raise pytest.UsageError(f"{item.nodeid}: a real_data test must take the subset_dir fixture "
                                    "(it decides between skipping and, in CI, failing)")


def _real_data(folder: Path, what: str) -> Path:
    """`folder` if it holds a labels.csv; else skip, or fail under EDGE_PCAM_REQUIRE_REAL_DATA=1."""
    if not (folder / "labels.csv").is_file():
        reason = f"{what} not found at {folder}"
        if REQUIRE_REAL_DATA:
            pytest.fail(f"{reason}; EDGE_PCAM_REQUIRE_REAL_DATA=1 forbids skipping real-data tests", pytrace=False)
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="session")
def subset_dir() -> Path:
    """The real PCam subset (../shared/data/pcam-subset); skips with the reason where absent."""
    return _real_data(SUBSET, "real PCam subset (set EDGE_PCAM_SUBSET to point at it)")


@pytest.fixture(scope="session")
def extra_dir(subset_dir) -> Path:
    """The extra real patches beside the subset (../shared/data/pcam-extra); skips where absent."""
    return _real_data(subset_dir.parent / "pcam-extra", "pcam-extra")


# Conversion tests (tests/test_convert*.py, test_qat.py, test_partition.py,
# test_gradcam_companion.py) share one small trained model; see convert_support.py.
@pytest.fixture(scope="session")
def easy_data():
    """In-memory synthetic splits on an easy task (tumour patches darkened)."""
    from convert_support import easy_dataset
    return easy_dataset()


@pytest.fixture(scope="session")
def tiny_model_h5(easy_data, tmp_path_factory) -> Path:
    """build_model() trained for a few steps on `easy_data`, as .h5."""
    from convert_support import train_tiny_model
    return train_tiny_model(easy_data, tmp_path_factory.mktemp("tiny-model") / "tiny.h5")


@pytest.fixture(scope="session")
def tiny_qat_h5(easy_data, tiny_model_h5, tmp_path_factory) -> Path:
    """`tiny_model_h5` made quantization-aware and fine-tuned for one epoch, as .h5."""
    from convert_support import qat_tiny_model
    return qat_tiny_model(easy_data, tiny_model_h5, tmp_path_factory.mktemp("tiny-qat") / "tiny_qat.h5")


@pytest.fixture(scope="session")
def converted_dir(easy_data, tiny_model_h5, tmp_path_factory) -> Path:
    """`tiny_model_h5` converted to every CPU format (+ companion) by edge_pcam.export.conversion."""
    from edge_pcam.export.conversion import convert
    out = tmp_path_factory.mktemp("converted")
    convert(tiny_model_h5, out, easy_data, formats=["float32", "float16", "dynamic", "int8"],
            representative=64).raise_for_failures()
    return out
