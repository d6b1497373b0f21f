"""Tumour burden of a slide: the fraction of its tissue tiles that hold tumour, with a 95% interval.

Counting the tiles above a threshold is biased: every normal tile has the
model's false-positive rate of being counted, so on a mostly normal slide the
false positives outnumber the tumour (at 0.5, a 12% false-positive rate adds
about 11 points to a slide with 6% tumour). The estimate here corrects for
that with the model's own operating characteristics, stored in its card
(`operating_characteristics`: counts of true/false positives and negatives at
each stored threshold, on a labelled set; `edge-pcam calibrate` replaces them
with the lab's own).

Method: mixture maximum likelihood over the stored operating points. The
stored thresholds cut the probability axis into bins (three thresholds, four
bins); the card's counts give the chance of a tumour tile, a_j, and of a
normal tile, b_j, to fall in bin j. A slide with burden pi puts a tile in bin j
with chance pi a_j + (1 - pi) b_j, so pi is the maximum of the multinomial
likelihood of the slide's bin counts, on [0, 1]. With one threshold (two
bins) this is exactly the adjusted classify-and-count (q - FPR) / (TPR - FPR)
of Forman (2008), clipped to [0, 1]; more thresholds use more of what the
model says. Chosen on a pilot of benchmarks/burden.py (mosaics of real
patches, other seeds than the reported run): against adjusted
classify-and-count at the decision or the high-specificity threshold alone it
had the smallest mean squared error and the narrowest intervals, at the same
coverage; the average of the probabilities and the raw count
are biased by the false positives (benchmarks/results/burden.md compares them).

Interval: a parametric bootstrap with a fixed seed (the same tiles always give
the same interval). Each replicate redraws the card's counts (multinomial, at
the card's rates) and the slide's bin counts (multinomial over the tiles) and
re-estimates; the interval is the 2.5th-97.5th percentile. It so carries both
the tile count's sampling error and the uncertainty of the stored rates; it
handles the [0, 1] edges (no normal approximation) and asymmetric intervals,
where the delta method would not. Bin rates use a Jeffreys half count, so a
bin no labelled tile fell in (common at a high-specificity threshold) does not
make a single slide tile decisive. Overlapping tiles (stride below the tile
side) are not independent: the slide's counts are redrawn as if from the
number of non-overlapping tiles covering the same area. Coverage is checked by
simulation in tests/runtime/test_burden.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_pcam.errors import ModelFileError

LEVEL = 0.95
REPLICATES = 2000
SEED = 0
HALF_COUNT = 0.5  # Jeffreys prior on each bin's rate
BISECTIONS = 48  # the burden to 2^-48: far below any reported digit
METHOD = "mixture maximum likelihood over the stored operating points; parametric bootstrap 95% CI"


@dataclass(frozen=True)
class OperatingPoint:
    """Counts at one stored threshold on the labelled set (a tile is positive when P >= threshold)."""

    name: str
    threshold: float
    tp: int
    fn: int
    fp: int
    tn: int


def counted_where_chosen(card: Mapping[str, Any]) -> bool:
    """Whether the card's counts were taken at thresholds chosen on the same patches: `edge-pcam convert`
    without --tune-from-train (thresholds from the valid split the counts come from) or a calibrate from
    before it halved the lab's patches. The high-specificity point then looks better than it is, and the
    burden comes out high with an interval too narrow (benchmarks/results/burden-disjoint)."""
    block = card.get("operating_characteristics") or {}
    if block.get("split") == "calibration":
        return "halves" not in (card.get("calibration") or {})
    chosen_on = ((card.get("validation") or {}).get("thresholds_from") or {}).get("split")
    return block.get("split") == "valid" and chosen_on == "valid"


@dataclass(frozen=True)
class OperatingCharacteristics:
    """The card's `operating_characteristics`: which labelled set, how many of each class, the points."""

    split: str
    description: str
    n_positive: int
    n_negative: int
    points: tuple[OperatingPoint, ...]  # sorted by threshold
    median_sharpness: float | None = None  # of the labelled patches (None: not stored)
    same_patches: bool = False  # counted at thresholds chosen on the same patches (`counted_where_chosen`)

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> OperatingCharacteristics | None:
        """The block of a model card; None when the card has none (files before schema 2)."""
        block = card.get("operating_characteristics")
        if not block:
            return None
        try:
            points = tuple(sorted((OperatingPoint(name, float(p["threshold"]), int(p["tp"]), int(p["fn"]),
                                                  int(p["fp"]), int(p["tn"]))
                                   for name, p in block["points"].items()), key=lambda p: p.threshold))
            sharp = block.get("median_sharpness")
            oc = cls(str(block.get("split", "")), str(block.get("description", "")),
                     int(block["n_positive"]), int(block["n_negative"]), points,
                     None if sharp is None else float(sharp), counted_where_chosen(card))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(f"the model card's operating_characteristics is malformed ({exc!r})") from None
        oc.check()
        return oc

    def check(self) -> None:
        """Counts that add up and fall as the threshold rises (one labelled set); a one-line error otherwise."""
        if not self.points or self.n_positive < 1 or self.n_negative < 1:
            raise ModelFileError("the model card's operating_characteristics needs points and both classes")
        for p in self.points:
            if p.tp + p.fn != self.n_positive or p.fp + p.tn != self.n_negative or min(p.tp, p.fn, p.fp, p.tn) < 0:
                raise ModelFileError(f"operating point {p.name!r}: tp+fn and fp+tn must equal n_positive "
                                     f"({self.n_positive}) and n_negative ({self.n_negative})")
        for low, high in zip(self.points, self.points[1:]):
            if high.tp > low.tp or high.fp > low.fp:
                raise ModelFileError(f"operating points {low.name!r} and {high.name!r}: counts rise with the "
                                     "threshold, so they cannot come from one labelled set")

    def only(self, *names: str) -> OperatingCharacteristics:
        """The same counts restricted to the named points (one point: adjusted classify-and-count)."""
        points = tuple(p for p in self.points if p.name in names)
        if len(points) != len(names):
            raise KeyError(f"no operating point {sorted(set(names) - {p.name for p in points})}")
        return OperatingCharacteristics(self.split, self.description, self.n_positive, self.n_negative, points,
                                        self.median_sharpness)

    @property
    def thresholds(self) -> np.ndarray:
        return np.array([p.threshold for p in self.points])

    def bin_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Tumour and normal tiles of the labelled set per bin (below the first threshold, ..., above the last)."""
        above_pos = [self.n_positive, *(p.tp for p in self.points), 0]
        above_neg = [self.n_negative, *(p.fp for p in self.points), 0]
        return -np.diff(above_pos).astype(np.float64), -np.diff(above_neg).astype(np.float64)


@dataclass(frozen=True)
class BurdenEstimate:
    """The burden (fraction of tissue tiles holding tumour) and its interval, both in [0, 1]."""

    burden: float
    ci: tuple[float, float]
    tiles: int
    effective_tiles: float
    points: tuple[str, ...]
    split: str

    @property
    def method(self) -> str:
        """How the estimate was made, naming the points and where their counts come from."""
        return f"{METHOD} ({', '.join(self.points)}; rates from the {self.split} split)"


def raw_counts(probabilities: np.ndarray, thresholds: Mapping[str, float | None]) -> dict[str, Any]:
    """Tiles at or above each named threshold, and their fraction of all tiles (None without tiles)."""
    values = np.asarray(probabilities, np.float64).reshape(-1)
    counts: dict[str, Any] = {}
    for name, threshold in thresholds.items():
        if threshold is None:
            counts[name] = None
            continue
        positive = int((values >= threshold).sum())
        counts[name] = {"threshold": threshold, "positive_tiles": positive,
                        "fraction": positive / len(values) if len(values) else None}
    return counts


def mixture_mle(counts: np.ndarray, tumour: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """The burden in [0, 1] maximising sum_j counts_j log(pi tumour_j + (1 - pi) normal_j), per row.

    `counts`, `tumour`, `normal`: (..., bins); the rates are positive and each row sums to 1. The
    log-likelihood is concave in pi, so its derivative is bisected; an edge wins when the
    derivative has that sign all along.
    """
    diff = tumour - normal

    def slope(pi: np.ndarray) -> np.ndarray:
        return (counts * diff / (pi[..., None] * diff + normal)).sum(-1)

    low, high = np.zeros(counts.shape[:-1]), np.ones(counts.shape[:-1])
    at_zero, at_one = slope(low), slope(high)
    for _ in range(BISECTIONS):
        mid = (low + high) / 2
        rising = slope(mid) > 0
        low, high = np.where(rising, mid, low), np.where(rising, high, mid)
    return np.where(at_zero <= 0, 0.0, np.where(at_one >= 0, 1.0, (low + high) / 2))


def bin_rates(bin_counts: np.ndarray) -> np.ndarray:
    """Each bin's share of the counts (last axis), with the Jeffreys half count added to every bin."""
    return (bin_counts + HALF_COUNT) / (bin_counts.sum(-1, keepdims=True) + HALF_COUNT * bin_counts.shape[-1])


