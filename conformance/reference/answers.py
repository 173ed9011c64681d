"""A chat completion reduced to what the reference comparisons read, for both sides alike.

`Answer.parse` reads the first choice of a 200 body: content, finish_reason, usage and the
logprobs entries. `same_token` decides whether two servers' tokens are one: equal UTF-8 bytes when
both give them, else equal token strings. A special token (`<|im_end|>`, or the empty token with
empty bytes that llama.cpp reports for it) is the end of turn whatever its spelling. A server that
gives no bytes (llama-cpp-python) writes a token's text without the bytes of an unfinished UTF-8
character, so its text is compared with the other token's bytes decoded the same way; such a
match cannot tell two partial tokens apart, and the comparison checks the content afterwards.
Answers travel to and from the reference files as plain JSON (`to_json` / `from_json`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

_SPECIAL = re.compile(r"^<\|[A-Za-z0-9_]+\|>$")


@dataclass(frozen=True)
class Alt:
    """One token with its logprob: an entry's chosen token or one of its alternatives."""

    token: str
    logprob: float
    raw: tuple[int, ...] | None = None  # the `bytes` field, when given
    id: int | None = None  # llama.cpp gives token ids; the oracle does not

    @property
    def is_end(self) -> bool:
        """A special token: the end of turn (or of text)."""
        return bool(_SPECIAL.match(self.token)) or (self.token == "" and self.raw == ())

    @property
    def textless(self) -> bool:
        """Neither bytes nor text: nothing tells which token it is beyond having no text of its own."""
        return self.token == "" and self.raw is None

    @property
    def partial(self) -> bool:
        """A token that is no whole UTF-8 text on its own (it ends or starts inside a character)."""
        if self.raw is None:
            return "\ufffd" in self.token
        try:
            bytes(self.raw).decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    @property
    def text_bytes(self) -> bytes:
        """The token's UTF-8 bytes as it contributes to the content (special tokens: none)."""
        if self.is_end:
            return b""
        return bytes(self.raw) if self.raw is not None else self.token.encode("utf-8")

    def show(self) -> dict[str, Any]:
        """JSON-ready evidence of this token (its bytes when its text cannot show it)."""
        record: dict[str, Any] = {"token": self.token, "logprob": round(self.logprob, 6)}
        if self.raw is not None and (self.partial or bytes(self.raw) != self.token.encode("utf-8")):
            record["bytes"] = list(self.raw)
        if self.id is not None:
            record["id"] = self.id
        return record


@dataclass(frozen=True)
class Entry:
    """One generated token: the chosen one and the alternatives listed for its position."""

    chosen: Alt
    tops: tuple[Alt, ...]

    @property
    def margin(self) -> float:
        """Top-1 minus top-2 logprob of the alternatives (inf with fewer than two)."""
        if len(self.tops) < 2:
            return math.inf
        return self.tops[0].logprob - self.tops[1].logprob

    def find(self, token: Alt) -> Alt | None:
        """The alternative that is this token (None when it is not listed)."""
        return next((t for t in self.tops if same_token(t, token)), None)

    def top_logprob(self, token: Alt) -> float | None:
        """The logprob of a token among the alternatives (None when it is not listed)."""
        found = self.find(token)
        return None if found is None else found.logprob

    def show(self, limit: int = 5) -> dict[str, Any]:
        """JSON-ready evidence: the chosen token, the margin, the alternatives."""
        margin = self.margin
        return {**self.chosen.show(), "margin": round(margin, 6) if math.isfinite(margin) else None,
                "top_logprobs": [t.show() for t in self.tops[:limit]]}


