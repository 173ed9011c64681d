"""A bounded in-memory cache of finished generations of deterministic requests (x-use-cache).

Deterministic: temperature 0 (greedy) or an explicit seed; anything else would pin one random
draw, so it is never cached. What is kept is the generation (each choice's token events and its
finish), not a rendered body, so one entry answers a request streamed or not: a streamed hit is
replayed as a normal stream, one chunk per token. The key is the canonical JSON of the request
body (keys sorted) without `stream` and `stream_options`, which change how the answer is sent,
not what is generated, and `user`, which changes nothing; so the same request in another key order hits too. Only a generation that
ran to its end is stored (not one cut by an error, a fault or a client that went away).
`x-use-cache: false` skips the cache both ways. A hit gets a fresh id and created time, and the
response header `x-cache: hit`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from mock_server.render import ChoiceResult
from mock_server.request import ChatRequest
from reference_model.generation import Finished, TokenEvent

# How the answer is sent (stream, stream_options), or who asked (user): not what is generated.
DELIVERY_FIELDS = ("stream", "stream_options", "user")


def is_deterministic(request: ChatRequest) -> bool:
    """Whether the same request always yields the same answer."""
    return request.temperature == 0.0 or request.seed is not None


def cache_key(body: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the body's generation fields (all but DELIVERY_FIELDS)."""
    fields = {name: value for name, value in body.items() if name not in DELIVERY_FIELDS}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CachedChoice:
    """One finished choice: its token events in order, and how it ended."""

    tokens: tuple[TokenEvent, ...]
    finished: Finished


@dataclass(frozen=True)
class Generation:
    """A finished generation: the prompt's size and every choice, in choice order."""

    prompt_tokens: int
    choices: tuple[CachedChoice, ...]

    @classmethod
    def of(cls, prompt_tokens: int, results: list[ChoiceResult]) -> Generation:
        """Freeze finished results (every choice must have finished)."""
        choices = []
        for r in results:
            assert r.finished is not None, "only finished generations are cached"
            choices.append(CachedChoice(tuple(r.tokens), r.finished))
        return cls(prompt_tokens, tuple(choices))


class ResponseCache:
    """Least-recently-used map from key to generation, holding at most `capacity` entries."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, Generation] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: str) -> Generation | None:
        """The cached generation, or None."""
        with self._lock:
            generation = self._items.get(key)
            if generation is not None:
                self._items.move_to_end(key)
            return generation

    def put(self, key: str, generation: Generation) -> None:
        """Store a generation, evicting the least recently used beyond capacity."""
        if self.capacity == 0:
            return
        with self._lock:
            self._items[key] = generation
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
