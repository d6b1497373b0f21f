"""The measuring parts of edge_pcam.bench the benchmark scripts share, and the machine description (no TensorFlow).

Timing loops are checked by what they call and count, never by how long anything took.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.bench import timing
from edge_pcam.bench.coldstart import time_process
from edge_pcam.runtime.machine import conditions_line, describe_machine, load_average, package_versions_in

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "edge_pcam" / "models"
HAVE_LITERT = importlib.util.find_spec("ai_edge_litert") is not None


def test_summarize_percentiles_by_hand():
    s = timing.summarize([float(x) for x in range(1, 101)])  # 1..100 ms
    assert (s["p50_ms"], s["p95_ms"], s["p10_ms"]) == (50.5, 95.05, 10.9)  # linear interpolation
    assert (s["mean_ms"], s["min_ms"], s["runs"]) == (50.5, 1.0, 100)
    with pytest.raises(ValueError):
        timing.summarize([])


def test_time_calls_counts_warmup_runs_and_budget():
    calls = []
    out = timing.time_calls(lambda: calls.append(1), warmup=4, runs=7)
    assert len(calls) == 11 and out["runs"] == 7 and len(out["samples_ms"]) == 7
    assert out["cpu_ms"] >= 0 and out["p50_ms"] <= out["p95_ms"]
    calls.clear()
    out = timing.time_calls(lambda: calls.append(1), warmup=0, budget_s=0.0, min_runs=5, max_runs=9)
    assert len(calls) == 5 and out["runs"] == 5  # no budget left: the minimum
    calls.clear()
    timing.time_calls(lambda: calls.append(1), warmup=0, budget_s=3600.0, min_runs=1, max_runs=9)
    assert len(calls) == 9  # the cap ends it long before the budget
    with pytest.raises(ValueError):
        timing.time_calls(lambda: None)


def test_paired_rounds_rotate_settle_and_pause(monkeypatch):
    log: list[str] = []
    sleeps: list[float] = []
    monkeypatch.setattr(timing.time, "sleep", sleeps.append)
    engines = {name: (lambda n=name: log.append(n)) for name in ("a", "b", "c")}
    out = timing.paired_rounds(engines, rounds=4, calls=2, warmup=1, pause_s=0.0, settle_calls=1)
    assert log[:3] == ["a", "b", "c"]  # warm-up, in order
    blocks = [log[i:i + 3] for i in range(3, len(log), 3)]  # 1 settle + 2 timed calls of one engine each
    assert all(len(set(b)) == 1 for b in blocks)
    assert [b[0] for b in blocks] == list("abc" "bca" "cab" "abc")  # the order rotates every round
    assert sleeps == []
    assert {n: len(v) for n, v in out["samples_ms"].items()} == {"a": 8, "b": 8, "c": 8}
    assert {n: len(v) for n, v in out["round_means_ms"].items()} == {"a": 4, "b": 4, "c": 4}
    for n in engines:
        assert out["fastest_round_ms"][n] == pytest.approx(min(out["round_means_ms"][n]), abs=1e-4)
        assert out["p50_ms"][n] == pytest.approx(np.median(out["samples_ms"][n]), abs=1e-3)
    timing.paired_rounds(engines, rounds=2, calls=1, warmup=0, pause_s=0.05, settle_calls=0)
    assert sleeps == [0.05] * 6  # before every block
    assert out["pause_s"] == 0.0 and out["settle_calls"] == 1


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak memory is read from /proc (Linux)")
def test_time_process_measures_a_fresh_processs_memory():
    base = time_process(["-c", "pass"], repeats=1)
    big = time_process(["-c", "import os; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"], repeats=2)
    assert big["repeats"] == 2 and big["wall_min_s"] <= big["wall_s"]
    assert big["peak_rss_mb"] > base["peak_rss_mb"] + 250
    ran = time_process(["-m", "edge_pcam", "--help"], repeats=1)
    assert ran["peak_rss_mb"] > 0
    with pytest.raises(RuntimeError, match="no_such_module_xyz"):
        time_process(["-m", "no_such_module_xyz"], repeats=1)
    with pytest.raises(ValueError):
        time_process(["pass"])


def test_package_versions_in_another_python():
    versions = package_versions_in(sys.executable, ("numpy", "no-such-distribution-xyz"))
    assert versions == {"numpy": importlib.metadata.version("numpy"), "no-such-distribution-xyz": None}
    assert package_versions_in("/nonexistent/bin/python") == {}


def test_machine_and_load_in_a_report_line():
    machine = describe_machine()
    load = load_average()
    assert load is None or (len(load) == 3 and all(x >= 0 for x in load))
    line = conditions_line(machine, [1.5, 2.25, 3.0], None)
    assert line.startswith(str(machine["board"] or machine["cpu"])) and f"{machine['cores']} cores" in line
    assert "before 1.50, 2.25, 3.00, after n/a" in line


@pytest.mark.skipif(not HAVE_LITERT, reason="ai-edge-litert is not installed here")
def test_raw_interpreter_runs_the_file_as_written_and_lists_its_partitions():
    """Raw ai-edge-litert gives the runtime's own probabilities (the file runs as written); XNNPACK takes every
    op of the float32 file, and none without the default delegates."""
    from edge_pcam.bench.raw_interpreter import RawInterpreter, xnnpack_partitions
    from edge_pcam.runtime.interpreter import load_model

    patches = np.random.default_rng(0).integers(0, 256, (5, 96, 96, 3), dtype=np.uint8)
    for name in ("edge_pcam_int8.tflite", "edge_pcam_float32.tflite"):
        raw = RawInterpreter(BUNDLED / name, "litert", 1)
        probs = raw.predict(patches)
        assert probs.shape == (5,) and raw.runtime == "ai-edge-litert"
        np.testing.assert_array_equal(probs, load_model(BUNDLED / name, runtime="litert", threads=1).predict(patches))
    assert xnnpack_partitions(raw.interpreter)["builtin_kinds"] == []
    plain = RawInterpreter(BUNDLED / "edge_pcam_int8.tflite", "litert", 1,
                           experimental_op_resolver_type="BUILTIN_WITHOUT_DEFAULT_DELEGATES")
    parts = xnnpack_partitions(plain.interpreter)
    assert parts["xnnpack_partitions"] == 0 and {"CONV_2D", "BATCH_MATMUL", "SOFTMAX"} <= set(parts["builtin_kinds"])
    assert parts["builtin_ops"].count("CONV_2D") == 3  # the three conv blocks

