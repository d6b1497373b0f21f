"""`edge-pcam upgrade`: a file as an earlier edge-pcam wrote it becomes the graph that version ran, re-carded.

The legacy fixture (tests/fixtures/legacy) has asymmetric K/V quantization and a schema-1 card; that
version made K/V symmetric in memory at every load. Runs in both venvs.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edge_pcam.errors import EdgePcamError, EdgePcamWarning
from edge_pcam.runtime.calibrate import calibrate
from edge_pcam.runtime.flatbuffer import Table
from edge_pcam.runtime.gradcam import load_companion
from edge_pcam.runtime.interpreter import load_model, open_interpreter, resolve_runtime
from edge_pcam.runtime.metadata import VERIFIED, inspect_file, metadata_from_bytes, model_bytes, read_metadata
from edge_pcam.runtime.symmetric_matmul import BATCH_MATMUL, symmetric_matmul_operands

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from card_support import COMPANION, LEGACY_INT8, raw_file, schema1_card  # noqa: E402


def matmul_operand_zero_points(data: bytes) -> list[int]:
    """The zero point of every BATCH_MATMUL's second operand (what XNNPACK needs at 0)."""
    model = Table.root(data)
    codes = [max(int(c.scalar(0, "b")), int(c.scalar(3, "i"))) for c in model.tables(1)]
    graph = model.tables(2)[0]
    tensors = graph.tables(0)
    found = []
    for op in graph.tables(3):
        if codes[int(op.scalar(0, "I"))] == BATCH_MATMUL:
            start, _ = tensors[op.ints(1)[1]].table(4).vector(3)
            found.append(struct.unpack_from("<q", data, start)[0])
    return found


@pytest.fixture()
def legacy(tmp_path) -> Path:
    """The legacy int8 file beside a schema-1 companion it names by digest, in a folder of their own."""
    folder = tmp_path / "old"
    folder.mkdir()
    companion = folder / "tiny_gradcam.tflite"
    companion.write_bytes(raw_file(model_bytes(COMPANION.read_bytes()),
                                   schema1_card(metadata_from_bytes(COMPANION.read_bytes()))))
    card = metadata_from_bytes(LEGACY_INT8.read_bytes())
    card["companion"] = {"file": companion.name, "sha256": hashlib.sha256(companion.read_bytes()).hexdigest()}
    path = folder / "tiny_int8.tflite"
    path.write_bytes(raw_file(model_bytes(LEGACY_INT8.read_bytes()), card))
    return path


def test_upgrade_settles_the_quantization_and_recards(legacy, tmp_path):
    from edge_pcam.runtime.upgrade import upgrade

    before = legacy.read_bytes()
    assert any(z != 0 for z in matmul_operand_zero_points(model_bytes(before)))  # as that version wrote it
    out = tmp_path / "new" / "tiny_int8.tflite"
    report = upgrade(legacy, out)
    assert legacy.read_bytes() == before  # the original never changes
    assert report.symmetric_tensors > 0 and "identical outputs" in report.check
    new = out.read_bytes()
    assert matmul_operand_zero_points(model_bytes(new)) == [0, 0]
    meta = read_metadata(out)
    assert meta["schema_version"] == 2 and inspect_file(out)["integrity"]["status"] == VERIFIED
    old_meta = metadata_from_bytes(before)
    assert meta["thresholds"] == old_meta["thresholds"] and meta["metrics"] == old_meta["metrics"]
    oc = meta["operating_characteristics"]
    decision = old_meta["metrics"]["decision"]
    assert oc["points"]["decision"] == {"threshold": decision["threshold"], **{
        k: decision[k] for k in ("tp", "fn", "fp", "tn")}}
    assert oc["n_positive"] == decision["tp"] + decision["fn"] and oc["split"] == "valid"
    assert meta["upgraded"]["from_schema"] == 1
    assert meta["upgraded"]["original_sha256"] == hashlib.sha256(before).hexdigest()

    # the upgraded bytes compute exactly what that version computed (its load-time rewrite, done here by hand)
    x = np.random.default_rng(5).integers(0, 256, (6, 96, 96, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an upgraded file loads without the old-file warning
        model = load_model(out, threads=1)
    as_before, _ = symmetric_matmul_operands(model_bytes(before))
    it = open_interpreter(as_before, resolve_runtime("auto"), 1)
    inp = it.get_input_details()[0]
    prob = next(d for d in it.get_output_details() if tuple(d["shape"]) == (1, 1))
    scale, zero = prob["quantization"]
    for patch, p in zip(x, model.predict(x)):
        it.set_tensor(inp["index"], patch[None])
        it.invoke()
        assert p == (np.float32(it.get_tensor(prob["index"])[0, 0]) - np.float32(zero)) * np.float32(scale)

    # its companion came along, re-carded, and is the one the new file names
    companion = load_companion(model)
    assert companion.path == out.parent / "tiny_gradcam.tflite" and read_metadata(companion.path)["schema_version"] == 2


def test_upgrade_beside_the_original_keeps_both_pairs_intact(legacy):
    from edge_pcam.runtime.upgrade import upgrade

    out = legacy.with_name("tiny_int8_v2.tflite")
    report = upgrade(legacy, out)
    assert report.companion == legacy.with_name("tiny_int8_v2_gradcam.tflite")  # not over the old companion
    assert load_companion(load_model(out)).path == report.companion
    with pytest.warns(EdgePcamWarning):
        assert load_companion(load_model(legacy)).path == legacy.with_name("tiny_gradcam.tflite")


def test_upgrade_refusals_and_the_cli(legacy, tmp_path):
    from edge_pcam.runtime.upgrade import upgrade

    with pytest.raises(EdgePcamError, match="never overwrites"):
        upgrade(legacy, legacy)
    with pytest.raises(EdgePcamError, match="nothing to upgrade"):
        upgrade(COMPANION.parent / "tiny_int8.tflite", tmp_path / "x.tflite")
    with pytest.raises(EdgePcamError, match="upgrade the classifier"):
        upgrade(legacy.with_name("tiny_gradcam.tflite"), tmp_path / "y.tflite")
    assert not (tmp_path / "x.tflite").exists() and not (tmp_path / "y.tflite").exists()
    with pytest.raises(EdgePcamError, match=r"edge-pcam upgrade .* first"):
        calibrate(legacy, "synthetic:40:12", tmp_path / "cal.tflite", force=True)
    proc = subprocess.run([sys.executable, "-m", "edge_pcam", "upgrade", str(legacy), str(tmp_path / "z.tflite")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "schema 1 -> 2" in proc.stdout and "verified: identical outputs" in proc.stdout


def test_legacy_card_without_counts_cannot_be_upgraded(tmp_path):
    from edge_pcam.runtime.upgrade import upgrade

    card = metadata_from_bytes(LEGACY_INT8.read_bytes())
    card["metrics"] = None
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(raw_file(model_bytes(LEGACY_INT8.read_bytes()), card))
    with pytest.raises(EdgePcamError, match="no counts"):
        upgrade(bare, tmp_path / "out.tflite")
    assert not (tmp_path / "out.tflite").exists()
