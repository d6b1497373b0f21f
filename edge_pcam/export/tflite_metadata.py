"""The standard TFLite metadata (metadata_schema.fbs, identifier "M001") of every converted file.

Netron, TFLite's metadata extractor and the Android/ML-binding tools read a
`ModelMetadata` flatbuffer stored in a model buffer named "TFLITE_METADATA":
the model's name, description, version, author and licence, and per input
and output tensor its name, description, content (an RGB image, or a feature
tensor), the input normalisation and the output labels as an associated file
(a zip member appended to the model). tflite-support's writer would do this,
but it pins protobuf < 4 and cannot be installed beside TensorFlow 2.21; so
the flatbuffer is built here with the FlatBuffers library (a TensorFlow
dependency) following tflite-support's metadata_schema.fbs, and inserted with
TensorFlow's own flatbuffer_utils (the object API the converter itself uses
to add its conversion metadata). The labels file is returned to be stored,
uncompressed, in the same appended archive as the edge-pcam card
(edge_pcam.runtime.metadata), which both readers accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata as _importlib_metadata
from typing import Any

import flatbuffers

from edge_pcam.runtime.flatbuffer import Table, signatures

METADATA_NAME = "TFLITE_METADATA"
IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # every field used here exists since the schema's first version
LABELS_FILE = "labels.txt"
# metadata_schema.fbs enums and union tags
FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2
NORMALIZATION_OPTIONS = 1
RGB = 1
TENSOR_AXIS_LABELS = 2


@dataclass(frozen=True)
class TensorInfo:
    """What the metadata says about one input or output tensor."""

    name: str
    description: str
    image: bool = False                       # ImageProperties (RGB) instead of FeatureProperties
    normalization: tuple[float, float] | None = None   # (mean, std): the model takes (x - mean) / std
    value_range: tuple[float, float] | None = None     # Stats: min and max of the values
    labels: str | None = None                 # text of an associated TENSOR_AXIS_LABELS file


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    version: str
    author: str
    license: str
    tensors: dict[str, TensorInfo]            # by signature name


def package_author_and_license() -> tuple[str, str]:
    """The author and licence edge-pcam is published under (its package metadata)."""
    try:
        meta = _importlib_metadata.metadata("edge-pcam")
    except _importlib_metadata.PackageNotFoundError:
        return "edge-pcam contributors", "Apache-2.0"
    return meta.get("Author") or "edge-pcam contributors", meta.get("License-Expression") or meta.get("License") or ""


def classifier_info(fmt: str, source: str, card_input: dict[str, Any], labels: list[str], version: str
                    ) -> ModelInfo:
    """The metadata of a patch classifier, from the same data as its edge-pcam card."""
    author, licence = package_author_and_license()
    low, high = (float(v) for v in card_input.get("range") or (0, 1))
    std = 255.0 / (high - low)  # (pixel - mean) / std spans [low, high]
    pixels = ("raw uint8 pixels (quantization scale 1/255, zero point 0)" if card_input.get("dtype") == "uint8"
              else "float RGB values x / 255")
    negative, positive = labels
    return ModelInfo(
        name=f"edge-pcam {fmt} patch classifier",
        description=(f"Attention-CNN metastasis detector ({source}, {fmt}). Input: a 96x96 RGB patch of an H&E "
                     "lymph-node section at PatchCamelyon's magnification (about 0.97 um/px). Output: P("
                     f"{positive}), label 1 meaning {positive} in the centre 32x32 pixels, and the pool3 feature "
                     "map for Grad-CAM. Thresholds, metrics, integrity digest and provenance are in the edge-pcam "
                     "model card (edge_pcam/metadata.json in the appended archive; `edge-pcam info FILE`). "
                     "For research use only, not diagnosis."),
        version=version, author=author, license=licence,
        tensors={
            "image": TensorInfo("image", f"RGB patch, {pixels}", image=True,
                                normalization=(0.0 - low * std, std)),
            "probability": TensorInfo("probability", f"P({positive}) (sigmoid); P({negative}) = 1 - P",
                                      value_range=(0.0, 1.0), labels=f"{positive}\n"),
            "features": TensorInfo("features", "pool3 feature map (12x12x256, after ReLU): the input of the "
                                               "Grad-CAM companion file"),
        })


def companion_info(source: str, version: str) -> ModelInfo:
    """The metadata of a Grad-CAM companion."""
    author, licence = package_author_and_license()
    return ModelInfo(
        name="edge-pcam Grad-CAM companion",
        description=(f"Takes the pool3 feature map a classifier outputs ({source} model) and returns the logit "
                     "and its gradient with respect to the map, so that a device computes Grad-CAM without "
                     "TensorFlow. The edge-pcam model card is in the appended archive (`edge-pcam info FILE`)."),
        version=version, author=author, license=licence,
        tensors={"features": TensorInfo("features", "pool3 feature map (1x12x12x256, float32)"),
                 "logit": TensorInfo("logit", "the classifier's logit (before the sigmoid)"),
                 "gradient": TensorInfo("gradient", "d logit / d features (1x12x12x256)")})


def with_tflite_metadata(flatbuffer: bytes, info: ModelInfo) -> tuple[bytes, dict[str, bytes]]:
    """`flatbuffer` with a TFLITE_METADATA buffer describing it (replacing any), and the associated files
    to store in its appended archive (name -> bytes)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    metadata_buffer = build_model_metadata(flatbuffer, info)
    from tensorflow.lite.python import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = list(metadata_buffer)
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != METADATA_NAME]
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    files = {LABELS_FILE: t.labels.encode() for t in info.tensors.values() if t.labels}
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), files


