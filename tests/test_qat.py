"""Quantization-aware training: the whole model quantized, saved and reloaded, fine-tuned through the training loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_pcam.errors import EdgePcamError, ModelFileError

pytestmark = pytest.mark.tf


def test_every_layer_is_quantized_attention_included():
    from edge_pcam.model import build_model
    from edge_pcam.training.qat_model import OutputQuantizeConfig, is_qat_model, quantize_model

    float_model = build_model()
    qat = quantize_model(float_model)
    assert is_qat_model(qat) and not is_qat_model(float_model)
    names = [layer.name for layer in qat.layers]
    wrapped = {n.removeprefix("quant_") for n in names if n.startswith("quant_")}
    assert wrapped == {layer.name for layer in float_model.layers[1:]}
    for name in ("scores", "scale", "context"):
        assert isinstance(qat.get_layer(f"quant_{name}").quantize_config, OutputQuantizeConfig)
    np.testing.assert_array_equal(qat.get_layer("quant_q").weights[0].numpy(),
                                  float_model.get_layer("q").kernel.numpy())


def test_refuses_what_it_cannot_quantize():
    import tf_keras as keras

    from edge_pcam.model import build_model
    from edge_pcam.training.qat_model import quantize_model

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ModelFileError, match="not an edge-pcam model"):
        quantize_model(other)
    with pytest.raises(ModelFileError, match="already quantization-aware"):
        quantize_model(quantize_model(build_model()))


def test_input_range_stays_pixel_range_and_h5_round_trip(tmp_path):
    """Fine-tuning on patches without black or white pixels keeps the input range [0, 1]."""
    import tf_keras as keras

    from edge_pcam.model import build_model
    from edge_pcam.training.modelio import load_model, save_model_atomic
    from edge_pcam.training.qat_model import quantize_model

    qat = quantize_model(build_model())
    qat.compile(keras.optimizers.Adam(1e-4), "binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, (8, 96, 96, 3)).astype(np.float32)
    qat.fit(x, np.array([0, 1] * 4, np.float32), batch_size=4, epochs=1, verbose=0)
    (input_quantizer,) = [layer for layer in qat.layers if type(layer).__name__ == "QuantizeLayer"]
    ranges = {w.name.split("/")[-1]: float(w.numpy()) for w in input_quantizer.weights
              if "_min" in w.name or "_max" in w.name}
    assert sorted(ranges.values()) == [0.0, 1.0]

    path = save_model_atomic(qat, tmp_path / "qat.h5")
    again = load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6)


def test_qat_finetune_uses_the_training_loop(tiny_model_h5, tmp_path):
    from edge_pcam.runtime.metadata import sha256_file
    from edge_pcam.training.modelio import load_model
    from edge_pcam.training.qat import SOURCE_FILE, qat_finetune
    from edge_pcam.training.qat_model import is_qat_model

    run = tmp_path / "qat-run"
    result = qat_finetune(tiny_model_h5, "synthetic:40", run, epochs=1, batch_size=8, verbose=0,
                          overrides={"optimizer.lr_schedule": "constant"}, log=lambda _m: None)
    assert result.epochs_run == 1
    for name in ("best.h5", "final.h5", "history.csv", "metrics.json", "recipe.toml", "versions.json", "data.json"):
        assert (run / name).is_file(), name
    assert any((run / "logs").rglob("*"))
    assert is_qat_model(load_model(run / "best.h5"))
    recipe = (run / "recipe.toml").read_text()
    assert "epochs = 1" in recipe and "lr = 0.0001" in recipe and 'lr_schedule = "constant"' in recipe
    source = json.loads((run / SOURCE_FILE).read_text())
    assert source["sha256"] == sha256_file(tiny_model_h5)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["thresholds"]) == {"decision", "triage", "high_specificity"}
    with pytest.raises(EdgePcamError, match="finished run"):
        qat_finetune(tiny_model_h5, "synthetic:40", run, epochs=1, batch_size=8, verbose=0, log=lambda _m: None)
    with pytest.raises(ModelFileError, match="already quantization-aware"):
        qat_finetune(run / "best.h5", "synthetic:40", tmp_path / "again", epochs=1, batch_size=8, verbose=0)


def test_qat_recipe_starts_from_the_source_run_and_takes_overrides(tmp_path):
    """A tenth of the source run's learning rate and three epochs by default; --lr, --epochs and --set win."""
    from edge_pcam.errors import RecipeError
    from edge_pcam.training.qat import qat_recipe

    (tmp_path / "recipe.toml").write_text('[optimizer]\nlr = 2e-3\nlr_schedule = "cosine"\nwarmup_epochs = 1\n'
                                          "[training]\nepochs = 30\nbatch_size = 32\n")
    model = tmp_path / "best.h5"  # only its folder is read
    default = qat_recipe(model)
    assert (default["training"]["epochs"], default["optimizer"]["lr"]) == (3, pytest.approx(2e-4))
    assert (default["optimizer"]["lr_schedule"], default["training"]["batch_size"]) == ("cosine", 32)
    chosen = qat_recipe(model, epochs=1, lr=5e-5,
                        overrides={"optimizer.warmup_epochs": 0, "optimizer.lr_schedule": "constant"})
    assert (chosen["training"]["epochs"], chosen["optimizer"]["lr"]) == (1, 5e-5)
    assert (chosen["optimizer"]["warmup_epochs"], chosen["optimizer"]["lr_schedule"]) == (0, "constant")
    assert qat_recipe(tmp_path / "elsewhere" / "best.h5")["optimizer"]["lr"] == pytest.approx(1e-4)  # pcam's 1e-3
    with pytest.raises(RecipeError, match="optimizer.nope"):
        qat_recipe(model, overrides={"optimizer.nope": 1})


def test_qat_command_takes_lr_and_set(tiny_model_h5, tmp_path, monkeypatch, capsys):
    """`edge-pcam qat --help` offers --lr and --set; a bad --set is a one-line error before any training."""
    from test_convert_cli import one_line_error, run_cli

    code, out, _ = run_cli(["qat", "--help"], monkeypatch, capsys)
    assert code == 0 and "--lr" in out and "--set" in out and "--epochs" in out
    code, _, err = run_cli(["qat", tiny_model_h5, "--data", "synthetic:30", "--out", tmp_path / "q",
                            "--set", "optimizer.nope=1"], monkeypatch, capsys)
    assert code == 2 and "optimizer.nope" in one_line_error(err)
    assert not (tmp_path / "q").exists()
