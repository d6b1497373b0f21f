"""The tumour-burden estimator: the card's counts, adjusted classify-and-count as its one-threshold case,
the extremes, and the 95% interval's coverage by simulation with a known truth."""

from __future__ import annotations

import numpy as np
import pytest

from edge_pcam.errors import ModelFileError
from edge_pcam.runtime.burden import OperatingCharacteristics, estimate_burden, mixture_mle, raw_counts

THRESHOLDS = {"triage": 0.25, "decision": 0.5, "high_specificity": 0.9}
# Where a tile's probability falls (bins cut at the thresholds above): tumour and normal tiles.
TUMOUR_BINS = np.array([0.08, 0.10, 0.40, 0.42])
NORMAL_BINS = np.array([0.72, 0.16, 0.11, 0.01])
BIN_VALUES = np.array([0.1, 0.3, 0.7, 0.95])  # one probability inside each bin


def card_block(n_positive: int, n_negative: int, pos_bins: np.ndarray, neg_bins: np.ndarray) -> dict:
    """An `operating_characteristics` card block from per-bin counts of each class."""
    points = {}
    for k, (name, threshold) in enumerate(THRESHOLDS.items(), start=1):
        tp, fp = int(pos_bins[k:].sum()), int(neg_bins[k:].sum())
        points[name] = {"threshold": threshold, "tp": tp, "fn": n_positive - tp, "fp": fp, "tn": n_negative - fp}
    return {"operating_characteristics": {"split": "valid", "description": "test", "n_positive": n_positive,
                                          "n_negative": n_negative, "points": points}}


def simulated_card(rng: np.random.Generator, n_positive: int, n_negative: int) -> OperatingCharacteristics:
    """Counts a labelled set of that size would give with the true bin rates above."""
    return OperatingCharacteristics.from_card(card_block(
        n_positive, n_negative, rng.multinomial(n_positive, TUMOUR_BINS), rng.multinomial(n_negative, NORMAL_BINS)))


def simulated_slide(rng: np.random.Generator, tiles: int, tumour_tiles: int) -> np.ndarray:
    """Tile probabilities of a slide with that many tumour tiles, drawn from the true bin rates."""
    bins = np.r_[rng.choice(4, tumour_tiles, p=TUMOUR_BINS), rng.choice(4, tiles - tumour_tiles, p=NORMAL_BINS)]
    return BIN_VALUES[bins]


def test_card_counts_are_read_checked_and_cut_into_bins():
    assert OperatingCharacteristics.from_card({"metrics": {}}) is None  # older files: no block
    block = card_block(100, 200, np.array([10, 20, 30, 40]), np.array([120, 50, 20, 10]))
    oc = OperatingCharacteristics.from_card(block)
    assert [p.name for p in oc.points] == ["triage", "decision", "high_specificity"]
    pos, neg = oc.bin_counts()
    assert pos.tolist() == [10, 20, 30, 40] and neg.tolist() == [120, 50, 20, 10]
    assert [p.name for p in oc.only("decision").points] == ["decision"]

    broken = card_block(100, 200, np.array([10, 20, 30, 40]), np.array([120, 50, 20, 10]))
    broken["operating_characteristics"]["points"]["decision"]["fn"] += 1  # tp + fn != n_positive
    with pytest.raises(ModelFileError, match="n_positive"):
        OperatingCharacteristics.from_card(broken)
    rising = card_block(100, 200, np.array([10, 20, 30, 40]), np.array([120, 50, 20, 10]))
    points = rising["operating_characteristics"]["points"]
    points["high_specificity"].update(tp=95, fn=5)  # more positives at a higher threshold
    with pytest.raises(ModelFileError, match="rise with the threshold"):
        OperatingCharacteristics.from_card(rising)
    with pytest.raises(ModelFileError, match="malformed"):
        OperatingCharacteristics.from_card({"operating_characteristics": {"points": {"decision": {}}}})


def test_one_threshold_is_forman_adjusted_classify_and_count():
    # 1000 tumour / 1000 normal labelled tiles: TPR 0.8, FPR 0.1. A slide of 1000 tiles, 240 positive:
    # q = 0.24, so (q - FPR) / (TPR - FPR) = 0.14 / 0.7 = 0.2.
    oc = OperatingCharacteristics.from_card({"operating_characteristics": {
        "split": "valid", "description": "", "n_positive": 1000, "n_negative": 1000,
        "points": {"decision": {"threshold": 0.5, "tp": 800, "fn": 200, "fp": 100, "tn": 900}}}})
    slide = np.r_[np.full(240, 0.9), np.full(760, 0.1)]
    assert estimate_burden(slide, oc).burden == pytest.approx(0.2, abs=1e-3)
    # Below the false-positive rate the estimate is clipped to 0, above the true-positive rate to 1.
    assert estimate_burden(np.r_[np.full(50, 0.9), np.full(950, 0.1)], oc).burden == 0.0
    assert estimate_burden(np.r_[np.full(900, 0.9), np.full(100, 0.1)], oc).burden == 1.0


