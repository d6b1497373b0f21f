"""The slide result: QC-passed tiles only, a model file without stored rates, a slide without tissue,
and the one line a person reads."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edge_pcam.runtime.burden import OperatingCharacteristics
from edge_pcam.runtime.slide_result import slide_result, summary_line
from edge_pcam.runtime.tissue import BACKGROUND, INK, TISSUE, TissueQC

THRESHOLDS = {"decision": 0.5, "high_specificity": 0.95, "triage": 0.25}
MPP0, TILE0 = 0.486, 192.0
CELL_MM2 = (TILE0 * MPP0 / 1000) ** 2
GEOMETRY = (lambda r, c: (c * TILE0, r * TILE0), TILE0, TILE0, MPP0)


def card_rates() -> OperatingCharacteristics:
    points = {"decision": {"threshold": 0.5, "tp": 850, "fn": 150, "fp": 100, "tn": 900},
              "high_specificity": {"threshold": 0.95, "tp": 400, "fn": 600, "fp": 10, "tn": 990}}
    return OperatingCharacteristics.from_card({"operating_characteristics": {
        "split": "valid", "description": "test", "n_positive": 1000, "n_negative": 1000, "points": points}})


def slide() -> tuple[np.ndarray, TissueQC]:
    """24 x 24 tissue tiles: an 8 x 8 tumour block (P 0.97) in normal tissue (P 0.02), glass around."""
    p = np.full((30, 30), np.nan)
    p[3:27, 3:27] = 0.02
    p[6:14, 6:14] = 0.97
    reasons = np.where(np.isfinite(p), TISSUE, BACKGROUND).astype(np.uint8)
    return p, TissueQC(reasons, CELL_MM2)


def test_result_fields_and_line():
    p, qc = slide()
    result = slide_result(p, qc, card_rates(), THRESHOLDS, *GEOMETRY)
    truth = 64 / 576
    assert abs(result.burden - truth) < 0.02 and result.burden_ci[0] <= truth <= result.burden_ci[1]
    assert result.region_count == 1 and result.category == "micromet"
    assert result.largest_region_mm == pytest.approx(8 * np.sqrt(2) * TILE0 * MPP0 / 1000)
    assert result.tumour_area_mm2 == pytest.approx(64 * CELL_MM2)
    assert result.raw_counts["decision"]["positive_tiles"] == 64 and result.warnings == []
    assert "rates from the valid split" in result.method
    data = json.loads(json.dumps(result.as_dict()))  # JSON-ready
    assert set(data) >= {"burden", "burden_ci", "method", "largest_region_mm", "tumour_area_mm2", "region_count",
                         "category", "regions", "qc", "raw_counts", "intended_use"}
    assert data["regions"][0]["category"] == "micromet" and len(data["regions"][0]["outline"]) == 5
    line = summary_line(result)
    assert line.startswith("largest suspicious region 1.1 mm (micrometastasis size); tumour burden 1")
    assert "(95% CI " in line and line.endswith("; research use only")


def test_only_tiles_passing_qc_count():
    p, qc = slide()
    p[20:26, 3:27] = 0.99  # ink the model calls tumour...
    reasons = qc.reasons.copy()
    reasons[20:26, 3:27] = INK  # ...kept out by QC
    result = slide_result(p, TissueQC(reasons, CELL_MM2), card_rates(), THRESHOLDS, *GEOMETRY)
    assert result.raw_counts["decision"]["positive_tiles"] == 64 and result.region_count == 1
    assert abs(result.burden - 64 / (576 - 144)) < 0.02
    assert result.qc["excluded_mm2"]["ink"] == pytest.approx(144 * CELL_MM2)


def test_model_without_stored_rates_keeps_raw_counts_and_warns():
    p, qc = slide()
    result = slide_result(p, qc, None, THRESHOLDS, *GEOMETRY)
    assert result.burden is None and result.burden_ci is None and result.method is None
    assert len(result.warnings) == 1 and "edge-pcam calibrate" in result.warnings[0]
    assert result.raw_counts["decision"]["fraction"] == pytest.approx(64 / 576) and result.category == "micromet"
    assert "not estimated" in summary_line(result) and "11.1% of tissue tiles at P >= 0.5" in summary_line(result)


def test_slide_without_tissue_is_negative_with_a_warning():
    p = np.full((10, 10), np.nan)
    result = slide_result(p, TissueQC(np.full((10, 10), BACKGROUND, np.uint8), CELL_MM2), card_rates(),
                          THRESHOLDS, *GEOMETRY)
    assert result.burden == 0.0 and result.category == "negative" and result.regions == []
    assert len(result.warnings) == 1 and "no tissue" in result.warnings[0]
    assert summary_line(result).startswith("no tissue found") and summary_line(result).endswith("research use only")


def test_negative_slide_line():
    p, qc = slide()
    p[6:14, 6:14] = 0.02
    result = slide_result(p, qc, card_rates(), THRESHOLDS, *GEOMETRY)
    assert result.category == "negative" and result.burden == 0.0
    assert summary_line(result).startswith("no suspicious region; tumour burden 0.0% (95% CI 0.0\u2013")


def test_a_soft_slide_warns_that_its_burden_may_be_underestimated():
    """Tiles softer than PCam's (median sharpness below 80% of 6.64) move the model's rates: the result
    says so in its warnings and in the one line, and a sharp slide gets neither."""
    p, qc = slide()
    soft = slide_result(p, qc.with_sharpness(np.where(qc.tissue, 3.0, np.nan)), card_rates(), THRESHOLDS, *GEOMETRY)
    sharp = slide_result(p, qc.with_sharpness(np.where(qc.tissue, 7.0, np.nan)), card_rates(), THRESHOLDS, *GEOMETRY)
    assert [w for w in soft.warnings if "softer than the images the model's rates were measured on" in w]
    assert "median tile sharpness 3.00, 45% of PCam's validation patches'" in " ".join(soft.warnings)
    assert "likely underestimated" in summary_line(soft)
    assert not sharp.warnings and "underestimated" not in summary_line(sharp)
    assert soft.burden == sharp.burden  # a warning, not a correction


def test_a_calibrated_card_judges_softness_against_the_labs_own_patches():
    """After `edge-pcam calibrate` on a lab's (softer) patches, their median sharpness is the reference: the
    lab's slides like them are not soft any more, and softer ones still are."""
    p, qc = slide()
    lab = dataclasses.replace(card_rates(), median_sharpness=3.2)
    like_the_lab = slide_result(p, qc.with_sharpness(np.where(qc.tissue, 3.0, np.nan)), lab, THRESHOLDS, *GEOMETRY)
    softer = slide_result(p, qc.with_sharpness(np.where(qc.tissue, 2.0, np.nan)), lab, THRESHOLDS, *GEOMETRY)
    assert not like_the_lab.warnings and like_the_lab.qc["sharpness"]["reference"] == 3.2
    assert "2.00, 62% of this lab's calibration patches'" in " ".join(softer.warnings)
    assert "calibrate on this lab's slides" not in " ".join(softer.warnings)  # it has been


