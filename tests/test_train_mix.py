"""Training on several data sources at once, with the classes balanced by weighting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.datasets import open_dataset
from edge_pcam.training.recipe import load_recipe

pytestmark = pytest.mark.tf


def test_balanced_class_weights_give_each_class_half_the_loss():
    from edge_pcam.training.fit import balanced_class_weights
    labels = np.array([0] * 30 + [1] * 10)
    w = balanced_class_weights(labels)
    assert w == {0: pytest.approx(40 / 60), 1: pytest.approx(40 / 20)}
    assert 30 * w[0] == pytest.approx(10 * w[1])  # equal total weight per class
    assert balanced_class_weights(np.array([0, 1, 0, 1])) == {0: 1.0, 1: 1.0}
    with pytest.raises(EdgePcamError, match="both classes"):
        balanced_class_weights(np.zeros(5, np.uint8))


def test_two_sources_train_with_weights_and_the_run_records_the_mix(tmp_path):
    from edge_pcam.training.fit import train
    spec = "synthetic:60+synthetic:40:9"
    recipe = load_recipe("subset-cpu").with_overrides({
        "training.epochs": 1, "training.batch_size": 8, "training.tune_from_train": 10,
        "data.balance": "weights", "augment.hed": 0.05, "augment.jpeg": [60, 90], "training.label_smoothing": 0.1})
    out = tmp_path / "run"
    result = train(spec, out, recipe, strategy="cpu", verbose=0, log=lambda m: None)
    data = json.loads((out / "data.json").read_text())
    assert data["spec"] == spec
    # The expected weights, by hand from the joined train split less the 10-patch tuning carve (5 per class).
    labels = open_dataset(spec).split("train").labels
    n0, n1 = int((labels == 0).sum()) - 5, int((labels == 1).sum()) - 5
    assert data["used"]["train"] == n0 + n1
    assert data["class_weight"] == {"0": pytest.approx((n0 + n1) / (2 * n0)), "1": pytest.approx((n0 + n1) / (2 * n1))}
    saved = (out / "recipe.toml").read_text()
    assert 'balance = "weights"' in saved and "hed = 0.05" in saved and "jpeg = [60, 90]" in saved
    assert result.epochs_run == 1


def test_recipe_sources_are_the_default_data(tmp_path):
    from edge_pcam.training.fit import train
    recipe = load_recipe("subset-cpu").with_overrides({
        "training.epochs": 1, "training.batch_size": 8, "data.sources": ["synthetic:40", "synthetic:30:2"]})
    out = tmp_path / "run"
    train(None, out, recipe, strategy="cpu", verbose=0, log=lambda m: None)
    assert json.loads((out / "data.json").read_text())["spec"] == "synthetic:40+synthetic:30:2"