def test_mixture_likelihood_is_maximised():
    counts = np.array([700.0, 130.0, 120.0, 50.0])
    a, b = TUMOUR_BINS, NORMAL_BINS
    grid = np.linspace(0, 1, 100_001)
    loglik = (counts * np.log(grid[:, None] * a + (1 - grid[:, None]) * b)).sum(axis=1)
    assert float(mixture_mle(counts, a, b)) == pytest.approx(grid[np.argmax(loglik)], abs=2e-5)


@pytest.mark.parametrize("tumour_fraction", [0.0, 1.0])
def test_empty_and_all_tumour_slides(tumour_fraction):
    rng = np.random.default_rng(1)
    oc = simulated_card(rng, 1500, 1500)
    tiles = 800
    estimate = estimate_burden(simulated_slide(rng, tiles, int(tiles * tumour_fraction)), oc)
    assert abs(estimate.burden - tumour_fraction) < 0.02
    assert estimate.ci[0] <= tumour_fraction <= estimate.ci[1]
    assert estimate.ci[1] - estimate.ci[0] < 0.08


def test_estimate_is_unbiased_where_the_raw_count_is_not():
    rng = np.random.default_rng(2)
    oc = simulated_card(rng, 1500, 1500)
    errors, raw = [], []
    for _ in range(40):
        slide = simulated_slide(rng, 1024, 64)  # 6.25% tumour
        errors.append(estimate_burden(slide, oc, replicates=50).burden - 0.0625)
        raw.append(raw_counts(slide, {"decision": 0.5})["decision"]["fraction"] - 0.0625)
    assert abs(np.mean(errors)) < 0.005
    assert np.mean(raw) > 0.08  # false positives of 960 normal tiles at 12%: about +9 points


# (labelled tiles per class, slide tiles, tumour tiles): a small card on a large slide (the rates'
# uncertainty dominates), a large card on a small slide (the tile count dominates), and in between.
COVERAGE_CASES = [(60, 4000, 400), (100_000, 60, 6), (1500, 1024, 64), (1500, 1024, 0), (300, 500, 250)]


@pytest.mark.parametrize("card_size,tiles,tumour", COVERAGE_CASES)
def test_interval_covers_the_truth_95_percent_of_the_time(card_size, tiles, tumour):
    rng = np.random.default_rng([card_size, tiles, tumour])
    trials = 150
    covered = 0
    for _ in range(trials):
        oc = simulated_card(rng, card_size, card_size)
        estimate = estimate_burden(simulated_slide(rng, tiles, tumour), oc, replicates=400)
        covered += estimate.ci[0] <= tumour / tiles <= estimate.ci[1]
    assert covered / trials >= 0.90, f"coverage {covered / trials:.2f}"


def test_interval_is_reproducible_and_overlapping_tiles_widen_it():
    rng = np.random.default_rng(3)
    oc = simulated_card(rng, 100_000, 100_000)
    slide = simulated_slide(rng, 2000, 200)
    first, again = estimate_burden(slide, oc), estimate_burden(slide, oc)
    assert first.ci == again.ci
    quarter = estimate_burden(slide, oc, tile_weight=0.25)  # stride half the tile: 4 tiles per tile's area
    assert quarter.burden == first.burden and quarter.effective_tiles == 500
    width, quarter_width = first.ci[1] - first.ci[0], quarter.ci[1] - quarter.ci[0]
    assert 1.6 < quarter_width / width < 2.5  # about sqrt(4)
    with pytest.raises(ValueError, match="no tiles"):
        estimate_burden(np.array([]), oc)


def test_raw_counts_at_each_threshold():
    counts = raw_counts(np.array([0.1, 0.5, 0.7, 0.97]), {"decision": 0.5, "high_specificity": 0.96,
                                                           "missing": None})
    assert counts["decision"] == {"threshold": 0.5, "positive_tiles": 3, "fraction": 0.75}
    assert counts["high_specificity"]["positive_tiles"] == 1 and counts["missing"] is None
    assert raw_counts(np.array([]), {"decision": 0.5})["decision"]["fraction"] is None
