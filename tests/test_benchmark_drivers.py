"""The benchmark scripts in benchmarks/ run end to end on small inputs, and their reports hold only measured figures.

Each driver runs as a subprocess with its smallest settings, writing into a
temporary folder (never benchmarks/results). A report may contain a number
only when the run's own JSON record has it (as written, rounded, or as a
percentage): fixed prose with figures in it, written once and appended to
every regeneration, is what `unmeasured_figures` finds. No timing assertions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)*(?=x\b|\W|$)")  # 0.563, 1,324, 3.11.7, 1.5x; not p50, 2D


def _values(record, numbers: list[float], words: set[str]) -> None:
    if isinstance(record, dict):
        for key, value in record.items():
            words.update(NUMBER.findall(str(key)))
            if key != "samples_ms":  # raw samples are never quoted in a report
                _values(value, numbers, words)
    elif isinstance(record, (list, tuple)):
        for value in record:
            _values(value, numbers, words)
    elif isinstance(record, bool) or record is None:
        return
    elif isinstance(record, (int, float)):
        numbers.append(float(record))
    else:
        words.update(NUMBER.findall(str(record)))


def unmeasured_figures(markdown: str, record: dict) -> list[str]:
    """Numbers in `markdown` that the JSON `record` does not hold, formatted at the report's precision."""
    numbers: list[float] = []
    words: set[str] = set()
    _values(record, numbers, words)
    arr = np.asarray(numbers)
    missing = []
    for token in NUMBER.findall(markdown):
        if token in words:
            continue
        plain = token.replace(",", "")
        decimals = len(plain.split(".")[1]) if plain.count(".") == 1 else 0
        if plain.count(".") > 1 or not arr.size:
            missing.append(token)
            continue
        shown = {f"{x:.{decimals}f}" for x in np.concatenate([arr, 100 * arr])}
        if plain not in shown:
            missing.append(token)
    return missing


def test_the_figure_check_finds_fixed_prose():
    record = {"p50_ms": 0.56312, "ratio": 1.164, "machine": {"python": "3.11.7"}, "rows": [{"patches_per_s": 1324.4}]}
    measured = "p50 0.563 ms, 116% of bare, Python 3.11.7, 1,324 patches/s, 0.56 ms"
    assert unmeasured_figures(measured, record) == []
    planted = measured + ". On a quiet machine tf.lite ran it in 0.57 ms, 1.5x faster (SPEC section 3)."
    assert unmeasured_figures(planted, record) == ["0.57", "1.5", "3"]


def _run(script: str, *args: str, timeout: float = 900) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _report(out: Path, name: str) -> tuple[dict, str]:
    record = json.loads((out / f"{name}.json").read_text())
    markdown = (out / f"{name}.md").read_text()
    assert unmeasured_figures(markdown, record) == []
    assert record["machine"]["cpu"] and record["load_average_before"] is not None
    assert str(out) in record["command"]  # the command that made it, as typed
    return record, markdown


def test_litert_vs_tflite(tmp_path):
    from edge_pcam.runtime.interpreter import installed_runtimes

    _run("litert_vs_tflite.py", "--quick", "--threads", "1", "--pause-ms", "1", "--out", str(tmp_path))
    record, markdown = _report(tmp_path, "litert_vs_tflite")
    (m,) = record["measurements"]
    runtimes = [r for r in ("ai-edge-litert", "tflite-runtime", "tf.lite") if r in installed_runtimes()]
    assert set(m["engines"]) == {f"{kind} {rt}" for rt in runtimes for kind in ("edge-pcam", "raw")}
    s = record["settings"]
    assert (s["pause_s"], m["pause_s"]) == (0.001, 0.001)
    for name in m["engines"]:
        assert len(m["samples_ms"][name]) == s["rounds"] * s["calls"]
        assert m["p50_ms"][name] == pytest.approx(float(np.median(m["samples_ms"][name])), abs=1e-3)
        assert m["p50_ms"][name] <= m["p95_ms"][name]
        assert f"| 1 | {name} |" in markdown
    for name, ratio in m["ratio_to_raw"].items():
        raw = name.replace("edge-pcam", "raw")
        assert ratio == pytest.approx(m["p50_ms"][name] / m["p50_ms"][raw])
    assert record["target"] is None  # no 2-thread measurement in this run
    assert "1 ms pause" in markdown


