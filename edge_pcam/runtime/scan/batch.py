"""Many slides per run: `edge-pcam scan SLIDE... --out DIR` and `edge-pcam scan FOLDER --out DIR`.

Each slide is scanned into `DIR/<slide file stem>/` and ends as one row of
`DIR/summary.csv` (`runtime.results`, `runtime.summary`): `ok`, or the one-line
reason it failed (a bad or half-written file, a reader failing part-way, a
full disk); the others go on. The models are loaded once for the batch.

A batch resumes after a kill: a slide with an `ok` row for the same file and
content is not scanned again; the slide that was being scanned goes back
into its folder, where its own scan resumes; slides that failed are tried
again (the disk may have room now, the file may have been copied again).

`SlideScanner` is the per-slide step, shared with the watch folder
(`edge-pcam watch`): one slide into its folder, its summary.csv fields back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from edge_pcam.errors import DataError, EdgePcamError
from edge_pcam.runtime.results import ResultsFolder, one_line
from edge_pcam.runtime.scan.inference import load_scan_models
from edge_pcam.runtime.scan.pipeline import ScanResult, scan_slide
from edge_pcam.runtime.slide_files import content_digest, find_slides, slide_parts
from edge_pcam.runtime.summary import OK, SUMMARY_FILE, WARNINGS_SEPARATOR


class SlideScanner:
    """Scan one slide into a folder and give its summary.csv fields; the models are loaded once, here.

    `model`, `runtime`, `threads`, `device`, `batch` and `explain` as for
    `scan_slide`; `options` are its other keyword arguments (stride, mpp,
    top_k, reader, progress).
    """

    def __init__(self, model: str | os.PathLike | None = None, *, runtime: str = "auto", threads: int | None = None,
                 device: str | None = None, batch: int | None = None, explain: bool = False, **options: Any):
        self.models = load_scan_models(model, runtime, threads, device, batch, explain)
        self.options = {"batch": batch, "explain": explain, **options}

    def __call__(self, path: Path, out: Path) -> dict[str, Any]:
        return summary_fields(scan_slide(path, out, models=self.models, **self.options))


def summary_fields(result: ScanResult) -> dict[str, Any]:
    """A finished scan's summary.csv fields (the file, status and times are the caller's)."""
    report = result.report
    burden = report.tumour_burden

    def fraction(name: str) -> float | None:
        entry = burden.get(name)
        return entry.fraction if entry is not None else None

    return {"reader": report.slide.reader, "tissue_tiles": report.tiles.tissue,
            "burden_decision": fraction("decision"), "burden_high_specificity": fraction("high_specificity"),
            **result.findings.summary,
            "top_probability": max((t.probability for t in report.top_tiles), default=None),
            "model_sha256": report.model.sha256, "warnings": WARNINGS_SEPARATOR.join(report.warnings)}


def batch_slides(paths: Sequence[Path]) -> list[tuple[str, list[Path]]]:
    """(name in summary.csv, the slide's files) for each path: a file as given, a folder's slides
    (`runtime.slide_files`: subfolders too) as the folder's path joined with theirs."""
    slides = []
    for path in paths:
        if path.is_dir():
            def unlisted(exc: OSError) -> None:
                raise DataError(f"{exc.filename or path}: cannot list the folder ({exc.strerror or exc})")

            found = [(str(path / rel), files) for rel, files in find_slides(path, onerror=unlisted)]
            if not found:
                raise DataError(f"{path}: no slides in this folder (looked for .svs, .tif, .ndpi, .mrxs and the "
                                "other whole-slide suffixes, in subfolders too)")
            slides += found
        else:
            slides.append((str(path), slide_parts(path)))
    return slides


def scan_batch(slides: Iterable[tuple[str, list[Path]]], out: str | os.PathLike,
               scan_one: Callable[[Path, Path], dict[str, Any]],
               on_event: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Scan each slide (from `batch_slides`) into `out/<name>/`, one summary.csv row each; this run's rows.

    Slides with an `ok` row for the same file and content are skipped.
    A summary.csv that cannot be written stops the batch (one-line error).
    """
    slides = list(slides)
    rows = []
    with ResultsFolder(out, on_event) as folder:
        done = {(row["file"], row["sha256"]): row["out"] for row in folder.rows if row["status"] == OK}
        folder.event("batch", slides=len(slides), out=str(folder.out))
        try:
            for name, files in slides:
                try:
                    digest = content_digest(files)
                except OSError as exc:
                    row = {"file": name, "status": f"{files[0]}: cannot read ({exc.strerror or one_line(exc)})"}
                    folder.record(row)
                    folder.event("failed", file=name, status=row["status"])
                    rows.append(row)
                    continue
                if (name, digest) in done:
                    folder.event("skipped", file=name, sha256=digest, out=done[name, digest])
                    continue
                rows.append(folder.scan_slide(name, files[0], digest, scan_one, by_content=False,
                                              record_machine_errors=True))
        except OSError as exc:  # the summary or the event log itself cannot be written
            raise EdgePcamError(f"{folder.out / SUMMARY_FILE}: cannot record the results "
                                f"({exc.strerror or one_line(exc)})") from None
    return rows
