"""The tool-call text format: what the grammar generates, read back whole or as it grows.

Calls are written in the Hermes style (the SmolLM2 family's), one block per call, blocks separated
by one newline:

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>
    <tool_call>
    {"name": "get_weather", "arguments": {"city": "London"}}
    </tool_call>

`parse_tool_calls` reads finished output; `ToolCallStream` reads output as it is generated and
says, for each piece, which call began (its index and name) and which argument text was added,
so that a stream can send each call's name once and its arguments in fragments. The arguments
of a call end where `}` + the close marker first appears: the grammar writes JSON without raw
newlines (a newline inside a string is escaped), so that text cannot occur inside arguments.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass

from reference_model.errors import ReferenceModelError

TOOL_CALL_OPEN = "<tool_call>\n"
TOOL_CALL_CLOSE = "\n</tool_call>"
TOOL_CALL_SEPARATOR = "\n"
_BODY_END = "}" + TOOL_CALL_CLOSE  # the call object's closing brace, then the close marker


class ToolCallParseError(ReferenceModelError, ValueError):
    """Generated text is not a complete tool call in the documented format."""


@dataclass(frozen=True)
class ToolCall:
    """One parsed call: the function name and its arguments as JSON text."""

    name: str
    arguments: str


@dataclass(frozen=True)
class CallFragment:
    """What one piece of output adds to call `index`: its name (in the call's first fragment only), argument text."""

    index: int
    name: str | None
    arguments: str


def call_prefix(name: str) -> str:
    """The text of a call's object up to its arguments."""
    return '{"name": ' + json.dumps(name) + ', "arguments": '


def is_tool_call_text(text: str) -> bool:
    """Whether generated text is tool calls rather than a message (it begins with the call marker)."""
    return text.startswith(TOOL_CALL_OPEN)


def may_become_tool_call(text: str) -> bool:
    """Whether text so far is a proper start of the call marker (stream it only once this is False)."""
    return len(text) < len(TOOL_CALL_OPEN) and TOOL_CALL_OPEN.startswith(text)


def parse_tool_calls(text: str, names: Sequence[str]) -> tuple[ToolCall, ...]:
    """Split complete tool-call output into calls of the named functions; ToolCallParseError on anything else."""
    by_prefix = {call_prefix(n): n for n in names}
    calls = []
    rest = text
    while True:
        if not rest.startswith(TOOL_CALL_OPEN):
            raise ToolCallParseError(f"tool call must start with {TOOL_CALL_OPEN!r}, got {rest[:40]!r}")
        end = rest.find(TOOL_CALL_CLOSE)
        if end < 0:
            raise ToolCallParseError(f"tool call is not closed by {TOOL_CALL_CLOSE!r}: {rest[:80]!r}")
        body = rest[len(TOOL_CALL_OPEN):end]
        name = next((n for p, n in by_prefix.items() if body.startswith(p)), None)
        if name is None or not body.endswith("}"):
            raise ToolCallParseError(f"tool call body must be {{\"name\": <a tool>, \"arguments\": {{...}}}}, "
                                     f"got {body[:80]!r}")
        arguments = body[len(call_prefix(name)):-1]
        try:
            json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise ToolCallParseError(f"arguments of {name!r} are not JSON: {exc}") from None
        calls.append(ToolCall(name, arguments))
        rest = rest[end + len(TOOL_CALL_CLOSE):]
        if not rest:
            return tuple(calls)
        if not rest.startswith(TOOL_CALL_SEPARATOR):
            raise ToolCallParseError(f"text after a tool call must be another call, got {rest[:40]!r}")
        rest = rest[len(TOOL_CALL_SEPARATOR):]


class _Where(enum.Enum):
    """Where a ToolCallStream is in the output."""

    HEAD = "head"  # before a call's arguments: the marker, the name
    ARGUMENTS = "arguments"
    BETWEEN = "between"  # after a complete call


def _held_tail(text: str, marker: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of marker."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


class ToolCallStream:
    """Reads tool-call output as it grows, and tells what each piece adds to which call.

    Text comes in with `push`; a call's first fragment names it once its name is complete, and
    its argument text follows as it arrives, except a tail that may be the start of the call's
    end (held until the next piece shows what it is).
    """

    def __init__(self, names: Sequence[str]) -> None:
        self._prefixes = {TOOL_CALL_OPEN + call_prefix(n): n for n in names}
        self._pending = ""  # text not yet accounted for
        self._where = _Where.HEAD
        self._index = -1  # of the call being read
        self.calls: list[ToolCall] = []  # every call begun; the last one's arguments may still grow
        self.tokens_per_call: list[int] = []  # tokens pushed for each complete call (separator included)
        self._tokens = 0

    @property
    def between_calls(self) -> bool:
        """Whether the output so far ends right after a complete call."""
        return self._where is _Where.BETWEEN and not self._pending

    @property
    def complete(self) -> int:
        """How many calls are complete."""
        return len(self.tokens_per_call)

    def push(self, text: str, tokens: int = 1) -> list[CallFragment]:
        """Add output text (from `tokens` generated tokens); the fragments it completes, in order."""
        self._tokens += tokens
        self._pending += text
        out: list[CallFragment] = []
        while True:
            fragment = self._step()
            if fragment is None:
                return out
            if fragment.name is not None or fragment.arguments:
                out.append(fragment)

    def flush(self) -> list[CallFragment]:
        """The end of the output: argument text still held (of a call that was cut) is added to its call."""
        if self._where is not _Where.ARGUMENTS or not self._pending:
            return []
        text, self._pending = self._pending, ""
        last = self.calls[-1]
        self.calls[-1] = ToolCall(last.name, last.arguments + text)
        return [CallFragment(self._index, None, text)]

    def _step(self) -> CallFragment | None:
        if self._where is _Where.BETWEEN:
            if not self._pending.startswith(TOOL_CALL_SEPARATOR):
                return None
            self._pending = self._pending[len(TOOL_CALL_SEPARATOR):]
            self._where = _Where.HEAD
        if self._where is _Where.HEAD:
            return self._head()
        return self._arguments()

    def _head(self) -> CallFragment | None:
        found = next(((p, n) for p, n in self._prefixes.items() if self._pending.startswith(p)), None)
        if found is None:
            return None
        prefix, name = found
        self._pending = self._pending[len(prefix):]
        self._index += 1
        self._where = _Where.ARGUMENTS
        self.calls.append(ToolCall(name, ""))
        return CallFragment(self._index, name, "")

    def _arguments(self) -> CallFragment | None:
        end = self._pending.find(_BODY_END)
        if end >= 0:
            text, self._pending = self._pending[:end], self._pending[end + len(_BODY_END):]
            self._where = _Where.BETWEEN
            self.tokens_per_call.append(self._tokens - sum(self.tokens_per_call))
        else:
            keep = _held_tail(self._pending, _BODY_END)
            text = self._pending[:len(self._pending) - keep]
            self._pending = self._pending[len(text):]
            if not text:
                return None
        last = self.calls[-1]
        self.calls[-1] = ToolCall(last.name, last.arguments + text)
        return CallFragment(self._index, None, text)
