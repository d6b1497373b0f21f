"""Edge TPU: the partition report of an int8 file, and the `edgetpu_compiler` call.

The Edge TPU compiler maps ops in graph order and, by default, runs everything
from the first op it cannot map on the CPU (SPEC section 3). The partition
report predicts that split without the compiler: it reads the ops of the int8
flatbuffer in execution order, checks each against Coral's documented op list
and limits (edgetpu_ops.json, with its source), finds the first op that cannot
map, and counts multiply-accumulates per op from the tensor shapes to give the
share of the model's MACs that would run on the Edge TPU. Where the compiler is
installed, its log is parsed into the same report.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edge_pcam.errors import EdgePcamError, RuntimeUnavailableError

OPS_FILE = Path(__file__).with_name("edgetpu_ops.json")
COMPILER = "edgetpu_compiler"
INSTALL_HINT = ("edgetpu_compiler is not on PATH: install the edgetpu-compiler package from Coral's apt "
                "repository (x86-64 Debian/Ubuntu: deb https://packages.cloud.google.com/apt "
                "coral-edgetpu-stable main; see https://coral.ai/docs/edgetpu/compiler/), or leave out "
                "--edgetpu: --int8 writes the int8 file and its Edge TPU partition report without it")
QUANTIZED = ("INT8", "UINT8")
POOLS_AND_CONCAT = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION")
REDUCTIONS = ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN")


@lru_cache(maxsize=1)
def supported_ops() -> dict[str, Any]:
    """Coral's op list and limits, as kept in edgetpu_ops.json (with `source`)."""
    return json.loads(OPS_FILE.read_text())


@dataclass
class Tensor:
    shape: list[int]
    dtype: str
    constant: bool


@dataclass
class GraphOp:
    """One op of the flatbuffer's main subgraph, in execution order."""

    index: int
    name: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    options: dict[str, Any]
    macs: int = 0
    listed: bool = False
    problems: list[str] = field(default_factory=list)
    on_edgetpu: bool = False

    @property
    def mappable(self) -> bool:
        return self.listed and not self.problems


def graph_ops(data: bytes) -> list[GraphOp]:
    """The ops of a .tflite flatbuffer (metadata archive allowed) with shapes, dtypes and options."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    from edge_pcam.runtime.metadata import model_bytes

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes(data)))
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = model.subgraphs[0]

    def tensor(i: int) -> Tensor:
        t = graph.tensors[i]
        buffer = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        constant = buffer is not None and buffer.data is not None and len(buffer.data) > 0
        shape = [int(s) for s in (t.shape if t.shape is not None else [])]
        return Tensor(shape, type_names.get(t.type, str(t.type)), constant)

    ops = []
    for index, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        if name == "CUSTOM" and code.customCode:
            name = f"CUSTOM:{code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode}"
        inputs = [tensor(i) for i in op.inputs if i >= 0]
        options = _options(op.builtinOptions)
        for slot, i in enumerate(op.inputs):  # small constant int inputs: axes, strides
            if i >= 0 and inputs[slot].constant and inputs[slot].dtype == "INT32" and np.prod(inputs[slot].shape or [1]) <= 8:
                raw = model.buffers[graph.tensors[i].buffer].data
                options[f"const_input_{slot}"] = np.frombuffer(bytes(raw), dtype=np.int32).tolist()
        ops.append(GraphOp(index, name, inputs, [tensor(i) for i in op.outputs], options))
    for op in ops:
        op.macs = count_macs(op)
    return ops


def _options(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in vars(options).items()
            if isinstance(v, (int, float, bool, np.ndarray))}


def count_macs(op: GraphOp) -> int:
    """Multiply-accumulates of one op (convolutions, fully connected, batch matmul; 0 for the rest)."""
    out = op.outputs[0].shape if op.outputs else []
    if op.name == "CONV_2D":  # weights [Cout, kh, kw, Cin]
        _, kh, kw, cin = op.inputs[1].shape
        return int(np.prod(out)) * kh * kw * cin
    if op.name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, Cout]
        _, kh, kw, _ = op.inputs[1].shape
        return int(np.prod(out)) * kh * kw
    if op.name == "FULLY_CONNECTED":  # weights [units, in]
        return int(np.prod(out)) * op.inputs[1].shape[-1]
    if op.name == "BATCH_MATMUL":
        a = op.inputs[0].shape
        k = a[-2] if op.options.get("adjX") else a[-1]
        return int(np.prod(out)) * k
    if op.name == "TRANSPOSE_CONV":  # weights [Cout, kh, kw, Cin], input 2
        cout, kh, kw, _ = op.inputs[1].shape
        return int(np.prod(op.inputs[2].shape)) * kh * kw * cout
    return 0


def check_op(op: GraphOp, table: dict[str, Any]) -> list[str]:
    """Why `op` cannot map to the Edge TPU (empty when it can), from Coral's list and limits."""
    problems = []
    if op.name not in table:
        problems.append("not in Coral's supported-op list")
    for t in op.inputs + op.outputs:
        if t.constant:
            continue
        if t.dtype not in QUANTIZED:
            problems.append(f"{t.dtype.lower()} tensor {t.shape}: not 8-bit quantized")
        if len(t.shape) > 3 and any(s > 1 for s in t.shape[:-3]):
            problems.append(f"tensor {t.shape}: sizes above 1 outside the 3 innermost dimensions")
    if op.name in POOLS_AND_CONCAT and op.options.get("fusedActivationFunction", 0):
        problems.append("fused activation function")
    if op.name == "CONV_2D" and op.options.get("dilationHFactor", 1) != op.options.get("dilationWFactor", 1):
        problems.append("different dilation in x and y")
    if op.name == "FULLY_CONNECTED" and sum(s > 1 for s in op.outputs[0].shape) > 1:
        problems.append(f"output {op.outputs[0].shape} is not one-dimensional")
    if op.name == "SOFTMAX":
        shape = op.inputs[0].shape
        if sum(s > 1 for s in shape) > 1 or int(np.prod(shape)) > 16000:
            problems.append(f"input {shape} is not 1-dimensional with at most 16,000 elements")
    if op.name in REDUCTIONS and "const_input_1" in op.options:
        rank = len(op.inputs[0].shape)
        if any(a % rank == 0 for a in op.options["const_input_1"]) and rank > 1:
            problems.append("reduces over the batch dimension")
    if op.name == "STRIDED_SLICE":
        strides = op.options.get("const_input_3")
        if (strides is not None and any(s != 1 for s in strides)) or op.options.get("ellipsisMask", 0) \
                or op.options.get("newAxisMask", 0):
            problems.append("strides other than 1, or an ellipsis / new-axis mask")
    return problems


