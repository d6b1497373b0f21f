"""Metrics and operating points: AUC against its pairwise definition, thresholds against what they promise,
on hand-made score lists (ties, all-equal scores, one class, extremes) and random ones."""

import numpy as np
import pytest
from threshold_checks import assert_high_specificity, assert_triage, recall_at, specificity_at

from edge_pcam.runtime.metrics import (binary_metrics, choose_thresholds, defined_operating_points, operating_points,
                                       roc_auc, threshold_for_sensitivity, threshold_for_specificity)


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) * 0.5 + y * 0.3, 2)  # ties included
    pos, neg = s[y == 1], s[y == 0]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert abs(roc_auc(y, s) - pairwise) < 1e-12


def test_auc_by_hand_and_one_class():
    # pairs (pos, neg): (0.9 > 0.4), (0.9 > 0.1), (0.4 = 0.4 -> 1/2), (0.4 > 0.1) -> 3.5 / 4
    assert roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == 0.875
    assert np.isnan(roc_auc([1, 1], [0.2, 0.8])) and np.isnan(roc_auc([0, 0], [0.2, 0.8]))


def test_choose_thresholds_by_hand():
    scores = [0.9, 0.8, 0.7, 0.6, 0.55, 0.4, 0.3, 0.2, 0.1, 0.05]
    labels = [1, 1, 0, 1, 1, 0, 1, 0, 0, 0]
    # 95% of 5 positives means all 5: the lowest positive is 0.3. No false positive among 5 negatives
    # (99%) means above the highest negative 0.7: the lowest such cut is the next score, 0.8.
    assert choose_thresholds(labels, scores) == {"decision": 0.5, "triage": 0.3, "high_specificity": 0.8}


def test_choose_thresholds_with_ties():
    # a positive tied with two negatives at 0.6: triage must take the whole tie, high specificity none of it
    t = choose_thresholds([1, 1, 0, 0, 0], [0.9, 0.6, 0.6, 0.6, 0.2])
    assert (t["triage"], t["high_specificity"]) == (0.6, 0.9)
    # the top score shared by a positive and a negative: only "nothing positive" has 99% specificity
    t = choose_thresholds([1, 0, 0], [0.8, 0.8, 0.3])
    assert (t["triage"], t["high_specificity"]) == (0.8, 1.0)
    assert specificity_at([1, 0, 0], [0.8, 0.8, 0.3], 1.0) == 1.0


def test_choose_thresholds_with_all_scores_equal():
    labels, scores = [1, 0, 1, 0], [0.5] * 4
    t = choose_thresholds(labels, scores)
    assert t == {"decision": 0.5, "triage": 0.5, "high_specificity": 1.0}
    assert recall_at(labels, scores, t["triage"]) == 1.0 and specificity_at(labels, scores, 1.0) == 1.0


def test_choose_thresholds_with_one_class():
    # only tumour: every cut down to the lowest score is needed for 95% recall; there is no negative to
    # keep out, so the lowest cut already has "99% specificity"
    assert choose_thresholds([1, 1, 1], [0.2, 0.5, 0.9]) == {"decision": 0.5, "triage": 0.2,
                                                             "high_specificity": 0.2}
    # only normal: no cut reaches 95% recall of nothing; both points fall back to the top of the range
    assert choose_thresholds([0, 0, 0], [0.2, 0.5, 0.9]) == {"decision": 0.5, "triage": 1.0,
                                                             "high_specificity": 1.0}


def test_choose_thresholds_at_the_extremes():
    # scores of exactly 0 and 1 (a saturated float sigmoid)
    labels, scores = [1, 1, 0, 0, 1], [1.0, 0.0, 0.0, 0.3, 1.0]
    t = choose_thresholds(labels, scores)
    assert t["triage"] == 0.0 and t["high_specificity"] == 1.0
    assert_triage(labels, scores, t["triage"])
    assert_high_specificity(labels, scores, t["high_specificity"])


@pytest.mark.xfail(strict=True, reason="thresholds are kept in [0, 1] and applied as score >= t, so negatives "
                   "scoring exactly 1.0 (a saturated float32 sigmoid) cannot be kept out: the high-specificity "
                   "point then misses 99% (reported to the lead; changing it changes the threshold range)")
