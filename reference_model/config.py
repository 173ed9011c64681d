"""The model's hyperparameters as one frozen value, read from GGUF metadata (or set for the tiny model)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from reference_model.errors import ReferenceModelError


class ConfigValueError(ReferenceModelError):
    """A model hyperparameter is missing or inconsistent."""


# Both weight formats quantize along the input dimension in blocks of this many elements (GGUF
# Q4_1/Q8_0 and MatMulNBits share it), so every linear layer's input size must be a multiple of it.
QUANT_BLOCK = 32


@dataclass(frozen=True)
class ModelConfig:
    """Llama-architecture hyperparameters: everything the graph builder and the engine need."""

    n_layers: int
    hidden_size: int
    ffn_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_eps: float
    vocab_size: int
    context_length: int
    name: str = "model"

    def __post_init__(self) -> None:
        for field in ("n_layers", "hidden_size", "ffn_size", "n_heads", "n_kv_heads", "head_dim",
                      "vocab_size", "context_length"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ConfigValueError(f"ModelConfig.{field} must be a positive int, got {value!r}")
        if self.n_heads * self.head_dim != self.hidden_size:
            raise ConfigValueError(
                f"ModelConfig: n_heads*head_dim must equal hidden_size, got "
                f"{self.n_heads}*{self.head_dim} != {self.hidden_size}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigValueError(
                f"ModelConfig.n_kv_heads must divide n_heads, got {self.n_kv_heads} and {self.n_heads}")
        if self.head_dim % 2:
            raise ConfigValueError(f"ModelConfig.head_dim must be even (rotary pairs), got {self.head_dim}")
        for field in ("hidden_size", "ffn_size"):
            if getattr(self, field) % QUANT_BLOCK:
                raise ConfigValueError(
                    f"ModelConfig.{field} must be a multiple of {QUANT_BLOCK} (quantization block), "
                    f"got {getattr(self, field)}")

    @property
    def q_size(self) -> int:
        """Width of the query projection (n_heads * head_dim)."""
        return self.n_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Width of each of the key and value projections (n_kv_heads * head_dim)."""
        return self.n_kv_heads * self.head_dim

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for manifests and reports)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`."""
        return cls(**data)

    @classmethod
    def from_gguf_fields(cls, fields: dict[str, Any], name: str = "model") -> ModelConfig:
        """Build from GGUF metadata (key -> decoded value); only the llama architecture is supported."""
        arch = fields.get("general.architecture")
        if arch != "llama":
            raise ConfigValueError(f"GGUF general.architecture must be 'llama', got {arch!r}")

        def need(key: str) -> Any:
            if f"llama.{key}" not in fields:
                raise ConfigValueError(f"GGUF metadata lacks required key 'llama.{key}'")
            return fields[f"llama.{key}"]

        hidden = int(need("embedding_length"))
        n_heads = int(need("attention.head_count"))
        head_dim = hidden // n_heads
        rot = fields.get("llama.rope.dimension_count", head_dim)
        if int(rot) != head_dim:
            # Partial rotary is not part of this architecture; refuse rather than compute wrongly.
            raise ConfigValueError(
                f"GGUF llama.rope.dimension_count must equal head_dim {head_dim}, got {rot}")
        vocab = fields.get("llama.vocab_size")
        if vocab is None:
            vocab = len(fields["tokenizer.ggml.tokens"])
        return cls(
            n_layers=int(need("block_count")),
            hidden_size=hidden,
            ffn_size=int(need("feed_forward_length")),
            n_heads=n_heads,
            n_kv_heads=int(fields.get("llama.attention.head_count_kv", n_heads)),
            head_dim=head_dim,
            rope_theta=float(fields.get("llama.rope.freq_base", 10000.0)),
            rms_eps=float(need("attention.layer_norm_rms_epsilon")),
            vocab_size=int(vocab),
            context_length=int(need("context_length")),
            name=name,
        )
