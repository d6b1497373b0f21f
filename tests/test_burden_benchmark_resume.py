"""benchmarks/burden.py resumes only the mosaics scanned with the same model file.

Its records.jsonl outlives a model change (the bundled file is replaced when a new model
ships): a record made with another model, or before records named theirs, must be scanned
again, or the report mixes the new card's rates with the old model's tiles.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "burden.py"


def _module():
    spec = importlib.util.spec_from_file_location("burden_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_only_records_of_this_model_file_are_reused(tmp_path):
    records = tmp_path / "records.jsonl"
    lines = [{"block": 4, "seed": 1, "model_sha256": "a" * 64, "truth": 1},
             {"block": 4, "seed": 2, "model_sha256": "b" * 64, "truth": 2},
             {"block": 8, "seed": 3, "truth": 3}]  # written before records named their model
    records.write_text("".join(json.dumps(r) + "\n" for r in lines))
    finished = _module().finished
    assert list(finished(records, "a" * 64)) == [(4, 1)]
    assert list(finished(records, "b" * 64)) == [(4, 2)]
    assert finished(records, "c" * 64) == {}
    assert finished(tmp_path / "absent.jsonl", "a" * 64) == {}
