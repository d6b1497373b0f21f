"""The model card: one JSON Schema in the package, validated on every read and write, refused in one line.

Runs in both venvs (no TensorFlow, no jsonschema needed); tests/test_card_schema.py checks the schema
file and this validator against the `jsonschema` package where it is installed.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_pcam.errors import ModelFileError
from edge_pcam.runtime.bundled import MODELS_DIR
from edge_pcam.runtime.card_schema import SCHEMA_FILE, CardSchema, SchemaError, card_schema
from edge_pcam.runtime.interpreter import load_model
from edge_pcam.runtime.metadata import metadata_from_bytes, model_bytes, read_metadata, with_metadata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from card_support import INT8, raw_file  # noqa: E402

# (change to a valid card, the words the one-line refusal must contain)
BROKEN = [
    (lambda c: c["thresholds"].update(triage=1.5), "thresholds.triage: 1.5 is above the maximum 1"),
    (lambda c: c["thresholds"].update(decision=-0.1), "thresholds.decision: -0.1 is below the minimum 0"),
    (lambda c: c["thresholds"].update(decision="0.5"), "thresholds.decision: \"0.5\" is not of type number"),
    (lambda c: c["thresholds"].update(decision=True), "thresholds.decision: true is not of type number"),
    (lambda c: c["thresholds"].update(decison=0.5), "thresholds: unknown key 'decison'"),
    (lambda c: c.update(format="int4"), "format: \"int4\" is not one of"),
    (lambda c: c.pop("integrity"), "(card): lacks integrity"),
    (lambda c: c.pop("operating_characteristics"), "(card): lacks operating_characteristics"),
    (lambda c: c["integrity"].update(model_sha256="abc"), "integrity.model_sha256: \"abc\" does not match"),
    (lambda c: c["operating_characteristics"]["points"]["decision"].update(tp=-1),
     "operating_characteristics.points.decision.tp: -1 is below the minimum 0"),
    (lambda c: c["operating_characteristics"].update(split="test"), "operating_characteristics.split"),
    (lambda c: c["operating_characteristics"].update(median_sharpness=0),
     "operating_characteristics.median_sharpness: 0 must be greater than 0"),
    (lambda c: c.update(batch=0), "batch: 0 is below the minimum 1"),
    (lambda c: c.update(labels=["tumour"]), "labels: fewer than 2 items"),
    (lambda c: c.update(provenanse={}), "(card): unknown key 'provenanse'"),
    (lambda c: c["input"].update(scale=0), "input.scale: 0 must be greater than 0"),
]


@pytest.fixture(scope="module")
def card() -> dict:
    return read_metadata(INT8)


def test_schema_is_versioned_and_documents_every_key():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$schema"].endswith("2020-12/schema") and schema["properties"]["schema_version"]["enum"] == [1, 2]
    assert schema["additionalProperties"] is False  # a key the schema does not name is refused
    for key, sub in schema["properties"].items():
        assert sub.get("description"), f"{key} is not documented"
    for key in ("provenance", "calibration", "integrity", "operating_characteristics", "upgraded"):
        assert key in schema["properties"]


def test_shipped_and_fixture_cards_follow_the_schema():
    for path in [*sorted(MODELS_DIR.glob("*.tflite")), INT8]:
        meta = read_metadata(path)
        assert meta["schema_version"] == 2 and card_schema().errors(meta) == [], path


@pytest.mark.parametrize("change, words", BROKEN, ids=[w.split(":")[0] for _, w in BROKEN])
def test_a_card_that_breaks_the_schema_is_refused_in_one_line(tmp_path, card, change, words):
    bad = copy.deepcopy(card)
    change(bad)
    path = tmp_path / "bad.tflite"
    path.write_bytes(raw_file(model_bytes(INT8.read_bytes()), bad))
    with pytest.raises(ModelFileError) as exc:
        load_model(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: invalid model card: ") and words in message and "\n" not in message
    if "integrity" not in words:  # the writer sets the digest itself; any other break it refuses to write
        with pytest.raises(ModelFileError, match="invalid model card"):
            with_metadata(INT8.read_bytes(), bad)


def test_cli_refuses_a_bad_card_with_one_line_and_exit_code_2(tmp_path, card):
    bad = {**card, "thresholds": {**card["thresholds"], "high_specificity": 7}}
    path = tmp_path / "bad.tflite"
    path.write_bytes(raw_file(model_bytes(INT8.read_bytes()), bad))
    for command in (["info", str(path)], ["predict", str(INT8.parents[1] / "patches"), "--model", str(path)]):
        proc = subprocess.run([sys.executable, "-m", "edge_pcam", *command], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.strip().splitlines() == [
            f"edge-pcam: error: {path}: invalid model card: thresholds.high_specificity: 7 is above the maximum 1"]


def test_newer_schema_is_refused_with_what_to_do(tmp_path, card):
    path = tmp_path / "future.tflite"
    path.write_bytes(raw_file(model_bytes(INT8.read_bytes()), {**card, "schema_version": 3}))
    with pytest.raises(ModelFileError, match="schema 3 is newer than this edge-pcam understands"):
        read_metadata(path)


def test_writer_stores_the_card_and_labels_uncompressed_and_keeps_associated_files(card):
    import io
    import zipfile

    data = INT8.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert {i.filename: i.compress_type for i in zf.infolist()} == {
            "labels.txt": zipfile.ZIP_STORED, "edge_pcam/metadata.json": zipfile.ZIP_STORED}
    again = with_metadata(data, {**card, "command": "re-carded"})  # e.g. calibrate, upgrade
    with zipfile.ZipFile(io.BytesIO(again)) as zf:
        assert zf.read("labels.txt") == b"tumour\n"
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())  # TFLite's extractor needs it
    assert metadata_from_bytes(again)["command"] == "re-carded"
    assert model_bytes(again) == model_bytes(data)


def test_validator_refuses_a_schema_keyword_it_does_not_implement():
    with pytest.raises(SchemaError, match="uniqueItems"):
        CardSchema({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}})
    with pytest.raises(SchemaError, match="does not resolve"):
        CardSchema({"$ref": "#/$defs/missing"}).errors({})


def test_validator_semantics_on_hand_made_cases():
    schema = CardSchema({
        "type": "object", "required": ["n"], "additionalProperties": False,
        "properties": {"n": {"type": "integer", "minimum": 1}, "x": {"anyOf": [{"type": "null"}, {"const": 2}]},
                       "v": {"if": {"const": 1}, "then": {"type": "integer"}, "else": {"type": "string"}}}})
    assert schema.errors({"n": 1.0}) == []  # JSON Schema: 1.0 is an integer
    assert schema.errors({"n": True}) == ["n: true is not of type integer"]
    assert schema.errors({"n": 1, "x": None}) == [] and schema.errors({"n": 1, "x": 2.0}) == []
    assert schema.errors({"n": 1, "x": 3})[0].startswith("x: matches none of the allowed forms")
    assert schema.errors({"n": 1, "v": 1}) == [] and schema.errors({"n": 1, "v": "a"}) == []  # if 1 then integer
    assert schema.errors({"n": 1, "v": 2}) == ["v: 2 is not of type string"]
    assert schema.errors({}) == ["(card): lacks n"]