def partition_report(data: bytes) -> dict[str, Any]:
    """Predict how the Edge TPU compiler would split this int8 file (see the module docstring)."""
    table = supported_ops()
    ops = graph_ops(data)
    cut = None
    for op in ops:
        op.listed = op.name in table["ops"]
        op.problems = check_op(op, table["ops"])
        if cut is None and not op.mappable:
            cut = op.index
        op.on_edgetpu = cut is None
    total = sum(op.macs for op in ops)
    on_tpu = sum(op.macs for op in ops if op.on_edgetpu)
    first = ops[cut] if cut is not None else None
    return {
        "source": table["source"],
        "ops": [_op_row(op) for op in ops],
        "op_count": len(ops),
        "ops_on_edgetpu": sum(op.on_edgetpu for op in ops),
        "first_unmappable": None if first is None else {
            "index": first.index, "op": first.name, "reasons": first.problems},
        "macs_total": total,
        "macs_on_edgetpu": on_tpu,
        "mac_share_on_edgetpu": on_tpu / total if total else 0.0,
        "compiler": None,
    }


def _op_row(op: GraphOp) -> dict[str, Any]:
    return {"index": op.index, "op": op.name, "output_shape": op.outputs[0].shape if op.outputs else [],
            "output_dtype": op.outputs[0].dtype if op.outputs else None, "macs": op.macs,
            "in_coral_list": op.listed, "problems": op.problems,
            "where": "edgetpu" if op.on_edgetpu else "cpu"}


def find_compiler() -> str | None:
    return shutil.which(COMPILER)


def require_compiler() -> str:
    """The compiler's path; a one-line RuntimeUnavailableError saying how to install it."""
    path = find_compiler()
    if path is None:
        raise RuntimeUnavailableError(INSTALL_HINT)
    return path


