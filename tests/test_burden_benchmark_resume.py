"""benchmarks/burden.py resumes only the mosaics scanned with the same model file.

Its records.jsonl outlives a model change (the bundled file is replaced when a new model
ships): a record made with another model, or before records named theirs, must be scanned
again, or the report mixes the new card's rates with the old model's tiles.
"""

from __future__ import annotations

import json

import pytest

from script_support import benchmark_script


def test_only_records_made_the_same_way_are_reused(tmp_path):
    records = tmp_path / "records.jsonl"
    a = {"model_sha256": "a" * 64, "data": "/data/subset", "upsample": "nearest"}
    lines = [{"block": 4, "seed": 1, **a, "truth": 1},
             {"block": 4, "seed": 2, **a, "model_sha256": "b" * 64},          # another model
             {"block": 4, "seed": 3, **a, "data": "/data/other"},            # other patches
             {"block": 4, "seed": 4, **a, "upsample": "bicubic"},            # other mosaics
             {"block": 8, "seed": 5, "model_sha256": "a" * 64, "truth": 3}]  # before records said how
    records.write_text("".join(json.dumps(r) + "\n" for r in lines))
    module = benchmark_script("burden")
    assert list(module.finished(records, a)) == [(4, 1)]
    assert list(module.finished(records, {**a, "model_sha256": "b" * 64})) == [(4, 2)]
    assert module.finished(records, {**a, "model_sha256": "c" * 64}) == {}
    assert module.finished(tmp_path / "absent.jsonl", a) == {}


def test_each_model_and_upsampling_scans_into_its_own_folder(tmp_path):
    work = benchmark_script("burden").model_work
    folders = {work(tmp_path, sha, up) for sha in ("a" * 64, "b" * 64) for up in ("nearest", "bicubic")}
    assert len(folders) == 4 and all(f.parent == tmp_path for f in folders)


