"""GGUF block formats (Q4_1, Q8_0): decode raw blocks, dequantize, and repack for MatMulNBits.

A GGUF matrix with shape [K, N] (ggml order: K is the input size, contiguous) is stored as N rows
of K/32 blocks. Q4_1 block (20 bytes): fp16 scale d, fp16 minimum m, 16 bytes of nibbles where
byte i holds element i (low nibble) and element i + 16 (high nibble); value = q * d + m.
Q8_0 block (34 bytes): fp16 scale d, 32 int8 values; value = q * d.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference_model.config import QUANT_BLOCK
from reference_model.errors import ReferenceModelError

Q4_1_BLOCK_BYTES = 20
Q8_0_BLOCK_BYTES = 34


class ConversionError(ReferenceModelError):
    """The GGUF tensors could not be turned into an ONNX graph."""


@dataclass(frozen=True)
class Q4_1Matrix:
    """A Q4_1 weight matrix y = W x with W [rows=N, cols=K], kept in decoded block form."""

    d: np.ndarray  # [N, K/32] float16 block scales
    m: np.ndarray  # [N, K/32] float16 block minimums
    q: np.ndarray  # [N, K/32, 32] uint8 in 0..15, element order within the block

    @property
    def shape(self) -> tuple[int, int]:
        """(N, K): output and input sizes."""
        n, nb, _ = self.q.shape
        return n, nb * QUANT_BLOCK

    def dequantize(self) -> np.ndarray:
        """Float32 [N, K] values q*d + m, computed in float32 as llama.cpp does."""
        d = self.d.astype(np.float32)[:, :, None]
        m = self.m.astype(np.float32)[:, :, None]
        w = self.q.astype(np.float32) * d + m  # [N, K/32, 32]
        return w.reshape(self.q.shape[0], -1)

    def take_rows(self, rows: np.ndarray) -> Q4_1Matrix:
        """The matrix with its output rows reordered/selected by `rows` (blocks run along K, so exact)."""
        return Q4_1Matrix(self.d[rows], self.m[rows], self.q[rows])

    @staticmethod
    def concat_rows(parts: list[Q4_1Matrix]) -> Q4_1Matrix:
        """Stack matrices with the same K along the output dimension (fused projections)."""
        return Q4_1Matrix(np.concatenate([p.d for p in parts]), np.concatenate([p.m for p in parts]),
                          np.concatenate([p.q for p in parts]))


def _blocks(raw: np.ndarray, rows: int, cols: int, block_bytes: int, what: str) -> np.ndarray:
    """View raw tensor bytes as [rows, cols/32, block_bytes] uint8, checking the size."""
    if cols % QUANT_BLOCK:
        raise ConversionError(f"{what}: row length {cols} is not a multiple of {QUANT_BLOCK}")
    data = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    expected = rows * (cols // QUANT_BLOCK) * block_bytes
    if data.size != expected:
        raise ConversionError(f"{what}: expected {expected} bytes for [{rows}, {cols}], got {data.size}")
    return data.reshape(rows, cols // QUANT_BLOCK, block_bytes)


def decode_q4_1(raw: np.ndarray, rows: int, cols: int, what: str = "tensor") -> Q4_1Matrix:
    """Decode raw Q4_1 bytes of a [rows, cols] matrix into scales, minimums and nibbles."""
    b = _blocks(raw, rows, cols, Q4_1_BLOCK_BYTES, what)
    d = b[:, :, 0:2].copy().view(np.float16)[:, :, 0]
    m = b[:, :, 2:4].copy().view(np.float16)[:, :, 0]
    qs = b[:, :, 4:20]  # [rows, nb, 16]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2)  # low nibbles 0..15, high nibbles 16..31
    return Q4_1Matrix(d=d, m=m, q=q)


def encode_q4_1(mat: Q4_1Matrix) -> np.ndarray:
    """Inverse of `decode_q4_1`: raw bytes [N, K/32 * 20] (used to build test tensors)."""
    n, nb, _ = mat.q.shape
    out = np.empty((n, nb, Q4_1_BLOCK_BYTES), np.uint8)
    out[:, :, 0:2] = mat.d.astype(np.float16)[:, :, None].view(np.uint8)
    out[:, :, 2:4] = mat.m.astype(np.float16)[:, :, None].view(np.uint8)
    out[:, :, 4:20] = mat.q[:, :, :16] | (mat.q[:, :, 16:] << 4)
    return out.reshape(n, -1)


def dequantize_q8_0(raw: np.ndarray, rows: int, cols: int, what: str = "tensor") -> np.ndarray:
    """Dequantize raw Q8_0 bytes of a [rows, cols] matrix to float32 [rows, cols]."""
    b = _blocks(raw, rows, cols, Q8_0_BLOCK_BYTES, what)
    d = b[:, :, 0:2].copy().view(np.float16).astype(np.float32)  # [rows, nb, 1]
    q = b[:, :, 2:34].view(np.int8).astype(np.float32)  # [rows, nb, 32]
    return (q * d).reshape(rows, cols)


@dataclass(frozen=True)
class NBitsWeights:
    """A Q4_1 matrix laid out for com.microsoft::MatMulNBits plus the block-minimum correction."""

    packed: np.ndarray  # [N, K/32, 16] uint8, element 2j in the low nibble of byte j, 2j+1 high
    scales: np.ndarray  # [N * K/32] float32
    zero_points: np.ndarray  # [N * ceil((K/32)/2)] uint8, all zero: q is used as is
    mins: np.ndarray  # [K/32, N] float32, the correction y += (x summed per block) @ mins


def to_matmul_nbits(mat: Q4_1Matrix) -> NBitsWeights:
    """Repack Q4_1 so that MatMulNBits(x) + blocksum(x) @ mins == x @ dequantize().T exactly in math."""
    n, nb, _ = mat.q.shape
    q = mat.q.reshape(n, nb, 16, 2)  # consecutive element pairs
    packed = (q[..., 0] | (q[..., 1] << 4)).astype(np.uint8)
    # Zero points are 4-bit values packed two per byte per row, padded to whole bytes per row.
    zero_points = np.zeros(n * ((nb + 1) // 2), np.uint8)
    return NBitsWeights(
        packed=np.ascontiguousarray(packed),
        scales=mat.d.astype(np.float32).reshape(-1),
        zero_points=zero_points,
        mins=np.ascontiguousarray(mat.m.astype(np.float32).T),
    )


def unpermute_rope_rows(n_rows: int, n_heads: int) -> np.ndarray:
    """Row order undoing llama.cpp's Q/K permutation, so the standard (half-split) rotary applies.

    llama.cpp's converter reorders each head's rows [first half, second half] into adjacent pairs
    (row 2i <- i, row 2i+1 <- i + head_dim/2) for its pairwise rotary; this returns the inverse.
    """
    head_dim = n_rows // n_heads
    idx = np.arange(n_rows).reshape(n_heads, head_dim // 2, 2)
    return idx.swapaxes(1, 2).reshape(-1)


@dataclass(frozen=True)
class Q8Table:
    """A float32 table recovered exactly as Q8_0 blocks: table == q * d elementwise."""

    q: np.ndarray  # [rows, cols/32, 32] int8
    d: np.ndarray  # [rows, cols/32] float32 (fp16 values)


def recover_q8_0(table: np.ndarray) -> Q8Table | None:
    """The Q8_0 blocks a float32 [rows, cols] table was dequantized from, or None if it was not.

    llama.cpp's Q8_0 quantizer sets d = fp16(amax / 127) and stores q = round(x / d) with the
    amax element at +-127, so d = amax / 127 exactly (127 * d is exact in float32). The result
    is accepted only if every element is reproduced bit for bit.
    """
    rows, cols = table.shape
    if cols % QUANT_BLOCK:
        return None
    blocks = table.reshape(rows, cols // QUANT_BLOCK, QUANT_BLOCK)
    d = (np.abs(blocks).max(axis=2) / np.float32(127)).astype(np.float32)  # [rows, nb]
    if not np.array_equal(d.astype(np.float16).astype(np.float32), d):
        return None
    safe = np.where(d == 0, np.float32(1), d)[:, :, None]
    q = np.rint(blocks / safe)
    if np.abs(q).max() > 127 or not np.array_equal((q * d[:, :, None]).astype(np.float32), blocks):
        return None
    return Q8Table(q=q.astype(np.int8), d=d)


@dataclass(frozen=True)
class SplitHead:
    """A Q8_0 table as two exact 4-bit MatMulNBits halves: q = 16 * (high - 8) + low.

    y = x @ table.T = MatMulNBits(x; high, scales 16 d, zero point 8 (the default))
                      + MatMulNBits(x; low, scales d, zero points 0); both fast 4-bit paths.
    """

    high: np.ndarray  # [N, K/32, 16] uint8, packed like NBitsWeights.packed; nibbles (q >> 4) + 8
    high_scales: np.ndarray  # [N * K/32] float32, 16 d (exact: a power-of-two multiple)
    low: np.ndarray  # [N, K/32, 16] uint8; nibbles q & 15
    low_scales: np.ndarray  # [N * K/32] float32, d
    low_zero_points: np.ndarray  # [N * ceil((K/32)/2)] uint8, all zero


def _pack_pairs(nibbles: np.ndarray) -> np.ndarray:
    """[N, nb, 32] values 0..15 -> [N, nb, 16] bytes, element 2j low nibble, 2j+1 high."""
    n, nb, _ = nibbles.shape
    pairs = nibbles.reshape(n, nb, 16, 2)
    return np.ascontiguousarray((pairs[..., 0] | (pairs[..., 1] << 4)).astype(np.uint8))


def split_q8_head(table: Q8Table) -> SplitHead:
    """Split Q8_0 blocks into the two 4-bit halves of `SplitHead`."""
    q = table.q.astype(np.int16)  # [N, nb, 32] in -128..127
    high = (q >> 4) + 8  # arithmetic shift: floor(q / 16) in -8..7, stored as 0..15
    low = q & 15  # q - 16 * floor(q / 16), in 0..15
    n, nb, _ = q.shape
    return SplitHead(
        high=_pack_pairs(high.astype(np.uint8)),
        high_scales=(table.d * np.float32(16)).astype(np.float32).reshape(-1),
        low=_pack_pairs(low.astype(np.uint8)),
        low_scales=table.d.reshape(-1).astype(np.float32),
        low_zero_points=np.zeros(n * ((nb + 1) // 2), np.uint8),
    )
