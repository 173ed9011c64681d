"""Shared fixtures for the reference model tests: the real GGUF (prepared once), tokenizer, template."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_model.chat_template import ChatTemplate
from reference_model.tokenizer import Tokenizer
from reference_model.weights import ensure_gguf


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    """The verified cached GGUF; the first run on a machine downloads it (about 93 MB)."""
    return ensure_gguf(progress=False)


@pytest.fixture(scope="session")
def tokenizer(gguf_path: Path) -> Tokenizer:
    """The reference tokenizer, built from the GGUF."""
    return Tokenizer.from_gguf(gguf_path)


@pytest.fixture(scope="session")
def chat_template(gguf_path: Path) -> ChatTemplate:
    """The reference chat template, read from the GGUF."""
    return ChatTemplate.from_gguf(gguf_path)
