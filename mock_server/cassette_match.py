"""Which cassette answers a request: the normalised request, the match, and the nearest cassette on a miss.

A request is normalised to its method, its path (as sent, percent-encoding kept), its query (the
pairs, sorted) and its body: JSON canonicalised (key order irrelevant, 1.0 == 1) minus the ignored
fields, or the text of a body that is not JSON. Headers are never matched. Ignored fields are dotted
paths into a JSON object body (`user`, `stream_options.include_usage`); an object emptied by the
removal goes too. `DEFAULT_IGNORE` is always ignored: fields that name the caller, not the question.

`CassetteIndex` plays the cassettes matching one request in recording order, the last one repeating
after that; on a miss, `miss_message` names the nearest cassette and the fields that differ.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from conformance.cassette import Cassette, CassetteError, files, load
from mock_server.errors import NotFound

DEFAULT_IGNORE = ("user", "metadata")  # who asks and how they tag it: never what the answer depends on
SHOWN_DIFFERENCES = 5  # differing fields named in a miss message
VALUE_CHARS = 40  # a value shown in a miss message is cut to this many characters
_ABSENT = object()


class CassetteNotFound(NotFound):
    """No cassette matches the request (404); the message names the nearest one and how it differs."""

    code = "cassette_not_found"


@dataclass(frozen=True)
class NormalisedRequest:
    """What a request is matched on. body: the canonical JSON value, or {"$text": ...}, or None (no body)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: Any

    @property
    def key(self) -> str:
        """One canonical string: equal keys, equal requests."""
        return json.dumps([self.method, self.path, self.query, self.body], sort_keys=True, ensure_ascii=False,
                          separators=(",", ":"))

    @property
    def digest(self) -> str:
        """The first 8 hex digits of the key's SHA-256 (in cassette file names)."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:8]

    @property
    def line(self) -> str:
        """`METHOD /path?query` for messages."""
        query = "&".join(f"{k}={v}" for k, v in self.query)
        return f"{self.method} {self.path}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class Difference:
    """One field where a request and a cassette differ (`absent` shown for a field one of them lacks)."""

    path: str
    request: str
    cassette: str


def body_of(raw: bytes) -> tuple[Any, str | None]:
    """Request bytes -> (JSON value, None) when they are JSON (not `null`), else (None, text); (None, None) if empty."""
    if not raw:
        return None, None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        value = None
    if value is not None:
        return value, None
    return None, raw.decode("utf-8", errors="replace")


def normalise(method: str, path: str, query: str, body_json: Any, body_text: str | None,
              ignore: Iterable[str] = ()) -> NormalisedRequest:
    """The normalised request; `ignore` (dotted paths) comes on top of DEFAULT_IGNORE."""
    pairs = tuple(sorted(parse_qsl(query, keep_blank_values=True)))
    body: Any = None
    if body_json is not None:
        body = _canonical(body_json)
        for dotted in (*DEFAULT_IGNORE, *ignore):
            _drop(body, dotted.split("."))
    elif body_text is not None:
        body = {"$text": body_text}
    return NormalisedRequest(method.upper(), path, pairs, body)


def of_cassette(cassette: Cassette, ignore: Iterable[str] = ()) -> NormalisedRequest:
    """The normalised request a cassette recorded."""
    return normalise(cassette.method, cassette.path, cassette.query, cassette.request_json, cassette.request_text,
                     ignore)


def differences(request: NormalisedRequest, cassette: NormalisedRequest) -> list[Difference]:
    """The fields where the two differ: method, path, query, then the body's dotted paths (`messages[0].content`)."""
    found: list[Difference] = []
    for name, mine, theirs in (("method", request.method, cassette.method), ("path", request.path, cassette.path),
                               ("query", request.line.partition("?")[2], cassette.line.partition("?")[2])):
        if mine != theirs:
            found.append(Difference(name, _show(mine), _show(theirs)))
    left, right = _flatten(request.body, "body"), _flatten(cassette.body, "body")
    for path in sorted(left.keys() | right.keys()):
        mine, theirs = left.get(path, _ABSENT), right.get(path, _ABSENT)
        if mine != theirs or type(mine) is not type(theirs):
            found.append(Difference(path.removeprefix("body."), _show(mine), _show(theirs)))
    return found


