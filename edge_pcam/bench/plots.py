"""PNG plots of a benchmark: latency against accuracy for every row, ROC curves per format.

matplotlib (the `bench` extra) with the Agg backend, imported only here; a
device without matplotlib still gets report.md and report.json
(`write_plots` returns the reason instead of files).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from edge_pcam.runtime.fileio import atomic_path

LATENCY_PLOT = "latency_vs_accuracy.png"
ROC_PLOT = "roc_curves.png"
PLOT_FILES = (LATENCY_PLOT, ROC_PLOT)


def plots_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def write_plots(result: dict[str, Any], out: Path) -> tuple[list[Path], str | None]:
    """Write the plots into `out`; (files written, reason when none could be)."""
    if not plots_available():
        return [], "matplotlib is not installed (`pip install 'edge-pcam[bench]'`)"
    import matplotlib
    matplotlib.use("Agg")
    rows = [r for r in result["rows"] if r["status"] == "ok"]
    if not rows:
        return [], "no row ran"
    return [latency_vs_accuracy(rows, out / LATENCY_PLOT, result), roc_curves(rows, out / ROC_PLOT, result)], None


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def latency_vs_accuracy(rows: list[dict[str, Any]], path: Path, result: dict[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    formats = list(dict.fromkeys(r["label"] for r in rows))
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    colors = plt.get_cmap("tab10")
    markers = "os^Dvp*"
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for r in rows:
        ax.scatter(r["ms_per_patch"], r["metrics"]["accuracy"] * 100, s=60,
                   color=colors(formats.index(r["label"]) % 10), marker=markers[runtimes.index(r["runtime"]) % 7],
                   edgecolor="black", linewidth=0.5)
    for i, label in enumerate(formats):
        ax.scatter([], [], color=colors(i % 10), marker="o", label=label)
    for j, runtime in enumerate(runtimes):
        ax.scatter([], [], color="grey", marker=markers[j % 7], label=runtime)
    ax.set_xscale("log")
    ax.set_xlabel("latency per patch, ms (p50, batch 1, best thread count; log scale)")
    ax.set_ylabel("accuracy at threshold 0.5, %")
    data = result["data"]
    ax.set_title(f"edge-pcam: latency vs accuracy ({data['spec']}, {data['split']}, n={data['n']})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best", ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def roc_curves(rows: list[dict[str, Any]], path: Path, result: dict[str, Any]) -> Path:
    """One panel per format; one curve per runtime in it (they should lie on top of each other)."""
    import matplotlib.pyplot as plt

    formats = list(dict.fromkeys(r["label"] for r in rows))
    cols = min(3, len(formats))
    nrows = (len(formats) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 4 * nrows), dpi=110, squeeze=False)
    for ax, label in zip(axes.flat, formats):
        for r in rows:
            if r["label"] == label:
                ax.plot(r["roc"]["fpr"], r["roc"]["tpr"], lw=1.5,
                        label=f"{r['runtime']} (AUC {r['metrics']['auc']:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate (sensitivity)")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(formats):]:
        ax.axis("off")
    data = result["data"]
    fig.suptitle(f"ROC curves per format ({data['spec']}, {data['split']}, n={data['n']})", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)
    return path
