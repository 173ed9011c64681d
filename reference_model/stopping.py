"""Stop sequences over streamed text, and why a generation finished.

Stop sequences are matched on the decoded text, across token boundaries. The stream stops at
the stop sequence that is completed first (the earliest end; among several ending at the same
place, the one starting earliest), which is where a generator feeding text piece by piece first
sees one whole. Neither the stop text nor anything after it is returned.

While streaming, the longest tail of the text that could still grow into a stop sequence (a
suffix that is a proper prefix of some stop) is held back; it is released as soon as it cannot,
or by `flush()` when the generation ends for another reason. So the emitted text never holds a
stop sequence, and the streamed pieces concatenate to the non-streamed result.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from reference_model.errors import ReferenceModelError
from reference_model.tokenizer import IncrementalDecoder, Tokenizer


class StopSequenceError(ReferenceModelError, ValueError):
    """The stop sequences given are not a list of non-empty strings."""


class FinishReason(str, enum.Enum):
    """Why a choice ended, as the API's finish_reason spells it."""

    #: The model ended its turn (end-of-turn token, or a grammar that is complete) or a stop sequence matched.
    STOP = "stop"
    #: max_tokens was reached, or the context window is full.
    LENGTH = "length"
    #: The output is complete tool calls (see `grammar.py` and `tool_calls.py`).
    TOOL_CALLS = "tool_calls"


@dataclass(frozen=True)
class StopStep:
    """What one increment releases: text safe to emit, and whether a stop sequence ended the stream."""

    text: str
    stopped: bool


def _find_first_completed(text: str, stops: Sequence[str]) -> int | None:
    """Start index of the stop sequence completed first in text, or None."""
    best: tuple[int, int] | None = None  # (end, start)
    for stop in stops:
        start = text.find(stop)
        if start >= 0:
            key = (start + len(stop), start)
            if best is None or key < best:
                best = key
    return None if best is None else best[1]


class StopMatcher:
    """Feeds on text increments; emits what cannot be part of a stop sequence and reports a match."""

    def __init__(self, stops: Sequence[str]) -> None:
        if isinstance(stops, str) or not all(isinstance(s, str) and s for s in stops):
            raise StopSequenceError(f"stop must be a sequence of non-empty strings, got {stops!r}")
        self._stops = tuple(stops)
        self._held = ""
        self._stopped = False
        # Every proper prefix of every stop: a held tail must be one of these.
        self._prefixes = frozenset(s[:n] for s in self._stops for n in range(1, len(s)))
        self._longest = max((len(s) for s in self._stops), default=0)

    @property
    def stopped(self) -> bool:
        """Whether a stop sequence has matched; later input is ignored."""
        return self._stopped

    @property
    def held(self) -> str:
        """Text held back because it may be the start of a stop sequence."""
        return self._held

    def push(self, text: str) -> StopStep:
        """Add decoded text; returns the text now safe to emit and whether a stop matched."""
        if self._stopped or not text:
            return StopStep("", self._stopped)
        buffer = self._held + text
        cut = _find_first_completed(buffer, self._stops)
        if cut is not None:
            self._held = ""
            self._stopped = True
            return StopStep(buffer[:cut], True)
        keep = self._held_tail_length(buffer)
        self._held = buffer[len(buffer) - keep:] if keep else ""
        return StopStep(buffer[:len(buffer) - keep], False)

    def _held_tail_length(self, buffer: str) -> int:
        # Longest suffix of buffer that is a proper prefix of a stop; shorter than the longest stop.
        for n in range(min(len(buffer), self._longest - 1), 0, -1):
            if buffer[-n:] in self._prefixes:
                return n
        return 0

    def flush(self) -> str:
        """End of generation without a match: release the held text."""
        out, self._held = ("" if self._stopped else self._held), ""
        return out


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Non-streamed stop handling of a whole text: (text before the first completed stop, matched)."""
    matcher = StopMatcher(stops)
    step = matcher.push(text)
    return (step.text, True) if step.stopped else (step.text + matcher.flush(), False)


class TextStream:
    """Token ids in, emit-ready text out: complete UTF-8 characters only, stop sequences applied."""

    def __init__(self, tokenizer: Tokenizer, stops: Sequence[str] = ()) -> None:
        self._decoder = IncrementalDecoder(tokenizer)
        self._matcher = StopMatcher(stops)

    @property
    def stopped(self) -> bool:
        """Whether a stop sequence has matched."""
        return self._matcher.stopped

    def push(self, token_id: int) -> StopStep:
        """Feed one generated token (not the end-of-turn token); returns text safe to emit."""
        return self._matcher.push(self._decoder.push(int(token_id)))

    def flush(self) -> str:
        """End of generation: the held text, plus U+FFFD for an unfinished character."""
        if self._matcher.stopped:
            return ""
        tail = self._matcher.push(self._decoder.flush())
        if tail.stopped:
            return tail.text
        return tail.text + self._matcher.flush()
