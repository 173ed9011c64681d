"""Generation results -> the API's JSON: completion bodies, stream chunks, SSE framing.

Logprob entries: `token` is the token's own bytes decoded with U+FFFD for an incomplete
character, and `bytes` its raw bytes, so that the concatenated bytes of the entries decode to the
content even where a character spans tokens (OpenAI's convention).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from reference_model.generation import Finished, TokenEvent, ToolCallDelta, ToolCallOut
from reference_model.logprobs import TokenLogprob

SSE_KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: clients skip it, proxies see the connection live


@dataclass(frozen=True)
class Identity:
    """The fields every body or chunk of one completion shares."""

    id: str
    created: int
    model: str
    system_fingerprint: str

    @classmethod
    def new(cls, model: str, system_fingerprint: str) -> Identity:
        """A fresh, unique completion id created now."""
        return cls(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model, system_fingerprint)


@dataclass
class ChoiceResult:
    """One choice, accumulated from its events."""

    index: int
    tokens: list[TokenEvent] = field(default_factory=list)
    finished: Finished | None = None

    @property
    def content(self) -> str:
        """The text so far: every token's text, then the finish's trailing text."""
        return "".join(t.text for t in self.tokens) + (self.finished.text if self.finished is not None else "")

    @property
    def logprobs(self) -> list[TokenLogprob]:
        """The logprob entries of the tokens that carry one."""
        return [t.logprob for t in self.tokens if t.logprob is not None]


@dataclass(frozen=True)
class Usage:
    """Token counts of a whole request (the prompt counted once for all choices)."""

    prompt_tokens: int
    completion_tokens: int

    def to_json(self) -> dict[str, int]:
        """The API's usage object."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def usage_of(prompt_tokens: int, results: list[ChoiceResult]) -> Usage:
    """Usage from finished choices."""
    return Usage(prompt_tokens, sum(r.finished.completion_tokens for r in results if r.finished is not None))


def _token_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def logprob_entry(entry: TokenLogprob) -> dict[str, Any]:
    """One `logprobs.content` item."""
    return {"token": _token_text(entry.bytes), "logprob": entry.logprob, "bytes": list(entry.bytes),
            "top_logprobs": [{"token": _token_text(alt.bytes), "logprob": alt.logprob, "bytes": list(alt.bytes)}
                             for alt in entry.top]}


def tool_call_json(call: ToolCallOut) -> dict[str, Any]:
    """One tool call of a message."""
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def completion_body(ident: Identity, results: list[ChoiceResult], usage: Usage, *, logprobs: bool) -> dict[str, Any]:
    """The non-streaming ChatCompletion."""
    choices = []
    for r in results:
        assert r.finished is not None, "render only finished choices"
        message: dict[str, Any] = {"role": "assistant"}
        if r.finished.tool_calls:
            message["content"] = None
            message["tool_calls"] = [tool_call_json(c) for c in r.finished.tool_calls]
        else:
            message["content"] = r.content
        choices.append({"index": r.index, "message": message,
                        "logprobs": {"content": [logprob_entry(e) for e in r.logprobs]} if logprobs else None,
                        "finish_reason": r.finished.reason.value})
    return {"id": ident.id, "object": "chat.completion", "created": ident.created, "model": ident.model,
            "system_fingerprint": ident.system_fingerprint, "choices": choices, "usage": usage.to_json()}


class ChunkRenderer:
    """Stream chunks of one completion; `usage: null` on every chunk when usage was requested."""

    def __init__(self, ident: Identity, *, include_usage: bool) -> None:
        self.ident = ident
        self.include_usage = include_usage

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {"id": self.ident.id, "object": "chat.completion.chunk",
                                 "created": self.ident.created, "model": self.ident.model,
                                 "system_fingerprint": self.ident.system_fingerprint, "choices": choices}
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def delta(self, index: int, delta: dict[str, Any], *, logprobs: list[TokenLogprob] | None = None,
              finish_reason: str | None = None) -> dict[str, Any]:
        """A chunk adding `delta` to choice `index`."""
        lp = None if logprobs is None else {"content": [logprob_entry(e) for e in logprobs]}
        return self._chunk([{"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish_reason}])

    def role(self, index: int) -> dict[str, Any]:
        """The first chunk of a choice: the role, and empty content."""
        return self.delta(index, {"role": "assistant", "content": ""})

    def tool_calls(self, index: int, deltas: tuple[ToolCallDelta, ...],
                   logprobs: list[TokenLogprob] | None = None) -> list[dict[str, Any]]:
        """The chunks of one token's tool-call deltas: one chunk per call, its fragments joined.

        A call's first fragment carries its id, type and name (once); later ones its argument text only.
        """
        chunks = []
        for fragment in merge_deltas(deltas):
            chunks.append(self.delta(index, {"tool_calls": [fragment]}, logprobs=logprobs))
            logprobs = None  # on the token's first chunk only
        return chunks

    def usage(self, usage: Usage) -> dict[str, Any]:
        """The usage-only chunk before [DONE]."""
        chunk = self._chunk([])
        chunk["usage"] = usage.to_json()
        return chunk


def merge_deltas(deltas: tuple[ToolCallDelta, ...]) -> list[dict[str, Any]]:
    """Tool-call fragments, consecutive deltas of one call joined into one fragment."""
    out: list[dict[str, Any]] = []
    for delta in deltas:
        if out and out[-1]["index"] == delta.index and delta.name is None:
            out[-1]["function"]["arguments"] += delta.arguments
            continue
        fragment: dict[str, Any] = {"index": delta.index, "function": {"arguments": delta.arguments}}
        if delta.name is not None:
            fragment = {"index": delta.index, "id": delta.id, "type": "function",
                        "function": {"name": delta.name, "arguments": delta.arguments}}
        out.append(fragment)
    return out

