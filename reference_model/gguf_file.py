"""Reading GGUF files: a shared per-process reader and the facts `chatconform model info` shows.

Split from weights.py, which fetches and verifies the file; this module only reads it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reference_model.errors import WeightsError
from reference_model.weights import GGUF_SHA256, MODEL_NAME, ensure_gguf, gguf_cache_path, read_manifest, sha256_file

if TYPE_CHECKING:
    from gguf import GGUFReader


@dataclass(frozen=True)
class GGUFInfo:
    """Facts about a GGUF file, shown by `chatconform model info`."""

    path: Path
    size: int
    sha256: str
    verified: bool  # sha256 equals GGUF_SHA256
    architecture: str
    name: str
    context_length: int
    vocab_size: int
    tensor_count: int



@functools.lru_cache(maxsize=4)
def _open_reader(path: Path, size: int, mtime_ns: int) -> GGUFReader:
    from gguf import GGUFReader  # heavy import, only when asked

    return GGUFReader(path)


def open_gguf(path: str | Path) -> GGUFReader:
    """A `gguf.GGUFReader` for `path`, shared per process (parsing the metadata takes ~2 s).

    Keyed by size and mtime so a replaced file is read again. Raises WeightsError on unreadable files.
    """
    path = Path(path).resolve()
    try:
        st = path.stat()
        return _open_reader(path, st.st_size, st.st_mtime_ns)
    except Exception as exc:  # the gguf package raises ValueError/struct errors on bad files
        raise WeightsError(f"cannot read GGUF {path}: {exc}") from exc


def gguf_info(path: Path | None = None, *, verify: bool = False) -> GGUFInfo:
    """Describe a GGUF (default: the prepared cache); sha256 comes from the manifest unless stale or verify=True."""
    path = Path(path) if path is not None else ensure_gguf()
    try:
        st = path.stat()
    except OSError as exc:
        raise WeightsError(f"gguf_info: cannot stat {path}: {exc}") from exc
    manifest = read_manifest() if path.resolve() == gguf_cache_path().resolve() else None
    if not verify and manifest is not None and manifest.matches(st):
        sha = manifest.sha256
    else:
        sha = sha256_file(path)
    reader = open_gguf(path)
    arch = str(reader.fields["general.architecture"].contents())

    def scalar(key: str, default: int = 0) -> int:
        field = reader.fields.get(key)
        return int(field.contents()) if field is not None else default

    name_field = reader.fields.get("general.name")
    return GGUFInfo(
        path=path,
        size=st.st_size,
        sha256=sha,
        verified=sha == GGUF_SHA256,
        architecture=arch,
        name=str(name_field.contents()) if name_field is not None else MODEL_NAME,
        context_length=scalar(f"{arch}.context_length"),
        vocab_size=scalar(f"{arch}.vocab_size"),
        tensor_count=len(reader.tensors),
    )
