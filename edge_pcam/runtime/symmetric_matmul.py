"""Give int8 BATCH_MATMUL a symmetric second operand, so ai-edge-litert's XNNPACK runs it.

Why: ai-edge-litert 2.3.0's XNNPACK delegate refuses an int8 BATCH_MATMUL whose
second operand has a non-zero zero point ("failed to delegate BATCH_MATMUL
node: non-zero zero point of input 1 is not supported"); TensorFlow 2.21's
tf.lite accepts it. The converter quantizes activations asymmetrically, so in
the attention both products (Q·Kᵀ and A·V) fall back to the builtin kernels,
split the XNNPACK graph into three pieces, and the model runs about twice as
slow as in tf.lite (benchmarks/results/runtime_latency.md).

The fix needs no new weights: K and V are outputs of FULLY_CONNECTED layers
(through a RESHAPE), and a FULLY_CONNECTED may write any output quantization.
Each such tensor's (scale, zero point) is replaced by the symmetric
(max(|lo|, |hi|) / 127, 0) covering the same real range [lo, hi], which costs
at most one bit of resolution on K and V alone. The flatbuffer is patched in
place (same byte length, same layout): no flatbuffers package needed, so it
works with every interpreter. Applying it twice changes nothing.
"""

from __future__ import annotations

import struct

from edge_pcam.runtime.flatbuffer import Table

BATCH_MATMUL = 126
RESHAPE = 22
INT8 = 9


def symmetric_matmul_operands(data: bytes) -> tuple[bytes, int]:
    """`data` (a .tflite flatbuffer) with every int8 BATCH_MATMUL's second operand made
    symmetric where that is exact to do; and how many tensors were changed."""
    buf = bytearray(data)
    model = Table.root(buf)
    codes = [max(int(c.scalar(0, "b")), int(c.scalar(3, "i"))) for c in model.tables(1)]
    changed = 0
    for subgraph in model.tables(2):
        tensors = subgraph.tables(0)
        operators = subgraph.tables(3)
        ops = [(codes[int(op.scalar(0, "I"))], op.ints(1), op.ints(2)) for op in operators]
        producer = {out: (code, ins) for code, ins, outs in ops for out in outs}
        users: dict[int, set[int]] = {}  # quantization vector -> tensors using it
        for i, t in enumerate(tensors):
            q = t.table(4)
            for index in (2, 3) if q else ():
                start, _ = q.vector(index)
                if start:
                    users.setdefault(start, set()).add(i)
        done: set[int] = set()
        for code, ins, _ in ops:
            if code != BATCH_MATMUL or len(ins) < 2 or ins[1] < 0:
                continue
            chain = [ins[1]]
            while chain[-1] in producer and producer[chain[-1]][0] == RESHAPE:
                chain.append(producer[chain[-1]][1][0])
            if chain[-1] not in producer:  # a constant or a graph input: its values are fixed
                continue
            changed += sum(_make_symmetric(tensors[t], users, set(chain), done) for t in chain)
    return bytes(buf), changed


def _make_symmetric(tensor: Table, users: dict[int, set[int]], chain: set[int], done: set[int]) -> bool:
    if tensor.scalar(1, "b") != INT8:
        return False
    q = tensor.table(4)
    if q is None:
        return False
    scale_at, n_scale = q.vector(2)
    zero_at, n_zero = q.vector(3)
    if n_scale != 1 or n_zero != 1 or not (users[scale_at] | users[zero_at]) <= chain:
        return False  # per-channel, or storage shared with a tensor outside the chain: leave it alone
    if scale_at in done:
        return True  # storage shared within the chain, already rewritten
    buf = tensor.buf
    scale = struct.unpack_from("<f", buf, scale_at)[0]
    zero = struct.unpack_from("<q", buf, zero_at)[0]
    if zero == 0:
        return False
    low, high = scale * (-128 - zero), scale * (127 - zero)
    struct.pack_into("<f", buf, scale_at, max(abs(low), abs(high)) / 127.0)
    struct.pack_into("<q", buf, zero_at, 0)
    done.add(scale_at)
    return True
