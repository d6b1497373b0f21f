"""What a scan says about the slide as a whole, beyond its tiles: made in one place, `slide_findings`.

Every output that speaks of the slide as a whole reads a `SlideFindings`:
scan.json (`slide_result`), scan.geojson and annotations.xml (the regions,
named with their size class), the heatmap (regions outlined, areas left out
by quality control hatched) and summary.csv (the slide-level columns).
`slide_findings` makes it from the finished grid of probabilities and the
tissue QC: the tumour burden with its interval from the card's operating
characteristics (`runtime.burden`), regions in mm and the size class
(`runtime.regions`), all over the tiles that passed QC (`runtime.slide_result`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_pcam.runtime.exports import RegionShape
from edge_pcam.runtime.regions import size_category
from edge_pcam.runtime.scan.geometry import TILE, ScanGeometry
from edge_pcam.runtime.scan.inference import ScanModels
from edge_pcam.runtime.slide_result import SlideResult, slide_result
from edge_pcam.runtime.tissue import BLUR, INK, REASONS, TissueQC

# The summary.csv columns a SlideFindings may fill (runtime.summary.SUMMARY_COLUMNS).
SUMMARY_FIELDS = ("burden_adjusted", "burden_adjusted_low", "burden_adjusted_high", "largest_region_mm",
                  "largest_region_class")
HATCHED = (INK, BLUR)  # QC reasons the heatmap hatches: they take tissue away (background is glass, left plain)


@dataclass(frozen=True)
class SlideFindings:
    """The slide-level findings the outputs draw: regions, areas left out, figures for summary.csv,
    and the slide result they come from (None when a caller made the findings by hand)."""

    regions: Sequence[RegionShape] = ()  # largest first; level-0 outlines (`runtime.regions.Region` fits)
    excluded: Mapping[str, np.ndarray] = field(default_factory=dict)  # QC reason -> (rows, cols) bool grid
    category: Callable[[float], str] | None = None  # a region's size class from its diameter in mm
    summary: Mapping[str, Any] = field(default_factory=dict)  # values for SUMMARY_FIELDS
    result: SlideResult | None = None
    excluded_mm2: Mapping[str, float] = field(default_factory=dict)  # QC reason -> area left out

    def __post_init__(self) -> None:
        unknown = set(self.summary) - set(SUMMARY_FIELDS)
        if unknown:
            raise ValueError(f"not slide-level summary fields: {sorted(unknown)}")


def tile_weight(stride: int) -> float:
    """The independent information per tile for the burden's interval: (stride / tile side)^2, at most 1."""
    return min(1.0, (stride / TILE) ** 2)


def slide_findings(geometry: ScanGeometry, qc: TissueQC, probabilities: np.ndarray,
                   models: ScanModels) -> SlideFindings:
    """The findings of a finished scan: `probabilities` is the (rows, cols) grid, NaN off the tiles `qc` passed.

    Regions are found at the model's decision threshold, in level-0 pixels
    through `geometry`; the burden uses the card's operating characteristics
    (`models.rates`; without them it is skipped with a warning and the raw
    counts remain).
    """
    result = slide_result(probabilities, qc, models.rates, models.base.thresholds, geometry.origin,
                          geometry.tile_level0, geometry.stride_level0, geometry.slide_mpp,
                          tile_weight(geometry.stride))
    low, high = result.burden_ci or (None, None)
    summary = {"burden_adjusted": result.burden, "burden_adjusted_low": low, "burden_adjusted_high": high,
               "largest_region_mm": result.largest_region_mm, "largest_region_class": result.category}
    excluded = {REASONS[code]: qc.reasons == code for code in HATCHED if (qc.reasons == code).any()}
    areas = qc.excluded_mm2()
    return SlideFindings(result.regions, excluded, size_category, summary, result,
                         {name: areas[name] for name in excluded})
