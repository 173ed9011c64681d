"""GGUF -> ONNX conversion: block decoding (`quant`), typed weights (`weights_model`), graph (`graph`)."""

from reference_model.convert.graph import WEIGHT_FORMATS, GraphOptions, build_graph
from reference_model.convert.quant import ConversionError
from reference_model.convert.weights_model import ModelWeights, load_gguf_weights

__all__ = ["WEIGHT_FORMATS", "ConversionError", "GraphOptions", "ModelWeights", "build_graph", "load_gguf_weights"]