def test_high_specificity_when_negatives_score_exactly_one():
    labels, scores = [0, 1, 1, 0], [1.0, 1.0, 0.2, 0.0]
    t = choose_thresholds(labels, scores)["high_specificity"]
    assert specificity_at(labels, scores, t) >= 0.99


@pytest.mark.parametrize("seed", range(6))
def test_thresholds_keep_their_promise_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    y = rng.integers(0, 2, n)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 0.999)
    if seed % 2:
        s = np.round(s, 2)  # many ties
    t = choose_thresholds(y, s)
    assert t["decision"] == 0.5
    assert_triage(y, s, t["triage"])
    assert_high_specificity(y, s, t["high_specificity"])
    assert t["triage"] == threshold_for_sensitivity(y, s, 0.95)
    assert t["high_specificity"] == threshold_for_specificity(y, s, 0.99)
    points = operating_points(y, s)
    for name, point in points.items():
        assert point["threshold"] == t[name]
        assert point["recall"] == recall_at(y, s, t[name])
        assert point["specificity"] == specificity_at(y, s, t[name])


def test_other_targets():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    s = rng.random(400) * 0.6 + y * 0.4
    for target in (0.5, 0.8, 0.99):
        assert_triage(y, s, threshold_for_sensitivity(y, s, target), target)
        assert_high_specificity(y, s, threshold_for_specificity(y, s, target), target)


def test_binary_metrics_counts_and_the_decision_threshold():
    m = binary_metrics(np.array([1, 1, 0, 0]), np.array([0.9, 0.2, 0.6, 0.1]))
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 1, 1, 1)
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["specificity"] == 0.5 and m["f1"] == 0.5 and m["threshold"] == 0.5 and m["n"] == 4
    # a score equal to the threshold is positive; just below is not
    at = binary_metrics(np.array([1, 0]), np.array([0.5, np.nextafter(0.5, 0)]))
    assert (at["tp"], at["tn"], at["fp"], at["fn"]) == (1, 1, 0, 0)
    m = binary_metrics(np.array([1, 0, 0]), np.array([0.7, 0.7, 0.1]), threshold=0.8)
    assert (m["tp"], m["fp"], m["precision"], m["recall"], m["f1"], m["specificity"]) == (0, 0, 0.0, 0.0, 0.0, 1.0)


def test_exactly_95_percent_recall_and_99_percent_specificity_are_enough():
    # 20 positives at 0.96, 0.91, ..., 0.01; 100 negatives, one at 0.99 and the rest below 0.005.
    pos = 0.96 - 0.05 * np.arange(20)
    neg = np.r_[0.99, np.linspace(0.0, 0.004, 99)]
    y, s = np.r_[np.ones(20), np.zeros(100)], np.r_[pos, neg]
    # 19 of 20 positives (95.0% exactly) are kept by the 19th positive's score; 99 of 100 negatives
    # (99.0% exactly) are kept out by every cut above the highest but one, the lowest being the last positive
    assert threshold_for_sensitivity(y, s, 0.95) == pos[18]
    assert threshold_for_specificity(y, s, 0.99) == pos[19]


def test_metrics_of_a_grid_of_tiles_are_those_of_its_flattened_tiles():
    # labels and scores shaped like a slide's (rows, cols) grid, or a model's (N, 1) output
    y = np.array([[1, 0, 1, 0], [0, 1, 1, 0]])
    s = np.array([[0.9, 0.3, 0.45, 0.6], [0.2, 0.7, 0.4, 0.1]])
    # at 0.5: positives 0.9, 0.7 found, 0.45, 0.4 missed; negative 0.6 called positive. Of the 16
    # (positive, negative) pairs only (0.45, 0.6) and (0.4, 0.6) are out of order.
    flat = {"tp": 2, "fn": 2, "fp": 1, "tn": 3, "auc": 14 / 16}
    for shape in ((2, 4), (8, 1), (1, 8)):
        m = binary_metrics(y.reshape(shape), s.reshape(shape))
        assert {k: m[k] for k in flat} == flat
        assert roc_auc(y.reshape(shape), s.reshape(shape)) == 14 / 16
        # 3 of 4 positives from 0.45 down; 3 of 4 negatives kept out down to 0.4 (0.3 lets a second one in)
        assert threshold_for_sensitivity(y.reshape(shape), s.reshape(shape), 0.75) == 0.45
        assert threshold_for_specificity(y.reshape(shape), s.reshape(shape), 0.75) == 0.4


