"""The prepared-model cache: ONNX graphs converted from the verified GGUF, found again cheaply.

Layout: cache_dir()/<model>/onnx/<weights>/{model.onnx, manifest.json, .lock}. The manifest is
written last (atomically) and records the GGUF sha256, the converter version, the graph options,
the model config and each file's sha256, size and mtime. A graph is trusted when its manifest
matches and each file's size and mtime are unchanged; otherwise it is re-hashed, and rebuilt if
the hash differs (corrupt) or the manifest is missing (partial). Writes go to temporary names and
are renamed into place, under a lock, so concurrent processes convert once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from reference_model.config import ModelConfig
from reference_model.convert.graph import WEIGHT_FORMATS, GraphOptions
from reference_model.errors import ReferenceModelError
from reference_model.weights import (
    GGUF_SHA256,
    MODEL_NAME,
    cache_dir,
    cache_lock,
    ensure_gguf,
    plain_line,
    sha256_file,
)

# Bump when the graph builder changes what it writes: every cached graph is then rebuilt.
CONVERTER_VERSION = 2
MANIFEST_NAME = "manifest.json"
GRAPH_NAME = "model.onnx"
TEMP_PREFIX = ".tmp-"


class PreparedModelError(ReferenceModelError):
    """A prepared (converted) model is missing, corrupt, or could not be written."""


@dataclass(frozen=True)
class FileRecord:
    """One file of a prepared model as the manifest records it."""

    name: str
    sha256: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class PreparedManifest:
    """What was converted, from what, by which converter."""

    model: str
    weights: str
    converter_version: int
    gguf_sha256: str
    options: dict[str, Any]
    config: dict[str, Any]
    files: tuple[FileRecord, ...]
    created: str

    def to_json(self) -> str:
        """Serialized manifest."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreparedManifest:
        """Parse a manifest; raises KeyError/TypeError/ValueError on a malformed one."""
        data = json.loads(text)
        data["files"] = tuple(FileRecord(**f) for f in data["files"])
        return cls(**data)


@dataclass(frozen=True)
class PreparedModel:
    """A converted graph ready for the engine (satisfies `engine.EngineModel`)."""

    directory: Path
    manifest: PreparedManifest

    @property
    def onnx_path(self) -> Path:
        """The ONNX graph file."""
        return self.directory / GRAPH_NAME

    @property
    def config(self) -> ModelConfig:
        """The model's hyperparameters."""
        return ModelConfig.from_dict(self.manifest.config)

    @property
    def weights(self) -> str:
        """'int4' or 'fp32'."""
        return self.manifest.weights


def onnx_dir(weights: str) -> Path:
    """Where the graph for one weight format lives."""
    return cache_dir() / MODEL_NAME / "onnx" / weights


def _check_weights(weights: str) -> None:
    if weights not in WEIGHT_FORMATS:
        raise PreparedModelError(f"weights must be one of {WEIGHT_FORMATS}, got {weights!r}")


