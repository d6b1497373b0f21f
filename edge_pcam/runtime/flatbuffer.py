"""Just enough of a FlatBuffers reader to check and patch a .tflite file, with the standard library only.

tflite-runtime hands a damaged flatbuffer to C++ unchecked and can crash the
process (a segmentation fault, not an exception); ai-edge-litert verifies it
first. `check_model` walks every table, vector and index of the TFLite
schema that the interpreters follow when loading and raises ValueError at the
first one that points outside the file or at nothing, so a truncated or
damaged model gets an error message under either interpreter. (Damage inside
weight data cannot be seen this way: it loads, and computes nonsense.)

Schema field numbers (tensorflow/compiler/mlir/lite/schema/schema.fbs):
Model: 0 version, 1 operator_codes, 2 subgraphs, 3 description, 4 buffers, 6 metadata, 7 signature_defs;
SignatureDef: 0 inputs, 1 outputs, 2 signature_key, 4 subgraph_index; TensorMap: 0 name,
1 tensor_index; Metadata: 0 name, 1 buffer; SubGraph: 0 tensors,
1 inputs, 2 outputs, 3 operators, 4 name; Tensor: 0 shape, 1 type, 2 buffer, 3 name,
4 quantization; QuantizationParameters: 0 min, 1 max, 2 scale, 3 zero_point;
Operator: 0 opcode_index, 1 inputs, 2 outputs, 4 builtin_options,
5 custom_options, 8 intermediates; Buffer: 0 data, 1 offset, 2 size;
OperatorCode: 0 deprecated_builtin_code, 1 custom_code, 2 version, 3 builtin_code.
"""

from __future__ import annotations

import struct
from typing import Any


class Table:
    """A flatbuffer table at `pos` of `buf`; every read is bounds-checked (ValueError)."""

    def __init__(self, buf: bytes | bytearray, pos: int):
        self.buf, self.pos = buf, pos
        _need(buf, pos, 4)
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        _need(buf, vt, 4)
        self._vt = vt
        self._vt_size = struct.unpack_from("<H", buf, vt)[0]
        _need(buf, vt, self._vt_size)
        if self._vt_size < 4 or self._vt_size % 2:
            raise ValueError(f"bad vtable at {vt}")

    @classmethod
    def root(cls, buf: bytes | bytearray) -> Table:
        _need(buf, 0, 8)
        return cls(buf, struct.unpack_from("<I", buf, 0)[0])

    def _field(self, index: int) -> int:
        off = 4 + 2 * index
        if off >= self._vt_size:
            return 0
        rel = struct.unpack_from("<H", self.buf, self._vt + off)[0]
        return self.pos + rel if rel else 0

    def scalar(self, index: int, fmt: str, default: int | float = 0) -> int | float:
        at = self._field(index)
        if not at:
            return default
        _need(self.buf, at, struct.calcsize("<" + fmt))
        return struct.unpack_from("<" + fmt, self.buf, at)[0]

    def _target(self, index: int) -> int:
        at = self._field(index)
        if not at:
            return 0
        _need(self.buf, at, 4)
        target = at + struct.unpack_from("<I", self.buf, at)[0]
        _need(self.buf, target, 4)
        return target

    def vector(self, index: int, item_size: int = 4) -> tuple[int, int]:
        """(position of the first element, length), or (0, 0) when absent."""
        at = self._target(index)
        if not at:
            return 0, 0
        n = struct.unpack_from("<I", self.buf, at)[0]
        _need(self.buf, at + 4, n * item_size)
        return at + 4, n

    def table(self, index: int) -> Table | None:
        at = self._target(index)
        return Table(self.buf, at) if at else None

    def tables(self, index: int) -> list[Table]:
        start, n = self.vector(index)
        return [Table(self.buf, start + 4 * i + struct.unpack_from("<I", self.buf, start + 4 * i)[0])
                for i in range(n)]

    def ints(self, index: int) -> list[int]:
        start, n = self.vector(index)
        return list(struct.unpack_from(f"<{n}i", self.buf, start)) if n else []

    def string(self, index: int) -> str | None:
        start, n = self.vector(index, 1)
        return bytes(self.buf[start:start + n]).decode("utf-8", "replace") if start else None


def signatures(data: bytes | bytearray) -> dict[str, dict[str, Any]]:
    """The file's signatures: key -> {"inputs": {name: tensor index}, "outputs": {...}, "subgraph": i}."""
    found: dict[str, dict[str, Any]] = {}
    for sig in Table.root(data).tables(7):
        key = sig.string(2) or ""
        found[key] = {"inputs": {t.string(0) or "": int(t.scalar(1, "I")) for t in sig.tables(0)},
                      "outputs": {t.string(0) or "": int(t.scalar(1, "I")) for t in sig.tables(1)},
                      "subgraph": int(sig.scalar(4, "I"))}
    return found


def _need(buf: bytes | bytearray, pos: int, size: int) -> None:
    if pos < 0 or size < 0 or pos + size > len(buf):
        raise ValueError(f"offset {pos}+{size} outside the {len(buf)}-byte file")


def check_model(data: bytes | bytearray) -> None:
    """Raise ValueError unless every structure an interpreter reads while loading lies inside `data`."""
    model = Table.root(data)
    model.scalar(0, "I")
    model.vector(3, 1)
    codes = model.tables(1)
    for code in codes:
        code.scalar(0, "b")
        code.scalar(2, "i")
        code.scalar(3, "i")
        code.vector(1, 1)
    buffers = model.tables(4)
    for meta in model.tables(6):  # read at load (the minimum runtime version, conversion metadata)
        meta.vector(0, 1)
        if not 0 <= int(meta.scalar(1, "I")) < max(len(buffers), 1):
            raise ValueError("metadata buffer index out of range")
    for buf in buffers:
        buf.vector(0, 1)
        offset, size = int(buf.scalar(1, "Q")), int(buf.scalar(2, "Q"))
        if offset > 1:
            _need(data, offset, size)
    subgraphs = model.tables(2)
    if not subgraphs:
        raise ValueError("no subgraph")
    for sg in subgraphs:
        sg.vector(4, 1)
        tensors = sg.tables(0)
        n = len(tensors)
        for t in tensors:
            t.ints(0)
            t.vector(3, 1)
            if not 0 <= int(t.scalar(2, "I")) < max(len(buffers), 1):
                raise ValueError("tensor buffer index out of range")
            q = t.table(4)
            if q is not None:
                for field, size in ((0, 4), (1, 4), (2, 4), (3, 8)):
                    q.vector(field, size)
        for index_list in (sg.ints(1), sg.ints(2)):
            _indices(index_list, n)
        for op in sg.tables(3):
            if not 0 <= int(op.scalar(0, "I")) < len(codes):
                raise ValueError("operator code index out of range")
            for field in (1, 2, 8):
                _indices(op.ints(field), n)
            op.table(4)
            op.vector(5, 1)
    for sig in model.tables(7):
        sig.vector(2, 1)
        sg_index = int(sig.scalar(4, "I"))
        if not 0 <= sg_index < len(subgraphs):
            raise ValueError("signature subgraph index out of range")
        n = len(subgraphs[sg_index].tables(0))
        for field in (0, 1):
            for tensor_map in sig.tables(field):
                tensor_map.vector(0, 1)
                _indices([int(tensor_map.scalar(1, "I"))], n)


def _indices(values: list[int], n: int) -> None:
    if any(not -1 <= v < n for v in values):
        raise ValueError("tensor index out of range")
