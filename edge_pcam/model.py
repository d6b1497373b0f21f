"""The design's attention-CNN (SPEC section 1), built with tf_keras (Keras 2).

Every layer is a stock Keras layer with a stable name, so that
tensorflow-model-optimization can quantize the whole model (the attention
included) and the exporter can find `pool3` and `logit` by name:

    conv1 pool1 conv2 pool2 conv3 pool3            CNN backbone, 12x12x256
    tokens q k v scores scale attn context o       self-attention, 144x128
    gap fc dropout logit prob                      head

`logit` is Dense(1) without activation and `prob` its sigmoid, so the logit
that Grad-CAM differentiates is a named tensor. Exactly 494,337 parameters.
"""

from __future__ import annotations

import math

import tf_keras as keras

from edge_pcam.architecture import (ATTENTION_DIM, CHANNELS, CONV_FILTERS, HEAD_UNITS, KERNEL, MODEL_NAME,
                                    PARAMETER_COUNT, PATCH_SIZE)

FEATURE_LAYER = "pool3"
LOGIT_LAYER = "logit"
OUTPUT_LAYER = "prob"


PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def build_model(l2: float = 1e-4, dropout: float = 0.5, precision: str = "float32") -> keras.Model:
    """Return the uncompiled attention-CNN taking RGB in [0, 1], giving P(tumour).

    `precision` "mixed_bfloat16" (TPUs, CPUs with AMX or AVX512-BF16) or "mixed_float16" (GPUs)
    computes in 16 bits with float32 weights; the output sigmoid stays float32. The
    parameters are the same either way; edge_pcam.training.modelio saves the float32 twin.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        return _build(l2, dropout)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _build(l2: float, dropout: float) -> keras.Model:
    reg = keras.regularizers.l2(l2) if l2 else None
    layers = keras.layers

    x_in = keras.Input((PATCH_SIZE, PATCH_SIZE, CHANNELS), name="image")
    x = x_in
    for i, filters in enumerate(CONV_FILTERS, start=1):
        x = layers.Conv2D(filters, KERNEL, padding="same", activation="relu",
                          kernel_regularizer=reg, name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)

    tokens = layers.Reshape((12 * 12, 256), name="tokens")(x)
    q = layers.Dense(ATTENTION_DIM, kernel_regularizer=reg, name="q")(tokens)
    k = layers.Dense(ATTENTION_DIM, kernel_regularizer=reg, name="k")(tokens)
    v = layers.Dense(ATTENTION_DIM, kernel_regularizer=reg, name="v")(tokens)
    scores = layers.Dot(axes=(2, 2), name="scores")([q, k])
    scores = layers.Rescaling(1.0 / math.sqrt(ATTENTION_DIM), name="scale")(scores)
    attn = layers.Softmax(axis=-1, name="attn")(scores)
    context = layers.Dot(axes=(2, 1), name="context")([attn, v])
    o = layers.Dense(ATTENTION_DIM, kernel_regularizer=reg, name="o")(context)

    h = layers.GlobalAveragePooling1D(name="gap")(o)
    h = layers.Dense(HEAD_UNITS, activation="relu", kernel_regularizer=reg, name="fc")(h)
    h = layers.Dropout(dropout, name="dropout")(h)
    logit = layers.Dense(1, kernel_regularizer=reg, name=LOGIT_LAYER)(h)
    prob = layers.Activation("sigmoid", dtype="float32", name=OUTPUT_LAYER)(logit)
    return keras.Model(x_in, prob, name=MODEL_NAME)


def custom_objects() -> dict:
    """Objects needed to reload a saved model (none today: every layer is stock)."""
    return {}


def is_edge_pcam_model(model: keras.Model) -> bool:
    """True when `model` has the layers that identify the design's attention-CNN."""
    names = {layer.name for layer in model.layers}
    required = {FEATURE_LAYER, LOGIT_LAYER, "q", "k", "v", "o"}
    # QAT wraps layers as quant_<name>.
    stripped = {n.removeprefix("quant_") for n in names}
    return required <= stripped