def _read_manifest(directory: Path) -> PreparedManifest | None:
    try:
        return PreparedManifest.from_json((directory / MANIFEST_NAME).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _file_ok(directory: Path, rec: FileRecord, verify: bool) -> bool:
    """Size and mtime unchanged (fast), else or when `verify`: the sha256 matches."""
    try:
        st = (directory / rec.name).stat()
    except OSError:
        return False
    if st.st_size != rec.size:
        return False
    if not verify and st.st_mtime_ns == rec.mtime_ns:
        return True
    return sha256_file(directory / rec.name) == rec.sha256


def find_prepared(weights: str = "int4", *, verify: bool = False,
                  options: GraphOptions | None = None) -> PreparedModel | None:
    """The cached graph for `weights` if complete, current and intact; else None."""
    _check_weights(weights)
    directory = onnx_dir(weights)
    manifest = _read_manifest(directory)
    wanted = asdict(options or GraphOptions(weights=weights))
    if (manifest is None or manifest.converter_version != CONVERTER_VERSION
            or manifest.gguf_sha256 != GGUF_SHA256 or manifest.weights != weights
            or manifest.options != wanted):
        return None
    if not all(_file_ok(directory, rec, verify) for rec in manifest.files):
        return None
    return PreparedModel(directory, manifest)


def _atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """Call write(tmp) (its result is ignored) then rename tmp onto target (same directory), fsyncing the file."""
    tmp = target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{target.name}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class _Stages:
    """Progress over named conversion stages: a rich bar on a terminal, plain lines elsewhere (a CI log)."""

    def __init__(self, enabled: bool, total: int, title: str) -> None:
        self._bar = None
        self._plain = enabled and not sys.stderr.isatty()
        self._started = time.monotonic()
        if self._plain:
            plain_line(f"{title}: {total} stages")
        elif enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
            self._bar.start()
            self._task = self._bar.add_task(title, total=total)

    def stage(self, description: str) -> None:
        if self._plain:
            plain_line(f"{description} ({time.monotonic() - self._started:.0f} s)")
        if self._bar is not None:
            self._bar.update(self._task, description=description)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def close(self) -> None:
        if self._plain:
            plain_line(f"conversion finished in {time.monotonic() - self._started:.0f} s")
        if self._bar is not None:
            self._bar.stop()


def convert_gguf(gguf: Path, directory: Path, options: GraphOptions, *, progress: bool = False,
                 gguf_sha256: str = GGUF_SHA256) -> PreparedModel:
    """Convert `gguf` into directory/model.onnx, then write its manifest (caller holds the lock)."""
    import onnx

    from reference_model.convert.graph import build_graph
    from reference_model.convert.weights_model import load_gguf_weights

    bar = _Stages(progress, 4, f"converting {options.weights}")
    try:
        bar.stage(f"{options.weights}: reading GGUF tensors")
        weights = load_gguf_weights(gguf, name=MODEL_NAME)
        config = weights.config
        bar.advance()
        bar.stage(f"{options.weights}: building ONNX graph")
        model = build_graph(weights, options)
        del weights
        bar.advance()
        bar.stage(f"{options.weights}: writing {GRAPH_NAME}")
        directory.mkdir(parents=True, exist_ok=True)
        # The old manifest goes first: from here until the new one lands the directory is partial.
        (directory / MANIFEST_NAME).unlink(missing_ok=True)
        _atomic_write(directory / GRAPH_NAME, partial(onnx.save_model, model))
        del model
        bar.advance()
        bar.stage(f"{options.weights}: hashing")
        graph = directory / GRAPH_NAME
        st = graph.stat()
        record = FileRecord(GRAPH_NAME, sha256_file(graph), st.st_size, st.st_mtime_ns)
        bar.advance()
    finally:
        bar.close()
    manifest = PreparedManifest(
        model=MODEL_NAME, weights=options.weights, converter_version=CONVERTER_VERSION,
        gguf_sha256=gguf_sha256, options=asdict(options), config=config.to_dict(), files=(record,),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    _atomic_write(directory / MANIFEST_NAME, lambda tmp: tmp.write_text(manifest.to_json()))
    return PreparedModel(directory, manifest)


def prepare(weights: str = "int4", *, progress: bool = False, verify: bool = False,
            options: GraphOptions | None = None) -> PreparedModel:
    """The graph for `weights`, converting it from the (fetched, verified) GGUF when needed."""
    _check_weights(weights)
    options = options or GraphOptions(weights=weights)
    if options.weights != weights:
        raise PreparedModelError(f"options.weights {options.weights!r} differs from weights {weights!r}")
    found = find_prepared(weights, verify=verify, options=options)
    if found is not None:
        return found
    gguf = ensure_gguf(progress=progress)
    directory = onnx_dir(weights)
    with cache_lock(directory):
        # Another process may have finished the conversion while this one waited for the lock.
        found = find_prepared(weights, verify=verify, options=options)
        if found is not None:
            return found
        for stray in directory.glob(f"{TEMP_PREFIX}*"):
            stray.unlink(missing_ok=True)
        return convert_gguf(gguf, directory, options, progress=progress)


@dataclass(frozen=True)
class CacheEntry:
    """One weight format's state in the cache, for `chatconform model info`."""

    weights: str
    directory: Path
    status: str  # "ready", "missing", "stale" (other converter/GGUF/options) or "corrupt"
    manifest: PreparedManifest | None


def cache_entries(*, verify: bool = False) -> list[CacheEntry]:
    """The state of every weight format's cached graph."""
    entries = []
    for weights in WEIGHT_FORMATS:
        directory = onnx_dir(weights)
        manifest = _read_manifest(directory)
        if manifest is None:
            status = "missing"
        elif (manifest.converter_version != CONVERTER_VERSION or manifest.gguf_sha256 != GGUF_SHA256
              or manifest.options != asdict(GraphOptions(weights=weights))):
            status = "stale"
        elif not all(_file_ok(directory, rec, verify) for rec in manifest.files):
            status = "corrupt"
        else:
            status = "ready"
        entries.append(CacheEntry(weights, directory, status, manifest))
    return entries
