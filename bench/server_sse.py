"""Pure parts of the server bench: one stream's SSE transcript to a `StreamResult`, and percentiles.

A transcript is the list of lines the client read from a `text/event-stream` body, each with the
`time.perf_counter()` second at which it was read. Nothing here does I/O or reads a clock, so it is
tested on transcripts recorded from the two servers (`tests/bench/data/`).

Token counting, per stream: the `completion_tokens` of a usage chunk when the server sent one
(`stream_options.include_usage`), else the number of chunks whose delta carries non-empty content
(or a tool-call fragment). Which of the two was used is kept in `StreamResult.token_source`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

TimedLine = tuple[float, str]  # (perf_counter seconds when read, the line without its newline)

TOKENS_FROM_USAGE = "usage"
TOKENS_FROM_CHUNKS = "content chunks"
TOKENS_NONE = "none"


@dataclass(frozen=True)
class StreamResult:
    """One streamed request as the client saw it; times in seconds from the moment it was sent."""

    status: int  # HTTP status; 0 when no status arrived (connection error, timeout)
    ok: bool  # 200, [DONE] seen, no error event
    error: str | None  # why not ok (status and body excerpt, exception, missing [DONE], error event)
    tokens: int  # completion tokens (see token_source)
    token_source: str  # TOKENS_FROM_USAGE, TOKENS_FROM_CHUNKS or TOKENS_NONE
    content_chunks: int  # chunks with non-empty content or tool-call deltas
    ttft_s: float | None  # to the first content chunk
    last_token_s: float | None  # to the last content chunk
    latency_s: float  # to the end of the body (after [DONE]) or the failure
    finish_reason: str | None

    @property
    def decode_tok_s(self) -> float | None:
        """Per-stream decode rate: (tokens - 1) / (last content - first content), None if undefined."""
        if self.ttft_s is None or self.last_token_s is None or self.tokens < 2:
            return None
        span = self.last_token_s - self.ttft_s
        return (self.tokens - 1) / span if span > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the derived decode rate."""
        return {**asdict(self), "decode_tok_s": self.decode_tok_s}


def failed(status: int, error: str, latency_s: float) -> StreamResult:
    """A request that produced no usable stream (non-200, transport error, timeout)."""
    return StreamResult(status=status, ok=False, error=error, tokens=0, token_source=TOKENS_NONE,
                        content_chunks=0, ttft_s=None, last_token_s=None, latency_s=latency_s,
                        finish_reason=None)


def sse_data(lines: Sequence[TimedLine]) -> list[tuple[float, str]]:
    """The `data:` payloads in order, with their read times (comments, event names, blanks dropped)."""
    out: list[tuple[float, str]] = []
    for at, line in lines:
        if line.startswith("data:"):
            payload = line[5:]
            out.append((at, payload.removeprefix(" ")))
    return out


def _has_content(chunk: dict[str, Any]) -> bool:
    """Whether any choice's delta carries generated text or a tool-call fragment."""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls"):
            return True
    return False


def _finish_reason(chunk: dict[str, Any]) -> str | None:
    for choice in chunk.get("choices") or []:
        if choice.get("finish_reason"):
            return str(choice["finish_reason"])
    return None


def summarize(lines: Sequence[TimedLine], *, start: float, end: float, status: int = 200) -> StreamResult:
    """One 200 stream's transcript (read times in perf_counter seconds) to its figures.

    start: when the request was sent; end: when the body ended. ok needs `data: [DONE]` and no
    error event; a payload that is not JSON is an error too.
    """
    error: str | None = None
    done = False
    usage_tokens: int | None = None
    chunks = 0
    first: float | None = None
    last: float | None = None
    finish: str | None = None
    for at, payload in sse_data(lines):
        if payload.strip() == "[DONE]":
            done = True
            continue
        try:
            event = json.loads(payload)
        except json.JSONDecodeError:
            error = error or f"payload is not JSON: {payload[:120]!r}"
            continue
        if not isinstance(event, dict) or "error" in event:
            error = error or f"error event: {payload[:200]}"
            continue
        usage = event.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            usage_tokens = usage["completion_tokens"]
        finish = _finish_reason(event) or finish
        if _has_content(event):
            chunks += 1
            first = at if first is None else first
            last = at
    if error is None and not done:
        error = "the stream ended without data: [DONE]"
    if usage_tokens is not None:
        tokens, source = usage_tokens, TOKENS_FROM_USAGE
    else:
        tokens, source = chunks, TOKENS_FROM_CHUNKS
    return StreamResult(
        status=status, ok=error is None and status == 200, error=error, tokens=tokens, token_source=source,
        content_chunks=chunks, ttft_s=None if first is None else first - start,
        last_token_s=None if last is None else last - start, latency_s=end - start, finish_reason=finish)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default); None if empty.

    With fewer than 100 values, p99 lies between the two largest.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile: q must be in [0, 100], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