def test_auc_of_raw_uint8_scores_is_their_ranking():
    # an int8 model's raw output before dequantisation: 0-255, ranked like the probabilities
    y = [1, 0, 1, 0, 1]
    assert roc_auc(y, np.array([200, 30, 255, 0, 1], np.uint8)) == pytest.approx(5 / 6)  # 1 < 30: one pair wrong


def test_auc_with_a_single_negative():
    # pairs (0.9 > 0.5) and (0.1 < 0.5): one of two
    assert roc_auc([1, 0, 1], [0.9, 0.5, 0.1]) == 0.5


def test_binary_metrics_f1_auc_and_empty_classes():
    m = binary_metrics(np.array([1, 0, 0, 1, 0]), np.array([0.9, 0.8, 0.2, 0.7, 0.6]))
    # tp 2, fp 2, fn 0, tn 1: precision 1/2, recall 1, F1 = 2 * 1/2 * 1 / (3/2) = 2/3; AUC: 6 pairs, 5 ordered
    assert (m["precision"], m["recall"], m["specificity"]) == (0.5, 1.0, 1 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["auc"] == pytest.approx(5 / 6)
    # one class only: the other class's rate is 0 (nothing to count), as scikit-learn reports it
    negatives = binary_metrics(np.array([0, 0]), np.array([0.9, 0.1]))
    assert (negatives["recall"], negatives["specificity"], negatives["precision"]) == (0.0, 0.5, 0.0)
    positives = binary_metrics(np.array([1, 1]), np.array([0.9, 0.1]))
    assert (positives["recall"], positives["specificity"], positives["precision"]) == (0.5, 0.0, 1.0)
    one = binary_metrics(np.array([1]), np.array([0.7]))
    assert one["accuracy"] == 1.0 and one["n"] == 1


def test_operating_points_use_the_thresholds_given():
    y, s = np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1])
    points = operating_points(y, s, {"decision": 0.5, "lenient": 0.3, "strict": 0.95})
    assert {k: (p["threshold"], p["tp"], p["fp"]) for k, p in points.items()} == {
        "decision": (0.5, 1, 1), "lenient": (0.3, 2, 1), "strict": (0.95, 0, 0)}


# --- data with one class only (evaluate on a lab's tumour-only folder) ---

def test_one_class_reports_only_what_is_defined():
    points, warnings = defined_operating_points(np.array([1, 1, 1]), np.array([0.2, 0.6, 0.9]))
    assert set(points) == {"decision", "triage"}  # high specificity needs normal patches
    d = points["decision"]
    assert (d["tp"], d["fn"], d["accuracy"], d["recall"], d["precision"]) == (2, 1, 2 / 3, 2 / 3, 1.0)
    assert d["f1"] == pytest.approx(0.8) and d["specificity"] is None and d["auc"] is None
    assert points["triage"]["threshold"] == 0.2 and points["triage"]["recall"] == 1.0
    assert warnings == ["only tumour patches (3): specificity, AUC and the high-specificity threshold "
                        "need normal patches and are not reported"]

    points, warnings = defined_operating_points(np.array([0, 0]), np.array([0.3, 0.7]))
    assert set(points) == {"decision", "high_specificity"}
    d = points["decision"]
    assert (d["fp"], d["tn"], d["specificity"], d["precision"]) == (1, 1, 0.5, 0.0)
    assert d["recall"] is None and d["f1"] is None and d["auc"] is None
    h = points["high_specificity"]
    assert (h["threshold"], h["specificity"], h["precision"]) == (1.0, 1.0, None)  # nothing called tumour
    assert warnings == ["only normal patches (2): recall, F1, AUC and the triage threshold need tumour patches "
                        "and are not reported"]

    both, warnings = defined_operating_points(np.array([0, 1]), np.array([0.3, 0.7]))
    assert warnings == [] and both["decision"]["auc"] == 1.0 and set(both) == {"decision", "triage",
                                                                                "high_specificity"}
    with pytest.raises(ValueError, match="no labels"):
        defined_operating_points(np.array([]), np.array([]))
