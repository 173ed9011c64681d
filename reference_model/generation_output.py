"""The content of one generation, token by token: what is released, when, and which token carries it.

Generated tokens go in (never the end-of-turn token); token events come out, each carrying
the content text it releases. Three things can hold content back:

1. UTF-8: a token that ends inside a multi-byte character releases nothing until the token
   that completes the character (an unfinished character at the end becomes U+FFFD).
2. Stop sequences: text that may still grow into a stop sequence is held (`StopMatcher`); a
   completed stop cuts the content where it starts, and nothing after the cut is released.
3. Tool calls (grammars with tools): output that may still become the call marker is held;
   output that is a call is never content: it leaves as call fragments (`CallFragment`, read by
   `tool_calls.ToolCallStream`: each call's name once, then its argument text as it grows),
   carried by the token that completed them, and at the end as parsed calls; text that turns
   out not to be a call is released.

Which token carries which text: the content is always a prefix of the decoded output, so each
token owns the slice of the content that its own bytes decoded to. A token's event leaves as soon
as all of its slice is released (and, if it ends inside a character, a later token has come: at
the end an unfinished character becomes U+FFFD on the last token); until then it waits,
and later tokens wait behind it. At the end every waiting token leaves, its slice clipped to the
final content: so the token texts concatenate to the content exactly, after a stop cut too
(a token whose text was cut carries "" or the part before the cut). Stop sequences do not apply
to tool-call output: a cut call would be unparseable, and the grammar ends it anyway.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

from reference_model.errors import ReferenceModelError
from reference_model.logprobs import TokenLogprob
from reference_model.stopping import StopMatcher
from reference_model.tokenizer import IncrementalDecoder, Tokenizer
from reference_model.tool_calls import (
    CallFragment,
    ToolCall,
    ToolCallStream,
    is_tool_call_text,
    may_become_tool_call,
    parse_tool_calls,
)


class OutputMode(str, enum.Enum):
    """Whether the output is (still possibly) a message, certainly a message, or tool calls."""

    UNDECIDED = "undecided"  # may still become a tool call: content is held
    TEXT = "text"
    CALLS = "calls"


@dataclass(frozen=True)
class ReleasedToken:
    """One generated token leaving the assembler with the content it carries."""

    token_id: int
    text: str
    logprob: TokenLogprob | None  # its `text` is replaced by the released text
    calls: tuple[CallFragment, ...] = ()  # what the output up to this token added to tool calls


@dataclass
class _Waiting:
    token_id: int
    logprob: TokenLogprob | None
    start: int  # its slice of the decoded output: raw[start:end]
    end: int
    splits_char: bool  # ends inside a UTF-8 character (waits while it is the last token)


@dataclass(frozen=True)
class FinalOutput:
    """The end of a generation: the last tokens, trailing content, and parsed calls (if a call)."""

    tokens: tuple[ReleasedToken, ...]
    text: str  # content not carried by any token ("" in practice: see the module docstring)
    content: str
    mode: OutputMode
    # Mode CALLS: every call begun; after an end that was not natural (length) the last may be cut.
    tool_calls: tuple[ToolCall, ...]


class OutputAssembler:
    """Turns generated token ids into released content and token events (see the module docstring)."""

    def __init__(self, tokenizer: Tokenizer, stops: Sequence[str] = (), *,
                 tools: Sequence[str] = (), calls_only: bool = False) -> None:
        """tools: the names of the functions the output may call; calls_only: it can be nothing but calls."""
        self._decoder = IncrementalDecoder(tokenizer)
        self._tools = tuple(tools)
        self._calls = ToolCallStream(self._tools)
        self._fed = 0  # length of the raw output the call reader has seen
        self._unfed_tokens = 0  # tokens pushed since the call reader last saw the output
        # Stops apply to message text only; a grammar that can only produce calls has none.
        self._matcher = None if calls_only else StopMatcher(stops)
        self._mode = OutputMode.CALLS if calls_only else (OutputMode.UNDECIDED if tools else OutputMode.TEXT)
        self._raw = ""  # decoded output so far (complete characters only)
        self._content = ""  # released content
        self._held_release = ""  # released by the stop matcher while the mode is undecided
        self._waiting: list[_Waiting] = []
        self._carried = 0  # length of the content prefix already carried by emitted tokens
        self._stop_matched = False
        self._finished = False

    @property
    def mode(self) -> OutputMode:
        """Whether the output is undecided, a message, or tool calls."""
        return self._mode

    @property
    def stop_matched(self) -> bool:
        """Whether a stop sequence has been completed (the generation must end now)."""
        return self._stop_matched

    @property
    def content(self) -> str:
        """Content released so far."""
        return self._content

    @property
    def between_calls(self) -> bool:
        """Whether the output is calls and ends right after a complete one (another may follow)."""
        return self._mode is OutputMode.CALLS and self._calls.between_calls

    @property
    def longest_call_tokens(self) -> int:
        """The most tokens any complete call took (0 before the first is complete)."""
        return max(self._calls.tokens_per_call, default=0)

    @property
    def raw_text(self) -> str:
        """Decoded output so far (tool-call text included), complete characters only."""
        return self._raw

    def push(self, token_id: int, logprob: TokenLogprob | None = None) -> list[ReleasedToken]:
        """Add one generated token; returns the tokens (this one or earlier ones) now ready to leave."""
        if self._finished:
            raise ReferenceModelError("OutputAssembler.push after finish()")
        if self._stop_matched:
            raise ReferenceModelError("OutputAssembler.push after a stop sequence matched")
        piece = self._decoder.push(int(token_id))
        start = len(self._raw)
        self._raw += piece
        self._waiting.append(_Waiting(int(token_id), logprob, start, len(self._raw),
                                      splits_char=bool(self._decoder.pending())))
        if self._matcher is not None and self._mode is not OutputMode.CALLS:
            step = self._matcher.push(piece)
            self._release(step.text)
            self._stop_matched = step.stopped
        self._decide()
        self._unfed_tokens += 1
        return self._attach(self._ready(final=False), self._feed_calls())

    def _feed_calls(self, *, final: bool = False) -> list[CallFragment]:
        """Hand the call reader the output it has not seen (once the output is calls)."""
        if self._mode is not OutputMode.CALLS:
            return []
        fragments = self._calls.push(self._raw[self._fed:], self._unfed_tokens)
        self._fed, self._unfed_tokens = len(self._raw), 0
        return fragments + (self._calls.flush() if final else [])

    @staticmethod
    def _attach(released: list[ReleasedToken], fragments: list[CallFragment]) -> list[ReleasedToken]:
        # Every waiting token leaves once the output is calls, so the last one released is the newest.
        if fragments:
            assert released, "call fragments come with the token that completed them"
            released[-1] = replace(released[-1], calls=tuple(fragments))
        return released

    def _release(self, text: str) -> None:
        if self._mode is OutputMode.TEXT:
            self._content += text
        elif self._mode is OutputMode.UNDECIDED:
            self._held_release += text

    def _decide(self) -> None:
        """Leave UNDECIDED once the output is a call or can no longer become one."""
        if self._mode is not OutputMode.UNDECIDED:
            return
        if is_tool_call_text(self._raw):
            self._mode, self._held_release = OutputMode.CALLS, ""
        elif self._stop_matched or not may_become_tool_call(self._raw):
            self._mode = OutputMode.TEXT
            self._content += self._held_release
            self._held_release = ""

    def _ready(self, *, final: bool) -> list[ReleasedToken]:
        out = []
        limit = len(self._content)
        while self._waiting:
            w = self._waiting[0]
            # The last token may end inside a character: an end now would give it U+FFFD.
            last_split = w.splits_char and w is self._waiting[-1]
            if not final and self._mode is not OutputMode.CALLS and (w.end > limit or last_split):
                break
            self._waiting.pop(0)
            # Content is a prefix of raw, so the token's slice of it is raw[start:end] clipped.
            text = self._content[min(w.start, limit):min(w.end, limit)]
            self._carried = max(self._carried, min(w.end, limit))
            lp = None if w.logprob is None else replace(w.logprob, text=text)
            out.append(ReleasedToken(w.token_id, text, lp))
        return out

    def finish(self, *, natural: bool) -> FinalOutput:
        """End the output; natural: the model or grammar ended it (end-of-turn, stop, complete grammar).

        Returns the remaining tokens, and for a natural end of call output the parsed calls
        (raises ToolCallParseError if the grammar let through something unparseable, a bug).
        """
        if self._finished:
            raise ReferenceModelError("OutputAssembler.finish called twice")
        self._finished = True
        tail = self._decoder.flush()  # U+FFFD for an unfinished character, else ""
        if tail:
            self._raw += tail
            if self._waiting:
                self._waiting[-1].end = len(self._raw)
        if self._mode is OutputMode.UNDECIDED:
            # It never became a call: it is text (the held prefix of the marker included).
            self._mode = OutputMode.TEXT
            self._content += self._held_release
            self._held_release = ""
        if self._mode is OutputMode.TEXT and self._matcher is not None and not self._stop_matched:
            step = self._matcher.push(tail)
            self._content += step.text
            if step.stopped:
                self._stop_matched = True
            else:
                self._content += self._matcher.flush()
        fragments = self._feed_calls(final=True)
        calls: tuple[ToolCall, ...] = ()
        if self._mode is OutputMode.CALLS:
            # A natural end is a complete grammar: parsed again whole, so that a grammar bug cannot pass.
            calls = parse_tool_calls(self._raw, self._tools) if natural else tuple(self._calls.calls)
        tokens = tuple(self._attach(self._ready(final=True), fragments))
        return FinalOutput(tokens=tokens, text=self._content[self._carried:], content=self._content,
                           mode=self._mode, tool_calls=calls)
