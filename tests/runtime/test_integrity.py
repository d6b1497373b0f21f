"""Integrity: every load checks the flatbuffer against the SHA-256 in its card; a companion must be its model's.

Runs in both venvs. Damage is planted in copies of the fixture files: same size, card intact.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.errors import EdgePcamWarning, ModelFileError
from edge_pcam.runtime.bundled import default_model_path
from edge_pcam.runtime.gradcam import load_companion
from edge_pcam.runtime.interpreter import load_model
from edge_pcam.runtime.metadata import (MISMATCH, NO_DIGEST, VERIFIED, inspect_file, metadata_from_bytes,
                                        model_bytes, with_metadata)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from card_support import COMPANION, INT8, raw_file, schema1_card  # noqa: E402

PATCHES = INT8.parents[1] / "patches"


def _damage_weights(data: bytes) -> bytes:
    """The same file, same size, with bytes inside the largest weight buffer flipped; the card untouched."""
    from edge_pcam.runtime.flatbuffer import Table

    flatbuffer = model_bytes(data)
    start, n = max((b.vector(0, 1) for b in Table.root(flatbuffer).tables(4)), key=lambda v: v[1])
    damaged = bytearray(data)
    for i in range(start + n // 4, start + n // 4 + 64):
        damaged[i] ^= 0x5A
    return bytes(damaged)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_pcam", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("original", [INT8, "bundled"], ids=["fixture", "bundled"])
def test_damaged_weights_of_the_same_size_are_refused(tmp_path, original):
    source = default_model_path() if original == "bundled" else original
    data = source.read_bytes()
    bad = tmp_path / source.name
    bad.write_bytes(_damage_weights(data))
    assert bad.stat().st_size == len(data) and metadata_from_bytes(bad.read_bytes()) == metadata_from_bytes(data)
    with pytest.raises(ModelFileError) as exc:
        load_model(bad)
    assert str(exc.value).startswith(f"{bad}: integrity check failed")
    proc = _cli("predict", str(PATCHES), "--model", str(bad))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"edge-pcam: error: {exc.value}"]


def test_info_shows_whether_the_file_verifies(tmp_path):
    assert inspect_file(INT8)["integrity"]["status"] == VERIFIED
    proc = _cli("info", str(INT8))
    assert proc.returncode == 0 and "integrity: verified" in proc.stdout
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_damage_weights(INT8.read_bytes()))
    report = inspect_file(bad)
    assert report["integrity"]["status"] == MISMATCH
    assert report["integrity"]["recorded"] != report["integrity"]["sha256"]
    proc = _cli("info", str(bad), "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["integrity"]["status"] == MISMATCH
    proc = _cli("info", str(bad))
    assert proc.returncode == 1 and "DOES NOT VERIFY" in proc.stdout


def test_a_file_without_a_digest_loads_with_one_warning(tmp_path):
    old = tmp_path / "old.tflite"
    old.write_bytes(raw_file(model_bytes(INT8.read_bytes()), schema1_card(metadata_from_bytes(INT8.read_bytes()))))
    with pytest.warns(EdgePcamWarning, match=r"earlier edge-pcam .*`edge-pcam upgrade") as caught:
        model = load_model(old)
    assert len(caught) == 1 and model.predict(np.zeros((1, 96, 96, 3), np.uint8)).shape == (1,)
    assert inspect_file(old)["integrity"]["status"] == NO_DIGEST
    proc = _cli("predict", str(PATCHES / "synthetic_000.png"), "--model", str(old))
    assert proc.returncode == 0
    lines = proc.stderr.strip().splitlines()
    assert [ln for ln in lines if "warning" in ln] == [
        f"edge-pcam: warning: {old}: made by an earlier edge-pcam (model card schema 1): no integrity digest to "
        f"check, and its outputs may differ slightly from the metrics in its card; run `edge-pcam upgrade {old} "
        "NEW.tflite`"]


def test_an_explicit_companion_of_another_model_is_refused(tmp_path):
    model = load_model(INT8)
    other = bytearray(model_bytes(COMPANION.read_bytes()))
    other[len(other) // 2] ^= 0xFF  # other weights, under a card that matches them: another model's companion
    elsewhere = tmp_path / "elsewhere" / "their_gradcam.tflite"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(with_metadata(bytes(other), metadata_from_bytes(COMPANION.read_bytes())))
    with pytest.raises(ModelFileError, match="not the Grad-CAM companion of tiny_int8.tflite"):
        load_companion(model, elsewhere)
    proc = _cli("gradcam", str(PATCHES / "synthetic_000.png"), "--model", str(INT8), "--companion", str(elsewhere),
                "--out", str(tmp_path / "cams"))
    assert proc.returncode == 2 and "not the Grad-CAM companion" in proc.stderr
    assert load_companion(model, COMPANION).path == COMPANION  # the right one, given explicitly, is used


def test_a_damaged_companion_is_refused_by_its_own_digest(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    shutil.copy(INT8, folder)
    (folder / COMPANION.name).write_bytes(_damage_weights(COMPANION.read_bytes()))
    with pytest.raises(ModelFileError, match="integrity check failed"):
        load_companion(load_model(folder / INT8.name))


def test_companion_of_a_model_that_records_none_is_checked_by_source_model(tmp_path):
    card = metadata_from_bytes(INT8.read_bytes())
    loner = tmp_path / "loner.tflite"
    source = {"file": "a.h5", "sha256": "ab" * 32}
    loner.write_bytes(with_metadata(INT8.read_bytes(), {**card, "companion": None, "source_model": source}))
    companion = tmp_path / "c.tflite"
    comp_card = metadata_from_bytes(COMPANION.read_bytes())
    companion.write_bytes(with_metadata(COMPANION.read_bytes(), {**comp_card, "source_model": {
        "file": "b.h5", "sha256": "cd" * 32}}))
    with pytest.raises(ModelFileError, match="converted from another model"):
        load_companion(load_model(loner), companion)
    companion.write_bytes(with_metadata(COMPANION.read_bytes(), {**comp_card, "source_model": source}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_companion(load_model(loner), companion).path == companion
