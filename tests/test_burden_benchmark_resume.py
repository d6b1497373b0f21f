"""benchmarks/burden.py resumes only the mosaics scanned with the same model file.

Its records.jsonl outlives a model change (the bundled file is replaced when a new model
ships): a record made with another model, or before records named theirs, must be scanned
again, or the report mixes the new card's rates with the old model's tiles.
"""

from __future__ import annotations

import json

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
