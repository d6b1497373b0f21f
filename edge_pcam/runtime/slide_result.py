"""The slide-level result of a scan: tumour burden with its interval, regions in mm, size class, tissue QC.

`slide_result` turns the scan's grid of tile probabilities, the tissue QC and
the model's operating characteristics into one `SlideResult`; `summary_line`
says it in one line a person reads. Only tiles that pass QC count: the burden
is a fraction of them, and regions are found among them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edge_pcam.runtime.burden import OperatingCharacteristics, estimate_burden, raw_counts
from edge_pcam.runtime.regions import Region, find_regions, size_category
from edge_pcam.runtime.tissue import PCAM_SHARPNESS_MEDIAN, SATURATION_THRESHOLD, SOFT_SLIDE_RATIO, TissueQC

RESEARCH_USE = "research use only"
CATEGORY_WORDS = {"itc": "isolated tumour cells size", "micromet": "micrometastasis size",
                  "macromet": "macrometastasis size"}
NO_RATES = ("the model file stores no operating characteristics (made before they were kept): the adjusted "
            "tumour burden is skipped and the raw counts remain; `edge-pcam calibrate` stores them from your "
            "own labelled patches (`edge-pcam upgrade` from the counts an older card holds)")
NO_TISSUE = (f"no tissue found: no tile reaches HSV saturation {SATURATION_THRESHOLD} outside pen ink, or quality "
             "control left every one out; burden 0, category negative")

SOFT_NOTE = "slide softer than the images the model's rates come from: likely underestimated"
SAME_PATCHES = ("the model's rates were counted on the patches its thresholds were chosen on (an earlier "
                "`edge-pcam calibrate`, or `edge-pcam convert` without --tune-from-train), which makes the "
                "high-specificity point look better than it is: the burden may be overestimated and its interval "
                "too narrow (benchmarks/results/burden-disjoint); calibrate again with this version")


def sharpness_reference(oc: OperatingCharacteristics | None) -> tuple[float, str]:
    """The median sharpness a slide's tiles are judged against, and whose patches those are: the lab's,
    where `calibrate` stored it with the card's rates, else PCam's validation patches'."""
    if oc is not None and oc.median_sharpness is not None:
        return oc.median_sharpness, "this lab's calibration patches"
    return PCAM_SHARPNESS_MEDIAN, "PCam's validation patches"


def soft_warning(softness: Mapping[str, Any], oc: OperatingCharacteristics | None) -> str:
    """The warning for a slide `TissueQC.softness` calls soft against `sharpness_reference(oc)`."""
    patches = sharpness_reference(oc)[1]
    if oc is not None and oc.median_sharpness is not None:
        advice = ""
    elif oc is not None and oc.split == "calibration":  # an older calibrate, or no calibration patch in focus
        advice = ", and calibrate again on in-focus patches of this lab's slides (this version stores their sharpness)"
    else:
        advice = ", and calibrate on this lab's slides"
    return (f"the tissue is softer than the images the model's rates were measured on (median tile sharpness "
            f"{softness['median']:.2f}, {softness['median'] / softness['reference']:.0%} of {patches}'; below "
            f"{SOFT_SLIDE_RATIO:.0%} the model's sensitivity falls, benchmarks/results/softness.md): the burden may "
            "be underestimated and small regions missed; check the scanner's focus" + advice)


