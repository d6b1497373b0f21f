"""edge_pcam.export.parity on hand-made probabilities: every field of a comparison, the two gates at
their exact bounds, the one-line reasons, the refusals, and the markdown row (numpy only; the
end-to-end gates with converted files: tests/test_convert_gates.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_pcam.export.parity import Parity, compare, parity_markdown

LABELS = np.array([1, 1, 0, 0])
KERAS = np.array([0.9, 0.6, 0.4, 0.1])  # 4 of 4 right at 0.5
FILE = np.array([0.8, 0.4, 0.4, 0.3])   # the second tumour missed: 3 of 4


def test_every_field_of_an_int8_comparison():
    p = compare("int8", LABELS, KERAS, FILE, max_drop=30.0)
    # |dp| = 0.1, 0.2, 0, 0.2: max 0.2, mean 0.125; decisions agree on 3 of 4; accuracy 100% -> 75%: 25 points;
    # AUC: Keras 1, the file: pairs (0.8 > 0.4, 0.3), (0.4 = 0.4 -> 1/2, 0.4 > 0.3) = 3.5 / 4
    assert p.as_dict() == {
        "format": "int8", "n": 4, "max_abs_dprob": pytest.approx(0.2), "mean_abs_dprob": pytest.approx(0.125),
        "agreement": 0.75, "keras": p.keras, "converted": p.converted, "accuracy_drop_points": 25.0,
        "auc_change": -0.125, "gate": "accuracy drop <= 30 pt", "passed": True, "reason": ""}
    assert (p.keras["accuracy"], p.converted["accuracy"], p.keras["auc"], p.converted["auc"]) == (1.0, 0.75, 1.0, 0.875)
    failed = compare("int8", LABELS, KERAS, FILE, max_drop=24.99)
    assert not failed.passed and failed.gate == "accuracy drop <= 24.99 pt"
    assert failed.reason == "int8 accuracy 75.00% is 25.00 points below Keras 100.00% on 4 patches (--max-drop 24.99)"
    worst = compare("int8", LABELS, FILE, 1 - KERAS, max_drop=1.0)  # every decision wrong, from 75% right
    assert worst.reason == "int8 accuracy 0.00% is 75.00 points below Keras 75.00% on 4 patches (--max-drop 1)"


def test_float32_is_held_to_a_strict_tolerance_with_its_reason():
    keras = np.array([0.5, 0.25])
    at_bound = compare("float32", [1, 0], keras, keras + np.array([0.25, 0.0]), float_tolerance=0.25)
    assert not at_bound.passed and at_bound.gate == "max abs dprob < 2e-01"  # |dp| = 0.25 exactly is not < 0.25
    assert at_bound.reason == "float32 probabilities differ from Keras by up to 2.50e-01 (limit 0.25)"
    ok = compare("float32", [1, 0], keras, keras + np.array([0.125, 0.0]), float_tolerance=0.25)
    assert ok.passed and ok.reason == "" and ok.gate == "max abs dprob < 2e-01"
    assert compare("float32", [1, 0], keras, keras).gate == "max abs dprob < 1e-04"


def test_a_probability_of_exactly_one_half_is_tumour_on_both_sides():
    p = compare("int8", [1, 0], [0.5, 0.2], [0.5, 0.2])
    assert p.agreement == 1.0 and p.keras["tp"] == 1 and p.converted["tp"] == 1


def test_grids_and_columns_compare_like_flat_arrays():
    flat = compare("int8", LABELS, KERAS, FILE, max_drop=30.0).as_dict()
    for shape in ((2, 2), (4, 1)):
        p = compare("int8", LABELS.reshape(shape), KERAS.reshape(shape), FILE.reshape(shape), max_drop=30.0)
        assert p.as_dict() == flat


def test_float32_probabilities_are_compared_in_float64():
    rng = np.random.default_rng(0)
    keras = rng.random(1000).astype(np.float32)
    converted = (keras + rng.normal(0, 1e-3, 1000)).astype(np.float32)
    p = compare("dynamic", (keras > 0.5).astype(int), keras, converted)
    reference = np.abs(keras.astype(np.float64) - converted.astype(np.float64))
    assert p.mean_abs_dprob == float(np.sum(reference) / 1000)
    assert p.max_abs_dprob == float(reference.max())


def test_one_patch_is_enough_and_unequal_or_empty_arrays_are_refused():
    assert compare("int8", [1], [0.9], [0.8]).n == 1
    with pytest.raises(ValueError, match="parity needs equal, non-empty arrays; got 2 labels, 2 and 3 predictions"):
        compare("int8", [1, 0], [0.9, 0.1], [0.9, 0.1, 0.5])
    with pytest.raises(ValueError, match="got 0 labels, 0 and 0 predictions"):
        compare("int8", [], [], [])


def test_parity_markdown_row():
    p = Parity("int8", 3000, 0.2031, 0.01, 0.99, {"accuracy": 0.856}, {"accuracy": 0.8553}, 0.07, 0.00084,
               "accuracy drop <= 1 pt", True, "")
    failed = Parity("float32", 12, 2.5e-4, 1e-4, 1.0, {"accuracy": 0.5}, {"accuracy": 0.5}, 0.0, -0.00001,
                    "max abs dprob < 1e-04", False, "too far")
    assert parity_markdown([p, failed]) == (
        "| format | n | max abs dprob | agreement | accuracy Keras -> file | drop (points) | AUC change | gate | result |\n"
        "|---|---:|---:|---:|---|---:|---:|---|---|\n"
        "| int8 | 3,000 | 2.03e-01 | 99.00% | 85.60% -> 85.53% | +0.07 | +0.0008 | accuracy drop <= 1 pt | pass |\n"
        "| float32 | 12 | 2.50e-04 | 100.00% | 50.00% -> 50.00% | +0.00 | -0.0000 | max abs dprob < 1e-04 | FAIL |\n")