@dataclass(frozen=True)
class Answer:
    """The first choice of a chat completion."""

    content: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    entries: tuple[Entry, ...] | None  # None: no logprobs in the answer

    @classmethod
    def parse(cls, body: Any) -> Answer | None:
        """The Answer of a chat completion body, or None when it has no usable first choice."""
        if not isinstance(body, dict):
            return None
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        choice: dict[str, Any] = choices[0]
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        usage = body.get("usage")
        counts: dict[str, Any] = usage if isinstance(usage, dict) else {}
        finish = choice.get("finish_reason")
        return cls(content if isinstance(content, str) else "", finish if isinstance(finish, str) else None,
                   _int(counts.get("prompt_tokens")), _int(counts.get("completion_tokens")), _entries(choice))

    def text_of(self, count: int) -> str:
        """The text of the first `count` entries, whole characters only."""
        raw = b"".join(e.chosen.text_bytes for e in (self.entries or ())[:count])
        return raw.decode("utf-8", errors="ignore")

    def generated(self) -> int:
        """Tokens generated: logprobs entries (a trailing end-of-turn entry not counted), else completion_tokens."""
        if self.entries is not None:
            return len(self.entries) - (1 if self.entries and self.entries[-1].chosen.is_end else 0)
        return self.completion_tokens or 0

    def to_json(self) -> dict[str, Any]:
        """The answer as plain JSON (reference files)."""
        return {"content": self.content, "finish_reason": self.finish_reason, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "entries": None if self.entries is None else [_entry_json(e) for e in self.entries]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        """The inverse of to_json."""
        entries = data.get("entries")
        return cls(data["content"], data.get("finish_reason"), data.get("prompt_tokens"),
                   data.get("completion_tokens"),
                   None if entries is None else tuple(_entry_from_json(e) for e in entries))


END = Alt("<|im_end|>", 0.0)  # the end of turn, to look it up among alternatives


def same_token(a: Alt, b: Alt) -> bool:
    """Two servers' tokens are the same token (see the module docstring)."""
    if a.is_end or b.is_end:
        other = b if a.is_end else a
        return other.is_end or other.textless
    if a.raw is not None and b.raw is not None:
        return a.raw == b.raw
    if a.raw is None and b.raw is None:
        return a.token == b.token
    known, lossy = (a, b) if a.raw is not None else (b, a)
    # Without bytes, a server's text of a token drops the bytes of an unfinished character.
    return lossy.token in (known.token, bytes(known.raw or ()).decode("utf-8", errors="ignore"))


def lossy_match(oracle: Alt, target: Alt) -> bool:
    """The target's token matched the oracle's only up to bytes its text cannot show (to verify by the content)."""
    return target.raw is None and oracle.partial


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _alt(item: Any) -> Alt | None:
    if not isinstance(item, dict) or not isinstance(item.get("token"), str):
        return None
    logprob = _number(item.get("logprob"))
    if logprob is None:
        return None
    raw = item.get("bytes")
    raw_tuple = tuple(raw) if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in raw) else None
    return Alt(item["token"], logprob, raw_tuple, _int(item.get("id")))


def _entries(choice: dict[str, Any]) -> tuple[Entry, ...] | None:
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return None
    entries = []
    for item in content:
        chosen = _alt(item)
        if chosen is None:
            return None  # a malformed entry: the logprobs clauses of the default profile judge it
        tops = item.get("top_logprobs") if isinstance(item.get("top_logprobs"), list) else []
        entries.append(Entry(chosen, tuple(a for a in (_alt(t) for t in tops) if a is not None)))
    return tuple(entries)


def _alt_json(alt: Alt) -> dict[str, Any]:
    return {"token": alt.token, "logprob": alt.logprob, "bytes": None if alt.raw is None else list(alt.raw)}


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {**_alt_json(entry.chosen), "margin": entry.margin if math.isfinite(entry.margin) else None,
            "top_logprobs": [_alt_json(t) for t in entry.tops]}


def _entry_from_json(data: dict[str, Any]) -> Entry:
    chosen = _alt(data)
    if chosen is None:
        raise ValueError(f"malformed entry in a reference file: {data!r}")
    return Entry(chosen, tuple(a for a in (_alt(t) for t in data.get("top_logprobs") or []) if a is not None))