def estimate_burden(probabilities: np.ndarray, oc: OperatingCharacteristics, *, tile_weight: float = 1.0,
                    replicates: int = REPLICATES, seed: int = SEED) -> BurdenEstimate:
    """Burden of the tiles' `probabilities` (tissue tiles only) from the card's operating characteristics.

    `tile_weight` is the independent information per tile: (stride / tile side)^2 for overlapping
    tiles, 1 for tiles side by side.
    """
    values = np.asarray(probabilities, np.float64).reshape(-1)
    if not len(values):
        raise ValueError("no tiles: a burden needs at least one tissue tile")
    edges = oc.thresholds
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1).astype(np.float64)
    pos, neg = oc.bin_counts()

    tumour, normal = bin_rates(pos), bin_rates(neg)
    burden = float(mixture_mle(counts, tumour, normal))

    rng = np.random.default_rng(seed)
    effective = max(1, int(round(len(values) * min(1.0, tile_weight))))
    slide = rng.multinomial(effective, bin_rates(counts), size=replicates).astype(np.float64)
    tumour_r = bin_rates(rng.multinomial(oc.n_positive, tumour, size=replicates).astype(np.float64))
    normal_r = bin_rates(rng.multinomial(oc.n_negative, normal, size=replicates).astype(np.float64))
    draws = mixture_mle(slide, tumour_r, normal_r)
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    ci = (float(min(low, burden)), float(max(high, burden)))
    return BurdenEstimate(burden, ci, len(values), float(effective), tuple(p.name for p in oc.points), oc.split)
