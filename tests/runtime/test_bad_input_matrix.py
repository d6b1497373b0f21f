"""The bad-input matrix (issue 14, item 7): odd and damaged inputs against the device commands, each with
its exact outcome.

Every row of `CASES` is one command line, run in-process through the console
entry point (`edge_pcam.cli.main`), and what must come of it: the exit code;
for a refusal, the single `edge-pcam: error:` line (its words) and no
traceback; for a result, a check of the result against what the input means
(`CHECKS`: e.g. an RGBA patch with an opaque alpha gets the probability of
its RGB pixels, written as a separate file); and the files the command may
write. Around each run the whole test folder is snapshotted (name, size,
SHA-256 of every file): the inputs, the model files and an earlier run's
results must come out as they went in, and nothing but the listed outputs
may appear. Runs in both venvs (TensorFlow and the TF-free device venv).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from card_support import raw_file
from cli_support import read_only_folder, run_cli, snapshot

from edge_pcam.runtime.datasets.synthetic import synthetic_patch
from edge_pcam.runtime.metadata import metadata_from_bytes, model_bytes
from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODELS = FIXTURES / "models"
KEPT_HIDDEN = {".scan-progress.csv"}  # scan's progress log stays (a rerun resumes from it)
NON_UTF8 = os.fsdecode(b"caf\xe9.png")  # a name that is not valid UTF-8 (latin-1 e-acute)


@dataclass(frozen=True)
class Case:
    """A command line (`{in}`: the inputs, `{out}`: an output folder holding an earlier run's file,
    `{model}`: the fixture classifier copied beside its companion, `{ro}`: a read-only folder)."""

    args: str
    code: int
    error: str | None = None  # words of the one error line (exit 2) or of the per-file "skipped" line (exit 1)
    check: str | None = None  # a name in CHECKS: what the output must say
    writes: tuple[str, ...] = field(default_factory=tuple)  # files (relative to the test folder) it may write

    @property
    def id(self) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: "" if m[1] == "in" else m[1].upper(), self.args).replace(" /", " ")


P, G, C, E, S, D, I, B, U = "predict", "gradcam", "calibrate", "evaluate", "scan", "data info", "info", "bench", "upgrade"
CSV_OUT = ("out/r.csv",)
CASES = [
    # --- predict: images as meant -------------------------------------------------------
    Case(f"{P} {{in}}/good.png {{in}}/png_named.jpg --model {{model}}", 0, check="same probability"),
    Case(f"{P} {{in}}/good.png {{in}}/rgba_opaque.png --model {{model}}", 0, check="same probability"),
    Case(f"{P} {{in}}/white.png {{in}}/rgba_clear.png --model {{model}}", 0, check="same probability"),
    Case(f"{P} {{in}}/grey.png {{in}}/grey_as_rgb.png --model {{model}}", 0, check="same probability"),
    Case(f"{P} {{in}}/grey16.png {{in}}/grey_as_rgb.png --model {{model}}", 0, check="same probability"),
    Case(f"{P} {{in}}/palette.png {{in}}/palette_as_rgb.png --model {{model}}", 0, check="same probability"),
    Case(f"{P} {{in}}/big.png {{in}}/big_centre.png --model {{model}}", 0, check="same probability"),
    Case(f"{P} {{in}}/good.png {{in}}/good.tif --model {{model}}", 0, check="same probability"),
    Case(f"{P} {{in}}/{NON_UTF8} --model {{model}} --csv {{out}}/r.csv", 0, check="non-UTF-8 name", writes=CSV_OUT),
    Case(f"{P} {{in}}/patches.h5 --model {{model}}", 0, check="three rows"),
    Case(f"{P} {{in}}/big.png {{in}}/good.png --model {{model}} --no-crop", 1, "image is 100x100, not 96x96"),
    # --- predict: per-file refusals (the others go on, exit 1) ---------------------------
    Case(f"{P} {{in}}/empty.png {{in}}/good.png --model {{model}}", 1, "empty.png: not an image Pillow can read"),
    Case(f"{P} {{in}}/truncated.png {{in}}/good.png --model {{model}}", 1, "truncated.png: cannot decode image"),
    Case(f"{P} {{in}}/truncated.jpg {{in}}/good.png --model {{model}}", 1, "truncated.jpg: cannot decode image"),
    Case(f"{P} {{in}}/truncated.tif {{in}}/good.png --model {{model}}", 1, "truncated.tif:"),
    Case(f"{P} {{in}}/text.png {{in}}/good.png --model {{model}}", 1, "text.png: not an image Pillow can read"),
    Case(f"{P} {{in}}/small.png {{in}}/good.png --model {{model}}", 1, "small.png: image is 50x50, smaller than"),
    Case(f"{P} {{in}}/missing.png {{in}}/good.png --model {{model}}", 1, "missing.png: no such file or folder"),
    Case(f"{P} {{in}}/empty {{in}}/good.png --model {{model}}", 1, "empty: folder holds no images"),
    Case(f"{P} {{in}}/truncated.h5 {{in}}/good.png --model {{model}}", 1, "truncated.h5: not a readable HDF5 file"),
    Case(f"{P} {{in}}/empty.h5 {{in}}/good.png --model {{model}}", 1, "empty.h5: not a readable HDF5 file"),
    Case(f"{P} {{in}}/no_x.h5 {{in}}/good.png --model {{model}}", 1, "no_x.h5: no 'x' dataset"),
    Case(f"{P} {{in}}/wrong_shape.h5 {{in}}/good.png --model {{model}}", 1, "expected uint8 (N, 96, 96, 3)"),
    Case(f"{P} {{in}}/truncated.png --model {{model}} --csv {{out}}/r.csv", 2, "no patch could be read"),
    Case(f"{P} {{in}}/empty --model {{model}}", 2, "no patch could be read"),
    # --- predict: models and options ---------------------------------------------------
    Case(f"{P} {{in}}/good.png --model {{in}}/zero.tflite", 2, "zero.tflite"),
    Case(f"{P} {{in}}/good.png --model {{in}}/truncated.tflite", 2, "truncated.tflite"),
    Case(f"{P} {{in}}/good.png --model {{in}}/text.tflite", 2, "text.tflite"),
    Case(f"{P} {{in}}/good.png --model {{in}}/missing.tflite", 2, "missing.tflite"),
    Case(f"{P} {{in}}/good.png --model {{in}}", 2, "is a folder, not a .tflite file"),
    Case(f"{P} {{in}}/good.png --model {{in}}/bad_card.tflite", 2, "bad_card.tflite"),
    Case(f"{P} {{in}}/good.png --model {{in}}/damaged_weights.tflite", 2, "integrity check failed"),
    Case(f"{P} {{in}}/good.png --model {{companion}}", 2, "a Grad-CAM companion, not a classifier"),
    Case(f"{P} {{in}}/good.png --model {{model}} --threshold 1.5", 2, "--threshold must lie in [0, 1], got 1.5"),
    Case(f"{P} {{in}}/good.png --model {{model}} --threshold -0.1", 2, "--threshold must lie in [0, 1], got -0.1"),
    Case(f"{P} {{in}}/good.png --model {{model}} --threshold nan", 2, "--threshold must lie in [0, 1], got nan"),
    Case(f"{P} {{in}}/good.png --model {{model}} --threshold 0.5 --triage", 2, "give --threshold or --triage"),
    Case(f"{P} {{in}}/good.png --model {{model}} --threads 100000", 2, "threads must be 1 to"),
    Case(f"{P} {{in}}/good.png --model {{model}} --threads 0", 2, "Invalid value for '--threads'"),
    Case(f"{P} {{in}}/good.png --model {{model}} --runtime abacus", 2, "abacus"),
    Case(f"{P} {{in}}/good.png --model {{model}} --csv {{ro}}/r.csv", 2, "cannot write in"),
    Case(f"{P} {{in}}/good.png --model {{model}} --csv {{out}}/none/r.csv", 2, "does not exist"),
    Case(f"{P} {{in}}/good.png --model {{model}} --json {{out}}", 2, "is a folder, not a file"),
    Case(f"{P} {{in}}/good.png --model {{model}} --csv {{in}}/good.png", 2, "would overwrite the input file"),
    # --- gradcam ------------------------------------------------------------------------
    Case(f"{G} {{in}}/good.png {{in}}/rgba_opaque.png --model {{model}} --out {{out}}/cams", 0,
         check="gradcam same probability", writes=("out/cams/*",)),
    Case(f"{G} {{in}}/truncated.png --model {{model}} --out {{out}}", 2, "no patch could be read"),
    Case(f"{G} {{in}}/truncated.png --model {{model}} --out {{out}}/new/cams", 2, "no patch could be read"),
    Case(f"{G} {{in}}/good.png --model {{model}} --out {{ro}}/cams", 2, "cannot write the output folder"),
    Case(f"{G} {{in}}/good.png --model {{model}} --out {{in}}/good.png", 2, "is a file, not a folder"),
    Case(f"{G} {{in}}/good.png --model {{model}} --companion {{model}} --out {{out}}", 2, "not a Grad-CAM companion"),
    Case(f"{G} {{in}}/good.png --model {{model}} --companion {{in}}/missing.tflite --out {{out}}", 2,
         "missing.tflite: Grad-CAM companion of"),
    Case(f"{G} {{in}}/good.png --model {{lonely}} --out {{out}}", 2, "Grad-CAM companion"),
    Case(f"{G} {{in}}/good.png --model {{model}} --threshold 2 --out {{out}}", 2, "--threshold must lie in [0, 1]"),
    # --- calibrate ----------------------------------------------------------------------
    Case(f"{C} {{model}} --data synthetic:40 --force --out {{out}}/cal.tflite", 0, check="calibrated",
         writes=("out/cal.tflite", "out/tiny_gradcam.tflite")),
    Case(f"{C} {{model}} --data synthetic:40 --out {{out}}/cal.tflite", 2, "at least 20 of each class"),
    Case(f"{C} {{model}} --data {{in}}/one_class --force --out {{out}}/cal.tflite", 2, "both classes"),
    Case(f"{C} {{model}} --data {{in}}/empty --out {{out}}/cal.tflite", 2, "empty"),
    Case(f"{C} {{model}} --data {{in}}/missing --out {{out}}/cal.tflite", 2, "missing"),
    Case(f"{C} {{model}} --data synthetic:40 --out {{out}}/cal.txt", 2, "must be a .tflite file"),
    Case(f"{C} {{model}} --data synthetic:40 --out {{model}}", 2, "--out must be a new file"),
    Case(f"{C} {{model}} --data synthetic:40 --out {{ro}}/cal.tflite", 2, "cannot write in"),
    Case(f"{C} {{in}}/zero.tflite --data synthetic:40 --out {{out}}/cal.tflite", 2, "zero.tflite"),
    Case(f"{C} {{model}} --data synthetic:40 --split nowhere --out {{out}}/cal.tflite", 2, "nowhere"),
    # --- evaluate -----------------------------------------------------------------------
    Case(f"{E} {{model}} --data {{in}}/layout --json {{out}}/e.json", 0, check="evaluated", writes=("out/e.json",)),
    Case(f"{E} {{model}} --data {{in}}/one_class --split valid", 0, check="one class"),
    Case(f"{E} {{in}}/truncated.tflite --data synthetic:40", 2, "truncated.tflite"),
    Case(f"{E} {{in}}/missing.tflite --data synthetic:40", 2, "missing.tflite: no such model file"),
    Case(f"{E} {{in}}/good.png --data synthetic:40", 2, "expected a Keras .h5 or a .tflite file"),
    Case(f"{E} {{model}} --data synthetic:abc", 2, "synthetic:abc"),
    Case(f"{E} {{model}} --data {{in}}/pcam_bad_labels", 2, "labels must be 0 or 1, found 0.9"),
    Case(f"{E} {{model}} --data synthetic:40 --split nowhere", 2, "nowhere"),
    Case(f"{E} {{model}} --data synthetic:40 --json {{ro}}/e.json", 2, "cannot write in"),
    Case(f"{E} {{model}} --data synthetic:40 --json {{model}}", 2, "would overwrite the input file"),
    # --- scan ---------------------------------------------------------------------------
    Case(f"{S} {{in}}/slide.tif --model {{model}} --out {{out}}/s", 0, check="scanned", writes=("out/s/*",)),
    Case(f"{S} {{in}}/truncated_slide.tif --model {{model}} --out {{out}}/s", 2, "truncated_slide.tif"),
    Case(f"{S} {{in}}/empty.png --model {{model}} --out {{out}}/s", 2, "empty.png"),
    Case(f"{S} {{in}}/text.svs --model {{model}} --out {{out}}/s", 2, "text.svs"),
    Case(f"{S} {{in}}/missing.svs --model {{model}} --out {{out}}/s", 2, "missing.svs: no such file"),
    Case(f"{S} {{in}}/good.png --model {{model}} --out {{out}}/s", 2, "--mpp"),
    Case(f"{S} {{in}}/slide.tif --model {{model}} --out {{out}}/s --reader abacus", 2, "unknown slide reader"),
    Case(f"{S} {{in}}/slide.tif --model {{model}} --out {{ro}}/s", 2, "cannot write the output folder"),
    Case(f"{S} {{in}}/slide.tif --model {{in}}/zero.tflite --out {{out}}/s", 2, "zero.tflite"),
    Case(f"{S} {{in}}/empty --model {{model}} --out {{out}}/s", 2, "no slides in this folder"),
    Case(f"{S} {{in}}/slide.tif --model {{model}} --out {{out}}/s --stride 0", 2, "Invalid value for '--stride'"),
    Case(f"{S} {{in}}/slide.tif --model {{model}} --out {{out}}/s --strid 96", 2, "No such option: --strid"),
    Case(f"{S} --model {{model}} --out {{out}}/s", 2, "Missing argument 'slides'"),
    # --- data info ----------------------------------------------------------------------
    Case(f"{D} {{in}}/layout", 0, check="layout counts"),
    Case(f"{D} {{in}}/missing", 2, "missing"),
    Case(f"{D} {{in}}/empty", 2, "empty"),
    Case(f"{D} synthetic:abc", 2, "synthetic:abc"),
    Case(f"{D} {{in}}/pcam_bad_labels", 2, "labels must be 0 or 1, found 0.9"),
    Case(f"{D} {{in}}/layout_damaged --check", 2, "broken.png"),
    # --- info ---------------------------------------------------------------------------
    Case(f"{I} {{model}}", 0, check="verified"),
    Case(f"{I} {{in}}/damaged_weights.tflite", 1, check="does not verify"),
    Case(f"{I} {{in}}/zero.tflite", 2, "zero.tflite"),
    Case(f"{I} {{in}}/truncated.tflite", 2, "truncated.tflite"),
    Case(f"{I} {{in}}/text.tflite", 2, "text.tflite"),
    Case(f"{I} {{in}}/missing.tflite", 2, "missing.tflite"),
    Case(f"{I} {{in}}/bad_card.tflite", 2, "bad_card.tflite"),
    Case(f"{I} {{in}}", 2, "cannot read model file (Is a directory)"),
    # --- upgrade (a device command that writes a model file) -------------------------------
    Case(f"{U} {{legacy}} {{ro}}/new.tflite", 2, "cannot write the folder for the upgraded copy"),
    Case(f"{U} {{legacy}} {{in}}/good.png/new.tflite", 2, "good.png: cannot write the folder for the upgraded copy: it is a file"),
    Case(f"{U} {{legacy}} {{in}}/models", 2, "must be a .tflite file"),
    Case(f"{U} {{legacy}} {{out}}/made/new.tflite", 0, writes=("out/made/", "out/made/new.tflite")),
    # --- bench (refusals come before any measurement) ------------------------------------
    Case(f"{B} --data synthetic:40 --out {{out}}/b --models {{in}}/models --threads a", 2, "--threads a"),
    Case(f"{B} --data synthetic:40 --out {{out}}/b --models {{in}}/models --threads 0", 2, "--threads 0"),
    Case(f"{B} --data synthetic:40 --out {{out}}/b --models {{in}}/models --threads ,", 2, "at least one thread"),
    Case(f"{B} --data synthetic:40 --out {{out}}/b --models {{in}}/models --threads 100000", 2, "threads must be 1 to"),
    Case(f"{B} --data synthetic:40 --out {{ro}}/b --models {{in}}/models", 2, "cannot write the output folder"),
    Case(f"{B} --data synthetic:40 --out {{in}}/good.png --models {{in}}/models", 2, "is a file, not a folder"),
    Case(f"{B} --data synthetic:40 --out {{out}}/b --models {{in}}/empty", 2, "no .tflite or .h5 model files"),
    Case(f"{B} --data synthetic:40 --out {{out}}/b --models {{in}}/models --device toaster", 2, "toaster"),
]


# --- the inputs ---------------------------------------------------------------------------

def patch(i: int) -> np.ndarray:
    return synthetic_patch(11, i)[0]


def save(folder: Path, name: str, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(folder / name)
    return folder / name


def half(path: Path, name: str) -> None:
    data = path.read_bytes()
    (path.parent / name).write_bytes(data[:len(data) // 2])


def write_h5(path: Path, **datasets: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f[key] = value


def build_inputs(folder: Path) -> None:
    """Every input the cases name, made from synthetic patches and the fixture models."""
    folder.mkdir()
    good = save(folder, "good.png", patch(0))
    shutil.copy(good, folder / "png_named.jpg")
    save(folder, "good.tif", patch(0))
    save(folder, "white.png", np.full((96, 96, 3), 255, np.uint8))
    save(folder, "rgba_opaque.png", np.dstack([patch(0), np.full((96, 96), 255, np.uint8)]))
    save(folder, "rgba_clear.png", np.dstack([patch(1), np.zeros((96, 96), np.uint8)]))
    grey = patch(2).mean(axis=-1).astype(np.uint8)
    save(folder, "grey.png", grey)
    save(folder, "grey_as_rgb.png", np.repeat(grey[..., None], 3, axis=-1))
    save(folder, "grey16.png", grey.astype(np.uint16) * 257)  # Pillow: mode I;16
    palette = Image.fromarray(patch(3)).quantize(64)
    palette.save(folder / "palette.png")
    save(folder, "palette_as_rgb.png", np.asarray(palette.convert("RGB")))
    big = np.asarray(Image.fromarray(patch(4)).resize((100, 100)))
    save(folder, "big.png", big)
    save(folder, "big_centre.png", big[2:98, 2:98])
    save(folder, "small.png", patch(5)[:50, :50])
    save(folder, NON_UTF8, patch(6))
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("a patch, they said\n")
    (folder / "text.svs").write_text("a slide, they said\n")
    half(good, "truncated.png")
    save(folder, "whole.jpg", patch(7))
    half(folder / "whole.jpg", "truncated.jpg")
    (folder / "whole.jpg").unlink()
    half(folder / "good.tif", "truncated.tif")
    (folder / "empty").mkdir()
    write_h5(folder / "patches.h5", x=np.stack([patch(i) for i in range(3)]))
    half(folder / "patches.h5", "truncated.h5")
    (folder / "empty.h5").write_bytes(b"")
    write_h5(folder / "no_x.h5", y=np.zeros((3, 1, 1, 1), np.uint8))
    write_h5(folder / "wrong_shape.h5", x=np.zeros((3, 32, 32, 3), np.uint8))
    # labelled folders
    for split, label, i in (("valid", "0", 0), ("valid", "1", 1), ("valid", "1", 2), ("train", "0", 3)):
        (folder / "layout" / split / label).mkdir(parents=True, exist_ok=True)
        save(folder / "layout" / split / label, f"p{i}.png", patch(i))
    shutil.copytree(folder / "layout", folder / "layout_damaged")
    (folder / "layout_damaged" / "valid" / "0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for i in range(25):
        (folder / "one_class" / "valid" / "0").mkdir(parents=True, exist_ok=True)
        save(folder / "one_class" / "valid" / "0", f"n{i}.png", patch(i))
    (folder / "pcam_bad_labels").mkdir()
    write_h5(folder / "pcam_bad_labels" / "camelyonpatch_level_2_split_valid_x.h5", x=np.stack([patch(0), patch(1)]))
    write_h5(folder / "pcam_bad_labels" / "camelyonpatch_level_2_split_valid_y.h5",
             y=np.array([0.0, 0.9], np.float32).reshape(2, 1, 1, 1))
    # models
    model = (MODELS / "tiny_int8.tflite").read_bytes()
    (folder / "zero.tflite").write_bytes(b"")
    (folder / "truncated.tflite").write_bytes(model[:len(model) // 2])
    (folder / "text.tflite").write_text("a model, they said\n")
    meta = metadata_from_bytes(model)
    meta["thresholds"] = {**meta["thresholds"], "decision": 2.0}
    (folder / "bad_card.tflite").write_bytes(raw_file(model_bytes(model), meta))  # digest right, card not
    damaged = bytearray(model)
    damaged[len(model_bytes(model)) // 2] ^= 0xFF  # a weight byte; the card is intact
    (folder / "damaged_weights.tflite").write_bytes(bytes(damaged))
    # slides
    slide = write_synthetic_slide(folder / "slide.tif", 1000, 800, mpp=0.972, tissue=(100, 100, 900, 700),
                                  tumour=(300, 300, 600, 500), tile=256)
    half(slide.path, "truncated_slide.tif")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("matrix-inputs")
    build_inputs(root / "in")
    (root / "in" / "models").mkdir()
    for name in ("tiny_int8.tflite", "tiny_gradcam.tflite"):
        shutil.copy(MODELS / name, root / "in" / "models" / name)
    (root / "in" / "legacy").mkdir()  # a file an earlier edge-pcam made (schema 1), for upgrade
    shutil.copy(FIXTURES / "legacy" / "tiny_int8_schema1.tflite", root / "in" / "legacy" / "tiny_int8.tflite")
    (root / "in" / "lonely").mkdir()
    shutil.copy(MODELS / "tiny_int8.tflite", root / "in" / "lonely" / "tiny_int8.tflite")
    return root / "in"


# --- what a result must say ------------------------------------------------------------

def probabilities(text: str) -> list[float]:
    return [float(row["probability"]) for row in csv.DictReader(io.StringIO(text))]


def check_same_probability(stdout: str, out: Path) -> None:
    p = probabilities(stdout)
    assert len(p) == 2 and p[0] == p[1], p


def check_gradcam_same_probability(stdout: str, out: Path) -> None:
    rows = list(csv.DictReader(open(out / "cams" / "gradcam.csv", newline="")))
    assert len(rows) == 2 and rows[0]["probability"] == rows[1]["probability"], rows
    for row in rows:
        assert np.load(out / "cams" / row["cam"]).shape == (12, 12)


def check_non_utf8_name(stdout: str, out: Path) -> None:
    rows = list(csv.DictReader(open(out / "r.csv", newline="", encoding="utf-8")))
    assert len(rows) == 1 and rows[0]["path"].endswith("caf\\xe9.png"), rows


def check_three_rows(stdout: str, out: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert [r["path"].rsplit("#", 1)[1] for r in rows] == ["0", "1", "2"]


def check_calibrated(stdout: str, out: Path) -> None:
    meta = metadata_from_bytes((out / "cal.tflite").read_bytes())
    assert meta["calibration"]["n"] == 40 and all(0 <= t <= 1 for t in meta["thresholds"].values())


def check_evaluated(stdout: str, out: Path) -> None:
    import json
    report = json.loads((out / "e.json").read_text())
    assert report["n"] == 3 and report["split"] == "valid" and report["metrics"], report  # layout: 3 valid patches


def check_one_class(stdout: str, out: Path) -> None:
    assert "n=25" in stdout


def check_scanned(stdout: str, out: Path) -> None:
    assert (out / "s" / "scan.json").is_file() and "tissue tiles" in stdout


def check_layout_counts(stdout: str, out: Path) -> None:
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
            for line in stdout.splitlines() if line.count("│") >= 5}
    assert rows == {"train": ["1", "0", "1"], "valid": ["1", "2", "3"]}, stdout


def check_verified(stdout: str, out: Path) -> None:
    assert "verified" in stdout


def check_does_not_verify(stdout: str, out: Path) -> None:
    assert "integrity: DOES NOT VERIFY" in stdout


CHECKS = {name.removeprefix("check_").replace("_", " ").replace("non utf8", "non-UTF-8"): fn
          for name, fn in globals().items() if name.startswith("check_")}


# --- the matrix ----------------------------------------------------------------------------

def test_the_matrix_has_every_command_and_enough_rows():
    commands = {next(c for c in (D, P, G, C, E, S, I, B, U) if case.args.startswith(c + " ")) for case in CASES}
    assert commands == {P, G, C, E, S, D, I, B, U} and len(CASES) >= 60
    assert all(case.check in CHECKS for case in CASES if case.check)


USAGE_ERRORS = ("Invalid value", "No such option", "Missing argument")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_matrix(case, inputs, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    out = work / "out"
    out.mkdir(parents=True)
    (out / "earlier.csv").write_text("path,probability,prediction\nold.png,0.5,tumour\n")  # must survive
    monkeypatch.chdir(work)
    names = {"in": inputs, "out": out, "model": inputs / "models" / "tiny_int8.tflite",
             "companion": inputs / "models" / "tiny_gradcam.tflite", "lonely": inputs / "lonely" / "tiny_int8.tflite",
             "legacy": inputs / "legacy" / "tiny_int8.tflite"}
    if "{ro}" in case.args:
        names["ro"] = read_only_folder(tmp_path)
    args = [part.format(**{k: str(v) for k, v in names.items()}) for part in case.args.split(" ")]
    inputs_before, work_before = snapshot(inputs), snapshot(work)
    code, stdout, err = run_cli(args, monkeypatch, capsys)

    assert "Traceback" not in err, err
    assert code == case.code, f"exit {code}, expected {case.code}\n{err}"
    if case.error and case.code == 2:
        if case.error.startswith(USAGE_ERRORS):  # the command line itself is wrong: that line alone, no usage box
            assert err.strip() == err.strip().splitlines()[0], err
        lines = [line for line in err.splitlines() if line.startswith("edge-pcam: error: ")]
        assert len(lines) == 1 and case.error in lines[0], err
    elif case.error:
        assert any(line.startswith("edge-pcam: skipped ") and case.error in line for line in err.splitlines()), err
    if case.check:
        CHECKS[case.check](stdout, out)

    assert snapshot(inputs) == inputs_before, "an input changed"
    after = snapshot(work)
    kept = {name: after.get(name) for name in work_before}
    assert kept == work_before, "an earlier file changed or went"
    new = sorted(set(after) - set(work_before))
    allowed = [re.escape(w).replace(r"\*", ".*") for w in case.writes]
    unexpected = [name for name in new if not any(re.fullmatch(a, name) for a in allowed)]
    assert not unexpected, f"wrote {unexpected}"
    assert all(any(re.fullmatch(a, name) for name in new) for a in allowed), f"expected {case.writes}, wrote {new}"
    assert not [p for p in work.rglob(".*") if p.name not in KEPT_HIDDEN], "temporary files left behind"