def test_runtime_latency(tmp_path):
    _run("runtime_latency.py", "--quick", "--out", str(tmp_path))
    record, markdown = _report(tmp_path, "runtime_latency")
    rows = {(r["fmt"], r["runtime"], r["kind"]): r for r in record["latency"]}
    expected = {("int8", "litert", "edge-pcam"), ("int8", "litert", "raw"), ("int8", "tf", "edge-pcam"),
                ("int8", "tf", "raw"), ("float32", "litert", "edge-pcam"), ("float32", "tf", "edge-pcam")}
    if (REPO / ".venv-tflite" / "bin" / "python").exists():
        expected |= {("int8", "tflite-runtime", "edge-pcam"), ("int8", "tflite-runtime", "raw"),
                     ("float32", "tflite-runtime", "edge-pcam")}
    assert set(rows) == expected
    for row in rows.values():
        assert row["p10_ms"] <= row["p50_ms"] <= row["p95_ms"] and row["runs"] == record["settings"]["repeats"]
        assert row["cpu_ms"] > 0 and (row["kind"] == "raw") == ("throughput_per_s" not in row)
    # ai-edge-litert's XNNPACK takes every op of the float32 file
    assert rows[("float32", "litert", "edge-pcam")]["partitions"]["builtin_kinds"] == []
    assert set(record["cold_start"]) >= {"predict_litert", "import_tensorflow", "python_only"}
    assert record["cold_start"]["import_tensorflow"]["peak_rss_mb"] > record["cold_start"]["python_only"]["peak_rss_mb"]
    assert "## Cold start" in markdown and "Reading these numbers" not in markdown


def _jpeg_folder(root: Path, per_label: int = 8) -> Path:
    from PIL import Image

    from edge_pcam.runtime.datasets.synthetic import synthetic_patch
    for i in range(2 * per_label):
        image, label = synthetic_patch(5, i)
        folder = root / "train" / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"p{i:03d}.jpg", quality=95)
    return root


def test_input_pipeline(tmp_path):
    subset = _jpeg_folder(tmp_path / "subset")
    out = tmp_path / "out"
    _run("input_pipeline.py", "--quick", "--batch", "4", "--subset", str(subset), "--out", str(out))
    record, markdown = _report(out, "input_pipeline")
    step = record["results"]["training_step"]["patches_per_s"]
    assert set(record["ratios"]) == {"jpeg_folder", "hdf5"}
    for key, ratio in record["ratios"].items():
        assert ratio == pytest.approx(record["results"][key]["patches_per_s"] / step)
    fed = record["fit_from_jpeg_folder"]
    assert fed["steps"] == record["settings"]["steps"] and fed["share_of_in_memory"] == pytest.approx(
        fed["patches_per_s"] / step)
    assert record["target_met"] == (min(record["ratios"].values()) >= record["target_ratio"])
    assert "JPEG folder `subset`" in markdown and "quiet-machine" not in markdown


def test_train_throughput(tmp_path):
    _run("train_throughput.py", "--data", "synthetic:200", "--batch-size", "4", "--steps", "2", "--warmup", "1",
         "--trials", "2", "--out", str(tmp_path))
    record, _ = _report(tmp_path, "train_throughput")
    assert {k: len(v) for k, v in record["patches_per_s"].items()} == {"ours": 2, "bare": 2}
    assert record["best"] == {k: max(v) for k, v in record["patches_per_s"].items()}
    assert record["ratio"] == pytest.approx(record["best"]["ours"] / record["best"]["bare"])
    assert record["met"] == (record["ratio"] >= record["target"]) and record["batch_size"] == 4
