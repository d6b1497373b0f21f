"""Expected latency per device (devices/<name>/reference.csv) and the ±30% check against a benchmark.

The CSV follows pycoral's benchmark references (one line per model with its
inference time in ms), with the columns a CPU model also needs:

    MODEL,INFERENCE_TIME,THREADS,RUNTIME,STATUS,SOURCE
    int8,21.4,4,ai-edge-litert (XNNPACK),estimate,"XNNPACK README ... x 0.3775/0.300 GMAC"

MODEL is a format from the model card (float32, float16, dynamic, int8,
edgetpu); INFERENCE_TIME is ms per patch at batch 1; STATUS is `estimate`
until someone measures it on the board (`measured`), and SOURCE says where the
figure comes from.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_pcam.errors import EdgePcamError

TOLERANCE = 0.30
COLUMNS = ("MODEL", "INFERENCE_TIME", "THREADS", "RUNTIME", "STATUS", "SOURCE")


@dataclass(frozen=True)
class ReferenceLine:
    model: str
    ms: float
    threads: int
    runtime: str
    status: str
    source: str


def device_dirs() -> list[Path]:
    """Where device folders are looked for: the repository's devices/, then the installed copy."""
    here = Path(__file__).resolve()
    return [here.parents[2] / "devices", here.parents[1] / "devices"]


def known_devices() -> list[str]:
    return sorted({p.parent.name for d in device_dirs() if d.is_dir() for p in d.glob("*/reference.csv")})


def reference_path(device: str | Path) -> Path:
    """devices/<device>/reference.csv, or `device` itself when it is a CSV file or a device folder."""
    given = Path(device)
    if given.is_file():
        return given
    if (given / "reference.csv").is_file():
        return given / "reference.csv"
    for folder in device_dirs():
        if (folder / str(device) / "reference.csv").is_file():
            return folder / str(device) / "reference.csv"
    raise EdgePcamError(f"--device {device}: no such device profile (known: {', '.join(known_devices()) or 'none'}; "
                        "or give a reference.csv)")


def read_reference(path: str | Path) -> list[ReferenceLine]:
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise EdgePcamError(f"{path}: reference CSV lacks the column(s) {', '.join(missing)}")
        lines = []
        for n, rec in enumerate(reader, start=2):
            try:
                lines.append(ReferenceLine(rec["MODEL"].strip(), float(rec["INFERENCE_TIME"]), int(rec["THREADS"]),
                                           rec["RUNTIME"].strip(), rec["STATUS"].strip(), rec["SOURCE"].strip()))
            except (TypeError, ValueError):
                raise EdgePcamError(f"{path}, line {n}: INFERENCE_TIME must be a number and THREADS an integer") from None
    return lines


def verdict(measured_ms: float, expected_ms: float, tolerance: float = TOLERANCE) -> str:
    """'within ±30%', 'slower' or 'faster' than the reference."""
    ratio = measured_ms / expected_ms
    if ratio > 1 + tolerance:
        return "slower"
    if ratio < 1 - tolerance:
        return "faster"
    return f"within ±{tolerance:.0%}"


def compare_with_reference(rows: list[dict[str, Any]], device: str | Path,
                           tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Each reference line against every measured row of that format at that thread count."""
    path = reference_path(device)
    checks = []
    for line in read_reference(path):
        matched = False
        for row in rows:
            if row["status"] != "ok" or row["format"] != line.model or row.get("batch", 1) != 1:
                continue
            lat = row["latency"].get(str(line.threads))
            if not lat:
                continue
            matched = True
            ms = lat["p50_ms"]
            checks.append({"model": line.model, "threads": line.threads, "expected_ms": line.ms,
                           "reference_status": line.status, "source": line.source, "row": row["label"],
                           "runtime": row["runtime"], "measured_ms": ms, "ratio": ms / line.ms,
                           "verdict": verdict(ms, line.ms, tolerance)})
        if not matched:
            checks.append({"model": line.model, "threads": line.threads, "expected_ms": line.ms,
                           "reference_status": line.status, "source": line.source, "row": None,
                           "runtime": line.runtime, "measured_ms": None, "ratio": None,
                           "verdict": f"not measured (no {line.model} row at {line.threads} threads)"})
    return {"device": str(device), "file": str(path), "tolerance": tolerance, "checks": checks}