def test_the_chance_simulation_lays_out_mosaics_as_they_were_built():
    """The report's chance section finds each scanned tile's patch again from the mosaic's seed: the layout
    must be the one build_mosaic drew (a draw added to either would pair tiles with the wrong patches)."""
    import numpy as np
    module = benchmark_script("burden")

    class Split:  # 40 patches: 0-29 normal, 30-39 tumour; each patch's pixels hold its index
        def read(self, order):
            self.order = np.array(order)
            return np.stack([np.full((96, 96, 3), i, np.uint8) for i in order])

    normal, tumour = np.arange(30), np.arange(30, 40)
    module.GRID = 5  # 25 tiles, a 3 x 3 block
    split = Split()
    image, labels = module.build_mosaic(split, normal, tumour, 3, np.random.default_rng(7))
    again_labels, again_order = module.mosaic_layout(normal, tumour, 3, np.random.default_rng(7))
    assert np.array_equal(labels, again_labels) and np.array_equal(split.order, again_order)
    side = 96 * module.UPSAMPLE
    shown = image[side // 2::side, side // 2::side, 0].reshape(-1)  # each tile's centre: its patch index
    assert np.array_equal(shown, again_order)
    assert labels.sum() == 9 and set(again_order[labels.reshape(-1) == 1]) <= set(tumour)


def test_the_chance_simulation_counts_misses_against_a_known_truth(tmp_path):
    """A model that tells every patch right misses nothing; one that calls every tumour patch normal finds
    no block (every non-empty category wrong) and misses the burden by the planted share: by 1.6 points at
    4 x 4 (within the 2-point goal), by 6.25 or more at 8 x 8 and larger."""
    import numpy as np

    from edge_pcam.runtime.burden import OperatingCharacteristics
    module = benchmark_script("burden")
    module.CHANCE_MOSAICS = 20
    normal, tumour = np.arange(1100), np.arange(1100, 1400)
    points = {"decision": {"threshold": 0.5, "tp": 10000, "fn": 0, "fp": 0, "tn": 10000}}
    oc = OperatingCharacteristics.from_card({"operating_characteristics": {
        "split": "valid", "description": "perfect", "n_positive": 10000, "n_negative": 10000, "points": points}})
    for name, tumour_p, burden, category in (("right", 1.0, [0] * 5, [0] * 5),
                                             ("blind", 0.0, [0, 0, 1, 1, 1], [0, 1, 1, 1, 1])):
        scans = tmp_path / name
        scans.mkdir()
        p = np.where(np.arange(1400) >= 1100, tumour_p, 0.0)
        records = []
        for block, seed in ((0, 1), (16, 2)):  # two scanned mosaics: the patches they hold get a probability
            order = module.mosaic_layout(normal, tumour, block, np.random.default_rng(seed))[1]
            np.savez(scans / f"grid_{block}_{seed}.npz", probabilities=p[order])
            records.append({"block": block, "seed": seed})
        chance = module.chance_of_targets(scans, records, oc, 0.5, (normal, tumour), 20, 3)
        assert [chance["sizes"][str(b)]["burden"] for b in module.SIZES] == burden, name
        assert [chance["sizes"][str(b)]["category"] for b in module.SIZES] == category, name
        assert chance["run_meets"]["burden"] == (1.0 if name == "right" else 0.0)
        assert chance["run_meets"]["category"] == (1.0 if name == "right" else 0.0)
    # a model that finds two thirds of the tumour patches: some mosaics of a size miss, some do not, and a run
    # of 20 per size meets a goal only when all 20 mosaics of every size do (independent mosaics)
    p = np.where(np.arange(1400) >= 1100, (np.arange(1400) % 3 != 0).astype(float), 0.0)
    scans = tmp_path / "third"
    scans.mkdir()
    for record in records:
        order = module.mosaic_layout(normal, tumour, record["block"], np.random.default_rng(record["seed"]))[1]
        np.savez(scans / f"grid_{record['block']}_{record['seed']}.npz", probabilities=p[order])
    chance = module.chance_of_targets(scans, records, oc, 0.5, (normal, tumour), 20, 3)
    assert 0 < chance["sizes"]["4"]["category"] < 1
    for goal in ("burden", "category"):
        assert chance["run_meets"][goal] == pytest.approx(
            np.prod([(1 - size[goal]) ** 20 for size in chance["sizes"].values()]))


def test_disjoint_halves_split_each_class_in_two_and_share_no_patch():
    import numpy as np
    module = benchmark_script("burden")
    labels = np.array([0] * 31 + [1] * 20)
    card, mosaics = module.halves(labels, 13000)
    assert not set(card) & set(mosaics) and sorted([*card, *mosaics]) == list(range(len(labels)))
    assert [int(np.sum(labels[card] == k)) for k in (0, 1)] == [15, 10]
    assert np.array_equal(module.halves(labels, 13000)[0], card)  # the seed fixes the cut
    assert not np.array_equal(module.halves(labels, 13001)[0], card)


def test_mosaic_patches_are_distinct_while_the_pool_allows_and_repeat_only_when_it_is_short():
    """The whole valid split draws as before (records scanned earlier stay valid); --disjoint's half,
    with fewer normal patches than a mosaic has normal tiles, repeats them, from its own pool only."""
    import numpy as np
    module = benchmark_script("burden")
    module.GRID = 5  # 25 tiles, a 3 x 3 block: 16 normal, 9 tumour
    normal, tumour = np.arange(100, 130), np.arange(200, 210)
    labels, order = module.mosaic_layout(normal, tumour, 3, np.random.default_rng(3))
    rng = np.random.default_rng(3)  # the draw as it was written before pools could be short
    flat = np.zeros((5, 5), bool)
    r, c = rng.integers(0, 3, size=2)
    flat[r:r + 3, c:c + 3] = True
    expected = np.empty(25, np.int64)
    expected[~flat.reshape(-1)] = rng.choice(normal, 16, replace=False)
    expected[flat.reshape(-1)] = rng.choice(tumour, 9, replace=False)
    assert np.array_equal(order, expected) and np.array_equal(labels.astype(bool), flat)
    short = np.arange(100, 110)  # 10 normal patches for 16 normal tiles
    labels, order = module.mosaic_layout(short, tumour, 3, np.random.default_rng(4))
    drawn = order[labels.reshape(-1) == 0]
    assert set(drawn) <= set(short) and len(set(drawn)) < len(drawn)
    assert len(set(order[labels.reshape(-1) == 1])) == 9
