import numpy as np

from edge_pcam.runtime.metrics import (binary_metrics, operating_points, roc_auc, threshold_for_sensitivity,
                                       threshold_for_specificity)


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) * 0.5 + y * 0.3, 2)  # ties included
    pos, neg = s[y == 1], s[y == 0]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert abs(roc_auc(y, s) - pairwise) < 1e-12


def test_thresholds_reach_their_targets():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 1000)
    s = rng.random(1000) * 0.6 + y * 0.4
    t = threshold_for_sensitivity(y, s, 0.95)
    assert binary_metrics(y, s, t)["recall"] >= 0.95
    assert binary_metrics(y, s, t + 1e-9)["recall"] < 0.95 or t >= 1.0
    t = threshold_for_specificity(y, s, 0.99)
    assert binary_metrics(y, s, t)["specificity"] >= 0.99
    points = operating_points(y, s)
    assert points["triage"]["threshold"] <= points["decision"]["threshold"] <= points["high_specificity"]["threshold"]


def test_binary_metrics_counts():
    m = binary_metrics(np.array([1, 1, 0, 0]), np.array([0.9, 0.2, 0.6, 0.1]))
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 1, 1, 1)
    assert m["accuracy"] == 0.5 and m["precision"] == 0.5 and m["recall"] == 0.5