def build_model_metadata(flatbuffer: bytes, info: ModelInfo) -> bytes:
    """The ModelMetadata flatbuffer: tensor entries in the order of the subgraph's inputs and outputs."""
    graph = Table.root(flatbuffer).tables(2)[0]
    signature = signatures(flatbuffer)["serving_default"]
    by_index = {index: name for side in ("inputs", "outputs") for name, index in signature[side].items()}
    b = flatbuffers.Builder(1024)
    inputs = [_tensor(b, info.tensors[by_index[i]]) for i in graph.ints(1)]
    outputs = [_tensor(b, info.tensors[by_index[i]]) for i in graph.ints(2)]
    subgraph_inputs, subgraph_outputs = _offsets(b, inputs), _offsets(b, outputs)
    b.StartObject(7)  # SubGraphMetadata
    b.PrependUOffsetTRelativeSlot(2, subgraph_inputs, 0)
    b.PrependUOffsetTRelativeSlot(3, subgraph_outputs, 0)
    subgraph = b.EndObject()
    strings = [b.CreateString(s) for s in (info.name, info.description, info.version, info.author, info.license,
                                           MIN_PARSER_VERSION)]
    subgraphs = _offsets(b, [subgraph])
    b.StartObject(8)  # ModelMetadata
    for slot, offset in zip((0, 1, 2, 4, 5, 7), strings):
        b.PrependUOffsetTRelativeSlot(slot, offset, 0)
    b.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    b.Finish(b.EndObject(), file_identifier=IDENTIFIER)
    return bytes(b.Output())


