"""The parity and accuracy gate: a converted file next to its Keras model on validation data.

Float32 must reproduce the Keras probabilities (max |dprob| < 1e-4). Every other
format (float16, dynamic range, int8) may lose at most `max_drop` points of
accuracy at the 0.5 decision threshold; its agreement with the Keras decisions
and the change in AUC are reported alongside. 1,000 patches carry about
+-0.5 point of sampling noise, so the gate is meant for the whole split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge_pcam.runtime.metrics import binary_metrics

FLOAT32_TOLERANCE = 1e-4
DEFAULT_MAX_DROP = 1.0  # accuracy points


@dataclass
class Parity:
    """How a converted file compares with the Keras model on the same patches."""

    format: str
    n: int
    max_abs_dprob: float
    mean_abs_dprob: float
    agreement: float
    keras: dict[str, float]
    converted: dict[str, float]
    accuracy_drop_points: float
    auc_change: float
    gate: str
    passed: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(fmt: str, labels: np.ndarray, keras_probs: np.ndarray, converted_probs: np.ndarray,
            max_drop: float = DEFAULT_MAX_DROP, float_tolerance: float = FLOAT32_TOLERANCE) -> Parity:
    """Compare probabilities and apply the gate for `fmt` (float32: tolerance; others: accuracy drop)."""
    k = np.asarray(keras_probs, dtype=np.float64).reshape(-1)
    c = np.asarray(converted_probs, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if not (len(k) == len(c) == len(y)) or len(y) == 0:
        raise ValueError(f"parity needs equal, non-empty arrays; got {len(y)} labels, {len(k)} and {len(c)} predictions")
    diff = np.abs(k - c)
    keras_m, conv_m = binary_metrics(y, k), binary_metrics(y, c)
    # From counts, so that a drop of exactly `max_drop` is not pushed over by rounding.
    drop = 100.0 * ((keras_m["tp"] + keras_m["tn"]) - (conv_m["tp"] + conv_m["tn"])) / len(y)
    auc_change = conv_m["auc"] - keras_m["auc"]
    if fmt == "float32":
        gate = f"max abs dprob < {float_tolerance:.0e}"
        passed = bool(diff.max() < float_tolerance)
        reason = "" if passed else (f"float32 probabilities differ from Keras by up to {diff.max():.2e} "
                                    f"(limit {float_tolerance:g})")
    else:
        gate = f"accuracy drop <= {max_drop:g} pt"
        passed = bool(drop <= max_drop)
        reason = "" if passed else (f"{fmt} accuracy {100 * conv_m['accuracy']:.2f}% is {drop:.2f} points below "
                                    f"Keras {100 * keras_m['accuracy']:.2f}% on {len(y):,} patches "
                                    f"(--max-drop {max_drop:g})")
    return Parity(fmt, int(len(y)), float(diff.max()), float(diff.mean()),
                  float(np.mean((k >= 0.5) == (c >= 0.5))), keras_m, conv_m, float(drop), float(auc_change),
                  gate, passed, reason)


def parity_markdown(rows: list[Parity]) -> str:
    """A table of parity results, one row per format."""
    lines = ["| format | n | max abs dprob | agreement | accuracy Keras -> file | drop (points) | AUC change | gate | result |",
             "|---|---:|---:|---:|---|---:|---:|---|---|"]
    for p in rows:
        lines.append(f"| {p.format} | {p.n:,} | {p.max_abs_dprob:.2e} | {100 * p.agreement:.2f}% | "
                     f"{100 * p.keras['accuracy']:.2f}% -> {100 * p.converted['accuracy']:.2f}% | "
                     f"{p.accuracy_drop_points:+.2f} | {p.auc_change:+.4f} | {p.gate} | "
                     f"{'pass' if p.passed else 'FAIL'} |")
    return "\n".join(lines) + "\n"
