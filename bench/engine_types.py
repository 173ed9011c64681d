"""Typed results of the engine bench: our engine's run, the physical limit, targets, the whole report."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# The targets on the 2-core CPU (ratios are ours / llama.cpp's).
DECODE_RATIO_TARGET = 1.3
PREFILL_RATIO_TARGET = 2.5
PEAK_MEMORY_TARGET_MB = 600.0
BATCH8_RATIO_TARGET = 4.0

MB = 1_000_000  # bytes; memory figures are decimal megabytes (the target says "600 MB")
MIB = 1 << 20


@dataclass(frozen=True)
class BatchRun:
    """Batched greedy decode of `batch` sequences in one `Engine.step` per token."""

    batch: int
    total_tok_s: float  # median over repetitions of batch * steps / wall time
    runs_tok_s: list[float]


@dataclass(frozen=True)
class OurMeasurement:
    """One measurement of our engine in its own process; rates are medians over `repeats` runs."""

    model: str  # "real" or "tiny"
    weights: str
    device: str
    provider: str
    onnxruntime: str
    n_threads: int
    prompt_tokens: int
    decode_tokens: int
    batch_tokens: int
    repeats: int
    prefill_chunk: int
    prefill_tok_s: float
    prefill_runs_tok_s: list[float]
    prefill_best_tok_s: float
    decode_tok_s: float
    decode_runs_tok_s: list[float]
    decode_best_tok_s: float
    batched: list[BatchRun]
    # VmHWM after the single-sequence part (what is compared with llama.cpp), and at the end.
    peak_rss_mb: float
    peak_rss_batched_mb: float
    load_average_1m: list[float]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OurMeasurement:
        """Rebuild from `asdict` output (the child's JSON line)."""
        data = dict(data)
        data["batched"] = [BatchRun(**b) for b in data["batched"]]
        return cls(**data)

    @classmethod
    def merge(cls, rounds: list[OurMeasurement]) -> OurMeasurement:
        """One measurement from several rounds (each its own process): runs pooled, medians redone."""
        first = rounds[0]
        prefill = [r for m in rounds for r in m.prefill_runs_tok_s]
        decode = [r for m in rounds for r in m.decode_runs_tok_s]
        batched = []
        for b in first.batched:
            runs = [r for m in rounds for run in m.batched if run.batch == b.batch for r in run.runs_tok_s]
            batched.append(BatchRun(b.batch, round(statistics.median(runs), 2), runs))
        return replace(
            first, repeats=len(prefill),
            prefill_tok_s=round(statistics.median(prefill), 2), prefill_runs_tok_s=prefill,
            prefill_best_tok_s=max(prefill),
            decode_tok_s=round(statistics.median(decode), 2), decode_runs_tok_s=decode,
            decode_best_tok_s=max(decode), batched=batched,
            peak_rss_mb=max(m.peak_rss_mb for m in rounds),
            peak_rss_batched_mb=max(m.peak_rss_batched_mb for m in rounds),
            load_average_1m=[first.load_average_1m[0], rounds[-1].load_average_1m[-1]],
        )

    def batch_rate(self, batch: int) -> float | None:
        """Total tokens/s for `batch` sequences, if measured."""
        return next((b.total_tok_s for b in self.batched if b.batch == batch), None)


def merge_peer(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One peer measurement (bench.peer.measure.PeerMeasurement as a dict) from several rounds."""
    merged = dict(rounds[0])
    for kind in ("prefill", "decode"):
        runs = [r for m in rounds for r in m[f"{kind}_runs_tok_s"]]
        merged[f"{kind}_runs_tok_s"] = runs
        merged[f"{kind}_tok_s"] = round(statistics.median(runs), 2)
        merged[f"{kind}_best_tok_s"] = max(runs)
        merged[f"llama_{kind}_tok_s"] = round(statistics.median(m[f"llama_{kind}_tok_s"] for m in rounds), 2)
    merged["repeats"] = len(merged["prefill_runs_tok_s"])
    merged["peak_rss_mib"] = max(m["peak_rss_mib"] for m in rounds)
    merged["load_average_1m"] = [rounds[0]["load_average_1m"][0], rounds[-1]["load_average_1m"][-1]]
    return merged


@dataclass(frozen=True)
class WeightBytes:
    """Bytes of initializers one decode step of one sequence reads, split by role."""

    linear: int  # quantized projection weights: packed nibbles, scales, zero points, block minimums
    head: int  # the output head table (fp32, tied to the embedding)
    other: int  # norms, small constants, the embedding/rotary rows gathered for one token

    @property
    def total(self) -> int:
        """All bytes read per decode token."""
        return self.linear + self.head + self.other


@dataclass(frozen=True)
class Bandwidth:
    """Memory read bandwidth measured by a threaded numpy reduction over a large array."""

    gb_s: float  # best of the runs, 1e9 bytes per second
    runs_gb_s: list[float]
    array_bytes: int
    n_threads: int


@dataclass(frozen=True)
class PhysicalLimit:
    """Decode speed bound by memory bandwidth: every weight byte is read once per token."""

    bandwidth: Bandwidth
    weight_bytes: WeightBytes
    max_tok_s: float  # bandwidth / bytes per token
    our_decode_fraction: float  # our median decode tok/s / max_tok_s


@dataclass(frozen=True)
class Verdict:
    """One target: the measured value, the rule, and whether it holds."""

    name: str
    value: float | None
    target: str
    passed: bool | None  # None: not measurable in this run (e.g. no peer)


@dataclass(frozen=True)
class MachineInfo:
    """Where the bench ran."""

    cpu_model: str
    logical_cpus: int
    onnxruntime: str
    n_threads: int
    load_average_start: list[float]
    load_average_end: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class BenchReport:
    """Everything `python -m bench.engine` prints, as data (written with --json)."""

    version: int
    config: dict[str, Any]
    machine: MachineInfo
    ours: OurMeasurement
    peer: dict[str, Any] | None  # bench.peer.measure.PeerMeasurement as a dict
    peer_note: str | None  # why there is no peer measurement
    limit: PhysicalLimit
    cuda: OurMeasurement | None
    cuda_note: str | None
    verdicts: list[Verdict]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)
