"""The model-card schema against the reference JSON Schema implementation (`jsonschema`, a dev dependency).

The device validates cards with edge_pcam.runtime.card_schema (no extra dependency); here the schema file
must be valid JSON Schema 2020-12, and both validators must reach the same verdict on good and broken cards.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from edge_pcam.runtime.bundled import MODELS_DIR
from edge_pcam.runtime.card_schema import SCHEMA_FILE, card_schema
from edge_pcam.runtime.metadata import read_metadata

jsonschema = pytest.importorskip("jsonschema")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))
from card_support import INT8, LEGACY_INT8  # noqa: E402
from test_model_card import BROKEN  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)  # the file itself is valid JSON Schema
    return jsonschema.Draft202012Validator(schema)


def _cards() -> list[tuple[str, dict]]:
    good = [(p.name, read_metadata(p)) for p in [*sorted(MODELS_DIR.glob("*.tflite")), INT8, LEGACY_INT8]]
    broken = []
    for change, words in BROKEN:
        card = copy.deepcopy(read_metadata(INT8))
        change(card)
        broken.append((words, card))
    extra = copy.deepcopy(read_metadata(INT8))
    extra["calibration"] = {"data": "x", "n": 3}  # lacks before/after/original
    sharp = copy.deepcopy(read_metadata(INT8))
    sharp["operating_characteristics"]["median_sharpness"] = 4.2  # as calibrate writes it
    return good + broken + [("calibration incomplete", extra), ("median sharpness is fine", sharp),
                            ("v1 without integrity", {**read_metadata(LEGACY_INT8)}),
                            ("companion without outputs is fine", {**read_metadata(INT8), "format": "gradcam",
                                                                   "thresholds": {}})]


@pytest.mark.parametrize("name, card", _cards(), ids=[n[:40] for n, _ in _cards()])
def test_same_verdict_as_jsonschema(reference, name, card):
    ours = card_schema().errors(card)
    theirs = sorted(reference.iter_errors(card), key=lambda e: list(e.path))
    assert (ours == []) == (theirs == []), (name, ours, [e.message for e in theirs])
