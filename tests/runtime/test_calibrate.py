"""Calibrate: new thresholds from labelled patches, written to a copy; the original never changes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFilter

from threshold_checks import assert_high_specificity, assert_triage, recall_at, specificity_at

from edge_pcam.errors import DataError, EdgePcamError
from edge_pcam.runtime.burden import OperatingCharacteristics
from edge_pcam.runtime.calibrate import calibrate, new_thresholds, youden_threshold
from edge_pcam.runtime.datasets import open_dataset
from edge_pcam.runtime.interpreter import load_model
from edge_pcam.runtime.metadata import model_bytes, read_metadata, sha256_file
from edge_pcam.runtime.tissue import sharpness

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INT8 = FIXTURES / "models" / "tiny_int8.tflite"
LAB = "synthetic:100:11"  # another "lab": a seed the fixture model never saw


def test_youden_threshold_on_a_hand_made_case():
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8])
    # at 0.6: sensitivity 3/4, specificity 4/4 -> J = 0.75; at 0.35: 4/4 and 3/4 -> J = 0.75 as well;
    # no threshold reaches both; the lowest of the tied best is kept
    assert youden_threshold(labels, scores) == pytest.approx(0.35)
    t = new_thresholds(labels, scores)
    assert_triage(labels, scores, t["triage"])
    assert_high_specificity(labels, scores, t["high_specificity"])
    assert (t["triage"], t["high_specificity"]) == (0.35, 0.6)  # all four tumours; no normal above


def test_calibrate_writes_a_copy_with_new_thresholds(tmp_path):
    original = tmp_path / "site" / INT8.name
    original.parent.mkdir()
    shutil.copy(INT8, original)
    shutil.copy(FIXTURES / "models" / "tiny_gradcam.tflite", original.parent)
    digest = sha256_file(original)
    out = tmp_path / "lab" / "calibrated.tflite"
    out.parent.mkdir()  # calibrate writes into a folder that exists (a mistyped one is an error)
    report = calibrate(original, LAB, out, force=False)
    assert sha256_file(original) == digest  # never changed
    assert model_bytes(out.read_bytes()) == model_bytes(original.read_bytes())  # same weights

    # thresholds recomputed independently from the model's probabilities on the lab's patches: chosen on
    # every other patch of each class (1st, 3rd, ...), the metrics and counts from the others (2nd, 4th, ...)
    model = load_model(original)
    ds = open_dataset(LAB)
    all_labels = np.concatenate([s.labels for s in ds.splits.values()])
    all_probs = np.concatenate([model.predict(s.read(np.arange(len(s)))) for s in ds.splits.values()])
    rank = np.zeros(len(all_labels), int)  # each patch's place among the patches of its class, in the data's order
    for label in (0, 1):
        rank[all_labels == label] = np.arange(int(np.sum(all_labels == label)))
    tuning, held_out = rank % 2 == 0, rank % 2 == 1
    labels, probs = all_labels[tuning], all_probs[tuning]
    meta = read_metadata(out)
    t = meta["thresholds"]
    assert_triage(labels, probs, t["triage"])
    assert_high_specificity(labels, probs, t["high_specificity"])
    # decision: Youden's J (sensitivity + specificity - 1) is at its maximum there, by brute force over
    # every cut, and no lower cut reaches that maximum
    def youden(c):
        return recall_at(labels, probs, c) + specificity_at(labels, probs, c) - 1
    best = max(youden(c) for c in np.unique(probs))
    assert youden(t["decision"]) == pytest.approx(best, abs=1e-12)
    assert all(youden(c) < best - 1e-12 for c in np.unique(probs) if c < t["decision"])
    cal = meta["calibration"]
    assert cal["n"] == len(all_labels) == report.n and cal["data"] == LAB
    assert (cal["halves"]["tuning"], cal["halves"]["rates"]) == (int(tuning.sum()), int(held_out.sum()))
    assert cal["before"]["thresholds"] == pytest.approx(read_metadata(original)["thresholds"])
    labels, probs = all_labels[held_out], all_probs[held_out]  # what the metrics and the counts are measured on
    assert cal["after"]["metrics"]["triage"]["recall"] == recall_at(labels, probs, t["triage"])
    assert cal["before"]["metrics"]["decision"]["specificity"] == specificity_at(labels, probs,
                                                                                 model.thresholds["decision"])
    assert cal["original"]["sha256"] == digest
    assert cal["before"]["metrics"]["decision"]["threshold"] == pytest.approx(model.thresholds["decision"])
    # the counts behind each new operating point, counted here from the probabilities
    oc = meta["operating_characteristics"]
    assert oc["split"] == "calibration" and LAB in oc["description"]
    assert (oc["n_positive"], oc["n_negative"]) == (int(labels.sum()), int((labels == 0).sum()))
    for name, cut in t.items():
        called = probs >= cut
        assert oc["points"][name] == pytest.approx({
            "threshold": cut, "tp": int(np.sum(called & (labels == 1))), "fn": int(np.sum(~called & (labels == 1))),
            "fp": int(np.sum(called & (labels == 0))), "tn": int(np.sum(~called & (labels == 0)))})
    # the lab's patches' median sharpness: what a scan calls a slide soft against from now on
    patches = np.concatenate([s.read(np.arange(len(s))) for s in ds.splits.values()])
    measured = sharpness(patches)
    assert oc["median_sharpness"] == pytest.approx(float(np.median(measured[measured >= 0.03])))  # the in-focus ones
    assert OperatingCharacteristics.from_card(meta).median_sharpness == oc["median_sharpness"]
    assert model_bytes(out.read_bytes()) == model_bytes(original.read_bytes())
    # the copy loads, labels with its new threshold, and finds its companion (copied beside it)
    copy = load_model(out)
    assert copy.thresholds == pytest.approx(t)
    assert (out.parent / "tiny_gradcam.tflite").is_file()


def test_the_stored_sharpness_leaves_out_flat_and_blurred_patches(tmp_path):
    """A lab's patch set with glass and out-of-focus patches in it: the median stored is that of the patches
    a scan would keep (sharpness at or above 0.03), the reference its slides' tiles are compared with."""
    from PIL import Image
    lab = open_dataset(LAB)
    patches = np.concatenate([s.read(np.arange(len(s))) for s in lab.splits.values()])
    labels = np.concatenate([s.labels for s in lab.splits.values()])
    flat = np.full((80, *patches.shape[1:]), (236, 226, 234), np.uint8)  # glass: no variation at all
    soft = np.stack([np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(6))) for x in patches[:40]])
    images = np.concatenate([patches, flat, soft])
    classes = np.concatenate([labels, np.arange(80) % 2, labels[:40]])
    for i, (image, label) in enumerate(zip(images, classes)):
        path = tmp_path / "lab" / "valid" / str(label) / f"p{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    measured = sharpness(images)
    kept = measured[measured >= 0.03]
    assert len(kept) < len(measured) - 80  # the glass and some blurred patches are left out
    out = tmp_path / "calibrated.tflite"
    calibrate(INT8, str(tmp_path / "lab"), out, force=True)
    stored = read_metadata(out)["operating_characteristics"]["median_sharpness"]
    assert stored == pytest.approx(float(np.median(kept)), rel=1e-5)
    assert stored > float(np.median(measured)) * 1.05  # what taking every patch would have stored


