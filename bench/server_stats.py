"""Figures of one concurrency level: the raw run (`LevelRun`) and its summary over rounds (`LevelSummary`).

Definitions (all pure, no clock):
- total tok/s of a run = completion tokens of its ok streams / wall time from the first request
  sent to the last body ended; the summary reports the median over rounds (and the best);
- latency = whole request, from sent to the end of the body; TTFT = sent to the first content
  chunk; both pooled over every ok stream of every round, then p50 / p99 (`percentile`);
- per-stream decode tok/s = (tokens - 1) / (last content - first content), median over streams;
- errors = streams that were not ok: non-200 answers (counted by status), transport errors and
  timeouts (status 0), and 200 streams that broke (error event, no [DONE]).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from bench.server_sse import StreamResult, percentile

if TYPE_CHECKING:
    from bench.server_prefix import PrefixRun


@dataclass(frozen=True)
class LevelRun:
    """`streams` requests sent at once to one server, in one round."""

    streams: int
    round: int  # 0-based
    wall_s: float  # first request sent -> last body ended
    results: list[StreamResult]

    @property
    def tokens(self) -> int:
        """Completion tokens of the ok streams."""
        return sum(r.tokens for r in self.results if r.ok)

    @property
    def total_tok_s(self) -> float:
        """Tokens of the ok streams per second of wall time."""
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, every stream included."""
        return {"streams": self.streams, "round": self.round, "wall_s": self.wall_s,
                "tokens": self.tokens, "total_tok_s": self.total_tok_s,
                "results": [r.to_dict() for r in self.results]}


@dataclass(frozen=True)
class LevelSummary:
    """One server at one concurrency level, over every round; seconds unless named otherwise."""

    streams: int
    rounds: int
    total_tok_s: float | None  # median over rounds
    total_tok_s_best: float | None
    latency_p50_s: float | None
    latency_p99_s: float | None
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    decode_tok_s_p50: float | None  # per-stream decode rate, median over streams
    tokens_min: int | None  # completion tokens per ok stream
    tokens_max: int | None
    token_sources: list[str]  # how tokens were counted, e.g. ["usage"]
    finish_reasons: dict[str, int]
    requests: int
    errors: int
    non_200: dict[str, int]  # status -> count ("0": no status: connection error or timeout)
    error_examples: list[str]  # up to 3 distinct messages

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def summarize_level(runs: Sequence[LevelRun]) -> LevelSummary:
    """Pool the rounds of one level (all with the same `streams`)."""
    if not runs:
        raise ValueError("summarize_level: no runs")
    results = [r for run in runs for r in run.results]
    ok = [r for r in results if r.ok]
    rates = [run.total_tok_s for run in runs]
    latencies = [r.latency_s for r in ok]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    decode = [d for r in ok if (d := r.decode_tok_s) is not None]
    bad = [r for r in results if not r.ok]
    return LevelSummary(
        streams=runs[0].streams, rounds=len(runs),
        total_tok_s=statistics.median(rates), total_tok_s_best=max(rates),
        latency_p50_s=percentile(latencies, 50), latency_p99_s=percentile(latencies, 99),
        ttft_p50_s=percentile(ttfts, 50), ttft_p99_s=percentile(ttfts, 99),
        decode_tok_s_p50=percentile(decode, 50),
        tokens_min=min((r.tokens for r in ok), default=None), tokens_max=max((r.tokens for r in ok), default=None),
        token_sources=sorted({r.token_source for r in ok}),
        finish_reasons=dict(Counter(r.finish_reason or "none" for r in ok)),
        requests=len(results), errors=len(bad),
        non_200=dict(Counter(str(r.status) for r in bad if r.status != 200)),
        error_examples=list(dict.fromkeys(r.error or "" for r in bad))[:3],
    )


@dataclass
class ServerRecord:
    """Everything measured on one server over the rounds (filled as the bench goes)."""

    name: str  # "ours", "llama.cpp" (llama-cpp-python) or "llama-server"
    command: list[str]
    model_id: str | None = None
    startup_s: list[float] = field(default_factory=list)  # spawn -> ready, per round
    load_1m: list[float] = field(default_factory=list)  # 1-minute load average when each round began
    warmups: list[StreamResult] = field(default_factory=list)  # one untimed request per round
    runs: list[LevelRun] = field(default_factory=list)
    prefix: list[PrefixRun] = field(default_factory=list)  # shared-prefix TTFT pairs, one per round

    def summaries(self) -> list[LevelSummary]:
        """One summary per level, in the order the levels first ran."""
        levels = list(dict.fromkeys(run.streams for run in self.runs))
        return [summarize_level([run for run in self.runs if run.streams == n]) for n in levels]

    def summary(self, streams: int) -> LevelSummary | None:
        """The summary of one level, None if it did not run."""
        return next((s for s in self.summaries() if s.streams == streams), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the raw runs and their summaries."""
        return {"name": self.name, "command": self.command, "model_id": self.model_id,
                "startup_s": self.startup_s, "load_1m": self.load_1m,
                "warmups": [w.to_dict() for w in self.warmups],
                "summaries": [s.to_dict() for s in self.summaries()],
                "runs": [run.to_dict() for run in self.runs],
                "prefix": [p.to_dict() for p in self.prefix]}
