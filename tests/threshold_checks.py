"""What the three operating points promise, checked by counting (independent of edge_pcam's metrics).

Used by the metrics, calibrate and conversion tests: a triage threshold is the
highest cut with at least 95% sensitivity (moving it up to the next score loses
that), a high-specificity threshold the lowest with at least 99% specificity
(moving it down to the next score loses that); labels are `score >= threshold`.
"""

from __future__ import annotations

import numpy as np

TRIAGE_RECALL = 0.95
HIGH_SPECIFICITY = 0.99


def recall_at(labels, scores, t: float) -> float:
    y, s = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    return float(np.mean(s[y] >= t))


def specificity_at(labels, scores, t: float) -> float:
    y, s = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    return float(np.mean(s[~y] < t))


def assert_triage(labels, scores, t: float, target: float = TRIAGE_RECALL) -> None:
    """`t` reaches `target` recall, and no higher cut does."""
    s = np.asarray(scores, dtype=np.float64)
    assert 0.0 <= t <= 1.0, t
    assert recall_at(labels, s, t) >= target, (t, recall_at(labels, s, t))
    higher = s[s > t]
    if higher.size:
        assert recall_at(labels, s, higher.min()) < target, f"{higher.min()} > {t} also reaches {target} recall"


def assert_high_specificity(labels, scores, t: float, target: float = HIGH_SPECIFICITY) -> None:
    """`t` reaches `target` specificity, and no lower cut does."""
    s = np.asarray(scores, dtype=np.float64)
    assert 0.0 <= t <= 1.0, t
    assert specificity_at(labels, s, t) >= target, (t, specificity_at(labels, s, t))
    lower = s[s < t]
    if lower.size:
        assert specificity_at(labels, s, lower.max()) < target, f"{lower.max()} < {t} also reaches {target}"
