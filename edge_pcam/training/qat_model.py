"""The quantization-aware model: TFMOT's quantize configuration for the attention-CNN.

TFMOT's default registry quantizes Conv2D, Dense, MaxPooling2D, Reshape,
Softmax, GlobalAveragePooling1D and Dropout, but refuses the stock `Dot` and
`Rescaling` layers of the attention (SPEC section 3). Those get
`OutputQuantizeConfig`, which fake-quantizes only their output: they have no
weights, and their inputs are already quantized by the layers before them. The
whole model, the attention included, then converts to a fully int8 file.

A QAT model saved as .h5 has layers named `quant_<name>` and loads only inside
`quantize_scope()` (edge_pcam.training.modelio.load_model enters it). This
module depends on nothing else of the training side, so the loader, the
fine-tuning run (edge_pcam.training.qat) and the exporter all import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
