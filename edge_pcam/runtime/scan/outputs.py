"""The scan's files: tiles.csv, scan.geojson, annotations.xml, thumbnail, heatmap, top tiles (and their
Grad-CAM), scan.json.

Each is written atomically (`edge_pcam.runtime.fileio`); top-tile pictures of
an earlier run that this report does not list are removed, so the folder
always matches its scan.json.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_pcam.runtime.exports import Tiles, write_viewer_files
from edge_pcam.runtime.fileio import atomic_path, atomic_write_json
from edge_pcam.runtime.scan.findings import SlideFindings
from edge_pcam.runtime.scan.geometry import TILE, ScanGeometry, read_tile, tissue_picture
from edge_pcam.runtime.scan.report import REPORT_FILE, ScanReport, TopTile
from edge_pcam.runtime.scan_heatmap import render_heatmap
from edge_pcam.runtime.slide_base import Slide
from edge_pcam.runtime.tissue import BACKGROUND, TissueQC

PNG_LEVEL = 3  # zlib level for the PNGs: a third of the default's time, files about 10% larger
THUMBNAIL_FILE, HEATMAP_FILE, TOP_FOLDER = "thumbnail.png", "heatmap.png", "top"
TOP_PICTURE = re.compile(r"\d{2}(_gradcam)?\.png")


def save_png(image: Image.Image | np.ndarray, path: Path, compress_level: int = 6) -> None:
    """Save a picture as PNG, atomically."""
    picture = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG", compress_level=compress_level)


def write_viewer_outputs(slide: Slide, geometry: ScanGeometry, probabilities: np.ndarray, findings: SlideFindings,
                         threshold: float, out: Path) -> dict[str, str]:
    """tiles.csv, scan.geojson (QuPath) and annotations.xml (ASAP), in level-0 pixels; their `files` entries."""
    tiles = Tiles.from_grid(probabilities, geometry.origin, geometry.tile_level0)
    size = (slide.levels[0].width, slide.levels[0].height)
    return write_viewer_files(out, tiles, findings.regions, threshold, size, category=findings.category)


def write_pictures(slide: Slide, geometry: ScanGeometry, qc: TissueQC, thumbnail: np.ndarray,
                   thumb_mpp: float, probabilities: np.ndarray, thresholds: dict[str, float],
                   top: list[tuple[int, int]], findings: SlideFindings, model: str, out: Path) -> dict[str, str]:
    """thumbnail.png, and heatmap.png over the bounding box of the tissue and what QC left out of it;
    their report `files` entries.

    The heatmap is painted from the triage threshold up, outlines `findings`'
    regions, hatches the areas QC left out (with their mm²), and names the slide and `model`.
    """
    save_png(thumbnail, out / THUMBNAIL_FILE, PNG_LEVEL)
    framed = qc.reasons != BACKGROUND
    picture, picture_mpp, origin = tissue_picture(slide, geometry, framed, thumbnail, thumb_mpp)
    heatmap = render_heatmap(picture, probabilities, geometry.stride, TILE, geometry.mpp / picture_mpp, origin,
                             thresholds, top, title=slide.path.name, model=model, regions=findings.regions,
                             level0_per_scan_pixel=geometry.level0_per_scan_pixel, excluded=findings.excluded,
                             excluded_mm2=findings.excluded_mm2, scan_mpp=geometry.mpp)
    save_png(heatmap, out / HEATMAP_FILE, PNG_LEVEL)
    return {"heatmap": HEATMAP_FILE, "thumbnail": THUMBNAIL_FILE}


def write_top_tiles(slide: Slide, geometry: ScanGeometry, top: list[tuple[int, int]], probabilities: np.ndarray,
                    out: Path, explainer: tuple[Any, Any] | None) -> list[TopTile]:
    """Save each top tile (and its Grad-CAM overlay given a (model, companion)); their report entries."""
    folder = out / TOP_FOLDER
    folder.mkdir(exist_ok=True)
    tiles = [read_tile(slide, geometry, r, c) for r, c in top]
    overlays = _gradcam_overlays(explainer, np.stack(tiles)) if explainer is not None and tiles else None
    entries = []
    for rank, ((r, c), tile) in enumerate(zip(top, tiles), start=1):
        x, y = geometry.origin(r, c)
        half = geometry.tile_level0 / 2
        entry = TopTile(rank, r, c, float(probabilities[r, c]), x, y, round(geometry.tile_level0, 2),
                        (round(x + half, 1), round(y + half, 1)), f"{TOP_FOLDER}/{rank:02d}.png",
                        f"{TOP_FOLDER}/{rank:02d}_gradcam.png" if overlays is not None else None)
        save_png(tile, out / entry.image)
        if entry.gradcam is not None:
            save_png(overlays[rank - 1], out / entry.gradcam)
        entries.append(entry)
    listed = {Path(name).name for e in entries for name in (e.image, e.gradcam) if name}
    for stale in folder.iterdir():
        if TOP_PICTURE.fullmatch(stale.name) and stale.name not in listed:
            stale.unlink()
    return entries


def write_report(report: ScanReport, out: Path) -> None:
    """scan.json, written last: its presence means the scan is complete."""
    atomic_write_json(out / REPORT_FILE, report.to_json())


def _gradcam_overlays(explainer: tuple[Any, Any], tiles: np.ndarray) -> np.ndarray:
    """Grad-CAM overlays of `tiles` by the runtime's Grad-CAM (classifier + its companion file)."""
    from edge_pcam.runtime.gradcam import gradcam_maps, overlay_image

    model, companion = explainer
    _, cams = gradcam_maps(model, companion, tiles)
    return np.stack([overlay_image(tile, cam) for tile, cam in zip(tiles, cams)])
