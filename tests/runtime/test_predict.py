"""`edge-pcam predict` and runtime.classify: inputs, labels, thresholds, bad files, golden outputs.

Runs in both venvs. The golden file holds ai-edge-litert's results on the
committed fixtures (tests/fixtures/make_fixtures.py): on that very interpreter
and version the probabilities must be identical (to the file's 6 decimals);
under tflite-runtime (.venv-tflite), whose reference int8 kernels round
differently from XNNPACK's, the labels must be the same and the probabilities
within CROSS_INTERPRETER_STEPS steps of the int8 output (measured: at most 5
over the fixture model's 120 synthetic test patches, 2 at the 95th percentile).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_reference import same_interpreter_as_golden

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.classify import classify, expand_inputs
from edge_pcam.runtime.interpreter import load_model
from edge_pcam.runtime.tta import dihedral_views

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INT8 = FIXTURES / "models" / "tiny_int8.tflite"
PATCHES = FIXTURES / "patches"
H5 = PATCHES / "pcam_sample_x.h5"
INT8_STEP = 1 / 256  # the int8 probability output's resolution
CROSS_INTERPRETER_STEPS = 6


def golden() -> dict[str, tuple[float, str]]:
    with open(FIXTURES / "golden" / "predictions.csv", newline="") as f:
        return {r["path"]: (float(r["probability"]), r["prediction"]) for r in csv.DictReader(f)}


def rel(pid: str) -> str:
    path, hash_, row = pid.partition("#")
    return Path(path).resolve().relative_to(FIXTURES).as_posix() + hash_ + row


@pytest.fixture(scope="module")
def model():
    return load_model(INT8, threads=2)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_pcam", *args], capture_output=True, text=True, cwd=cwd)


def test_same_labels_as_golden_ai_edge_litert(model):
    expected = golden()
    result = classify([PATCHES], model)
    assert not result.errors
    got = {rel(p.path): p for p in result.predictions}
    assert set(got) == set(expected)
    assert any("#" in k for k in got) and any(k.endswith(".jpg") for k in got) and any(k.endswith(".tif") for k in got)
    assert {p.prediction for p in got.values()} == {"normal", "tumour"}
    same = same_interpreter_as_golden(model)
    for key, (prob, label) in expected.items():
        assert got[key].prediction == label, f"{key}: {model.runtime} says {got[key].prediction}, golden {label}"
        if same:
            assert f"{got[key].probability:.6f}" == f"{prob:.6f}", key
        else:
            assert abs(got[key].probability - prob) <= CROSS_INTERPRETER_STEPS * INT8_STEP, key


def test_cli_writes_csv_and_json_and_names_the_runtime(tmp_path, model):
    out_csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    proc = run_cli("predict", str(PATCHES), "--model", str(INT8), "--csv", str(out_csv), "--json", str(out_json))
    assert proc.returncode == 0, proc.stderr
    assert model.runtime in proc.stderr and "patches" in proc.stderr
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0]) == ["path", "probability", "prediction"]
    import h5py
    with h5py.File(H5) as f:
        n_h5 = len(f["x"])
    images = [p for p in PATCHES.iterdir() if p.suffix in (".png", ".jpg", ".tif")]
    assert [r["path"] for r in rows if "#" in r["path"]] == [f"{H5}#{i}" for i in range(n_h5)]
    assert len(rows) == len(images) + n_h5
    report = json.loads(out_json.read_text())
    assert report["runtime"] == model.runtime and report["n"] == len(rows)
    assert report["threshold_name"] == "decision" and report["threshold"] == model.thresholds["decision"]
    # no --csv/--json: the rows go to stdout
    proc = run_cli("predict", str(H5), "--model", str(INT8))
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines[0] == "path,probability,prediction" and len(lines) == n_h5 + 1


def test_thresholds_given_triage_and_stored(model):
    decision = classify([PATCHES], model)
    triage = classify([PATCHES], model, triage=True)
    assert triage.threshold == model.thresholds["triage"] and triage.threshold_name == "triage"
    everything = classify([PATCHES], model, threshold=0.0)
    assert {p.prediction for p in everything.predictions} == {"tumour"}
    for d, t in zip(decision.predictions, triage.predictions):
        assert d.probability == t.probability
        assert t.prediction == ("tumour" if t.probability >= triage.threshold else "normal")
    with pytest.raises(EdgePcamError, match="not both"):
        classify([PATCHES], model, threshold=0.5, triage=True)
    with pytest.raises(EdgePcamError, match=r"\[0, 1\]"):
        classify([PATCHES], model, threshold=1.5)


def test_tta_is_the_mean_over_the_eight_views(model):
    files = sorted(PATCHES.glob("*.png"))[:2]
    result = classify(files, model, tta=True)
    from edge_pcam.runtime.images import load_patches
    x = load_patches(files)
    expected = np.mean([model.predict(v) for v in dihedral_views(x)], axis=0)
    np.testing.assert_allclose([p.probability for p in result.predictions], expected, rtol=1e-6)
    assert result.tta


def _write_variants(folder: Path, patch: np.ndarray) -> dict[str, Path]:
    """The same patch as the image kinds a lab may have, and broken files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    im = Image.fromarray(patch)
    files["grey"] = folder / "grey.png"
    im.convert("L").save(files["grey"])
    files["rgba"] = folder / "rgba.png"
    im.convert("RGBA").save(files["rgba"])
    files["palette"] = folder / "palette.png"
    im.convert("P").save(files["palette"])
    files["grey16"] = folder / "grey16.png"
    Image.fromarray((np.asarray(im.convert("L"), np.uint16) * 257)).save(files["grey16"])
    files["cmyk"] = folder / "cmyk.jpg"
    im.convert("CMYK").save(files["cmyk"], quality=95)
    big = np.zeros((128, 160, 3), np.uint8)
    big[16:112, 32:128] = patch
    files["large"] = folder / "large.png"
    Image.fromarray(big).save(files["large"])
    files["small"] = folder / "small.png"
    im.resize((64, 64)).save(files["small"])
    files["corrupt"] = folder / "corrupt.png"
    files["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    jpg = folder / "whole.jpg"
    im.save(jpg, quality=90)
    files["truncated"] = folder / "truncated.jpg"
    files["truncated"].write_bytes(jpg.read_bytes()[:300])
    jpg.unlink()
    files["text"] = folder / "notes.tif"
    files["text"].write_text("not an image\n")
    return files


def test_image_kinds_converted_or_refused_and_the_rest_goes_on(tmp_path, model):
    patch = np.asarray(Image.open(sorted(PATCHES.glob("*.png"))[0]).convert("RGB"))
    files = _write_variants(tmp_path / "lab", patch)
    result = classify([tmp_path / "lab", tmp_path / "missing.png"], model)
    ok = {Path(p.path).stem: p for p in result.predictions}
    bad = {Path(e.path).stem: e.error for e in result.errors}
    assert set(ok) == {"grey", "rgba", "palette", "grey16", "cmyk", "large"}
    assert set(bad) == {"small", "corrupt", "truncated", "notes", "missing"}
    assert "smaller" in bad["small"] and "no such" in bad["missing"]
    assert ok["large"].probability == pytest.approx(model.predict(patch)[0])  # centre crop
    assert ok["grey"].probability == pytest.approx(ok["grey16"].probability, abs=3 * INT8_STEP)
    no_crop = classify([files["large"]], model, crop=False)
    assert not no_crop.predictions and "not 96x96" in no_crop.errors[0].error


def test_cli_bad_files_one_line_each_and_exit_code(tmp_path):
    patch = np.asarray(Image.open(sorted(PATCHES.glob("*.png"))[0]).convert("RGB"))
    _write_variants(tmp_path / "lab", patch)
    proc = run_cli("predict", str(tmp_path / "lab"), "--model", str(INT8))
    assert proc.returncode == 1  # some failed
    skipped = [ln for ln in proc.stderr.splitlines() if ln.startswith("edge-pcam: skipped")]
    assert len(skipped) == 4 and "Traceback" not in proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1 + 6
    proc = run_cli("predict", str(tmp_path / "lab" / "small.png"), "--model", str(INT8))
    assert proc.returncode == 2 and "no patch could be read" in proc.stderr
    proc = run_cli("predict", str(PATCHES), "--model", str(tmp_path / "lab" / "notes.tif"))
    assert proc.returncode == 2 and proc.stderr.startswith("edge-pcam: error:") and "Traceback" not in proc.stderr


def test_hdf5_inputs(tmp_path, model):
    import h5py
    sources, problems = expand_inputs([H5])
    assert not problems and len(sources[0]) > 0
    result = classify([H5], model)
    with h5py.File(H5) as f:
        x = f["x"][:]
    assert [p.path for p in result.predictions] == [f"{H5}#{i}" for i in range(len(x))]
    np.testing.assert_allclose([p.probability for p in result.predictions], model.predict(x))
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as f:
        f["y"] = np.zeros((3, 1, 1, 1), np.uint8)
    gz = tmp_path / "camelyonpatch_level_2_split_test_x.h5.gz"
    gz.write_bytes(b"\x1f\x8b")
    not_h5 = tmp_path / "broken.h5"
    not_h5.write_bytes(b"nope")
    result = classify([wrong, gz, not_h5, H5], model)
    assert len(result.predictions) == len(x) and len(result.errors) == 3
    folder = tmp_path / "pcam"
    folder.mkdir()
    (folder / "camelyonpatch_level_2_split_test_x.h5").write_bytes(H5.read_bytes())
    wrong.rename(folder / "camelyonpatch_level_2_split_test_y.h5")  # labels beside: not a patch file
    from_folder = classify([folder], model)
    assert not from_folder.errors and len(from_folder.predictions) == len(x)
    reasons = " ".join(e.error for e in result.errors)
    assert "no 'x' dataset" in reasons and "decompress" in reasons and "HDF5" in reasons


@pytest.mark.real_data
def test_real_subset_patches(subset_dir, model, tmp_path):
    """Real PCam JPEGs from the subset go through the whole path (nothing is written or kept)."""
    files = sorted((subset_dir / "valid").rglob("*.jpg"))[:32]
    result = classify(files, model)
    assert not result.errors and len(result.predictions) == len(files)
    from edge_pcam.runtime.images import load_patches
    np.testing.assert_array_equal([p.probability for p in result.predictions], model.predict(load_patches(files)))
