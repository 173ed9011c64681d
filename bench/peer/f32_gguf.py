"""Write (and cache) an F32 copy of the Q4_1 GGUF: same metadata, every tensor dequantized."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from bench.peer.model_files import F32_GGUF_NAME, PEER_CACHE_DIR, sha256_of, source_gguf

# Keys the reader synthesises from the file header; the writer emits them itself.
_HEADER_KEYS = ("GGUF.version", "GGUF.tensor_count", "GGUF.kv_count")


@dataclass(frozen=True)
class F32Copy:
    """The F32 GGUF on disk with the hashes that tie it to its Q4_1 source."""

    path: Path
    sha256: str
    source_sha256: str


def _field_value(field: gguf.ReaderField) -> tuple[object, gguf.GGUFValueType, gguf.GGUFValueType | None]:
    """Return (value, type, array sub-type) of a reader field, ready for GGUFWriter.add_key_value."""
    vtype = field.types[0]
    sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
    return field.contents(), vtype, sub_type


def _copy_metadata(reader: gguf.GGUFReader, writer: gguf.GGUFWriter) -> None:
    """Copy every KV pair; only general.file_type changes, because the tensors become F32."""
    for key, field in reader.fields.items():
        if key in _HEADER_KEYS or key == "general.architecture":
            continue  # GGUFWriter writes the architecture itself, from its `arch` argument
        value, vtype, sub_type = _field_value(field)
        if key == "general.file_type":
            # The file type describes the weights; leaving MOSTLY_Q4_1 on an all-F32 file would lie.
            value = int(gguf.LlamaFileType.ALL_F32)
        writer.add_key_value(key, value, vtype, sub_type)


def _dequantized(tensor: gguf.ReaderTensor) -> np.ndarray:
    """Return the tensor as float32 in numpy order (GGUF's shape reversed, e.g. [49152, 576])."""
    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    numpy_shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
    return np.ascontiguousarray(values.astype(np.float32, copy=False).reshape(numpy_shape))


def write_f32_copy(source: Path, target: Path) -> None:
    """Write the F32 copy of `source` to `target` (through a temp file renamed at the end)."""
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    partial = target.with_suffix(target.suffix + ".partial")
    writer = gguf.GGUFWriter(partial, arch)
    _copy_metadata(reader, writer)
    for tensor in reader.tensors:
        # add_tensor reverses the numpy shape back into GGUF order ([576, 49152] for the embedding).
        writer.add_tensor(tensor.name, _dequantized(tensor))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    verify_f32_copy(source, partial)
    os.replace(partial, target)


def verify_f32_copy(source: Path, copy: Path) -> None:
    """Raise ValueError unless `copy` has the source's metadata and its exact dequantized tensors."""
    original, converted = gguf.GGUFReader(source), gguf.GGUFReader(copy)
    for key, field in original.fields.items():
        if key in _HEADER_KEYS or key == "general.file_type":
            continue
        if key not in converted.fields:
            raise ValueError(f"F32 copy: metadata key {key!r} is missing")
        if _field_value(field) != _field_value(converted.fields[key]):
            raise ValueError(f"F32 copy: metadata key {key!r} differs from the source")
    extra = set(converted.fields) - set(original.fields)
    if extra:
        raise ValueError(f"F32 copy: unexpected metadata keys {sorted(extra)}")
    if [t.name for t in original.tensors] != [t.name for t in converted.tensors]:
        raise ValueError("F32 copy: tensor names or order differ from the source")
    for src, dst in zip(original.tensors, converted.tensors, strict=True):
        if dst.tensor_type != gguf.GGMLQuantizationType.F32:
            raise ValueError(f"F32 copy: tensor {dst.name!r} is {dst.tensor_type.name}, not F32")
        if src.shape.tolist() != dst.shape.tolist():
            raise ValueError(f"F32 copy: tensor {dst.name!r} shape {dst.shape.tolist()} != {src.shape.tolist()}")
        if not np.array_equal(_dequantized(src), _dequantized(dst)):
            raise ValueError(f"F32 copy: tensor {dst.name!r} values differ from the dequantized source")


def ensure_f32_copy(source: Path, cache_dir: Path = PEER_CACHE_DIR) -> F32Copy:
    """Return the cached F32 copy of `source`, writing and verifying it on first use."""
    source_sha = sha256_of(source)
    target = cache_dir / F32_GGUF_NAME
    stamp = target.with_suffix(".json")
    if target.is_file() and stamp.is_file():
        recorded = json.loads(stamp.read_text())
        if recorded.get("source_sha256") == source_sha and recorded.get("sha256") == sha256_of(target):
            return F32Copy(target, recorded["sha256"], source_sha)
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_f32_copy(source, target)
    copy = F32Copy(target, sha256_of(target), source_sha)
    stamp.write_text(json.dumps({"source_sha256": source_sha, "sha256": copy.sha256}, indent=1) + "\n")
    return copy


def main(argv: list[str] | None = None) -> int:
    """CLI: write or reuse the cached F32 copy and print its path and hashes as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.peer.f32_gguf", description=__doc__)
    parser.add_argument("--gguf", type=Path, default=None, help="the Q4_1 GGUF (default: ensure_gguf())")
    args = parser.parse_args(argv)
    copy = ensure_f32_copy(source_gguf(args.gguf))
    print(json.dumps({"path": str(copy.path), "sha256": copy.sha256, "source_sha256": copy.source_sha256}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
