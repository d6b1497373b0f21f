"""Binary-classification metrics and operating points in plain numpy (both sides use them)."""

from __future__ import annotations

import numpy as np

TRIAGE_SENSITIVITY = 0.95
HIGH_SPECIFICITY = 0.99


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds, thresholds decreasing.

    Row i says what `score >= thresholds[i]` gives; ties share one row.
    """
    y = np.asarray(labels).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = (distinct + 1) - tp
    pos, neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    tpr = np.r_[0.0, tp / pos]
    fpr = np.r_[0.0, fp / neg]
    thresholds = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thresholds


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; ties count one half). NaN with one class only."""
    y = np.asarray(labels).astype(bool).reshape(-1)
    if y.all() or not y.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def threshold_for_sensitivity(labels: np.ndarray, scores: np.ndarray, sensitivity: float) -> float:
    """The highest threshold whose sensitivity (recall) is at least `sensitivity`."""
    _, tpr, thresholds = roc_curve(labels, scores)
    i = int(np.argmax(tpr >= sensitivity))
    return float(min(thresholds[i], 1.0))


def threshold_for_specificity(labels: np.ndarray, scores: np.ndarray, specificity: float) -> float:
    """The lowest threshold whose specificity is at least `specificity`."""
    fpr, _, thresholds = roc_curve(labels, scores)
    ok = np.nonzero(1 - fpr >= specificity)[0]
    return float(min(thresholds[ok[-1]], 1.0))


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, precision, recall (sensitivity), specificity, F1 and AUC at `threshold`."""
    y = np.asarray(labels).astype(bool).reshape(-1)
    pred = np.asarray(scores).reshape(-1) >= threshold
    tp = int(np.sum(pred & y))
    tn = int(np.sum(~pred & ~y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "n": int(y.size),
        "threshold": float(threshold),
        "accuracy": (tp + tn) / max(y.size, 1),
        "precision": precision,
        "recall": recall,
        "specificity": tn / (tn + fp) if tn + fp else 0.0,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "auc": roc_auc(y, scores),
        "tp": tp, "tn": tn, "fp": fp, "fn": fn,
    }


def choose_thresholds(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The three operating points: 0.5, triage (95% sensitivity) and high specificity (99%)."""
    return {"decision": 0.5,
            "triage": threshold_for_sensitivity(labels, scores, TRIAGE_SENSITIVITY),
            "high_specificity": threshold_for_specificity(labels, scores, HIGH_SPECIFICITY)}


def operating_points(labels: np.ndarray, scores: np.ndarray,
                     thresholds: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Metrics at each operating point; its thresholds are chosen on (labels, scores) themselves
    unless `thresholds` (chosen elsewhere, e.g. on a tuning set) are given."""
    chosen = thresholds if thresholds is not None else choose_thresholds(labels, scores)
    return {name: binary_metrics(labels, scores, t) for name, t in chosen.items()}


def defined_operating_points(labels: np.ndarray, scores: np.ndarray
                             ) -> tuple[dict[str, dict[str, float | None]], list[str]]:
    """As `operating_points`, for labels that may hold one class only, and what it could not report.

    With both classes this is `operating_points`. With one class, the threshold
    that needs the other class is left out (triage needs tumour patches, high
    specificity normal ones), the metrics it leaves undefined are None (AUC;
    specificity without normal patches; recall and F1 without tumour patches;
    precision where nothing was called tumour), and a warning says so: never a
    0.000 or NaN that reads like a result.
    """
    y = np.asarray(labels).astype(bool).reshape(-1)
    tumour, normal = int(y.sum()), int((~y).sum())
    if tumour and normal:
        return operating_points(y, scores), []
    if not tumour and not normal:
        raise ValueError("no labels to compute metrics on")
    chosen = {"decision": 0.5}
    if tumour:
        chosen["triage"] = threshold_for_sensitivity(y, scores, TRIAGE_SENSITIVITY)
        undefined, dropped, present, missing = ("specificity", "auc"), "high-specificity", "tumour", "normal"
    else:
        chosen["high_specificity"] = threshold_for_specificity(y, scores, HIGH_SPECIFICITY)
        undefined, dropped, present, missing = ("recall", "f1", "auc"), "triage", "normal", "tumour"
    points: dict[str, dict[str, float | None]] = dict(operating_points(y, scores, chosen))
    for point in points.values():
        point.update(dict.fromkeys(undefined, None))
        if point["tp"] + point["fp"] == 0:
            point["precision"] = None
    names = {"specificity": "specificity", "auc": "AUC", "recall": "recall", "f1": "F1"}
    warning = (f"only {present} patches ({y.size:,}): {', '.join(names[k] for k in undefined)} and the {dropped} "
               f"threshold need {missing} patches and are not reported")
    return points, [warning]
