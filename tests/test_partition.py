"""Edge TPU partition report against the ops of the actual int8 file; compiler call and log parsing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.errors import RuntimeUnavailableError

pytestmark = pytest.mark.tf

FAKE_LOG = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 312 ms.

Input model: model.tflite
Input size: 509.80KiB
Output model: model_edgetpu.tflite
Output size: 640.11KiB
Number of Edge TPU subgraphs: 1
Total number of operations: 22
Operation log: model_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU.
Number of operations that will run on Edge TPU: 7
Number of operations that will run on CPU: 15

Operator                       Count      Status

FULLY_CONNECTED                6          More than one subgraph is not supported
BATCH_MATMUL                   2          Operation not supported
MAX_POOL_2D                    3          Mapped to Edge TPU
CONV_2D                        3          Mapped to Edge TPU
QUANTIZE                       1          Mapped to Edge TPU
SOFTMAX                        1          More than one subgraph is not supported
"""


def _int8(converted_dir: Path) -> bytes:
    return (converted_dir / "edge_pcam_int8.tflite").read_bytes()


def _interpreter_ops(path: Path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    shapes = {t["index"]: list(t["shape"]) for t in it.get_tensor_details()}
    return [(op["op_name"], shapes[op["outputs"][0]]) for op in it._get_ops_details()]


def expected_macs(model) -> tuple[int, int]:
    """MACs of the design's model from its Keras layer shapes: (backbone convs, everything)."""
    conv = dense = 0
    for layer in model.layers:
        if layer.name.startswith("conv"):
            h, w, cout = layer.output_shape[1:]
            kh, kw, cin, _ = layer.kernel.shape
            conv += h * w * cout * kh * kw * cin
        elif layer.name in ("q", "k", "v", "o", "fc", "logit"):
            rows = int(np.prod(layer.output_shape[1:-1])) if len(layer.output_shape) > 2 else 1
            dense += rows * int(np.prod(layer.kernel.shape))
    tokens, dim = model.get_layer("q").output_shape[1:]
    matmuls = 2 * tokens * tokens * dim  # scores = Q K^T and context = A V
    return conv, conv + dense + matmuls


def test_report_follows_the_int8_graph(converted_dir, tiny_model_h5):
    from edge_pcam.export.edgetpu import partition_report, supported_ops
    from edge_pcam.training.modelio import load_model

    report = partition_report(_int8(converted_dir))
    actual = _interpreter_ops(converted_dir / "edge_pcam_int8.tflite")
    assert [(r["op"], r["output_shape"]) for r in report["ops"]] == actual
    assert report["op_count"] == len(actual)

    table = supported_ops()["ops"]
    cut = report["first_unmappable"]["index"]
    rows = report["ops"]
    assert all(r["where"] == "edgetpu" and r["in_coral_list"] and not r["problems"] for r in rows[:cut])
    assert all(r["where"] == "cpu" for r in rows[cut:])
    assert rows[cut]["problems"], "the cut must say why"
    assert rows[0]["op"] == "QUANTIZE" and rows[0]["where"] == "edgetpu"
    batch_matmuls = [r for r in rows if r["op"] == "BATCH_MATMUL"]
    assert batch_matmuls and all(not r["in_coral_list"] for r in batch_matmuls)
    assert "BATCH_MATMUL" not in table
    assert {r["op"] for r in rows[:cut]} <= {"QUANTIZE", "CONV_2D", "MAX_POOL_2D"}

    backbone, total = expected_macs(load_model(tiny_model_h5))
    assert report["macs_total"] == total
    assert report["macs_on_edgetpu"] == backbone
    assert report["mac_share_on_edgetpu"] == pytest.approx(backbone / total)
    assert 0.9 < report["mac_share_on_edgetpu"] < 1.0


def test_partition_markdown_and_source(converted_dir):
    from edge_pcam.export.edgetpu import partition_markdown, partition_report, supported_ops

    source = supported_ops()["source"]
    assert source["url"].startswith("https://coral.ai/") and source["title"]
    text = partition_markdown(partition_report(_int8(converted_dir)))
    assert "The graph is cut at op" in text and source["url"] in text
    assert text.count("\n| ") == 1 + len(_interpreter_ops(converted_dir / "edge_pcam_int8.tflite"))


def test_float_file_maps_nothing(converted_dir):
    from edge_pcam.export.edgetpu import partition_report
    report = partition_report((converted_dir / "edge_pcam_float32.tflite").read_bytes())
    assert report["ops_on_edgetpu"] == 0 and report["macs_on_edgetpu"] == 0
    assert any("not 8-bit quantized" in p for p in report["first_unmappable"]["reasons"])


def test_compiler_log_is_parsed_and_compared():
    from edge_pcam.export.edgetpu import merge_compiler_log, parse_compiler_log

    parsed = parse_compiler_log(FAKE_LOG)
    assert parsed["version"] == "16.0.384591198"
    assert (parsed["ops_on_edgetpu"], parsed["ops_on_cpu"]) == (7, 15)
    assert {"op": "BATCH_MATMUL", "count": 2, "status": "Operation not supported"} in parsed["table"]
    assert len(parsed["table"]) == 6
    predicted = {"ops": [{"op": "QUANTIZE", "where": "edgetpu"}] + [{"op": "CONV_2D", "where": "edgetpu"}] * 3
                 + [{"op": "MAX_POOL_2D", "where": "edgetpu"}] * 3 + [{"op": "BATCH_MATMUL", "where": "cpu"}]}
    assert merge_compiler_log(predicted, FAKE_LOG)["compiler"]["agrees_with_prediction"] is True
    predicted["ops"][1]["where"] = "cpu"
    assert merge_compiler_log(predicted, FAKE_LOG)["compiler"]["agrees_with_prediction"] is False


def test_missing_compiler_is_a_one_line_error(monkeypatch, tmp_path, tiny_model_h5, easy_data):
    from edge_pcam.export.conversion import convert

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(RuntimeUnavailableError) as info:
        convert(tiny_model_h5, tmp_path / "out", easy_data, formats=["edgetpu"])
    message = str(info.value)
    assert "\n" not in message and "apt" in message and "edgetpu-compiler" in message
    assert not (tmp_path / "out").exists()


def test_edgetpu_flow_with_a_stand_in_compiler(monkeypatch, tmp_path, tiny_model_h5, easy_data):
    """A stand-in edgetpu_compiler (copies its input, prints Coral's log format) exercises the whole path."""
    from edge_pcam.export.conversion import convert
    from edge_pcam.runtime.metadata import model_bytes, read_metadata

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "log.txt").write_text(FAKE_LOG)
    script = bin_dir / "edgetpu_compiler"
    script.write_text("#!/bin/sh\n# usage: edgetpu_compiler -s -o OUTDIR MODEL\n"
                      "cp \"$4\" \"$3/$(basename \"$4\" .tflite)_edgetpu.tflite\"\n"
                      f"cat {bin_dir / 'log.txt'}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    out = tmp_path / "out"
    result = convert(tiny_model_h5, out, easy_data, formats=["edgetpu"], companion=False, representative=32,
                     limit=8)
    result.raise_for_failures()
    compiled = out / "edge_pcam_int8_edgetpu.tflite"
    meta = read_metadata(compiled)
    assert meta["format"] == "edgetpu" and meta["edgetpu"]["compiler"] == "16.0.384591198"
    int8 = read_metadata(out / "edge_pcam_int8.tflite")
    assert meta["thresholds"] == int8["thresholds"]
    assert model_bytes(compiled.read_bytes()) == model_bytes((out / "edge_pcam_int8.tflite").read_bytes())
    report = json.loads((out / "conversion.json").read_text())
    assert report["edgetpu_partition"]["compiler"]["agrees_with_prediction"] is True
    assert "edgetpu_compiler 16.0.384591198" in (out / "summary.md").read_text()