def compile_edgetpu(flatbuffer: bytes, timeout: float = 600) -> tuple[bytes, str]:
    """Run edgetpu_compiler on an int8 flatbuffer: the compiled flatbuffer and the compiler's log."""
    compiler = require_compiler()
    with tempfile.TemporaryDirectory(prefix="edge-pcam-edgetpu-") as tmp:
        src = Path(tmp) / "model.tflite"
        src.write_bytes(flatbuffer)
        try:
            run = subprocess.run([compiler, "-s", "-o", tmp, str(src)], capture_output=True, text=True,
                                 timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise EdgePcamError(f"{COMPILER} did not finish within {timeout:.0f} s") from None
        log = run.stdout + run.stderr
        out = Path(tmp) / "model_edgetpu.tflite"
        if run.returncode != 0 or not out.is_file():
            last = [line for line in log.splitlines() if line.strip()][-1:] or [f"exit code {run.returncode}"]
            raise EdgePcamError(f"{COMPILER} failed: {last[0].strip()}")
        return out.read_bytes(), log


_ROW = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")


def parse_compiler_log(log: str) -> dict[str, Any]:
    """The compiler's version, per-op-type table (op, count, status) and the TPU / CPU op counts."""
    version = re.search(r"Edge TPU Compiler version\s+(\S+)", log)
    on_tpu = re.search(r"Number of operations that will run on Edge TPU:\s*(\d+)", log)
    on_cpu = re.search(r"Number of operations that will run on CPU:\s*(\d+)", log)
    rows = []
    in_table = False
    for line in log.splitlines():
        if re.match(r"^\s*Operator\s+Count\s+Status", line):
            in_table = True
            continue
        match = _ROW.match(line) if in_table else None
        if match:
            rows.append({"op": match[1], "count": int(match[2]), "status": match[3]})
    return {"version": version[1] if version else None,
            "ops_on_edgetpu": int(on_tpu[1]) if on_tpu else None,
            "ops_on_cpu": int(on_cpu[1]) if on_cpu else None,
            "table": rows}


def merge_compiler_log(report: dict[str, Any], log: str) -> dict[str, Any]:
    """`report` with the compiler's own account, and whether it agrees with the prediction."""
    parsed = parse_compiler_log(log)
    mapped: dict[str, int] = {}
    for row in parsed["table"]:
        if row["status"].lower().startswith("mapped to edge tpu"):
            mapped[row["op"]] = mapped.get(row["op"], 0) + row["count"]
    predicted: dict[str, int] = {}
    for row in report["ops"]:
        if row["where"] == "edgetpu":
            predicted[row["op"]] = predicted.get(row["op"], 0) + 1
    parsed["mapped_by_op"] = mapped
    parsed["agrees_with_prediction"] = mapped == predicted
    return {**report, "compiler": parsed}


def partition_markdown(report: dict[str, Any], title: str = "Edge TPU partition") -> str:
    """The report as Markdown: summary line, then one row per op."""
    first = report["first_unmappable"]
    lines = [f"### {title}", ""]
    share = report["mac_share_on_edgetpu"]
    lines.append(f"{report['ops_on_edgetpu']} of {report['op_count']} ops, {report['macs_on_edgetpu']:,} of "
                 f"{report['macs_total']:,} MACs ({share:.1%}) would run on the Edge TPU.")
    if first:
        lines.append(f"The graph is cut at op {first['index']} ({first['op']}: {'; '.join(first['reasons'])}); "
                     "it and everything after it run on the CPU.")
    else:
        lines.append("Every op maps: the whole model would run on the Edge TPU.")
    compiler = report.get("compiler")
    if compiler:
        verdict = "agrees with" if compiler["agrees_with_prediction"] else "differs from"
        lines.append(f"edgetpu_compiler {compiler['version']}: {compiler['ops_on_edgetpu']} ops on the Edge TPU, "
                     f"{compiler['ops_on_cpu']} on the CPU ({verdict} this prediction).")
    else:
        lines.append("Predicted from Coral's op list; no edgetpu_compiler was run.")
    lines += ["", "| # | op | output | MACs | in Coral's list | runs on | why not the Edge TPU |",
              "|---|---|---|---:|---|---|---|"]
    for row in report["ops"]:
        why = "; ".join(row["problems"]) if row["where"] == "cpu" and row["problems"] else (
            "after the cut" if row["where"] == "cpu" else "")
        lines.append(f"| {row['index']} | {row['op']} | {row['output_shape']} | {row['macs']:,} | "
                     f"{'yes' if row['in_coral_list'] else 'no'} | {'Edge TPU' if row['where'] == 'edgetpu' else 'CPU'} | {why} |")
    src = report["source"]
    lines += ["", f"Op list: {src['title']}, {src['url']} ({src['version']})."]
    return "\n".join(lines) + "\n"
