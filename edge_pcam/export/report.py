"""conversion.json and summary.md: what `edge-pcam convert` made, and the evidence it is right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_pcam.bench.machine import describe_machine, summary_line
from edge_pcam.export import metadata_writer as mw
from edge_pcam.export.edgetpu import partition_markdown
from edge_pcam.export.parity import Parity, parity_markdown


def conversion_json(result, model_path: Path, source_model: dict[str, str], qat: bool,
                    validation: dict[str, Any], recipe: dict[str, Any], calibration_n: int | None) -> dict[str, Any]:
    """The machine-readable report (`result` is an edge_pcam.export.conversion.ConversionResult)."""
    import datetime as dt

    def file_entry(f) -> dict[str, Any]:
        return {"format": f.format, "file": f.path.name, "accepted": f.accepted, "size_bytes": f.size_bytes,
                "sha256": f.sha256, "parity": f.parity, "thresholds": f.thresholds, "metrics": f.metrics,
                "note": f.note}

    return {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": mw.command_line(),
        "versions": mw.tool_versions(),
        "machine": describe_machine(),
        "source_model": {**source_model, "path": str(model_path), "qat": qat},
        "validation": validation,
        "calibration": None if calibration_n is None else {"split": "train", "n": calibration_n,
                                                           "balanced": True},
        "recipe": recipe,
        "files": [file_entry(f) for f in result.files],
        "companion": None if result.companion is None else file_entry(result.companion),
        "edgetpu_partition": result.partition,
        "failures": list(result.failures),
        "passed": not result.failures,
    }


def summary_markdown(report: dict[str, Any]) -> str:
    """The human-readable report: files, parity gate, operating points, companion, Edge TPU partition."""
    src, val = report["source_model"], report["validation"]
    lines = ["# Conversion report", "",
             f"Source: `{src['file']}` ({'QAT' if src['qat'] else 'float'}, sha256 {src['sha256'][:12]}...). "
             f"Validation: {val['n']:,} of {val['of']:,} patches of the valid split of `{val['data']}`"
             + (f", each file run as written in {val['runtime']} (the interpreter `edge-pcam predict` uses)."
                if val.get("runtime") else ".")
             + (f" int8 calibration: {report['calibration']['n']} balanced train patches." if report["calibration"] else ""),
             "", f"Result: **{'all gates passed' if report['passed'] else 'FAILED'}**", ""]
    if report["failures"]:
        lines += [f"- {msg}" for msg in report["failures"]] + [""]

    lines += ["## Files", "", "| format | file | size | status |", "|---|---|---:|---|"]
    entries = report["files"] + ([report["companion"]] if report["companion"] else [])
    for f in entries:
        status = "accepted" if f["accepted"] else "REJECTED (not deployable)"
        lines.append(f"| {f['format']} | `{f['file']}` | {f['size_bytes'] / 1e6:.2f} MB | {status} |")

    parities = [Parity(**f["parity"]) for f in report["files"] if f["parity"] is not None]
    if parities:
        lines += ["", "## Parity with the Keras model", "",
                  "Same patches, same order; decisions at 0.5. Float32 must match to 1e-4; the other formats "
                  f"may lose at most {report['recipe']['max_drop']:g} pt of accuracy (--max-drop).", "",
                  parity_markdown(parities).rstrip()]

    source = val.get("thresholds_from", {"split": "valid"})
    chosen_on = ("this file's validation predictions" if source["split"] == "valid" else
                 f"this file's predictions of {source['n']:,} tuning patches carved from the train split; "
                 "metrics on the valid split")
    lines += ["", f"## Operating points of each file (thresholds chosen on {chosen_on})", "",
              "| format | point | threshold | accuracy | sensitivity | specificity | precision | F1 | AUC |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f in report["files"]:
        for point, m in (f["metrics"] or {}).items():
            lines.append(f"| {f['format']} | {point} | {m['threshold']:.4f} | {100 * m['accuracy']:.2f}% | "
                         f"{100 * m['recall']:.2f}% | {100 * m['specificity']:.2f}% | {100 * m['precision']:.2f}% | "
                         f"{m['f1']:.4f} | {m['auc']:.4f} |")

    comp = report["companion"]
    if comp:
        p = comp["parity"]
        lines += ["", "## Grad-CAM companion", "",
                  f"`{comp['file']}` takes the pool3 feature map (float32 [1, 12, 12, 256]) and returns the logit "
                  f"and its gradient. Its Grad-CAM on {p['n']} validation patches, against TensorFlow's Grad-CAM "
                  f"of the Keras model: correlation {p['correlation']:.6f} (worst patch "
                  f"{_number(p['min_patch_correlation'], '.6f')}), largest difference {p['max_abs_difference']:.2e}; "
                  f"against TensorFlow's gradient of the head it was converted from: correlation "
                  f"{p['head_correlation']:.6f} ({'accepted' if comp['accepted'] else 'REJECTED'}; needs {p['gate']})."]

    if report["edgetpu_partition"]:
        lines += ["", "## Edge TPU", "", partition_markdown(report["edgetpu_partition"], "Partition of the int8 file")]

    lines += ["", "## Reproduce", "", f"    {report['command']}", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ". "
              f"Machine: {summary_line(report['machine'])}."]
    return "\n".join(lines).rstrip() + "\n"


def _number(value: float, spec: str) -> str:
    """`value` formatted, or n/a for NaN (e.g. no patch with a non-constant Grad-CAM)."""
    return "n/a" if value != value else format(value, spec)