def test_soft_slide_advice_and_reference_follow_the_card():
    """A card calibrated by a version that stored no sharpness is told to calibrate again (not "calibrate",
    which was done); a model without rates still gets the soft note in its one line; a slide with no tissue
    names the lab's reference in its QC."""
    p, qc = slide()
    soft_qc = qc.with_sharpness(np.where(qc.tissue, 3.0, np.nan))
    old_calibration = dataclasses.replace(card_rates(), split="calibration")
    old = " ".join(slide_result(p, soft_qc, old_calibration, THRESHOLDS, *GEOMETRY).warnings)
    assert "PCam's validation patches'" in old and "calibrate again on in-focus patches" in old
    assert "calibrate on this lab's slides" not in old
    no_rates = slide_result(p, soft_qc, None, THRESHOLDS, *GEOMETRY)
    assert no_rates.burden is None and "likely underestimated" in summary_line(no_rates)
    lab = dataclasses.replace(card_rates(), median_sharpness=3.2)
    empty = slide_result(np.full_like(p, np.nan), TissueQC(np.full(p.shape, BACKGROUND, np.uint8), CELL_MM2), lab,
                         THRESHOLDS, *GEOMETRY)
    assert empty.category == "negative" and empty.qc["sharpness"]["reference"] == 3.2


@pytest.mark.parametrize("extra, flagged", [
    ({"validation": {"thresholds_from": {"split": "valid"}}}, True),  # convert without --tune-from-train
    ({"validation": {"thresholds_from": {"split": "tuning", "carved_from": "train"}}}, False),  # the shipped way
    ({}, False),  # nothing said about where the thresholds came from: no claim either way
    ({"calibration": {"data": "lab/"}, "split": "calibration"}, True),  # calibrate before it halved the patches
    ({"calibration": {"data": "lab/", "halves": {"tuning": 500, "rates": 500}}, "split": "calibration"}, False),
])
def test_rates_counted_where_their_thresholds_were_chosen_are_said(extra, flagged):
    """Counts taken at thresholds chosen on the same patches flatter the high-specificity point (the disjoint
    burden benchmark: FPR 0.0093 on such a card, 0.0212 on other patches), so the scan says so in its warnings."""
    block = dict(card_rates().__dict__)  # the same counts, in a card of each kind
    points = {p.name: {"threshold": p.threshold, "tp": p.tp, "fn": p.fn, "fp": p.fp, "tn": p.tn}
              for p in block["points"]}
    split = extra.pop("split", "valid")
    card = {"operating_characteristics": {"split": split, "description": "test", "n_positive": 1000,
                                          "n_negative": 1000, "points": points}, **extra}
    oc = OperatingCharacteristics.from_card(card)
    assert oc.same_patches is flagged
    p, qc = slide()
    warnings = slide_result(p, qc, oc, THRESHOLDS, *GEOMETRY).warnings
    said = [w for w in warnings if "counted on the patches its thresholds were chosen on" in w]
    assert len(said) == int(flagged)
