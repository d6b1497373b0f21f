"""The bundled int8 model on the real PCam subset: `evaluate` reproduces the card's accuracy and AUC.

The expected figures are read from the card (metadata) of the file under test,
so the test follows the model when it is replaced; they are also recomputed
here from the probabilities and labels.csv with plain numpy (accuracy by
counting, AUC as the Mann-Whitney statistic), independent of
edge_pcam.runtime.metrics. The card keeps full precision; "within rounding"
means equal to the third decimal, as MODEL_CARD.md quotes them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.runtime.bundled import MODELS_DIR
from edge_pcam.runtime.metadata import read_metadata

INT8 = MODELS_DIR / "edge_pcam_int8.tflite"
ROUNDING = 5e-4  # the card's figures as quoted to three decimals


def mann_whitney_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a random positive > that of a random negative), ties counting one half (average ranks)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average rank over each run of tied scores
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_mann_whitney_auc_by_hand():
    # pairs: (0.9 > 0.4), (0.9 > 0.1), (0.4 = 0.4: 1/2), (0.4 > 0.1) -> 3.5 / 4
    assert mann_whitney_auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.4, 0.1])) == 0.875


@pytest.mark.real_data
def test_bundled_int8_reproduces_its_card_on_the_valid_split(subset_dir):
    from edge_pcam.runtime.datasets import open_dataset
    from edge_pcam.training.evaluate import evaluate_model

    card = read_metadata(INT8)
    expected = card["metrics"]["decision"]
    # the card names the training mix (A+B); the valid split is the subset's (the other sources have none)
    sources = [Path(part).name for part in card["validation"]["data"].split("+")]
    assert card["validation"]["split"] == "valid" and subset_dir.name in sources

    result = evaluate_model(INT8, str(subset_dir), "valid")
    assert result.n == card["validation"]["n"] == 3000

    # labels straight from labels.csv, in the order the reader serves the files
    with open(subset_dir / "labels.csv", newline="") as f:
        by_path = {str((subset_dir / r["path"]).resolve()): int(r["label"]) for r in csv.DictReader(f)
                   if r["split"] == "valid"}
    ids = open_dataset(str(subset_dir)).split("valid").ids()
    labels = np.array([by_path[str(Path(i).resolve())] for i in ids])
    np.testing.assert_array_equal(result.labels, labels)
    assert np.bincount(labels).tolist() == [1500, 1500]

    probs = np.asarray(result.probabilities, np.float64)
    accuracy = float(np.mean((probs >= expected["threshold"]) == (labels == 1)))
    auc = mann_whitney_auc(labels, probs)
    assert accuracy == pytest.approx(expected["accuracy"], abs=ROUNDING)
    assert auc == pytest.approx(expected["auc"], abs=ROUNDING)
    assert result.metrics["decision"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert result.metrics["decision"]["auc"] == pytest.approx(auc, abs=1e-12)
