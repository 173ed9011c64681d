"""Build the ONNX decoder graph (int4 or fp32 weights) from `ModelWeights`.

Inputs (per forward pass; B sequences of S new tokens each):
  input_ids      int64 [B, S]
  seqlens_k      int32 [B]      total length (cached + new) - 1, per sequence
  total_seq_len  int32 []       max over the batch of the total length
  num_logits     int64 [1]      logits are returned for the last `num_logits` positions only
  past_key.{i}, past_value.{i}  float32 [B, n_kv_heads, max_seq, head_dim]
Outputs:
  logits         float32 [B, num_logits, vocab]
  present_key.{i}, present_value.{i}  same shape as past; the engine binds them to the SAME
                 buffers as the pasts (GroupQueryAttention's shared past/present buffer), so the
                 cache is written in place and never copied.

Operators: GroupQueryAttention (rotary inside, half-split rotary on HF-ordered rows),
SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization for RMSNorm, one fused QKV and
one fused gate/up projection per layer. int4 projections are MatMulNBits (4-bit, block 32, zero
points 0) plus the exact Q4_1 minimum term (x summed per block of 32) @ mins; fp32 projections
are MatMul on the dequantized weights.

Embedding and tied head: the fp32 graph gathers rows of the fp32 table and runs the head as one
Gemm on it (113 MB read per token). The int4 graph, when the table is exactly Q8_0 (the real
model's is), keeps it as int8 values and block scales (fp16 values, float32) instead: the lookup gathers int8 rows
and their scales and multiplies (exact), and the head is two 4-bit MatMulNBits halves,
q = 16 * (q >> 4) + (q & 15), summed (exact in math; 36 MB read per token).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from reference_model.config import QUANT_BLOCK, ModelConfig
from reference_model.convert.quant import (
    ConversionError,
    Q4_1Matrix,
    Q8Table,
    recover_q8_0,
    split_q8_head,
    to_matmul_nbits,
)
from reference_model.convert.weights_model import ModelWeights
from reference_model.formats import WEIGHT_FORMATS

MS = "com.microsoft"
# The node attributes this graph sets: ints (axis, K, N, to, ...) and floats (epsilon, scale).
AttrValue = int | float


@dataclass(frozen=True)
class GraphOptions:
    """Choices that change the graph (recorded in the prepared model's manifest)."""

    weights: str = "int4"  # "int4" (MatMulNBits) or "fp32" (exact reference)
    # MatMulNBits accuracy_level: 0 keeps fp32 activations (exact); 4 quantizes activations to
    # int8 per block (faster on CPUs with VNNI, about 0.1-0.3 logit error). int4 only.
    accuracy_level: int = 0
    # Positions of the rotary cos/sin tables; None = the config's context length.
    max_positions: int | None = None
    # int4 only: run the tied Q8_0 table as int8 rows + two exact 4-bit head halves (when the
    # table is exactly Q8_0; otherwise, as in the fp32 graph, an fp32 Gather + Gemm).
    q8_head: bool = True

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_FORMATS:
            raise ConversionError(f"weights must be one of {WEIGHT_FORMATS}, got {self.weights!r}")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise ConversionError(f"accuracy_level must be 0..4, got {self.accuracy_level!r}")


def rotary_tables(config: ModelConfig, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [positions, head_dim/2] float32, built like llama.cpp (float32 angle recurrence)."""
    half = config.head_dim // 2
    theta_scale = np.float32(config.rope_theta) ** np.float32(-2.0 / config.head_dim)
    angles = np.empty((positions, half), np.float32)
    angles[:, 0] = np.arange(positions, dtype=np.float32)
    for i in range(1, half):
        angles[:, i] = angles[:, i - 1] * theta_scale  # float32 products, as ggml's rope cache
    return np.cos(angles), np.sin(angles)


def _make_node(op: str, inputs: list[str], outputs: list[str], name: str, domain: str,
               attrs: dict[str, AttrValue]) -> onnx.NodeProto:
    """`helper.make_node`, with the attributes added apart (sorted by name, as make_node does):
    passed as its keywords, an attribute could land in its `doc_string` or `overload` parameter."""
    node = helper.make_node(op, inputs, outputs, name=name, domain=domain)
    node.attribute.extend(helper.make_attribute(key, value) for key, value in sorted(attrs.items()))
    return node


class _Builder:
    """Accumulates nodes and initializers; one method per building block."""

    def __init__(self, config: ModelConfig, options: GraphOptions) -> None:
        self.c = config
        self.o = options
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self._n = 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, domain: str = "", **attrs: AttrValue) -> list[str]:
        outs = [self.name(f"{op}_out") for _ in range(n_out)]
        self.nodes.append(_make_node(op, inputs, outs, self.name(op), domain, attrs))
        return outs

    def node_named(self, op: str, inputs: list[str], outputs: list[str], domain: str = "",
                   **attrs: AttrValue) -> None:
        self.nodes.append(_make_node(op, inputs, outputs, self.name(op), domain, attrs))

    def linear(self, x: str, mat: Q4_1Matrix, prefix: str) -> str:
        """y [B, S, N] = x [B, S, K] @ W.T for W = mat [N, K]."""
        n, k = mat.shape
        if self.o.weights == "fp32":
            w = self.init(prefix + ".weight", mat.dequantize().T)  # [K, N]
            return self.node("MatMul", [x, w])[0]
        nb = to_matmul_nbits(mat)
        b = self.init(prefix + ".qweight", nb.packed)
        s = self.init(prefix + ".scales", nb.scales)
        z = self.init(prefix + ".zero_points", nb.zero_points)
        y = self.node("MatMulNBits", [x, b, s, z], domain=MS, K=k, N=n, bits=4,
                      block_size=QUANT_BLOCK, accuracy_level=self.o.accuracy_level)[0]
        # Q4_1's minimum term: sum over each block of x times that block's minimum.
        shape = self.init(prefix + ".block_shape", np.array([0, 0, k // QUANT_BLOCK, QUANT_BLOCK], np.int64))
        xb = self.node("Reshape", [x, shape])[0]  # [B, S, K/32, 32]
        axes = self.init(prefix + ".sum_axes", np.array([-1], np.int64))
        xs = self.node("ReduceSum", [xb, axes], keepdims=0)[0]  # [B, S, K/32]
        mins = self.init(prefix + ".mins", nb.mins)  # [K/32, N]
        corr = self.node("MatMul", [xs, mins])[0]
        return self.node("Add", [y, corr])[0]

    def q8_lookup(self, table: Q8Table) -> str:
        """hidden [B, S, D] = rows input_ids of the Q8_0 table, as int8 values times block scales."""
        _, nb, _ = table.q.shape
        q = self.init("embedding.q8", table.q)  # [V, D/32, 32] int8
        d = self.init("embedding.scales", table.d[:, :, None])  # [V, D/32, 1] float32
        values = self.node("Cast", [self.node("Gather", [q, "input_ids"])[0]], to=TensorProto.FLOAT)[0]
        scaled = self.node("Mul", [values, self.node("Gather", [d, "input_ids"])[0]])[0]  # [B, S, D/32, 32]
        shape = self.init("embedding.shape", np.array([0, 0, nb * QUANT_BLOCK], np.int64))
        return self.node("Reshape", [scaled, shape])[0]

    def q8_head(self, flat: str, table: Q8Table) -> str:
        """logits [M, V] = flat [M, D] @ table.T as the sum of two exact 4-bit MatMulNBits halves."""
        rows, nb, _ = table.q.shape
        k = nb * QUANT_BLOCK
        split = split_q8_head(table)
        hi = self.node("MatMulNBits", [flat, self.init("head.high.qweight", split.high),
                                       self.init("head.high.scales", split.high_scales)],
                       domain=MS, K=k, N=rows, bits=4, block_size=QUANT_BLOCK, accuracy_level=0)[0]
        lo = self.node("MatMulNBits", [flat, self.init("head.low.qweight", split.low),
                                       self.init("head.low.scales", split.low_scales),
                                       self.init("head.low.zero_points", split.low_zero_points)],
                       domain=MS, K=k, N=rows, bits=4, block_size=QUANT_BLOCK, accuracy_level=0)[0]
        return self.node("Add", [hi, lo])[0]


def build_graph(weights: ModelWeights, options: GraphOptions = GraphOptions()) -> onnx.ModelProto:
    """The decoder as an ONNX model (opset 21 + com.microsoft) for the given weights and options."""
    c = weights.config
    b = _Builder(c, options)
    positions = options.max_positions or c.context_length
    cos, sin = rotary_tables(c, positions)
    b.init("cos_cache", cos)
    b.init("sin_cache", sin)
    table = recover_q8_0(weights.embedding) if options.weights == "int4" and options.q8_head else None
    if table is None:
        emb = b.init("embedding", weights.embedding)  # [V, D], also the tied head
        hidden = b.node("Gather", [emb, "input_ids"])[0]  # [B, S, D]
    else:
        hidden = b.q8_lookup(table)

    first = weights.layers[0]
    normed = b.node("SimplifiedLayerNormalization", [hidden, b.init("layer0.attn_norm", first.attn_norm)],
                    axis=-1, epsilon=c.rms_eps, stash_type=1)[0]
    residual = hidden
    for i, layer in enumerate(weights.layers):
        p = f"layer{i}"
        qkv = b.linear(normed, Q4_1Matrix.concat_rows([layer.q, layer.k, layer.v]), p + ".qkv")
        attn = b.name(f"{p}.attn")
        b.node_named(
            "GroupQueryAttention",
            [qkv, "", "", f"past_key.{i}", f"past_value.{i}", "seqlens_k", "total_seq_len",
             "cos_cache", "sin_cache"],
            [attn, f"present_key.{i}", f"present_value.{i}"],
            domain=MS, num_heads=c.n_heads, kv_num_heads=c.n_kv_heads, do_rotary=1,
            rotary_interleaved=0, scale=float(1.0 / np.sqrt(c.head_dim)),
        )
        o = b.linear(attn, layer.o, p + ".o")
        normed, _, _, residual = b.node(
            "SkipSimplifiedLayerNormalization", [o, residual, b.init(p + ".ffn_norm", layer.ffn_norm)],
            n_out=4, domain=MS, epsilon=c.rms_eps)
        gu = b.linear(normed, Q4_1Matrix.concat_rows([layer.gate, layer.up]), p + ".gate_up")
        split = b.init(p + ".split", np.array([c.ffn_size, c.ffn_size], np.int64))
        gate, up = b.node("Split", [gu, split], n_out=2, axis=-1)
        silu = b.node("Mul", [gate, b.node("Sigmoid", [gate])[0]])[0]
        down = b.linear(b.node("Mul", [silu, up])[0], layer.down, p + ".down")
        last = i == c.n_layers - 1
        gamma = weights.output_norm if last else weights.layers[i + 1].attn_norm
        gname = "output_norm" if last else f"layer{i + 1}.attn_norm"
        normed, _, _, residual = b.node(
            "SkipSimplifiedLayerNormalization", [down, residual, b.init(gname, gamma)],
            n_out=4, domain=MS, epsilon=c.rms_eps)

    # Only the last num_logits positions go through the head (prefill usually needs one).
    starts = b.node("Neg", ["num_logits"])[0]
    ends = b.init("slice_end", np.array([np.iinfo(np.int64).max], np.int64))
    axis1 = b.init("slice_axis", np.array([1], np.int64))
    tail = b.node("Slice", [normed, starts, ends, axis1])[0]  # [B, n, D]
    flat = b.node("Reshape", [tail, b.init("flat_shape", np.array([-1, c.hidden_size], np.int64))])[0]
    logits2d = b.node("Gemm", [flat, emb], transB=1)[0] if table is None else b.q8_head(flat, table)  # [B*n, V]
    out_shape = b.node("Concat", [b.node("Slice", [b.node("Shape", [tail])[0],
                                                   b.init("s0", np.array([0], np.int64)),
                                                   b.init("s2", np.array([2], np.int64))])[0],
                                  b.init("vocab_dim", np.array([c.vocab_size], np.int64))], axis=0)[0]
    b.node_named("Reshape", [logits2d, out_shape], ["logits"])

    kv_shape: list[str | int] = ["batch", c.n_kv_heads, "max_seq", c.head_dim]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info("total_seq_len", TensorProto.INT32, []),
        helper.make_tensor_value_info("num_logits", TensorProto.INT64, [1]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "n_logits", c.vocab_size])]
    for i in range(c.n_layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_{kind}.{i}", TensorProto.FLOAT, kv_shape))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}.{i}", TensorProto.FLOAT, kv_shape))
    graph = helper.make_graph(b.nodes, f"{c.name}-{options.weights}", inputs, outputs, initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)],
                              producer_name="chatconform.reference_model")
    model.ir_version = 10
    return model
