"""`scan_slide`: one slide from file to outputs, through the other modules of this package."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_pcam.errors import EdgePcamError
from edge_pcam.runtime.constants import PCAM_MPP
from edge_pcam.runtime.fileio import check_output_folder, prepare_output_folder
from edge_pcam.runtime.malloc import keep_freed_memory
from edge_pcam.runtime.metadata import sha256_file
from edge_pcam.runtime.scan.findings import SlideFindings, slide_findings
from edge_pcam.runtime.scan.geometry import TILE, ScanGeometry, find_tissue, plan_geometry
from edge_pcam.runtime.scan.inference import (LOG_GROUP, ScanModels, classify_tiles, load_scan_models,
                                              measure_sharpness)
from edge_pcam.runtime.scan.outputs import write_pictures, write_report, write_top_tiles, write_viewer_outputs
from edge_pcam.runtime.scan.report import (REPORT_FILE, ModelInfo, ScanReport, ScanSettings, SlideInfo, TileCounts,
                                           Timing, top_tiles, tumour_burden)
from edge_pcam.runtime.scan.store import ResumeKey, TileStore, slide_digest
from edge_pcam.runtime.slide import open_slide
from edge_pcam.runtime.slide_base import ENLARGE_FILTER, LEVEL_TOLERANCE, Slide
from edge_pcam.runtime.tissue import BLUR_RATIO, INK_FRACTION, SATURATION_THRESHOLD, TissueQC

TISSUE_RULE = (f"max HSV saturation >= {SATURATION_THRESHOLD} outside ink (PCam's rule); quality control leaves "
               f"out tiles >= {INK_FRACTION:.0%} pen ink and tiles out of focus (sharpness < {BLUR_RATIO})")

Progress = Callable[[int, int], None]


@dataclass
class ScanResult:
    """A finished scan in memory: its report, the grids the outputs were drawn from, the slide's findings."""

    report: ScanReport
    probabilities: np.ndarray  # (rows, cols) float32: each tissue tile's P(tumour), NaN elsewhere
    tissue: np.ndarray  # (rows, cols) bool: the tiles that passed quality control (`qc.tissue`)
    folder: Path
    findings: SlideFindings
    qc: TissueQC  # each tile's reason: tissue, background, ink or blur


def scan_slide(image: str | os.PathLike, out: str | os.PathLike, model: str | os.PathLike | None = None, *,
               stride: int = TILE, mpp: float | None = None, batch: int | None = None, top_k: int = 8,
               explain: bool = False, runtime: str = "auto", threads: int | None = None,
               device: str | None = None, reader: str = "auto", progress: Progress | None = None,
               models: ScanModels | None = None) -> ScanResult:
    """Scan `image` with the .tflite `model` (None: the bundled one) and write the outputs to `out`.

    `batch` picks a batched conversion beside the model with that batch (None:
    the largest there is); `device` is an Edge TPU for a compiled model (see
    `load_model`). `models` (from `load_scan_models`, for scanning many slides
    with one load) replaces `model`, `runtime`, `threads`, `device` and the
    choice by `batch`. The progress log in `out` of a killed scan of the same
    slide (by content), model and grid is resumed; one of anything else is refused.
    On glibc the process keeps freed memory for reuse from here on (`runtime.malloc`).
    """
    started = time.perf_counter()
    keep_freed_memory()
    if stride < 1:
        raise EdgePcamError(f"--stride must be at least 1, got {stride}")
    if models is not None and explain and models.companion is None:
        raise EdgePcamError("--explain needs the models loaded with their Grad-CAM companion")
    check_output_folder(out)
    slide = open_slide(image, mpp=mpp, reader=reader)
    try:
        slide.require_mpp()
        geometry = plan_geometry(slide, stride)
        models = models or load_scan_models(model, runtime, threads, device, batch, explain)
        out = prepare_output_folder(out)  # made once the slide and the models are good: a refusal leaves none
        digest = slide_digest(slide.path)
        store = TileStore(out, _resume_key(slide, geometry, models, digest))
        store.check()  # before the tissue mask: a refusal comes at once
        thumbnail, thumb_mpp, qc = find_tissue(slide, geometry)  # tissue, background and ink; blur below
        store.open(qc.tissue)
        try:
            resumed = int(store.done.sum())
            total = int(qc.tissue.sum())
            todo = qc.tissue & ~store.done
            if todo.any() or store.unmeasured.any():
                (out / REPORT_FILE).unlink(missing_ok=True)  # scan.json exists only for a complete scan

            def record(cells: list[tuple[int, int]], probs: np.ndarray, sharpness: np.ndarray) -> None:
                store.append(cells, [geometry.origin(r, c) for r, c in cells], probs, sharpness)

            size = max(batch or 1, models.runner.batch, LOG_GROUP)
            loop = classify_tiles(slide, geometry, todo, models.runner, record, size,
                                  (lambda done: progress(resumed + done, total)) if progress else None)
            measure_sharpness(slide, geometry, store.unmeasured,  # rows of a log from before it was kept
                              lambda cells, sharp: record(cells, store.probabilities[tuple(zip(*cells))], sharp))
        finally:
            store.close()
        qc = qc.with_sharpness(store.sharpness)
        probabilities = np.where(qc.tissue, store.probabilities, np.float32(np.nan))  # the tiles that count
        thresholds = models.base.thresholds
        top = top_tiles(probabilities, top_k, stride)
        findings = slide_findings(geometry, qc, probabilities, models)
        model_info = _model_info(models)
        files = write_viewer_outputs(slide, geometry, probabilities, findings, thresholds.get("decision", 0.5), out)
        files.update(write_pictures(slide, geometry, qc, thumbnail, thumb_mpp, probabilities, thresholds, top,
                                    findings, f"{Path(model_info.path).name} ({model_info.sha256[:12]})", out))
        explainer = (models.base, models.companion) if explain else None
        top_entries = write_top_tiles(slide, geometry, top, probabilities, out, explainer)
        report = ScanReport(
            slide=SlideInfo.of(slide, geometry.level, digest, store.key.slide_bytes),
            geometry=geometry,
            settings=ScanSettings(size, top_k, explain, TISSUE_RULE, thumb_mpp),
            model=model_info,
            tiles=TileCounts(int(qc.tissue.sum()), loop.tiles, resumed),
            tumour_burden=tumour_burden(probabilities, thresholds),
            top_tiles=top_entries,
            warnings=_warnings(slide, geometry, models, batch, store.ignored)
            + (findings.result.warnings if findings.result else []),  # no tissue; no stored rates; a soft slide
            timing=Timing(time.perf_counter() - started, loop.seconds, loop.cpu_seconds, loop.inference_seconds,
                          loop.tiles / loop.seconds if loop.tiles else None),
            files=files,
            slide_result=findings.result,
        )
        write_report(report, out)
        return ScanResult(report, probabilities, qc.tissue, out, findings, qc)
    finally:
        slide.close()


