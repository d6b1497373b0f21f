"""What a scan says about the slide as a whole, beyond its tiles: made in one place, `slide_findings`.

Every output that speaks of the slide as a whole reads a `SlideFindings`:
scan.geojson and annotations.xml (the regions, named with their size class),
the heatmap (regions outlined, areas left out hatched) and summary.csv (the
slide-level columns). `slide_findings` is the one function that makes it from
the finished grid of probabilities.

What it holds today: no suspicious regions, no areas left out, no slide-level
figures; the outputs then carry the tiles alone and those summary columns
stay empty. The slide-level result (regions traced from the positive tiles,
`runtime.regions`; the tumour burden with its interval, `runtime.burden`;
tissue quality control, `runtime.tissue`) is computed here when it becomes
part of the scan; no other module of the scan changes for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_pcam.runtime.exports import RegionShape
from edge_pcam.runtime.scan.geometry import ScanGeometry
from edge_pcam.runtime.scan.inference import ScanModels
from edge_pcam.runtime.slide_base import Slide

# The summary.csv columns a SlideFindings may fill (runtime.summary.SUMMARY_COLUMNS).
SUMMARY_FIELDS = ("burden_adjusted", "burden_adjusted_low", "burden_adjusted_high", "largest_region_mm",
                  "largest_region_class")


@dataclass(frozen=True)
class SlideFindings:
    """The slide-level findings the outputs draw: regions, areas left out, figures for summary.csv."""

    regions: Sequence[RegionShape] = ()  # largest first; level-0 outlines (`runtime.regions.Region` fits)
    excluded: Mapping[str, np.ndarray] = field(default_factory=dict)  # QC reason -> (rows, cols) bool grid
    category: Callable[[float], str] | None = None  # a region's size class from its diameter in mm
    summary: Mapping[str, Any] = field(default_factory=dict)  # values for SUMMARY_FIELDS

    def __post_init__(self) -> None:
        unknown = set(self.summary) - set(SUMMARY_FIELDS)
        if unknown:
            raise ValueError(f"not slide-level summary fields: {sorted(unknown)}")


def slide_findings(slide: Slide, geometry: ScanGeometry, tissue: np.ndarray, probabilities: np.ndarray,
                   models: ScanModels) -> SlideFindings:
    """The findings of a finished scan: `probabilities` is the (rows, cols) grid, NaN off the `tissue` tiles.

    Regions are found at `models.base.thresholds["decision"]`, in level-0 pixels
    through `geometry.origin`, `geometry.tile_level0` and `geometry.stride_level0`
    at `geometry.slide_mpp`; the burden uses the card's operating
    characteristics (`models.base.metadata`). None of them is part of the scan
    yet (see the module's docstring): no regions, nothing left out.
    """
    return SlideFindings()
