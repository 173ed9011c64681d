"""Names that the command line needs without importing onnx or numpy (a light install has neither)."""

from __future__ import annotations

# The ONNX graphs the converter builds: exact 4-bit MatMulNBits, or dequantized float32.
WEIGHT_FORMATS = ("int4", "fp32")
