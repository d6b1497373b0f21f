"""The model card written into every converted file (read back by edge_pcam.runtime.metadata).

Every key is documented in edge_pcam/runtime/model_card.schema.json, which the
card is validated against when it is written and whenever it is read;
`schema_version` and `integrity` are added by `with_metadata` itself.
"""

from __future__ import annotations

import datetime as _dt
import platform
import shlex
import sys
from importlib import metadata as _importlib_metadata
from typing import Any


from edge_pcam.runtime.datasets.base import LABEL_NAMES
from edge_pcam.runtime.signature import tensor_spec as output_spec  # noqa: F401  (the card's tensor entries)

VERSIONED_PACKAGES = ("edge-pcam", "tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert",
                      "numpy")


def source_kind(fmt: str, qat: bool) -> str:
    """`qat` for anything from a QAT model, `float` for a float32 file of a float model, else `ptq`."""
    if qat:
        return "qat"
    return "float" if fmt == "float32" else "ptq"


def tool_versions() -> dict[str, str]:
    """Versions of Python and the packages that made the file."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = _importlib_metadata.version(name)
        except _importlib_metadata.PackageNotFoundError:
            continue
    return versions


def command_line() -> str:
    """The command as the user would type it: `edge-pcam ...`, also when run as `python -m edge_pcam`."""
    program = sys.argv[0]
    is_cli = program.endswith("edge-pcam") or program.endswith(("edge_pcam/__main__.py", "edge_pcam\\__main__.py"))
    return shlex.join(["edge-pcam" if is_cli else program, *sys.argv[1:]])


def build_metadata(*, fmt: str, source: str, batch: int, input_spec: dict[str, Any],
                   outputs: dict[str, Any], thresholds: dict[str, float | None],
                   metrics: dict[str, Any] | None, validation: dict[str, Any] | None,
                   source_model: dict[str, str], recipe: dict[str, Any],
                   companion: dict[str, str] | None = None, parity: dict[str, Any] | None = None,
                   edgetpu: dict[str, Any] | None = None, command: str | None = None,
                   operating: dict[str, Any] | None = None) -> dict[str, Any]:
    """The card for one file (see the schema); `operating` is its operating_characteristics block."""
    meta: dict[str, Any] = {
        "format": fmt,
        "source": source,
        "batch": int(batch),
        "input": input_spec,
        "outputs": outputs,
        "labels": list(LABEL_NAMES),
        "thresholds": thresholds,
        "metrics": metrics,
        "validation": validation,
        "parity": parity,
        "companion": companion,
        "source_model": source_model,
        "recipe": recipe,
        "versions": tool_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else command_line(),
    }
    if edgetpu is not None:
        meta["edgetpu"] = edgetpu
    if operating is not None:
        meta["operating_characteristics"] = operating
    return meta



def model_version(source_model: dict[str, Any]) -> str:
    """The version string of the TFLite metadata: the tool and the source model it was converted from."""
    digest = (source_model.get("sha256") or "unknown")[:12]
    return f"edge-pcam {tool_versions().get('edge-pcam', 'unknown')}; from {source_model['file']} (sha256 {digest})"


def unmeasured() -> dict[str, Any]:
    """The operating-characteristics block of a file not measured yet (the temporary files only)."""
    zero = {"threshold": 0.5, "tp": 0, "fn": 0, "fp": 0, "tn": 0}
    return {"split": "valid", "description": "not measured yet", "n_positive": 0, "n_negative": 0,
            "points": {"decision": zero}}


def evaluation_text(validation: dict[str, Any]) -> str:
    """What the counts were measured on, for operating_characteristics.description."""
    source = validation["thresholds_from"]
    chosen = ("thresholds chosen on the same patches" if source["split"] == "valid" else
              f"thresholds chosen on {source['n']:,} tuning patches carved from the train split")
    return (f"valid split of {validation['data']}, {validation['n']:,} patches, measured with "
            f"{validation['runtime']}; {chosen}")


def edgetpu_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a partition report that goes into a file's metadata."""
    first = report["first_unmappable"]
    return {"ops_on_edgetpu": report["ops_on_edgetpu"], "op_count": report["op_count"],
            "mac_share_on_edgetpu": round(report["mac_share_on_edgetpu"], 4),
            "first_unmappable": None if first is None else f"{first['op']} (op {first['index']})",
            "compiler": (report.get("compiler") or {}).get("version")}
