"""The physical decode limit: measured memory bandwidth and the weight bytes one decode token reads."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.engine_types import Bandwidth, PhysicalLimit, WeightBytes

if TYPE_CHECKING:
    from onnx import TensorProto

# Inputs of these ops are read one row per token (the token's embedding, its rotary angles),
# not whole; every other initializer a node consumes is read in full once per decode step.
ROW_READ_INPUTS = {("Gather", 0), ("GroupQueryAttention", 7), ("GroupQueryAttention", 8)}
LINEAR_OPS = {"MatMulNBits", "MatMul"}  # the projections and their block-minimum corrections
HEAD_OPS = {"Gemm"}  # the fp32 head on the tied table
HEAD_PREFIX = "head."  # the int4 graph's 4-bit head halves (MatMulNBits on head.* initializers)


def measure_bandwidth(array_bytes: int = 1 << 30, threads: int = 2, repeats: int = 3) -> Bandwidth:
    """Read bandwidth: `threads` numpy sums over disjoint parts of one array; best of `repeats`."""
    if array_bytes < 4 * threads or threads < 1 or repeats < 1:
        raise ValueError(f"measure_bandwidth: rule 'array_bytes >= 4*threads, threads >= 1, repeats >= 1', "
                         f"got array_bytes={array_bytes}, threads={threads}, repeats={repeats}")
    data = np.ones(array_bytes // 4, np.float32)  # written once so every page is resident
    parts = np.array_split(data, threads)
    runs = []
    with ThreadPoolExecutor(threads) as pool:  # numpy releases the GIL inside the reduction
        for _ in range(repeats):
            start = time.perf_counter()
            total = sum(pool.map(np.sum, parts))
            runs.append(data.nbytes / (time.perf_counter() - start) / 1e9)
    if float(total) != data.size:  # the sums must have read every element
        raise RuntimeError(f"bandwidth probe summed {total}, expected {data.size}")
    return Bandwidth(gb_s=round(max(runs), 2), runs_gb_s=[round(r, 2) for r in runs],
                     array_bytes=int(data.nbytes), n_threads=threads)


def _nbytes(tensor: TensorProto) -> tuple[int, int]:
    """(total bytes, bytes of one row along the first axis) of an initializer TensorProto."""
    from onnx import helper

    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    dims = [int(d) for d in tensor.dims]
    total = int(np.prod(dims, dtype=np.int64)) * itemsize if dims else itemsize
    row = total // dims[0] if dims and dims[0] else total
    return total, row


def weight_bytes_per_token(onnx_path: Path) -> WeightBytes:
    """Bytes of initializers read by one decode step of one sequence, from the graph itself.

    An initializer used by several nodes counts once, in full if any node reads it whole (the
    tied embedding: Gather reads one row, the head's Gemm reads the whole table).
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {t.name: t for t in model.graph.initializer}
    full: dict[str, str] = {}  # initializer -> op type of a node reading it whole
    rows: set[str] = set()
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name not in inits:
                continue
            if (node.op_type, index) in ROW_READ_INPUTS:
                rows.add(name)
            else:
                full.setdefault(name, node.op_type)
    linear = head = other = 0
    for name, op in full.items():
        size, _ = _nbytes(inits[name])
        if op in HEAD_OPS or name.startswith(HEAD_PREFIX):
            head += size
        elif op in LINEAR_OPS:
            linear += size
        else:
            other += size
    for name in rows - full.keys():
        other += _nbytes(inits[name])[1]
    return WeightBytes(linear=linear, head=head, other=other)


def physical_limit(bandwidth: Bandwidth, weights: WeightBytes, decode_tok_s: float) -> PhysicalLimit:
    """The bandwidth-bound decode rate and our decode as a fraction of it."""
    max_tok_s = bandwidth.gb_s * 1e9 / weights.total
    return PhysicalLimit(bandwidth=bandwidth, weight_bytes=weights, max_tok_s=round(max_tok_s, 2),
                         our_decode_fraction=round(decode_tok_s / max_tok_s, 3))