@dataclass(frozen=True)
class SlideResult:
    """What a scan says about the slide as a whole (JSON: `as_dict`)."""

    burden: float | None  # fraction of QC-passed tissue tiles holding tumour; None without rates
    burden_ci: tuple[float, float] | None
    method: str | None
    largest_region_mm: float
    tumour_area_mm2: float
    region_count: int
    category: str
    regions: list[Region]
    raw_counts: dict[str, Any]  # tiles at or above the decision / high-specificity thresholds
    qc: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON types (lists, not tuples), each region with its size class."""
        def ring(points: Any) -> list[list[float]]:
            return [list(p) for p in points]

        out = asdict(self)
        out["burden_ci"] = list(self.burden_ci) if self.burden_ci else None
        out["regions"] = [{**asdict(r), "outline": ring(r.outline), "holes": [ring(h) for h in r.holes],
                           "centroid": list(r.centroid), "category": size_category(r.diameter_mm)}
                          for r in self.regions]
        out["intended_use"] = RESEARCH_USE
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlideResult:
        """The result `as_dict` gave (read back from scan.json)."""
        def ring(points: Any) -> list[tuple[float, float]]:
            return [tuple(p) for p in points]

        regions = [Region(ring(r["outline"]), [ring(h) for h in r["holes"]], tuple(r["centroid"]), r["diameter_mm"],
                          r["area_mm2"], r["mean_probability"], r["max_probability"], r["tiles"])
                   for r in data["regions"]]
        ci = data["burden_ci"]
        return cls(data["burden"], tuple(ci) if ci else None, data["method"], data["largest_region_mm"],
                   data["tumour_area_mm2"], data["region_count"], data["category"], regions, data["raw_counts"],
                   data["qc"], list(data["warnings"]))


def slide_result(probabilities: np.ndarray, qc: TissueQC, oc: OperatingCharacteristics | None,
                 thresholds: Mapping[str, float], origin: Callable[[int, int], tuple[float, float]],
                 tile_level0: float, stride_level0: float, mpp_level0: float, tile_weight: float = 1.0
                 ) -> SlideResult:
    """The slide's result from the (rows, cols) probability grid (NaN: not classified) and its QC.

    `thresholds` are the model's (decision, high_specificity); regions use the decision threshold.
    `tile_weight` as in `estimate_burden`; the geometry as in `find_regions`.
    """
    grid = np.where(qc.tissue, np.asarray(probabilities, np.float64), np.nan)
    values = grid[np.isfinite(grid)]
    decision = thresholds.get("decision", 0.5)
    counts = raw_counts(values, {"decision": decision, "high_specificity": thresholds.get("high_specificity")})
    warnings = []
    reference = sharpness_reference(oc)[0]
    if not len(values):
        return SlideResult(0.0, None, None, 0.0, 0.0, 0, "negative", [], counts, qc.as_dict(reference), [NO_TISSUE])
    burden = ci = method = None
    if oc is None:
        warnings.append(NO_RATES)
    else:
        estimate = estimate_burden(values, oc, tile_weight=tile_weight)
        burden, ci, method = estimate.burden, estimate.ci, estimate.method
        if oc.same_patches:
            warnings.append(SAME_PATCHES)
    softness = qc.softness(reference)
    if softness["soft"]:
        warnings.append(soft_warning(softness, oc))
    regions = find_regions(grid, decision, origin, tile_level0, stride_level0, mpp_level0)
    largest = regions[0].diameter_mm if regions else 0.0
    return SlideResult(burden, ci, method, largest, float(sum(r.area_mm2 for r in regions)), len(regions),
                       size_category(largest), regions, counts, qc.as_dict(reference), warnings)


def summary_line(result: SlideResult) -> str:
    """One line: largest region and its size class, burden and interval, and research use only."""
    if result.warnings and result.warnings[0] == NO_TISSUE:
        return f"no tissue found after quality control: nothing to measure; {RESEARCH_USE}"
    if result.regions:
        region = f"largest suspicious region {result.largest_region_mm:.2g} mm ({CATEGORY_WORDS[result.category]})"
    else:
        region = "no suspicious region"
    soft = f"; {SOFT_NOTE}" if (result.qc.get("sharpness") or {}).get("soft") else ""
    if result.burden is None:
        decision = result.raw_counts["decision"]
        burden = (f"tumour burden not estimated (no stored rates; run `edge-pcam calibrate`), "
                  f"{decision['fraction']:.1%} of tissue tiles at P >= {decision['threshold']:g}{soft}")
    else:
        low, high = result.burden_ci
        burden = f"tumour burden {result.burden:.1%} (95% CI {100 * low:.1f}\u2013{100 * high:.1f}%{soft})"
    return f"{region}; {burden}; {RESEARCH_USE}"