def _tensor(b: flatbuffers.Builder, t: TensorInfo) -> int:
    name, description = b.CreateString(t.name), b.CreateString(t.description)
    if t.image:
        b.StartObject(2)  # ImageProperties
        b.PrependInt8Slot(0, RGB, 0)
        properties, kind = b.EndObject(), IMAGE_PROPERTIES
    else:
        b.StartObject(0)  # FeatureProperties
        properties, kind = b.EndObject(), FEATURE_PROPERTIES
    b.StartObject(3)  # Content
    b.PrependUint8Slot(0, kind, 0)
    b.PrependUOffsetTRelativeSlot(1, properties, 0)
    content = b.EndObject()
    process_units = None
    if t.normalization is not None:
        options = _float_vectors_table(b, [[t.normalization[0]], [t.normalization[1]]])  # NormalizationOptions
        b.StartObject(2)  # ProcessUnit
        b.PrependUint8Slot(0, NORMALIZATION_OPTIONS, 0)
        b.PrependUOffsetTRelativeSlot(1, options, 0)
        process_units = _offsets(b, [b.EndObject()])
    stats = None
    if t.value_range is not None:
        stats = _float_vectors_table(b, [[t.value_range[1]], [t.value_range[0]]])  # Stats: max, min
    files = None
    if t.labels:
        file_name = b.CreateString(LABELS_FILE)
        file_description = b.CreateString(f"the label of each value of '{t.name}'")
        b.StartObject(4)  # AssociatedFile
        b.PrependUOffsetTRelativeSlot(0, file_name, 0)
        b.PrependUOffsetTRelativeSlot(1, file_description, 0)
        b.PrependInt8Slot(2, TENSOR_AXIS_LABELS, 0)
        files = _offsets(b, [b.EndObject()])
    b.StartObject(7)  # TensorMetadata
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    b.PrependUOffsetTRelativeSlot(1, description, 0)
    b.PrependUOffsetTRelativeSlot(3, content, 0)
    for slot, offset in ((4, process_units), (5, stats), (6, files)):
        if offset is not None:
            b.PrependUOffsetTRelativeSlot(slot, offset, 0)
    return b.EndObject()


def _offsets(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _float_vectors_table(b: flatbuffers.Builder, fields: list[list[float]]) -> int:
    """A table whose fields 0, 1, ... are float vectors (NormalizationOptions: mean, std; Stats: max, min)."""
    vectors = []
    for values in fields:
        b.StartVector(4, len(values), 4)
        for value in reversed(values):
            b.PrependFloat32(value)
        vectors.append(b.EndVector())
    b.StartObject(len(fields))
    for slot, vector in enumerate(vectors):
        b.PrependUOffsetTRelativeSlot(slot, vector, 0)
    return b.EndObject()


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_tflite_metadata(flatbuffer: bytes) -> dict[str, Any] | None:
    """The main fields of a file's TFLITE_METADATA (None without one), read back for checks and `info`."""
    model = Table.root(flatbuffer)
    buffers = model.tables(4)
    for entry in model.tables(6):
        if entry.string(0) != METADATA_NAME:
            continue
        start, n = buffers[int(entry.scalar(1, "I"))].vector(0, 1)
        data = bytes(flatbuffer[start:start + n])
        if data[4:8] != IDENTIFIER:
            return None
        meta = Table.root(data)
        graph = meta.tables(3)[0]
        return {"name": meta.string(0), "description": meta.string(1), "version": meta.string(2),
                "author": meta.string(4), "license": meta.string(5), "min_parser_version": meta.string(7),
                "inputs": [_read_tensor(t) for t in graph.tables(2)],
                "outputs": [_read_tensor(t) for t in graph.tables(3)]}
    return None


def _read_tensor(t: Table) -> dict[str, Any]:
    import struct

    content = t.table(3)
    units = t.tables(4)
    normalization = None
    if units and int(units[0].scalar(0, "B")) == NORMALIZATION_OPTIONS:
        options = units[0].table(1)
        (mean_at, _), (std_at, _) = options.vector(0), options.vector(1)
        normalization = (struct.unpack_from("<f", t.buf, mean_at)[0], struct.unpack_from("<f", t.buf, std_at)[0])
    return {"name": t.string(0), "description": t.string(1),
            "content": {IMAGE_PROPERTIES: "image", FEATURE_PROPERTIES: "feature"}.get(
                int(content.scalar(0, "B"))) if content else None,
            "normalization": normalization,
            "associated_files": [{"name": f.string(0), "type": int(f.scalar(2, "b"))} for f in t.tables(6)]}
