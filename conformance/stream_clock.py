"""Whether a stream spanned a whole second of the client's clock: what makes stream.chunk.created-consistent observable.

A server that stamps each chunk with the current second (instead of once per stream) gives
its chunks one created value as long as the stream stays within one second, so only a stream whose
chunks straddle a second boundary can show it. `long_streams` asks for long streams, timed so that
the next one straddles a boundary, until one did; `spanned` says whether one did. Times come from
the client's wall clock (time.time()) and the exchange's own timings: the stream started
`elapsed_s` before it ended, its first event came `first_event_s` after the start.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from conformance.exchange import StreamExchange

TRIES = 3  # long streams sent at most, stopping at the first that spans a second boundary
LEAD_S = 0.1  # an aligned stream's first event is aimed this long before the boundary (or half its span)
# The end of a stream is read a little after its last chunk ([DONE], the close, the client's own work);
# a boundary counts only when it lies this far before the end, so it certainly came before the last chunk.
TAIL_S = 0.05


@dataclass(frozen=True)
class TimedStream:
    """A stream and the client's wall-clock time when it ended (None: not known, e.g. a shared sample)."""

    exchange: StreamExchange
    ended_at: float | None = None

    @property
    def span_s(self) -> float | None:
        """Seconds from the first event to the end of the stream (None without an event)."""
        first = self.exchange.first_event_s
        return None if first is None else max(0.0, self.exchange.elapsed_s - first)

    @property
    def first_event_at(self) -> float | None:
        """The client's wall-clock time of the first event (None when unknown)."""
        if self.ended_at is None or self.exchange.first_event_s is None:
            return None
        return self.ended_at - self.exchange.elapsed_s + self.exchange.first_event_s


def spanned(stream: TimedStream) -> bool:
    """True when the stream's events certainly straddle a whole second of the client's clock.

    With its end time known: a whole second lies between the first event and TAIL_S before the end.
    Without it: the events lasted a full second or more, which straddles a boundary whatever the clock.
    (The first event's time is estimated from the end, so it errs late: the estimate is safe.)
    """
    span, first = stream.span_s, stream.first_event_at
    if span is None:
        return False
    if first is None or stream.ended_at is None:
        return span >= 1.0 + TAIL_S
    return math.floor(first) < math.floor(stream.ended_at - TAIL_S)


def _wait_for_boundary(previous: TimedStream) -> None:
    """Sleep until the next stream, timed like the previous one, puts its first event just before a whole second."""
    first, span = previous.exchange.first_event_s or 0.0, previous.span_s or 0.0
    lead = first + min(LEAD_S, max(span - TAIL_S, 0.0) / 2)
    delay = (1.0 - time.time() % 1.0 - lead) % 1.0
    time.sleep(delay)


def long_streams(send: Callable[[], StreamExchange], tries: int = TRIES) -> list[TimedStream]:
    """Send streams (send() makes one) until one spans a second boundary, at most `tries`; every one sent.

    The first goes at once; each later one waits so that, timed like the one before, its first
    event lands just before a whole second and its last after it. A stream without events ends the
    series: there is nothing to time the next one by.
    """
    sent: list[TimedStream] = []
    for _ in range(tries):
        if sent:
            _wait_for_boundary(sent[-1])
        ex = send()
        sent.append(TimedStream(ex, time.time()))
        if spanned(sent[-1]) or ex.status != 200 or ex.first_event_s is None:
            break
    return sent


__all__ = ["LEAD_S", "TAIL_S", "TRIES", "TimedStream", "long_streams", "spanned"]
