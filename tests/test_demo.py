"""The demo's own pieces: the slide made of validation patches and the Grad-CAM inputs (no training here)."""

import numpy as np
from PIL import Image

from edge_pcam import demo
from edge_pcam.runtime.datasets import open_dataset


def test_mosaic_plants_the_stated_share_of_tumour_patches(tmp_path):
    dataset = open_dataset("synthetic:400")
    truth = demo._write_mosaic(dataset, tmp_path / "slide.png")
    image = np.asarray(Image.open(tmp_path / "slide.png"))
    g = demo.MOSAIC_GRID
    assert image.shape == (g * 96, g * 96, 3)
    assert truth["tumour_tiles"] == round(demo.MOSAIC_TUMOUR * g * g)
    valid = dataset.split("valid")
    tiles = image.reshape(g, 96, g, 96, 3).transpose(0, 2, 1, 3, 4).reshape(g * g, 96, 96, 3)
    # every tile is a valid patch, and exactly the planted number of them are tumour patches
    lookup = {valid.read([i])[0].tobytes(): valid.labels[i] for i in range(len(valid))}
    labels = np.array([lookup[t.tobytes()] for t in tiles])
    assert labels.sum() == truth["tumour_tiles"]


def test_gradcam_patches_are_balanced_and_named_by_label(tmp_path):
    paths = demo._write_gradcam_patches(open_dataset("synthetic:400"), tmp_path)
    assert len(paths) == demo.GRADCAM_PATCHES
    assert sum(p.stem.endswith("label1") for p in paths) == demo.GRADCAM_PATCHES // 2
    assert all(np.asarray(Image.open(p)).shape == (96, 96, 3) for p in paths)


def test_default_data_falls_back_to_synthetic(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "SUBSET", tmp_path / "absent")
    assert demo.default_data() == demo.SYNTHETIC


def test_the_demo_timing_is_copied_into_a_report_of_measured_figures_only(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from test_benchmark_drivers import unmeasured_figures

    timing = {"created": "2026-12-02T10:00:00Z", "data": "synthetic:4000", "real_data": False,
              "steps": {"train": 100.4, "scan": 20.0}, "total_seconds": 150.0,
              "load_average_before": [1.5, 1.0, 0.5], "load_average_after": [2.0, 1.5, 1.0],
              "machine": {"cpu": "Test CPU", "cores": 2, "memory_gb": 8.0, "os": "Debian", "python": "3.11.7"}}
    (tmp_path / "timing.json").write_text(json.dumps(timing))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_timing.py"
    subprocess.run([sys.executable, str(script), "--timing", str(tmp_path / "timing.json"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    markdown = (tmp_path / "demo-timing.md").read_text()
    record = json.loads((tmp_path / "demo-timing.json").read_text())
    assert record == {**timing, "total_minutes": 2.5}
    assert "| train | 100 |" in markdown and "| scan | 20 |" in markdown
    assert "**150** (2.5 minutes)" in markdown
    assert unmeasured_figures(markdown, record) == []


def test_the_demo_report_states_the_whole_runs_time(tmp_path):
    d = demo.Demo(tmp_path, "synthetic:4000", [demo.Step("train", ["edge-pcam", "train"], 90.0, "logs/train.log")])
    timing = {"total_seconds": 123.0, "machine": {"cpu": "Test CPU", "cores": 2, "python": "3.11.7"}}
    report = demo._report(d, False, {}, timing)
    assert "| train | `edge-pcam train` | 90 |" in report
    assert "The whole demo: 2.0 minutes on Test CPU, 2 cores, Python 3.11.7" in report
