"""Render chat messages to ChatML text with the GGUF's own chat template (sandboxed jinja2)."""

from __future__ import annotations

from pathlib import Path

import gguf
from jinja2.sandbox import ImmutableSandboxedEnvironment


def gguf_chat_template(path: Path) -> str:
    """Return the `tokenizer.chat_template` string stored in a GGUF file."""
    field = gguf.GGUFReader(path).fields.get("tokenizer.chat_template")
    if field is None:
        raise ValueError(f"{path}: GGUF has no 'tokenizer.chat_template' metadata")
    return str(field.contents())


def control_token_texts(path: Path, count: int = 17) -> list[str]:
    """Return the texts of token ids 0..count-1 from the GGUF's tokenizer.ggml.tokens."""
    field = gguf.GGUFReader(path).fields["tokenizer.ggml.tokens"]
    return [str(field.contents(i)) for i in range(count)]


def render_chatml(template: str, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """Render `messages` with `template` the way transformers does (trim/lstrip blocks, sandbox)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