def _resume_key(slide: Slide, geometry: ScanGeometry, models: ScanModels, digest: str) -> ResumeKey:
    """What must be equal for a progress log to be resumed: slide content, model bytes, grid, and how a
    coarser level is enlarged (tiles enlarged by another filter have other pixels: builds before the
    nearest-pixel enlargement interpolated bilinearly and wrote no "enlarge")."""
    settings = {"tile": TILE, "stride": geometry.stride, "mpp": round(geometry.mpp, 6), "level": geometry.level,
                "grid": [geometry.rows, geometry.cols], "slide_mpp": round(geometry.slide_mpp, 6),
                "reader": slide.reader}
    if slide.resample_filter(geometry.mpp) == ENLARGE_FILTER:
        settings["enlarge"] = ENLARGE_FILTER.name.lower()
    return ResumeKey(slide_digest=digest, slide_bytes=slide.path.stat().st_size,
                     model_sha256=models.flatbuffer_sha256, settings=settings, slide=str(slide.path.resolve()))


def _model_info(models: ScanModels) -> ModelInfo:
    base, runner = models.base, models.runner
    return ModelInfo(str(base.path), sha256_file(base.path), base.format, base.thresholds, runner.runtime,
                     runner.runtime_version, runner.threads, str(runner.path), runner.batch, models.flatbuffer_sha256)


def _warnings(slide: Slide, geometry: ScanGeometry, models: ScanModels, batch: int | None,
              ignored: int) -> list[str]:
    warnings = []
    base, runner = models.base, models.runner
    if batch and batch > 1 and runner.batch != batch:
        warnings.append(f"no conversion with batch {batch} beside {base.path.name}; the interpreter ran "
                        f"batch {runner.batch} (make one with `edge-pcam convert --batch {batch}`)")
    level_mpp = slide.level_mpp(geometry.level)
    if level_mpp > PCAM_MPP * (1 + LEVEL_TOLERANCE):
        warnings.append(f"the slide's finest level is {level_mpp:.3g} µm/px, coarser than PCam's {PCAM_MPP}: "
                        "tiles were upsampled and the model sees less detail than it was trained on")
    if ignored:
        warnings.append(f"{ignored:,} tile results of an earlier run lie outside the tissue mask; "
                        "they were dropped and do not count")
    return warnings

