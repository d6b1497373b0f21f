"""`edge-pcam info [MODEL] [--json]`: the design's layer table, or what a model file is and whether it verifies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edge_pcam.cli.console import out
from edge_pcam.errors import EdgePcamError


def info(model: Annotated[Optional[Path], typer.Argument(help="A .tflite file to describe; none for the design's model.")] = None,
         as_json: Annotated[bool, typer.Option("--json", help="Print the file's card and integrity status as JSON.")] = False) -> None:
    """Print the model's layers and parameter count, or a .tflite file's card and whether it verifies."""
    if model is not None:
        from edge_pcam.runtime.metadata import NO_DIGEST, VERIFIED, inspect_file
        report = inspect_file(model)
        if as_json:
            print(json.dumps(report, indent=1, default=str))
        else:
            _print_card(report)
        if report["integrity"]["status"] not in (VERIFIED, NO_DIGEST):
            raise typer.Exit(1)
        return
    if as_json:
        raise EdgePcamError("--json describes a model file: give one (edge-pcam info MODEL.tflite --json)")
    from rich.table import Table

    from edge_pcam.architecture import MODEL_NAME, PARAMETER_COUNT, design_layers
    layers = design_layers()  # a static description: no TensorFlow needed
    table = Table(title=f"{MODEL_NAME}: the design's attention-CNN")
    for col in ("layer", "type", "output shape", "parameters"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for layer in layers:
        table.add_row(layer.name, layer.kind, str(layer.output), f"{layer.parameters:,}")
    out.print(table)
    total = sum(layer.parameters for layer in layers)
    out.print(f"Total parameters: {total:,} (the design states {PARAMETER_COUNT:,})")


def _print_card(report: dict[str, Any]) -> None:
    from edge_pcam.runtime.metadata import NO_DIGEST, VERIFIED

    card, integrity = report["card"], report["integrity"]
    status = {VERIFIED: "[green]verified[/green]: the flatbuffer's SHA-256 matches its card",
              NO_DIGEST: "[yellow]not recorded[/yellow] (card schema 1, an earlier edge-pcam): run "
                           "`edge-pcam upgrade FILE NEW.tflite`",
              }.get(integrity["status"], "[red]DOES NOT VERIFY[/red]: the flatbuffer's SHA-256 differs from its "
                                         "card (damaged or altered)")
    lines = [f"[bold]{Path(report['file']).name}[/bold]: edge-pcam {card['format']} file from a {card['source']} "
             f"model, batch {card.get('batch', 1)}, card schema {card['schema_version']}, "
             f"{report['size_bytes']:,} bytes",
             f"integrity: {status} ({integrity['sha256'][:16]}...)"]
    tensors = [f"{name} {t['dtype']} {t['shape']}" for name, t in (card.get("outputs") or {}).items()]
    lines.append(f"input: {card['input']['dtype']} {card['input']['shape']}; outputs: {', '.join(tensors) or '-'}")
    if card["thresholds"]:
        lines.append("thresholds: " + ", ".join(f"{k} {v:.4f}" for k, v in card["thresholds"].items()))
    decision = (card.get("metrics") or {}).get("decision")
    if decision:
        where = card.get("calibration", {}).get("data") or (card.get("validation") or {}).get("data", "?")
        lines.append(f"at the decision threshold on {where} ({decision.get('n', '?')} patches): accuracy "
                     f"{decision['accuracy']:.3f}, sensitivity {decision['recall']:.3f}, specificity "
                     f"{decision['specificity']:.3f}, AUC {decision['auc']:.3f}")
    oc = card.get("operating_characteristics")
    if oc:
        lines.append(f"operating characteristics ({oc['split']}: {oc['n_positive']:,} positive, "
                     f"{oc['n_negative']:,} negative): " + "; ".join(
                         f"{k} TP {p['tp']} FN {p['fn']} FP {p['fp']} TN {p['tn']}" for k, p in oc["points"].items()))
    if report["companion"]:
        lines.append(f"Grad-CAM companion: {Path(report['companion']['file']).name} "
                     f"({report['companion']['status']})")
    for key in ("calibration", "upgraded"):
        if card.get(key):
            lines.append(f"{key}: {card[key].get('created', '')} {card[key].get('data') or card[key].get('tool', '')}")
    if card.get("command"):
        lines.append(f"made by: {card['command']}")
    for line in lines:
        out.print(line, soft_wrap=True, highlight=False)
