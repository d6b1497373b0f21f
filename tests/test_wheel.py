"""The wheel, installed without TensorFlow, runs the device commands (issue 14, item 6).

Builds the wheel from this checkout, installs it with no extras into a fresh
virtual environment (one per test session; pip may use its cache), and runs
`info`, `predict`, `gradcam`, `bench --device raspberry-pi-4` and `scan` from a
folder outside the repository, so nothing but the installed copy is used; and a
batch scan of JPEG-tiled Aperio SVS files, the format a new user's scanner most
often writes, which needs the default install's readers (issue 12).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from edge_pcam.runtime.datasets.synthetic import synthetic_patch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the venv's bin folder, a work folder outside the repository) with the wheel installed, no extras."""
    work = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(work / "dist"), str(REPO)],
        cwd=work)
    (wheel,) = (work / "dist").glob("edge_pcam-*.whl")
    run([sys.executable, "-m", "venv", str(work / "venv")], cwd=work)
    bin_dir = work / "venv" / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)], cwd=work, timeout=900)
    return bin_dir, work


def test_installed_copy_is_the_wheel_and_has_no_tensorflow(installed):
    bin_dir, work = installed
    probe = ("import importlib.util, json, edge_pcam;"
             "print(json.dumps({'file': edge_pcam.__file__, 'tf': [m for m in ('tensorflow', 'tf_keras',"
             " 'tensorflow_model_optimization') if importlib.util.find_spec(m)]}))")
    found = json.loads(run([str(bin_dir / "python"), "-c", probe], cwd=work).stdout)
    assert found["file"].startswith(str(work / "venv")) and found["tf"] == []


def test_board_profiles_are_in_the_wheel(installed):
    bin_dir, work = installed
    probe = "from edge_pcam.bench.reference import known_devices; print(','.join(known_devices()))"
    known = run([str(bin_dir / "python"), "-c", probe], cwd=work).stdout.strip().split(",")
    in_repo = sorted(p.parent.name for p in (REPO / "devices").glob("*/reference.csv"))
    assert known == in_repo and "raspberry-pi-4" in known  # "known: none" from a wheel before


def test_info_predict_gradcam_from_the_wheel(installed, tmp_path):
    bin_dir, _ = installed
    cli = str(bin_dir / "edge-pcam")
    info = run([cli, "info"], cwd=tmp_path).stdout
    assert "Total parameters: 494,337" in info and "pool3" in info
    bundled = run([str(bin_dir / "python"), "-c", "from edge_pcam.runtime.bundled import default_model_path;"
                   "print(default_model_path())"], cwd=tmp_path).stdout.strip()
    card = json.loads(run([cli, "info", "--json", bundled], cwd=tmp_path).stdout)
    assert card["card"]["format"] == "int8" and card["integrity"]["status"] == "verified"
    patches = tmp_path / "patches"
    patches.mkdir()
    for i in range(6):
        Image.fromarray(synthetic_patch(0, i)[0]).save(patches / f"p{i}.png")
    run([cli, "predict", str(patches), "--csv", "out.csv"], cwd=tmp_path)
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == 6 and {r["prediction"] for r in rows} <= {"normal", "tumour"}
    run([cli, "gradcam", str(patches), "--out", "cams"], cwd=tmp_path)
    cams = list(csv.DictReader((tmp_path / "cams" / "gradcam.csv").open()))
    assert len(cams) == 6 and all((tmp_path / "cams" / r["overlay"]).is_file() for r in cams)


def test_bench_with_a_board_profile_from_the_wheel(installed, tmp_path):
    bin_dir, _ = installed
    run([str(bin_dir / "edge-pcam"), "bench", "--data", "synthetic:60", "--out", "bench", "--device",
         "raspberry-pi-4", "--limit", "20", "--threads", "1", "--budget", "0.2", "--no-cold-start", "--no-peak",
         "--no-paired"], cwd=tmp_path)
    assert "## Against the `raspberry-pi-4` reference" in (tmp_path / "bench" / "report.md").read_text()


def test_scan_from_the_wheel(installed, tmp_path):
    bin_dir, _ = installed
    run([str(bin_dir / "python"), "-m", "edge_pcam.runtime.synthetic_slide", "slide.tif", "--size", "3000"],
        cwd=tmp_path)
    run([str(bin_dir / "edge-pcam"), "scan", "slide.tif", "--out", "scan"], cwd=tmp_path)
    report = json.loads((tmp_path / "scan" / "scan.json").read_text())
    assert report["tiles"]["tissue"] > 0 and report["tiles"]["computed"] == report["tiles"]["tissue"]
    assert report["model"]["path"].startswith(str(bin_dir.parent))  # the bundled model of the wheel


def test_a_batch_of_jpeg_svs_slides_from_the_wheel(installed, tmp_path):
    bin_dir, _ = installed
    slides = tmp_path / "slides"
    slides.mkdir()
    for seed in (1, 2):
        run([str(bin_dir / "python"), "-m", "edge_pcam.runtime.synthetic_slide", str(slides / f"s{seed}.svs"),
             "--size", "4000", "--mpp", "0.25", "--container", "svs", "--compression", "jpeg", "--seed", str(seed)],
            cwd=tmp_path)
    result = run([str(bin_dir / "edge-pcam"), "scan", "slides", "--out", "results"], cwd=tmp_path)
    assert "2 ok, 0 failed" in result.stdout
    rows = list(csv.DictReader((tmp_path / "results" / "summary.csv").read_text().splitlines()))
    # tifffile decodes JPEG tiles only with imagecodecs: the default install has it
    assert [(r["file"], r["status"], r["reader"]) for r in rows] == [
        (str(Path("slides") / f"s{seed}.svs"), "ok", "tifffile") for seed in (1, 2)]
    for row in rows:
        folder = tmp_path / "results" / row["out"]
        report = json.loads((folder / "scan.json").read_text())
        assert report["tiles"]["tissue"] == int(row["tissue_tiles"]) > 0
        assert report["model"]["path"].startswith(str(bin_dir.parent))  # the bundled model of the wheel
        assert all((folder / name).is_file() for name in report["files"].values())
        geojson = json.loads((folder / "scan.geojson").read_text())
        assert len(geojson["features"]) == report["tiles"]["tissue"]
