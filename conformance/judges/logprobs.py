"""Log probabilities of one answer, judged once: entry shape, arithmetic, alternatives, agreement with content.

The entries judged are those of each choice whose logprobs.content is a list of objects, in a 200
non-streaming answer whose choices are all objects (`logprob_choices`); where there are none, a
judge has nothing to say (logprobs.content.present judges their absence). A rule about the values
(sorted, mass, consistency) skips an entry whose logprobs are not finite numbers <= 0, which
logprobs.value.non-positive judges. What the request asked for (logprobs, top_logprobs,
temperature, stop) is read from the exchange's own request body.

    logprobs.content  list[entry]; entry = {token, logprob, bytes: list[int] | None, top_logprobs: list[alt]}
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard

from conformance.exchange import Exchange
from conformance.judges.registry import ANSWER, STREAM, Problem, judge
from conformance.judges.response import completion_body, int_value, stop_sequences
from conformance.judges.stream import answered_stream, request_of

TOLERANCE = 1e-3  # the catalogue's tolerance for logprobs compared with each other
REPLACEMENT = "\ufffd"


# --- reading entries ----------------------------------------------------------------------------------


def content_of(choice: dict[str, Any]) -> Any:
    """choice.logprobs.content as sent (None when logprobs is not an object)."""
    logprobs = choice.get("logprobs")
    return logprobs.get("content") if isinstance(logprobs, dict) else None


def well_formed(content: Any) -> TypeGuard[list[dict[str, Any]]]:
    """logprobs.content is a list of entry objects."""
    return isinstance(content, list) and all(isinstance(e, dict) for e in content)


def text_of(choice: dict[str, Any]) -> str:
    """message.content of a choice ("" when it is not a string)."""
    content = (choice.get("message") or {}).get("content")
    return content if isinstance(content, str) else ""


def entry_bytes(entry: dict[str, Any]) -> bytes:
    """An entry's UTF-8 bytes: `bytes` when given, else the token string encoded."""
    raw = entry.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in raw):
        return bytes(raw)
    return str(entry.get("token", "")).encode("utf-8")


