"""The model shipped in edge_pcam/models/: size, provenance, and a model card that agrees with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from figure_support import assert_shown, row, table
from script_support import benchmark_script

from edge_pcam.runtime.bundled import MODELS_DIR
from edge_pcam.runtime.metadata import read_metadata, sha256_file

SHIPPED = ("edge_pcam_int8.tflite", "edge_pcam_gradcam.tflite", "edge_pcam_float32.tflite")
MODEL_CARD = Path(__file__).resolve().parents[2] / "MODEL_CARD.md"


def test_shipped_files_fit_in_4_mib_and_name_their_companion():
    assert sum((MODELS_DIR / name).stat().st_size for name in SHIPPED) < 4 * 2**20
    int8 = read_metadata(MODELS_DIR / "edge_pcam_int8.tflite")
    companion = MODELS_DIR / int8["companion"]["file"]
    assert int8["companion"]["sha256"] == sha256_file(companion)
    assert read_metadata(companion)["format"] == "gradcam"


INT8_CHOICE = MODEL_CARD.parent / "benchmarks" / "results" / "int8-choice" / "results.json"


def _chosen() -> dict:
    """The candidate benchmarks/int8_choice.py chose by the README's rule (its committed results)."""
    return json.loads(INT8_CHOICE.read_text())["chosen"]


def test_the_recorded_choice_is_the_rules():
    result = json.loads(INT8_CHOICE.read_text())
    assert benchmark_script("int8_choice").choose(result["rows"])["name"] == result["chosen"]["name"]


def test_the_shipped_int8_file_is_the_one_the_rule_chose():
    chosen, meta = _chosen(), read_metadata(MODELS_DIR / "edge_pcam_int8.tflite")
    assert meta["source_model"]["sha256"] == chosen["source_sha256"], "the shipped int8 file is not the rule's choice"
    assert meta["source"] == ("float" if chosen["name"] == "ptq" else "qat")
    # the bundle was converted again by the same command: the same figures as the candidate's
    assert meta["metrics"]["decision"]["accuracy"] == pytest.approx(chosen["valid_accuracy"], abs=1e-9)
    assert meta["metrics"]["decision"]["auc"] == pytest.approx(chosen["valid_auc"], abs=1e-9)


@pytest.mark.parametrize("name, fmt", [("edge_pcam_int8.tflite", "int8"), ("edge_pcam_float32.tflite", "float32")])
def test_metadata_records_how_the_file_was_made(name, fmt):
    source = "float" if fmt == "float32" or _chosen()["name"] == "ptq" else "qat"
    meta = read_metadata(MODELS_DIR / name)
    assert (meta["format"], meta["source"]) == (fmt, source)
    prov = meta["provenance"]
    assert prov["training"]["command"].startswith("edge-pcam train ") and "[training]" in prov["training"]["recipe"]
    assert prov["conversion"]["command"].startswith("edge-pcam convert ")
    assert "JPEG" in prov["data"] and "not diagnosis" in prov["intended_use"]
    if source == "qat":
        assert prov["qat"]["command"].startswith("edge-pcam qat ")
    # Thresholds were chosen on the tuning set carved from train; the valid split is only reported on.
    assert meta["validation"]["split"] == "valid"
    assert meta["validation"]["thresholds_from"]["split"] == "tuning"
    for point in ("decision", "triage", "high_specificity"):
        m = meta["metrics"][point]
        assert m["threshold"] == meta["thresholds"][point]
        assert {"accuracy", "precision", "recall", "specificity", "f1", "auc"} <= set(m)


def test_model_card_quotes_the_shipped_metrics():
    card = MODEL_CARD.read_text(encoding="utf-8")
    for name in ("edge_pcam_int8.tflite", "edge_pcam_float32.tflite"):
        m = read_metadata(MODELS_DIR / name)["metrics"]["decision"]
        row = next(line for line in card.splitlines()  # the row of the validation table
                   if line.startswith("|") and f"`{name}`" in line and "(shipped)" in line)
        cells = [re.sub(r"[*`]", "", c).strip() for c in row.strip("|").split("|")]
        expected = [f"{m[k]:.3f}" for k in ("accuracy", "precision", "recall", "specificity", "f1", "auc")]
        assert cells[1:7] == expected, row


def _card_text() -> str:
    return MODEL_CARD.read_text(encoding="utf-8")


def _repo_json(path: str) -> dict:
    return json.loads((MODEL_CARD.parent / path).read_text())


def test_model_card_quotes_the_other_validation_rows_from_their_reports():
    # the rows test_model_card_quotes_the_shipped_metrics leaves: the Keras models and --tta
    def keras(kind):
        return _repo_json(f"benchmarks/results/conversion/{kind}/conversion.json")["files"][0]["parity"]["keras"]
    sources = {"Keras float": keras("ptq"), "Keras QAT": keras("qat"),
               "--tta": _repo_json("benchmarks/results/tta/int8_tta.json")["metrics"]["decision"]}
    rows = table(_card_text(), "model", "accuracy", "precision", "F1", "AUC")
    for label, m in sources.items():
        r = row(rows, label)
        for column, key in (("accuracy", "accuracy"), ("precision", "precision"), ("recall (sensitivity)", "recall"),
                            ("specificity", "specificity"), ("F1", "f1"), ("AUC", "auc")):
            assert_shown(r[column], m[key])


def test_model_card_quotes_the_shipped_files_sizes_operating_points_and_parity():
    card = _card_text()
    sizes = table(card, "file", "what", "size")
    assert len(sizes) == len(SHIPPED)
    for name in SHIPPED:
        assert_shown(row(sizes, name)["size"], (MODELS_DIR / name).stat().st_size / 1e6)  # MB = 10^6 bytes
    meta = read_metadata(MODELS_DIR / "edge_pcam_int8.tflite")
    points = table(card, "point", "threshold", "sensitivity", "specificity")
    for label, key in (("decision", "decision"), ("triage", "triage"), ("high specificity", "high_specificity")):
        r, m = row(points, label), meta["metrics"][key]
        assert_shown(r["threshold"], meta["thresholds"][key])
        assert_shown(r["sensitivity"], m["recall"])
        assert_shown(r["specificity"], m["specificity"])
    found = re.search(r"agrees with its Keras QAT model on ([\d.]+)% of the patches.*?([+-][\d.]+) AUC", card, re.S)
    assert found, "MODEL_CARD.md no longer quotes the int8 file's agreement with Keras: update this test"
    assert_shown(found.group(1), meta["parity"]["agreement"], 100)
    assert_shown(found.group(2), meta["parity"]["auc_change"])
    found = re.search(r"at ([+-][\d.]+)\s+points of accuracy", card)
    assert found, "MODEL_CARD.md no longer quotes the int8 file's accuracy change: update this test"
    assert_shown(found.group(1), -meta["parity"]["accuracy_drop_points"])
    quoted = re.findall(r"([\d.]+)% on valid", card)  # the triage point's sensitivity on valid
    assert quoted, "MODEL_CARD.md no longer quotes the triage point's sensitivity on valid: update this test"
    for shown in quoted:
        assert_shown(shown, meta["metrics"]["triage"]["recall"], 100)
    companion = _repo_json("benchmarks/results/conversion/qat/conversion.json")["companion"]["parity"]
    found = re.search(r"correlate ([\d.]+) with TensorFlow's Grad-CAM.*?exactly \(([\d.]+)\)", card, re.S)
    assert found, "MODEL_CARD.md no longer quotes the companion's correlations: update this test"
    assert_shown(found.group(1), companion["correlation"])
    assert_shown(found.group(2), companion["head_correlation"])
