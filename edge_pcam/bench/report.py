"""Write a benchmark: report.md (one table in the spirit of Ultralytics' benchmarks), report.json, machine.json, plots.

Every row stays in the table; a row that did not run says why in a numbered
note under it. report.json holds every raw figure (latency samples included).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edge_pcam.bench.plots import PLOT_FILES, write_plots
from edge_pcam.runtime.fileio import atomic_write_text, to_json
from edge_pcam.runtime.machine import load_line, summary_line

STATUS_MARK = {"ok": "✅ ok", "failed": "❌ failed", "skipped": "➖ skipped"}


def write_report(result: dict[str, Any], out: str | Path) -> list[Path]:
    """Write report.md, report.json, machine.json and the plots into `out`; the files written.

    An earlier report there is replaced whole: its plots that this one has not are removed.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots, plot_problem = write_plots(result, out)
    for stale in set(PLOT_FILES) - {p.name for p in plots}:
        (out / stale).unlink(missing_ok=True)
    result["plots"] = {"files": [p.name for p in plots], "reason": plot_problem}
    files = []
    for name, text in (("report.json", to_json(_finite(result), allow_nan=False)),
                       ("machine.json", json.dumps(result["machine"], indent=1)),
                       ("report.md", render_markdown(result))):
        atomic_write_text(out / name, text + "\n")
        files.append(out / name)
    return files + plots


