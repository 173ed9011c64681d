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
from array import array
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


class _StopAutomaton:
    """One stop sequence as a Knuth-Morris-Pratt matcher: memory linear in its length.

    `state` is the length of the longest suffix of the text seen so far that is a prefix of the
    stop; it reaches len(stop) when the stop is complete.
    """

    __slots__ = ("fail", "state", "stop")

    def __init__(self, stop: str) -> None:
        self.stop = stop
        self.state = 0
        # fail[i]: the longest proper border (prefix that is also a suffix) of stop[:i + 1].
        fail = array("I", bytes(4 * len(stop)))  # 4 bytes a character
        k = 0
        for i in range(1, len(stop)):
            while k and stop[i] != stop[k]:
                k = fail[k - 1]
            if stop[i] == stop[k]:
                k += 1
            fail[i] = k
        self.fail = fail

    def advance(self, char: str) -> bool:
        """Read one character; whether the stop is now complete."""
        stop, state = self.stop, self.state
        while state and stop[state] != char:
            state = self.fail[state - 1]
        if stop[state] == char:
            state += 1
        self.state = state
        return state == len(stop)


class StopMatcher:
    """Feeds on text increments; emits what cannot be part of a stop sequence and reports a match.

    Memory is linear in the stop sequences (one automaton each) and in the held text, which is
    shorter than the longest stop; time is linear in the text times the number of stops.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        if isinstance(stops, str) or not all(isinstance(s, str) and s for s in stops):
            raise StopSequenceError(f"stop must be a sequence of non-empty strings, got {_short(stops)}")
        self._stops = tuple(stops)
        self._automata = tuple(_StopAutomaton(s) for s in self._stops)
        self._held = ""
        self._stopped = False

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
        base = len(self._held)  # the held text was read already: the automata's states cover it
        for offset, char in enumerate(text):
            # Every automaton reads the character; among stops completed here (the same end), the
            # longest starts earliest.
            done = [a.stop for a in self._automata if a.advance(char)]
            if done:
                end = base + offset + 1
                self._held = ""
                self._stopped = True
                return StopStep(buffer[:end - max(len(s) for s in done)], True)
        keep = max((a.state for a in self._automata), default=0)
        self._held = buffer[len(buffer) - keep:] if keep else ""
        return StopStep(buffer[:len(buffer) - keep], False)

    def flush(self) -> str:
        """End of generation without a match: release the held text."""
        out, self._held = ("" if self._stopped else self._held), ""
        for automaton in self._automata:
            automaton.state = 0
        return out


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


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
