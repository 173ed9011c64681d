"""SSE framing variants: the same stream written in ways the SSE grammar allows but few servers use.

For hardening clients: a stream framed so still carries the same events, so a client that follows the
grammar (WHATWG HTML, "Server-sent events") reads the same chunks. Chosen with `--sse-framing
VARIANT[,VARIANT]` (CHATCONFORM_MOCK_SSE_FRAMING) for every stream, or per request with the header
`x-mock-sse-framing: VARIANT[,VARIANT]`, which replaces the server's choice (`plain`: none). The header
is honoured without `--allow-faults`: nothing it does breaks the spec. Variants combine, except
`crlf` with `cr`:

  crlf            lines end CRLF
  cr              lines end with a lone CR
  comments        a comment line `: event N` opens each event
  keepalive       a `: keep-alive` comment and its blank line between events
  retry-id        `id: N` on every event, `retry: 3000` on the first
  event-field     `event: message` on every event (`message` is the type an unnamed event has)
  split           each event in several writes (one HTTP chunk each), cut at positions drawn from a
                  seeded RNG (the request's `seed`, else 0): one to three cuts, plus one inside a
                  multi-byte UTF-8 character when the event holds one, plus one between CR and LF
                  with `crlf`
  multiline-data  the JSON of an event over several `data:` lines, cut only between JSON tokens
                  (SSE joins the lines with LF, which JSON reads as whitespace)

The mock's own keep-alive comments (keepalive.py) follow the line ends too.
"""

from __future__ import annotations

import enum
import itertools
import json
import random
from dataclasses import dataclass
from typing import Any

from mock_server.errors import BadRequest

HEADER = "x-mock-sse-framing"
PLAIN = "plain"
RETRY_MS = 3000
MAX_RANDOM_CUTS = 3


class Variant(str, enum.Enum):
    """One way of framing; code tests membership with members, so a misspelt name cannot exist."""

    CRLF = "crlf"
    CR = "cr"
    COMMENTS = "comments"
    KEEPALIVE = "keepalive"
    RETRY_ID = "retry-id"
    EVENT_FIELD = "event-field"
    SPLIT = "split"
    MULTILINE_DATA = "multiline-data"


VARIANT_NAMES = tuple(v.value for v in Variant)
ALLOWED = (PLAIN, *VARIANT_NAMES)  # what the option and the header accept


class FramingError(ValueError):
    """A framing value names no variant, or two that exclude each other."""


@dataclass(frozen=True)
class Framing:
    """The variants one stream is framed with (none: the plain `data: ...` + blank line)."""

    variants: frozenset[Variant] = frozenset()

    @property
    def names(self) -> tuple[str, ...]:
        """The variants' names, in the order of VARIANT_NAMES."""
        return tuple(v.value for v in Variant if v in self.variants)

    def framer(self, seed: int | None) -> Framer:
        """A framer for one stream; `seed` (the request's, else 0) draws the `split` cuts."""
        return Framer(self, 0 if seed is None else seed)


PLAIN_FRAMING = Framing()


def parse_framing(text: str) -> Framing:
    """`crlf,split` -> Framing; `plain` (alone) or "" -> no variant; FramingError naming the value otherwise."""
    names = [item.strip().lower() for item in text.split(",")]
    if names == [""] or names == [PLAIN]:
        return PLAIN_FRAMING
    variants: set[Variant] = set()
    for name in names:
        if name not in VARIANT_NAMES:
            raise FramingError(f"unknown variant {name!r}; allowed: {', '.join(ALLOWED)} "
                               f"(comma-separated; {PLAIN} alone for none); got {text!r}")
        variants.add(Variant(name))
    if {Variant.CRLF, Variant.CR} <= variants:
        raise FramingError(f"crlf and cr exclude each other (one line end per stream); got {text!r}")
    return Framing(frozenset(variants))


def framing_for(header: str | None, default: tuple[str, ...]) -> Framing:
    """A request's framing: the `x-mock-sse-framing` header if sent, else the server's; 400 naming a bad header."""
    if header is None or not header.strip():
        return parse_framing(",".join(default))
    try:
        return parse_framing(header)
    except FramingError as exc:
        raise BadRequest(f"{HEADER}: {exc}", param=HEADER, code="invalid_header") from None


class Framer:
    """Frames the events of one stream; it counts them (ids, comments) and draws the split cuts."""

    def __init__(self, framing: Framing, seed: int) -> None:
        self.variants = framing.variants
        self._rng = random.Random(seed)
        self._events = 0
        crlf, cr = Variant.CRLF in self.variants, Variant.CR in self.variants
        self.eol = b"\r\n" if crlf else b"\r" if cr else b"\n"

    def event(self, payload: dict[str, Any] | str) -> list[bytes]:
        """One event carrying `payload` (a JSON object, or raw text such as `[DONE]`): the pieces to write."""
        v = self.variants
        number = self._events = self._events + 1
        lines: list[str] = []
        if Variant.KEEPALIVE in v and number > 1:
            lines += [": keep-alive", ""]
        if Variant.COMMENTS in v:
            lines.append(f": event {number}")
        if Variant.RETRY_ID in v:
            if number == 1:
                lines.append(f"retry: {RETRY_MS}")
            lines.append(f"id: {number}")
        if Variant.EVENT_FIELD in v:
            lines.append("event: message")
        lines += ["data: " + line for line in self._data_lines(payload)]
        lines.append("")
        data = b"".join(line.encode() + self.eol for line in lines)
        return self._split(data) if Variant.SPLIT in v else [data]

    def comment(self, text: str) -> bytes:
        """A comment event (`: text` and a blank line) with this stream's line ends; never split."""
        return b": " + text.encode() + self.eol + self.eol

    def _data_lines(self, payload: dict[str, Any] | str) -> list[str]:
        if isinstance(payload, str):
            return payload.split("\n")
        if Variant.MULTILINE_DATA in self.variants:
            # indent=0 puts a newline after each `{`, `[` and `,` and before each `}`, `]`: between tokens only
            # (a newline inside a string is escaped, so never raw).
            return json.dumps(payload, ensure_ascii=False, indent=0, separators=(",", ":")).split("\n")
        return [json.dumps(payload, ensure_ascii=False, separators=(",", ":"))]

    def _split(self, data: bytes) -> list[bytes]:
        rng = self._rng
        positions = range(1, len(data))
        cuts = set(rng.sample(positions, min(len(positions), rng.randint(1, MAX_RANDOM_CUTS))))
        inside_char = [i for i in positions if 0x80 <= data[i] < 0xC0]  # before a continuation byte
        if inside_char:
            cuts.add(rng.choice(inside_char))
        if self.eol == b"\r\n":
            cuts.add(rng.choice([i for i in positions if data[i - 1:i + 1] == b"\r\n"]))
        bounds = [0, *sorted(cuts), len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds)]