def render_markdown(result: dict[str, Any]) -> str:
    data, machine, settings = result["data"], result["machine"], result["settings"]
    lines = [
        "# edge-pcam benchmark",
        "",
        f"- Machine: {summary_line(machine)} ({machine.get('cpu_id') or machine['architecture']}"
        f"{', flags ' + ' '.join(machine['cpu_flags']) if machine.get('cpu_flags') else ''})",
        f"- {load_line(machine.get('load_average_before'), machine.get('load_average_after')).capitalize()}",
        f"- Data: `{data['spec']}`, split `{data['split']}`, {data['n']} patches ({data['tumour']} tumour)"
        + (f", a seeded random sample of {data['limit']}" if data.get("limit") and data["limit"] < 10 ** 9 else ""),
        f"- Latency: batch 1 (a batched file: one call of its batch, divided per patch), after {settings['warmup']} "
        f"warm-up calls, then for {settings['budget_s']:g} s (at least {settings['min_runs']} calls); "
        f"threads {', '.join(map(str, settings['threads']))}",
        f"- Created {result['created']} in {result['duration_s'] or 0:.0f} s by: `{result['command']}`",
        "",
        "## Results",
        "",
        "Metrics at threshold 0.5. ms/patch: median (p50) at the fastest thread count, p95 beside it; "
        "patches/s: 1000 / mean latency there. Cold start: a new process, from its start to its first "
        "probability; peak RSS: that process's peak memory.",
        "",
        "| Format | Runtime | Status | Size (MB) | Accuracy | Precision | Recall | F1 | AUC | ms/patch (p50) "
        "| p95 | patches/s | threads | cold start (s) | peak RSS (MB) |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    notes: list[str] = []
    for row in result["rows"]:
        status = STATUS_MARK.get(row["status"], row["status"])
        if row["status"] != "ok":
            notes.append(row["reason"] or "no reason recorded")
            status += f" [{len(notes)}]"
        m = row.get("metrics") or {}
        cs = row.get("cold_start") or {}
        lines.append("| " + " | ".join([
            row["label"], _runtime(row), status, f"{row['size_bytes'] / 1e6:.2f}",
            _pct(m.get("accuracy")), _pct(m.get("precision")), _pct(m.get("recall")), _pct(m.get("f1")),
            _num(m.get("auc"), 4), _num(row.get("ms_per_patch"), 3), _num(row.get("p95_ms_per_patch"), 3),
            _num(row.get("patches_per_s"), 0), _threads(row), _num(cs.get("seconds"), 2),
            _num(cs.get("peak_rss_mb"), 0)]) + " |")
    if notes:
        lines += ["", *[f"[{i}] {note}" for i, note in enumerate(notes, start=1)]]
    if settings.get("runtimes_not_installed"):
        lines += ["", f"Runtimes asked for but not installed: {', '.join(settings['runtimes_not_installed'])}."]
    if result.get("companions"):
        lines += ["", "Grad-CAM companions found (not classifiers, not benchmarked): "
                  + ", ".join(f"`{Path(p).name}`" for p in result["companions"]) + "."]
    lines += _thread_table(result) + _goals(result) + _reference(result) + _plots(result) + _machine(machine)
    return "\n".join(lines)


def _thread_table(result: dict[str, Any]) -> list[str]:
    threads = [str(t) for t in result["settings"]["threads"]]
    lines = ["", "## Latency by thread count", "",
             "p50 / p95 ms per call at batch 1 (a batched file: per call of its batch).", "",
             "| Format | Runtime | " + " | ".join(f"{t} thread{'s' * (t != '1')}" for t in threads) + " |",
             "|---|---|" + "--:|" * len(threads)]
    keras_note = False
    for row in result["rows"]:
        if row["status"] != "ok":
            continue
        lat = row["latency"]
        if "default" in lat:
            keras_note = True
            cells = [f"{lat['default']['p50_ms']:.2f} / {lat['default']['p95_ms']:.2f} †"] + [""] * (len(threads) - 1)
        else:
            cells = [f"{lat[t]['p50_ms']:.3f} / {lat[t]['p95_ms']:.3f}" if t in lat else "—" for t in threads]
        lines.append(f"| {row['label']} | {_runtime(row)} | " + " | ".join(cells) + " |")
    if keras_note:
        lines += ["", "† TensorFlow's own thread pools (all cores); their size is fixed when TensorFlow starts, "
                  "so the Keras row has one measurement."]
    return lines


def _goals(result: dict[str, Any]) -> list[str]:
    g = result.get("goals") or {}
    if not g:
        return []
    lines = ["", "## Performance goals", "",
             f"The int8 file (`{Path(g['int8_file']).name if g.get('int8_file') else 'none'}`) through the default "
             f"runtime ({g.get('default_runtime')}) at batch 1, {g.get('threads')} threads, in this run; "
             f"latencies {g.get('method')}.", "",
             "| Goal | Measured | Target | Met | How |", "|---|--:|--:|---|---|"]
    for key, name, unit in (("vs_keras", "faster than Keras float `model(x, training=False)`", "×"),
                            ("vs_tf_lite", "speed vs tf.lite on the same file", "×"),
                            ("vs_raw_litert", "raw ai-edge-litert vs edge-pcam's runtime, same file", "×")):
        goal = g.get(key)
        if goal is None:  # a report from before that goal existed
            continue
        lines.append(f"| {name} | {_num(goal.get('value'), 2)}{unit if goal.get('value') else ''} | "
                     f"≥ {goal.get('target'):g}{unit} | {_met(goal.get('met'))} | {goal.get('detail', '')} |")
    frac = g.get("fraction_of_int8_limit") or {}
    lines.append(f"| fraction of the int8 arithmetic limit | "
                 f"{_pct(frac.get('value'))}{'%' if frac.get('value') else ''} | — | — | {frac.get('detail', '')}"
                 + (f"; {frac['macs_per_patch'] / 1e9:.4f} GMAC per patch counted from the file's ops"
                    if frac.get("macs_per_patch") else "") + " |")
    cold = g.get("cold_start_and_memory") or {}
    rt, tf = cold.get("runtime") or {}, cold.get("tensorflow") or {}
    lines.append(f"| cold start, runtime vs TensorFlow | {_num(rt.get('seconds'), 2)} s vs {_num(tf.get('seconds'), 2)} s"
                 f" | — | — | process start to first probability: {rt.get('row') or 'n/a'} vs {tf.get('row') or 'n/a'} |")
    lines.append(f"| peak memory, runtime vs TensorFlow | {_num(rt.get('peak_rss_mb'), 0)} MB vs "
                 f"{_num(tf.get('peak_rss_mb'), 0)} MB | — | — | peak RSS of those cold-start processes |")
    peak = result.get("peak") or {}
    if peak.get("method"):
        lines += ["", f"Int8 arithmetic limit: {peak['gmac_per_s']:.0f} GMAC/s, measured with an {peak['method']} "
                  f"({peak['ms_per_invoke']:.3f} ms for {peak['macs_per_invoke'] / 1e9:.2f} GMAC)."]
    elif peak.get("reason"):
        lines += ["", f"Int8 arithmetic limit not measured: {peak['reason']}."]
    return lines


def _reference(result: dict[str, Any]) -> list[str]:
    ref = result.get("reference")
    if not ref:
        return []
    lines = ["", f"## Against the `{Path(ref['file']).parent.name}` reference (±{ref['tolerance']:.0%})", "",
             f"Reference: `{ref['file']}`. Rows marked `estimate` are not measurements on the board: "
             "a verdict against them checks the estimate as much as this machine.", "",
             "| Model | Threads | Expected ms | Reference | Row | Runtime | Measured ms | Ratio | Verdict |",
             "|---|--:|--:|---|---|---|--:|--:|---|"]
    for c in ref["checks"]:
        lines.append(f"| {c['model']} | {c['threads']} | {c['expected_ms']:g} | {c['reference_status']} | "
                     f"{c['row'] or '—'} | {c['runtime']} | {_num(c['measured_ms'], 3)} | {_num(c['ratio'], 2)} | "
                     f"{c['verdict']} |")
    sources = sorted({c["source"] for c in ref["checks"]})
    lines += ["", "Sources: " + " ".join(f"({i}) {s}" for i, s in enumerate(sources, start=1))]
    return lines


def _plots(result: dict[str, Any]) -> list[str]:
    plots = result.get("plots") or {}
    if not plots.get("files"):
        return ["", f"Plots not written: {plots.get('reason')}."] if plots.get("reason") else []
    return ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots["files"]]


def _machine(machine: dict[str, Any]) -> list[str]:
    pkgs = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    return ["", "## Machine", "",
            f"- CPU: {machine.get('cpu')} ({machine.get('cpu_id') or '?'}), {machine.get('cores')} cores "
            f"({machine.get('usable_cores')} usable), {machine.get('architecture')}"
            + (f"; board: {machine['board']}" if machine.get("board") else ""),
            f"- Memory: {_num(machine.get('memory_gb'), 1)} GB; OS: {machine.get('os')}, kernel {machine.get('kernel')}",
            f"- Python {machine.get('python')}; packages: {pkgs}", ""]


def _runtime(row: dict[str, Any]) -> str:
    version = row.get("runtime_version")
    if not version or row["runtime"] == "keras":
        return "Keras (TensorFlow)" if row["runtime"] == "keras" else row["runtime"]
    return f"{row['runtime']} {version}"


def _threads(row: dict[str, Any]) -> str:
    if row["status"] != "ok":
        return "—"
    return "TF default" if row.get("threads_best") is None else str(row["threads_best"])


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _num(x: float | None, digits: int) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def _met(met: bool | None) -> str:
    return "—" if met is None else ("✅ yes" if met else "❌ no")


def _finite(obj: Any) -> Any:
    """NaN and infinity (an AUC of one class, say) as null: report.json stays strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