def test_calibrate_refusals(tmp_path):
    target = tmp_path / INT8.name
    shutil.copy(INT8, target)
    with pytest.raises(EdgePcamError, match="never overwrites"):
        calibrate(target, LAB, target)
    with pytest.raises(DataError, match="at least 20"):
        calibrate(target, "synthetic:30:11", tmp_path / "small.tflite")
    one_class = tmp_path / "lab" / "valid" / "tumour"
    one_class.mkdir(parents=True)
    from PIL import Image
    ds = open_dataset("synthetic:20:1")
    split = ds.split("train")
    for i in range(len(split)):
        Image.fromarray(split.read([i])[0]).save(one_class / f"{i}.png")
    with pytest.raises(DataError, match="both classes"):
        calibrate(target, str(tmp_path / "lab"), tmp_path / "x.tflite", force=True)
    lone = tmp_path / "lab" / "valid" / "normal"  # one normal patch: nothing left to measure the rates on
    lone.mkdir()
    Image.fromarray(ds.split("valid").read([0])[0]).save(lone / "0.png")
    with pytest.raises(DataError, match="at least 2 patches of each class"):
        calibrate(target, str(tmp_path / "lab"), tmp_path / "x.tflite", force=True)


def test_cli_calibrate(tmp_path):
    out = tmp_path / "new.tflite"
    lab = "synthetic:40:12"
    proc = subprocess.run([sys.executable, "-m", "edge_pcam", "calibrate", str(INT8), "--data", lab,
                           "--out", str(out), "--force"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "triage" in proc.stdout and "unchanged" in proc.stderr
    assert read_metadata(out)["calibration"]["data"] == lab


def test_a_card_calibrate_writes_is_not_taken_for_one_counted_where_chosen(tmp_path):
    """This version's calibrate counts on the other half: the scan has no reason to warn about its rates."""
    out = tmp_path / "lab.tflite"
    calibrate(INT8, LAB, out)
    assert OperatingCharacteristics.from_card(read_metadata(out)).same_patches is False
