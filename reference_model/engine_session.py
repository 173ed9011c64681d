"""Open an ONNX Runtime session on the best available execution provider."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from reference_model.errors import ReferenceModelError

DEVICES = ("auto", "cpu", "cuda")


class EngineError(ReferenceModelError):
    """The engine was misused (unknown sequence, no free slot, bad token id) or could not start."""


# onnxruntime ships no type information: these protocols state the part of its API this package uses.


class IoBinding(Protocol):
    """An `onnxruntime.IOBinding`: inputs and outputs bound to buffers, for `run_with_iobinding`."""

    def bind_input(self, name: str, device_type: str, device_id: int, element_type: type[np.generic],
                   shape: Sequence[int], buffer_ptr: int) -> None: ...

    def bind_output(self, name: str, device_type: str, device_id: int, element_type: type[np.generic],
                    shape: Sequence[int], buffer_ptr: int) -> None: ...

    def bind_cpu_input(self, name: str, arr_on_cpu: np.ndarray) -> None: ...


class OrtSessionOptions(Protocol):
    """An `onnxruntime.SessionOptions`, as read back from a session."""

    def get_session_config_entry(self, config_key: str) -> str: ...


class OrtSession(Protocol):
    """An `onnxruntime.InferenceSession`."""

    def io_binding(self) -> IoBinding: ...

    def run_with_iobinding(self, iobinding: IoBinding) -> None: ...

    def get_providers(self) -> list[str]: ...

    def get_session_options(self) -> OrtSessionOptions: ...


@dataclass(frozen=True)
class SessionChoice:
    """The opened session and the provider that actually runs it."""

    session: OrtSession
    provider: str  # "CPUExecutionProvider" or "CUDAExecutionProvider"


def _nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver is loaded; `auto` skips CUDA otherwise (ORT would log a load error)."""
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def open_session(path: Path, *, device: str = "auto", threads: int | None = None,
                 spin: bool = True) -> SessionChoice:
    """Load `path` on CUDA when asked or when `auto` and CUDA loads, else on the CPU.

    spin=False stops idle intra-op threads from spin-waiting: slower on idle cores, but it keeps
    a machine shared with other busy processes from collapsing (and leaves them their cores).
    """
    import onnxruntime as ort

    if device not in DEVICES:
        raise EngineError(f"device must be one of {DEVICES}, got {device!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise EngineError(f"threads must be a positive int or None, got {threads!r}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads is not None:
        opts.intra_op_num_threads = threads
    if not isinstance(spin, bool):
        raise EngineError(f"spin must be a bool, got {spin!r}")
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.log_severity_level = 3  # keep ORT's warnings about CPU-placed shape ops out of the output

    cuda_ok = "CUDAExecutionProvider" in ort.get_available_providers() and _nvidia_driver_present()
    if device == "cuda" or (device == "auto" and cuda_ok):
        try:
            sess = ort.InferenceSession(str(path), opts, providers=["CUDAExecutionProvider",
                                                                    "CPUExecutionProvider"])
            if sess.get_providers()[0] == "CUDAExecutionProvider":
                return SessionChoice(sess, "CUDAExecutionProvider")
            reason = f"providers loaded: {sess.get_providers()}"
        except Exception as exc:  # ORT raises plain RuntimeError/Fail when CUDA libraries are absent
            reason = f"{type(exc).__name__}: {exc}"
        if device == "cuda":
            raise EngineError(f"device='cuda' was requested but the CUDA execution provider did not "
                              f"load ({reason})")
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EngineError(f"could not load ONNX model {path}: {exc}") from exc
    return SessionChoice(sess, "CPUExecutionProvider")