def tops_of(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """An entry's top_logprobs ([] when it is not a list)."""
    tops = entry.get("top_logprobs")
    return tops if isinstance(tops, list) else []


def finite(value: Any) -> TypeGuard[float]:
    """A finite number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def logprob_values(items: list[dict[str, Any]]) -> list[float] | None:
    """The logprob of each item, or None unless every one is a finite number <= 0."""
    values = [t.get("logprob") for t in items]
    numbers = [v for v in values if finite(v) and v <= 0]
    return numbers if len(numbers) == len(values) else None


def same_decoding(decoded: str, content: str) -> bool:
    """Equal, or equal once an incomplete multi-byte tail (replaced or dropped) is left aside.

    A generation cut by max_tokens may end inside a multi-byte character.
    """
    return decoded == content or decoded.rstrip(REPLACEMENT) == content.rstrip(REPLACEMENT)


def logprob_choices(ex: Exchange) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(choice, its logprobs.content entries) of a 200 answer whose choices are all objects, for each choice
    whose logprobs.content is a list of objects."""
    body = completion_body(ex)
    choices = body.get("choices") if body is not None else None
    if not (isinstance(choices, list) and choices and all(isinstance(c, dict) for c in choices)):
        return []
    return [(choice, content) for choice in choices if well_formed(content := content_of(choice))]


def entries(ex: Exchange) -> Iterator[dict[str, Any]]:
    """Every logprobs.content entry of the answer (see logprob_choices)."""
    for _, found in logprob_choices(ex):
        yield from found


@dataclass
class Streamed:
    """What a stream with logprobs carried, per choice index."""

    text: dict[Any, str]
    entries: dict[Any, list[dict[str, Any]]]
    usage: Any


def read_stream(chunks: list[dict[str, Any]]) -> Streamed:
    """The streamed content, logprobs.content entries and last usage object of a stream's chunks."""
    out = Streamed({}, {}, None)
    for chunk in chunks:
        if isinstance(chunk.get("usage"), dict):
            out.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            found = choice.get("delta")
            delta = found if isinstance(found, dict) else {}
            if isinstance(delta.get("content"), str):
                out.text[index] = out.text.get(index, "") + delta["content"]
            content = content_of(choice)
            if isinstance(content, list):
                out.entries.setdefault(index, []).extend(e for e in content if isinstance(e, dict))
    return out


def _asked_logprobs(ex: Exchange) -> bool:
    return request_of(ex).get("logprobs") is True


def _same_token(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same token: equal bytes when both give them, else equal token strings."""
    bytes_a, bytes_b = a.get("bytes"), b.get("bytes")
    if isinstance(bytes_a, list) and isinstance(bytes_b, list):
        return bytes_a == bytes_b
    return a.get("token") == b.get("token")


# --- the judges ---------------------------------------------------------------------------------------


@judge("logprobs.default.absent", on=[ANSWER])
def absent_by_default(ex: Exchange) -> list[Problem]:
    """Without logprobs true, every choice's logprobs is null or absent."""
    body = completion_body(ex)
    if body is None or _asked_logprobs(ex):
        return []
    found = body.get("choices")
    choices = [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []
    return [Problem("logprobs must be null or absent without logprobs true", expected=None, actual=c.get("logprobs"))
            for c in choices if c.get("logprobs") is not None]


@judge("logprobs.content.present", on=[ANSWER])
def content_present(ex: Exchange) -> list[Problem]:
    """With logprobs true, every choice's logprobs.content is a list of entries, one per generated token.

    One per token is counted against completion_tokens when there is one choice; with several, a
    choice with content must at least have entries.
    """
    body = completion_body(ex)
    choices = body.get("choices") if body is not None else None
    if body is None or not _asked_logprobs(ex) or not (
            isinstance(choices, list) and choices and all(isinstance(c, dict) for c in choices)):
        return []
    usage = body.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    found = []
    for choice in choices:
        content = content_of(choice)
        if not well_formed(content):
            found.append(Problem("with logprobs true, choice.logprobs.content must be a list of entries",
                                 expected="logprobs: {content: [...]}", actual=choice.get("logprobs", "(absent)")))
        elif isinstance(tokens, int) and len(choices) == 1:
            if len(content) != tokens:
                found.append(Problem("one logprobs entry per generated token", expected=tokens, actual=len(content)))
        elif not content and text_of(choice):
            found.append(Problem("content was generated but logprobs.content is empty", actual=content))
    return found


@judge("logprobs.value.non-positive", on=[ANSWER])
def values_non_positive(ex: Exchange) -> list[Problem]:
    """Every logprob, in content and in top_logprobs, is a finite number no greater than 0."""
    return [Problem(f"logprob of token {item.get('token')!r} must be a finite number <= 0", expected="<= 0",
                    actual=item.get("logprob"))
            for entry in entries(ex) for item in [entry, *tops_of(entry)]
            if not (finite(item.get("logprob")) and item["logprob"] <= 0)]


@judge("logprobs.tokens.concatenate", on=[ANSWER])
def tokens_concatenate(ex: Exchange) -> list[Problem]:
    """Without stop sequences, the UTF-8 bytes of the content entries (bytes, else token) decode to the message content."""
    if stop_sequences(request_of(ex)):
        return []
    found = []
    for choice, items in logprob_choices(ex):
        decoded = b"".join(entry_bytes(e) for e in items).decode("utf-8", errors="replace")
        if not same_decoding(decoded, text_of(choice)):
            found.append(Problem("the logprobs tokens do not concatenate to the content", expected=text_of(choice),
                                 actual=decoded))
    return found


@judge("logprobs.bytes.matches-token", on=[ANSWER])
def bytes_match_token(ex: Exchange) -> list[Problem]:
    """A non-null bytes is a list of integers 0-255, equal to the UTF-8 of token when token holds no replacement character."""
    found = []
    for entry in entries(ex):
        for item in [entry, *tops_of(entry)]:
            raw, token = item.get("bytes"), item.get("token")
            if raw is None:
                continue
            if not (isinstance(raw, list) and all(int_value(b) is not None and 0 <= b <= 255 for b in raw)):
                found.append(Problem("bytes must be a list of integers 0-255", expected="integers 0-255", actual=raw))
            elif isinstance(token, str) and REPLACEMENT not in token and bytes(raw) != token.encode("utf-8"):
                found.append(Problem(f"bytes differ from the UTF-8 of token {token!r}",
                                     expected=list(token.encode("utf-8")), actual=raw))
    return found


@judge("logprobs.top.count", on=[ANSWER])
def top_count(ex: Exchange) -> list[Problem]:
    """Every content entry holds exactly top_logprobs alternatives, and an empty list when top_logprobs is 0 or absent."""
    asked = request_of(ex).get("top_logprobs")
    want = int_value(asked) if asked is not None else 0
    if want is None or want < 0:
        return []
    setting = f"top_logprobs {asked}" if asked is not None else "top_logprobs absent"
    found = []
    for entry in entries(ex):
        tops = entry.get("top_logprobs")
        if want and not (isinstance(tops, list) and len(tops) == want):
            found.append(Problem(f"{setting} must give exactly {want} alternatives per token", expected=want,
                                 actual=tops))
        elif not want and tops != []:
            found.append(Problem(f"top_logprobs must be an empty list with {setting}", expected=[],
                                 actual=f"{len(tops)} alternatives" if isinstance(tops, list) else tops))
    return found


@judge("logprobs.top.sorted", on=[ANSWER])
def top_sorted(ex: Exchange) -> list[Problem]:
    """Each top_logprobs list is sorted by logprob, highest first."""
    found = []
    for entry in entries(ex):
        values = logprob_values(tops_of(entry))
        if values is not None and values != sorted(values, reverse=True):
            found.append(Problem("top_logprobs must be sorted by logprob, highest first", expected="highest first",
                                 actual=values))
    return found


@judge("logprobs.top.distinct", on=[ANSWER])
def top_distinct(ex: Exchange) -> list[Problem]:
    """The tokens within one top_logprobs list are distinct (by token and bytes)."""
    found = []
    for entry in entries(ex):
        tokens = [(t.get("token"), tuple(t["bytes"]) if isinstance(t.get("bytes"), list) else None)
                  for t in tops_of(entry)]
        if len(set(tokens)) != len(tokens):
            found.append(Problem("a top_logprobs list repeats a token", expected="distinct tokens",
                                 actual=[t[0] for t in tokens]))
    return found


@judge("logprobs.top.mass", on=[ANSWER])
def top_mass(ex: Exchange) -> list[Problem]:
    """The probabilities exp(logprob) within one top_logprobs list sum to at most 1 plus 1e-3."""
    found = []
    for entry in entries(ex):
        values = logprob_values(tops_of(entry))
        mass = sum(math.exp(v) for v in values) if values is not None else 0.0
        if mass > 1 + TOLERANCE:
            found.append(Problem("the alternatives' probabilities sum to more than 1", expected=f"<= {1 + TOLERANCE}",
                                 actual=round(mass, 6)))
    return found


@judge("logprobs.chosen.consistent", on=[ANSWER])
def chosen_consistent(ex: Exchange) -> list[Problem]:
    """A chosen token listed among its alternatives has the same logprob there within 1e-3; one not listed is no
    more likely than the last alternative."""
    found = []
    for entry in entries(ex):
        tops = tops_of(entry)
        chosen, values = logprob_values([entry]), logprob_values(tops)
        if not tops or chosen is None or values is None:
            continue
        match = [v for t, v in zip(tops, values, strict=True) if _same_token(t, entry)]
        if match and abs(match[0] - chosen[0]) > TOLERANCE:
            found.append(Problem(f"token {entry.get('token')!r} has another logprob among its alternatives",
                                 expected=match[0], actual=chosen[0]))
        elif not match and chosen[0] > values[-1] + TOLERANCE:
            found.append(Problem(f"token {entry.get('token')!r} is missing from top_logprobs yet more likely than "
                                 "the last one", expected=f"<= {values[-1]}", actual=chosen[0]))
    return found


@judge("logprobs.greedy.chosen-first", on=[ANSWER])
def greedy_chosen_first(ex: Exchange) -> list[Problem]:
    """At temperature 0 with top_logprobs of at least 1, each chosen token's logprob equals the first alternative's within 1e-3."""
    request = request_of(ex)
    temperature, top = request.get("temperature"), int_value(request.get("top_logprobs"))
    if not (finite(temperature) and temperature == 0) or top is None or top < 1:
        return []
    found = []
    for entry in entries(ex):
        chosen, first = logprob_values([entry]), logprob_values(tops_of(entry)[:1])
        if chosen is None or not first:
            continue
        if abs(first[0] - chosen[0]) > TOLERANCE:
            found.append(Problem(f"greedy token {entry.get('token')!r} is not the most likely alternative",
                                 expected=first[0], actual=chosen[0]))
    return found


@judge("logprobs.stream.entries", on=[STREAM])
def stream_entries(ex: Exchange) -> list[Problem]:
    """In a stream with logprobs true, each choice's entries across all chunks concatenate to its streamed content,
    and all entries together number completion_tokens (when the stream carries a usage)."""
    stream = answered_stream(ex)
    if stream is None or not _asked_logprobs(ex):
        return []
    seen = read_stream(stream.chunks)
    if not any(seen.entries.values()):
        return [Problem("a stream with logprobs true carried no logprobs entries", expected="logprobs.content entries",
                        actual="none")]
    found = []
    for index, sent in seen.text.items():
        decoded = b"".join(entry_bytes(e) for e in seen.entries.get(index, [])).decode("utf-8", errors="replace")
        if not same_decoding(decoded, sent):
            found.append(Problem(f"choice {index}: the streamed logprobs tokens do not concatenate to the streamed "
                                 "content", expected=sent, actual=decoded))
    usage = seen.usage
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    count = sum(len(items) for items in seen.entries.values())
    if isinstance(tokens, int) and count != tokens:
        found.append(Problem("the number of streamed logprobs entries differs from completion_tokens", expected=tokens,
                             actual=count))
    return found


__all__ = [
    "TOLERANCE", "Streamed", "content_of", "entries", "entry_bytes", "finite", "logprob_choices", "logprob_values",
    "read_stream", "same_decoding", "text_of", "tops_of", "well_formed",
]
