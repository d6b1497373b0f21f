"""Recipes: the shipped TOML files, validation errors, overrides, round trip, and packaging in the wheel."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from edge_pcam.errors import RecipeError
from edge_pcam.training.recipe import SCHEMA, load_recipe, parse_override, parse_recipe

REPO = Path(__file__).resolve().parents[1]


def test_pcam_recipe_is_the_design():
    r = load_recipe("pcam")
    assert r["optimizer"]["name"] == "adam" and r["optimizer"]["lr"] == pytest.approx(1e-3)
    assert r["model"]["l2"] == pytest.approx(1e-4)
    assert r["training"]["batch_size"] == 64 and r["training"]["epochs"] == 30
    assert r["early_stopping"]["enabled"] and r["early_stopping"]["patience"] == 3
    assert r["reduce_lr"]["factor"] == pytest.approx(0.3)
    assert r["reduce_lr"]["patience"] < r["early_stopping"]["patience"]
    assert (r["checkpoint"]["monitor"], r["checkpoint"]["mode"]) == ("val_auc", "max")
    assert r["augment"]["flips"] and r["augment"]["brightness"] == pytest.approx(0.1)
    assert r["augment"]["contrast"] == [0.8, 1.2]


def test_subset_recipe_differs_only_in_size():
    pcam, subset = load_recipe("pcam"), load_recipe("subset-cpu")
    diffs = pcam.differences(subset)
    assert diffs and all(d.startswith("training.epochs") for d in diffs)


def test_every_shipped_recipe_sets_every_key():
    for path in sorted((REPO / "train").glob("*.toml")):
        data = tomllib.loads(path.read_text())
        assert {s: set(k) for s, k in data.items()} == {s: set(k) for s, k in SCHEMA.items()}, path.name


@pytest.mark.parametrize("doc, words", [
    ({"trainng": {"epochs": 3}}, ["unknown section [trainng]"]),
    ({"training": {"epoch": 3}}, ["unknown key 'epoch'", "[training]"]),
    ({"training": {"epochs": "ten"}}, ["[training] epochs", "integer"]),
    ({"training": {"epochs": 0}}, ["positive"]),
    ({"training": {"batch_size": 6.5}}, ["integer"]),
    ({"optimizer": {"lr": "fast"}}, ["[optimizer] lr", "number"]),
    ({"optimizer": {"name": "sgd"}}, ["must be one of", "'adam'"]),
    ({"optimizer": {"lr_schedule": "step"}}, ["'plateau'", "'cosine'"]),
    ({"early_stopping": {"enabled": "yes"}}, ["true or false"]),
    ({"augment": {"contrast": [1.2, 0.8]}}, ["low <= high"]),
    ({"model": {"dropout": 1.5}}, ["[0, 1)"]),
    ({"training": 5}, ["[section] table"]),
    ({"augment": {"jpeg": [50, 101]}}, ["1 <= low <= high <= 100"]),
    ({"augment": {"jpeg": [90, 50]}}, ["1 <= low <= high <= 100"]),
    ({"augment": {"jpeg": [50.5, 90]}}, ["integer JPEG qualities"]),
    ({"augment": {"hed": -0.1}}, ["[augment] hed", "zero or more"]),
    ({"data": {"sources": "../pcam"}}, ["[data] sources", "list of non-empty strings"]),
    ({"data": {"sources": [""]}}, ["list of non-empty strings"]),
    ({"data": {"balance": "oversample"}}, ["'none'", "'weights'"]),
    ({"training": {"label_smoothing": 1.0}}, ["[training] label_smoothing", "[0, 1)"]),
])
def test_bad_values_are_one_line_recipe_errors(doc, words):
    with pytest.raises(RecipeError) as info:
        parse_recipe(doc, "my.toml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("my.toml")
    for word in words:
        assert word in msg


def test_missing_keys_take_defaults_and_ints_widen_to_floats():
    r = parse_recipe({"optimizer": {"lr": 1}}, "x.toml")
    assert r["optimizer"]["lr"] == 1.0 and isinstance(r["optimizer"]["lr"], float)
    assert r["training"]["batch_size"] == 64


def test_unknown_recipe_name_and_bad_file(tmp_path):
    with pytest.raises(RecipeError, match="unknown recipe 'nope'.*pcam"):
        load_recipe("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\nepochs = 3\n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.toml")


def test_overrides_are_checked_and_recorded():
    r = load_recipe("pcam").with_overrides({"training.epochs": 2, "optimizer.lr": None, "augment.rotate90": True})
    assert r["training"]["epochs"] == 2 and r["augment"]["rotate90"] is True
    assert r["optimizer"]["lr"] == pytest.approx(1e-3)
    assert r.overrides == {"training.epochs": 2, "augment.rotate90": True}
    with pytest.raises(RecipeError, match="unknown recipe key"):
        r.with_overrides({"training.epoch": 2})
    with pytest.raises(RecipeError, match="integer"):
        r.with_overrides({"training.epochs": 2.5})


def test_parse_override_reads_toml_values():
    assert parse_override("augment.rotate90=true") == ("augment.rotate90", True)
    assert parse_override("augment.saturation=[0.75, 1.25]") == ("augment.saturation", [0.75, 1.25])
    assert parse_override("optimizer.lr_schedule=cosine") == ("optimizer.lr_schedule", "cosine")
    assert parse_override("optimizer.lr=3e-4") == ("optimizer.lr", 3e-4)
    with pytest.raises(RecipeError, match="section.key=value"):
        parse_override("epochs")


def test_to_toml_round_trips(tmp_path):
    r = load_recipe("subset-cpu").with_overrides({"training.epochs": 4, "augment.hue": 0.04})
    path = tmp_path / "recipe.toml"
    path.write_text(r.to_toml())
    again = load_recipe(path)
    assert again.values == r.values
    assert "training.epochs=4" in path.read_text()


@pytest.mark.skipif(importlib.util.find_spec("hatchling") is None, reason="hatchling not installed (pip install -e '.[dev]')")
def test_wheel_carries_the_recipes(tmp_path):
    """The wheel force-includes train/ and convert/ as edge_pcam/recipes/, where load_recipe looks first."""
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("edge_pcam-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for recipe in sorted((REPO / "train").glob("*.toml")):
        assert f"edge_pcam/recipes/train/{recipe.name}" in names
