"""Outputs never lost (issue 14, item 3): every output path is checked before the work starts, a run
replaces an earlier run's files whole (or leaves them as they were), and gradcam never reads its own
pictures as patches."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cli_support import one_line_error, read_only_folder, run_cli, snapshot

from edge_pcam.runtime.datasets.synthetic import synthetic_patch
from edge_pcam.runtime.gradcam import REPLACED_INDEX, run_gradcam
from edge_pcam.runtime.interpreter import load_model
from edge_pcam.runtime.synthetic_slide import write_synthetic_slide

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INT8 = FIXTURES / "models" / "tiny_int8.tflite"

# Where each command's work starts: patched to fail, so an output refused after it shows as a failure.
WORK = {
    "predict": "edge_pcam.runtime.interpreter.load_model",
    "gradcam": "edge_pcam.runtime.interpreter.load_model",
    "calibrate": "edge_pcam.runtime.calibrate.load_model",
    "evaluate": "edge_pcam.runtime.datasets.open_dataset",
    "bench": "edge_pcam.bench.runner.run_bench",
    "scan": "edge_pcam.runtime.scan.scan_slide",
}


@pytest.fixture(scope="module")
def model():
    return load_model(INT8, threads=1)


def write_patches(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(synthetic_patch(3, i)[0]).save(folder / name)
    return folder


def index_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "gradcam.csv", newline="") as f:
        return list(csv.DictReader(f))


def command(name: str, tmp_path: Path, out: Path) -> list:
    """The command line of `name` writing to `out` (a file for --csv/--json/calibrate, else a folder)."""
    patch = write_patches(tmp_path / "in", ["a.png"]) / "a.png"
    return {
        "predict --csv": ["predict", patch, "--model", INT8, "--csv", out],
        "predict --json": ["predict", patch, "--model", INT8, "--json", out],
        "gradcam": ["gradcam", patch, "--model", INT8, "--out", out],
        "calibrate": ["calibrate", INT8, "--data", "synthetic:40", "--out", out, "--force"],
        "evaluate": ["evaluate", INT8, "--data", "synthetic:40", "--json", out],
        "bench": ["bench", "--data", "synthetic:40", "--out", out, "--models", INT8.parent],
        "scan": ["scan", patch, "--out", out],
    }[name]


FILE_OUTPUTS = ["predict --csv", "predict --json", "calibrate", "evaluate"]
FOLDER_OUTPUTS = ["gradcam", "bench", "scan"]


def bad_destination(kind: str, tmp_path: Path, is_file: bool) -> tuple[Path, str]:
    """An output path that cannot be written, and the words its error must hold."""
    name = "out.tflite" if is_file else "out"
    if kind == "read-only":
        return read_only_folder(tmp_path) / name, "cannot write"
    if kind == "missing folder":  # a file's folder must exist (an output folder is made)
        return tmp_path / "missing" / name, "does not exist"
    if kind == "under a file":
        blocker = tmp_path / "blocker"
        blocker.write_text("not a folder")
        return blocker / name, "does not exist" if is_file else "blocker is a file"
    if kind == "a folder given for a file":
        folder = tmp_path / "a.tflite"
        folder.mkdir()
        return folder, "is a folder, not a file"
    return tmp_path / "in" / "a.png", "is a file, not a folder"  # a file given for a folder


BAD = [(name, kind) for name in FILE_OUTPUTS for kind in ("read-only", "missing folder", "under a file",
                                                          "a folder given for a file")]
BAD += [(name, kind) for name in FOLDER_OUTPUTS for kind in ("read-only", "under a file", "a file given for a folder")]


@pytest.mark.parametrize("name,kind", BAD)
def test_a_bad_output_path_is_one_line_before_the_work(name, kind, tmp_path, monkeypatch, capsys):
    args = command(name, tmp_path, Path("placeholder"))
    out, words = bad_destination(kind, tmp_path, name in FILE_OUTPUTS)
    args[args.index(Path("placeholder"))] = out

    def work_started(*args, **kwargs):
        raise AssertionError(f"{name}: the work started before {out} was checked")

    monkeypatch.setattr(WORK[name.split()[0]], work_started)
    before = snapshot(tmp_path)
    code, stdout, err = run_cli(args, monkeypatch, capsys)
    line = one_line_error(err)
    assert code == 2 and str(out) in line and words in line, line
    assert snapshot(tmp_path) == before and not stdout


def test_a_missing_output_folder_is_made_parents_too(tmp_path, monkeypatch, capsys):
    write_patches(tmp_path / "in", ["a.png"])
    code, _, err = run_cli(["gradcam", tmp_path / "in" / "a.png", "--model", INT8, "--out", tmp_path / "x" / "y"],
                           monkeypatch, capsys)
    assert code == 0, err
    assert [r["path"] for r in index_rows(tmp_path / "x" / "y")] == [str(tmp_path / "in" / "a.png")]


@pytest.mark.parametrize("option", ["--csv", "--json"])
def test_predict_never_writes_over_an_input(option, tmp_path, monkeypatch, capsys):
    folder = write_patches(tmp_path / "in", ["a.png", "b.png"])
    before = snapshot(folder)
    code, _, err = run_cli(["predict", folder / "a.png", folder / "b.png", "--model", INT8, option, folder / "b.png"],
                           monkeypatch, capsys)
    assert code == 2 and f"{option} would overwrite the input file" in one_line_error(err)
    assert snapshot(folder) == before


def test_predict_csv_and_json_cannot_be_one_file(tmp_path, monkeypatch, capsys):
    folder = write_patches(tmp_path / "in", ["a.png"])
    code, _, err = run_cli(["predict", folder, "--model", INT8, "--csv", tmp_path / "r", "--json", tmp_path / "r"],
                           monkeypatch, capsys)
    assert code == 2 and "--csv and --json name the same file" in one_line_error(err)
    assert not (tmp_path / "r").exists()


def test_calibrate_never_writes_over_the_companion(tmp_path, monkeypatch, capsys):
    for name in ("tiny_int8.tflite", "tiny_gradcam.tflite"):
        shutil.copy(FIXTURES / "models" / name, tmp_path)
    before = snapshot(tmp_path)
    code, _, err = run_cli(["calibrate", tmp_path / "tiny_int8.tflite", "--data", "synthetic:40", "--force",
                            "--out", tmp_path / "tiny_gradcam.tflite"], monkeypatch, capsys)
    assert code == 2 and "would overwrite the input file" in one_line_error(err)
    assert snapshot(tmp_path) == before


# --- gradcam: a rerun replaces the earlier run whole --------------------------------------

def test_a_rerun_removes_the_earlier_maps_its_index_does_not_name(tmp_path, model):
    first = write_patches(tmp_path / "first", ["a.png", "b.png", "c.png"])
    out = tmp_path / "cams"
    run_gradcam([first], model, out)
    assert len(index_rows(out)) == 3
    second = write_patches(tmp_path / "second", ["d.png"])
    result = run_gradcam([second], model, out)
    rows = index_rows(out)
    assert [r["path"] for r in rows] == [str(second / "d.png")] and len(result.rows) == 1
    named = {r[k] for r in rows for k in ("overlay", "heatmap", "cam")}
    assert sorted(p.name for p in out.iterdir()) == sorted(named | {"gradcam.csv"})


def test_a_run_that_reads_no_patch_leaves_the_earlier_run_as_it_was(tmp_path, model):
    out = tmp_path / "cams"
    run_gradcam([write_patches(tmp_path / "in", ["a.png", "b.png"])], model, out)
    before = snapshot(out)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = run_gradcam([tmp_path / "broken.png"], model, out)
    assert not result.rows and len(result.errors) == 1
    assert snapshot(out) == before


def test_an_interrupted_run_leaves_the_earlier_run_and_no_temporary_files(tmp_path, model):
    out = tmp_path / "cams"
    run_gradcam([write_patches(tmp_path / "in", ["a.png"])], model, out)
    before = snapshot(out)

    def interrupt(k: int) -> None:
        raise KeyboardInterrupt

    many = write_patches(tmp_path / "many", [f"p{i:03d}.png" for i in range(70)])  # two batches
    with pytest.raises(KeyboardInterrupt):
        run_gradcam([many], model, out, progress=interrupt)
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(k).name for k in before)


def test_a_run_killed_while_publishing_is_finished_by_the_next(tmp_path, model):
    out = tmp_path / "cams"
    run_gradcam([write_patches(tmp_path / "in", ["a.png", "b.png"])], model, out)
    (out / "gradcam.csv").rename(out / REPLACED_INDEX)  # killed after setting the earlier index aside
    run_gradcam([write_patches(tmp_path / "other", ["z.png"])], model, out)
    assert sorted(p.name for p in out.iterdir()) == ["gradcam.csv", "z_cam.npy", "z_heatmap.png", "z_overlay.png"]


# --- gradcam never reads its own pictures as patches --------------------------------------

@pytest.mark.parametrize("where", ["inside the input folder", "the input folder itself"])
def test_gradcam_rerun_into_its_input_folder_reads_the_same_patches(where, tmp_path, monkeypatch, capsys):
    folder = write_patches(tmp_path / "slides", ["a.png", "b.png", "x_overlay.png"])  # a patch with such a name
    out = folder / "cams" if where == "inside the input folder" else folder
    runs = []
    for _ in range(2):
        code, _, err = run_cli(["gradcam", folder, "--model", INT8, "--out", out], monkeypatch, capsys)
        assert code == 0, err
        runs.append([(r["path"], r["probability"]) for r in index_rows(out)])
    assert runs[0] == runs[1]
    assert sorted(Path(p).name for p, _ in runs[1]) == ["a.png", "b.png", "x_overlay.png"]


def test_predict_skips_gradcam_pictures_in_a_folder_and_refuses_one_named(tmp_path, monkeypatch, capsys):
    folder = write_patches(tmp_path / "in", ["a.png"])
    assert run_cli(["gradcam", folder, "--model", INT8, "--out", folder], monkeypatch, capsys)[0] == 0
    code, stdout, err = run_cli(["predict", folder, "--model", INT8], monkeypatch, capsys)
    assert code == 0 and [line.split(",")[0] for line in stdout.splitlines()[1:]] == [str(folder / "a.png")]
    code, _, err = run_cli(["predict", folder / "a_overlay.png", "--model", INT8], monkeypatch, capsys)
    assert code == 2 and f"skipped {folder / 'a_overlay.png'}: a picture edge-pcam wrote" in err


# --- scan: the top tiles of an earlier run go with it --------------------------------------

def test_scan_rerun_with_fewer_top_tiles_keeps_only_those_it_lists(tmp_path, monkeypatch, capsys):
    slide = write_synthetic_slide(tmp_path / "s.tif", 1200, 1000, mpp=0.972, tissue=(100, 100, 1100, 900),
                                  tumour=(300, 300, 700, 700), tile=256)
    out = tmp_path / "out"
    for k in (4, 2):
        code, _, err = run_cli(["scan", slide.path, "--out", out, "--model", INT8, "--top-k", k], monkeypatch, capsys)
        assert code == 0, err
    assert sorted(p.name for p in (out / "top").iterdir()) == ["01.png", "02.png"]
