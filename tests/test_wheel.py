"""The wheel, installed without extras into a fresh virtual environment, scans slides (issue 12).

Builds the wheel from this checkout, installs it with no extras into a fresh
virtual environment (one per test session; pip may use its cache), and runs
commands from a folder outside the repository, so nothing but the installed
copy is used: a batch scan of JPEG-tiled Aperio SVS files, the format a new
user's scanner most often writes, which needs the default install's readers.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    if check:
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
