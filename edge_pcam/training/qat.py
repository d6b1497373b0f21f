"""Quantization-aware training of the attention-CNN with tensorflow-model-optimization.

TFMOT's default registry quantizes Conv2D, Dense, MaxPooling2D, Reshape,
Softmax, GlobalAveragePooling1D and Dropout, but refuses the stock `Dot` and
`Rescaling` layers of the attention (SPEC section 3). Those get
`OutputQuantizeConfig`, which fake-quantizes only their output: they have no
weights, and their inputs are already quantized by the layers before them. The
whole model, the attention included, then converts to a fully int8 file.

A QAT model saved as .h5 has layers named `quant_<name>` and loads only inside
`quantize_scope()` (edge_pcam.training.modelio.load_model enters it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import tensorflow_model_optimization as tfmot
import tf_keras as keras

from edge_pcam.errors import ModelFileError
from edge_pcam.model import is_edge_pcam_model

_quant = tfmot.quantization.keras

OUTPUT_ONLY_LAYERS = (keras.layers.Dot, keras.layers.Rescaling)


class OutputQuantizeConfig(_quant.QuantizeConfig):
    """Fake-quantize a weightless layer's output only (8-bit, asymmetric, moving-average range)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_quant.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False,
                                                         symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


def custom_objects() -> dict:
    """Objects a saved QAT model needs besides TFMOT's own."""
    return {"OutputQuantizeConfig": OutputQuantizeConfig}


@contextlib.contextmanager
def quantize_scope() -> Iterator[None]:
    """TFMOT's quantize_scope with this module's QuantizeConfig: load QAT .h5 files inside it."""
    with _quant.quantize_scope(custom_objects()):
        yield


def is_qat_model(model: keras.Model) -> bool:
    """True for a model made by `quantize_model` (its layers are wrapped as quant_*)."""
    return any(layer.name.startswith("quant_") for layer in model.layers)


def quantize_model(model: keras.Model) -> keras.Model:
    """The QAT version of a float edge-pcam model (weights copied), ready to compile and fine-tune."""
    if not is_edge_pcam_model(model):
        raise ModelFileError(f"{model.name}: not an edge-pcam model (no pool3/logit/q/k/v/o layers)")
    if is_qat_model(model):
        raise ModelFileError(f"{model.name}: already quantization-aware")

    def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, OUTPUT_ONLY_LAYERS):
            return _quant.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()),
                                                  quantize_config=OutputQuantizeConfig())
        return _quant.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()))

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    with quantize_scope():
        qat = _quant.quantize_apply(annotated)
    _pin_input_range(qat)
    return qat


def _pin_input_range(qat: keras.Model) -> None:
    """Start the input quantizer's range at [0, 1], the pixel range.

    The input QuantizeLayer keeps the min and max of every value it has seen;
    starting from [0, 1] it stays there for inputs in [0, 1], so the converted
    file's uint8 input has scale 1/255 and takes raw pixels, whatever the
    darkest and brightest pixel of the fine-tuning data.
    """
    for layer in qat.layers:
        if type(layer).__name__ == "QuantizeLayer":  # not exported by tfmot's public API
            for var in layer.weights:
                if var.name.endswith("_min:0"):
                    var.assign(0.0)
                elif var.name.endswith("_max:0"):
                    var.assign(1.0)


QAT_EPOCHS = 3
QAT_LR_FACTOR = 0.1
SOURCE_FILE = "qat_source.json"


def qat_recipe(model_path: Path, recipe: str | Path | None = None, *, epochs: int | None = None,
               lr: float | None = None, batch_size: int | None = None):
    """The fine-tuning recipe: `recipe`, else the source run's recipe.toml, else `pcam`;
    a tenth of its learning rate and QAT_EPOCHS epochs unless given."""
    from edge_pcam.training.recipe import load_recipe

    beside = model_path.parent / "recipe.toml"
    base = load_recipe(recipe if recipe is not None else (beside if beside.is_file() else "pcam"))
    return base.with_overrides({
        "training.epochs": epochs if epochs is not None else QAT_EPOCHS,
        "optimizer.lr": lr if lr is not None else base["optimizer"]["lr"] * QAT_LR_FACTOR,
        "training.batch_size": batch_size,
    })


def qat_finetune(model_path: str | Path, data: str | None, out: str | Path, *,
                 recipe: str | Path | None = None, epochs: int | None = None, lr: float | None = None,
                 batch_size: int | None = None, resume: bool = False, overwrite: bool = False,
                 strategy: str = "auto", verbose: int | None = None, log=None):
    """Quantization-aware fine-tuning of the trained float model `model_path` into the run folder `out`.

    Runs edge_pcam.training.fit.train with the QAT model as its starting point:
    the same callbacks, history, TensorBoard logs, best.h5 / final.h5 (QAT .h5
    files), metrics.json and resume behaviour as `edge-pcam train`. The run
    folder also gets qat_source.json naming the source model and its SHA-256.
    """
    from edge_pcam.runtime.metadata import sha256_file
    from edge_pcam.training import fit
    from edge_pcam.training.modelio import load_model
    from edge_pcam.runtime.fileio import atomic_write_json

    model_path = Path(model_path)
    source = load_model(model_path)
    if not is_edge_pcam_model(source):
        raise ModelFileError(f"{model_path}: not an edge-pcam model (no pool3/logit/q/k/v/o layers)")
    if is_qat_model(source):
        raise ModelFileError(f"{model_path}: already quantization-aware; give the float model it came from")
    del source
    chosen = None if resume and recipe is None and epochs is None and lr is None and batch_size is None \
        else qat_recipe(model_path, recipe, epochs=epochs, lr=lr, batch_size=batch_size)

    def builder(_recipe) -> keras.Model:
        return quantize_model(load_model(model_path))

    kwargs = {"log": log} if log is not None else {}
    result = fit.train(data, out, chosen, strategy=strategy, resume=resume, overwrite=overwrite,
                       verbose=verbose, model_builder=builder, **kwargs)
    if result.is_chief:
        atomic_write_json(Path(out) / SOURCE_FILE, {"source_model": str(model_path.resolve()),
                                                    "sha256": sha256_file(model_path)}, indent=2)
    return result