class CassetteIndex:
    """The cassettes of a folder by normalised request, each request's next one to play, and the nearest on a miss."""

    def __init__(self, cassettes: Iterable[Cassette], ignore: Iterable[str] = ()) -> None:
        self.ignore = tuple(ignore)
        self.cassettes = list(cassettes)
        self._keys = [of_cassette(c, self.ignore) for c in self.cassettes]
        self._by_key: dict[str, list[Cassette]] = {}
        for cassette, key in zip(self.cassettes, self._keys, strict=True):
            self._by_key.setdefault(key.key, []).append(cassette)
        self._played: dict[str, int] = {}

    @classmethod
    def load(cls, folder: Path, ignore: Iterable[str] = ()) -> CassetteIndex:
        """Every cassette of `folder` (subfolders too) in recording order; CassetteError names a bad file."""
        if not folder.is_dir():
            raise CassetteError(f"{folder}: no such folder of cassettes")
        return cls((load(path) for path in sorted(files(folder), key=_recording_order)), ignore)

    def __len__(self) -> int:
        return len(self.cassettes)

    def match(self, request: NormalisedRequest) -> Cassette | None:
        """The next cassette recorded for this request (the last one again once all were played), or None."""
        found = self._by_key.get(request.key)
        if not found:
            return None
        played = self._played.get(request.key, 0)
        self._played[request.key] = played + 1
        return found[min(played, len(found) - 1)]

    def nearest(self, request: NormalisedRequest) -> tuple[Cassette, list[Difference]] | None:
        """The cassette that differs least (method, then path, then the fewest fields), and how; None if empty."""
        best: tuple[tuple[int, int, int], Cassette, list[Difference]] | None = None
        for cassette, key in zip(self.cassettes, self._keys, strict=True):
            diff = differences(request, key)
            rank = (int(key.method != request.method), int(key.path != request.path), len(diff))
            if best is None or rank < best[0]:
                best = (rank, cassette, diff)
        return None if best is None else (best[1], best[2])

    def miss_message(self, request: NormalisedRequest) -> str:
        """Why no cassette answers: the request, the nearest cassette file and the fields that differ."""
        head = f"no cassette matches {request.line}"
        near = self.nearest(request)
        if near is None:
            return f"{head}: the folder holds no cassettes"
        cassette, diff = near
        shown = "; ".join(f"{d.path}: request {d.request}, cassette {d.cassette}" for d in diff[:SHOWN_DIFFERENCES])
        more = f" (and {len(diff) - SHOWN_DIFFERENCES} more)" if len(diff) > SHOWN_DIFFERENCES else ""
        ignored = ", ".join((*DEFAULT_IGNORE, *self.ignore))
        return (f"{head}; the nearest cassette is {cassette.name}, which differs in {shown}{more} "
                f"(fields ignored: {ignored}; add one with --match-ignore FIELD)")


def _canonical(value: Any) -> Any:
    # A copy with integral floats as ints (1.0 == 1), so that equal JSON values give equal keys.
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _drop(value: Any, path: list[str]) -> None:
    # Remove one dotted path from nested objects; an object the removal empties goes too.
    if not isinstance(value, dict) or path[0] not in value:
        return
    if len(path) == 1:
        del value[path[0]]
        return
    child = value[path[0]]
    _drop(child, path[1:])
    if isinstance(child, dict) and not child:
        del value[path[0]]


def _flatten(value: Any, path: str) -> dict[str, Any]:
    # Leaves by dotted path (list items as [i]); an empty object or list is a leaf.
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flatten(item, f"{path}.{key}")
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, item in enumerate(value):
            out |= _flatten(item, f"{path}[{i}]")
        return out
    return {path: value}


def _show(value: object) -> str:
    if value is _ABSENT:
        return "absent"
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= VALUE_CHARS else shown[:VALUE_CHARS - 1] + "…"


def _recording_order(path: Path) -> list[tuple[int, str]]:
    # Natural order: 10000-... after 9999-..., whatever the zero padding.
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", str(path)) if part]


__all__ = ["DEFAULT_IGNORE", "CassetteIndex", "CassetteNotFound", "Difference", "NormalisedRequest", "body_of",
           "differences", "normalise", "of_cassette"]
