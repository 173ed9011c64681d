"""A bounded in-memory cache of non-streamed answers to deterministic requests (x-use-cache).

Deterministic: temperature 0 (greedy) or an explicit seed; anything else would pin one random
draw, so it is never cached. The key is the canonical JSON of the request body (keys sorted),
so the same request in another key order hits too. `x-use-cache: false` skips the cache both ways.
A hit gets a fresh id and created time, and the response header `x-cache: hit`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from mock_server.request import ChatRequest


def is_deterministic(request: ChatRequest) -> bool:
    """Whether the same request always yields the same answer."""
    return request.temperature == 0.0 or request.seed is not None


def cache_key(body: dict[str, Any]) -> str:
    """sha256 of the body's canonical JSON."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class ResponseCache:
    """Least-recently-used map from key to completion body, holding at most `capacity` entries."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached body, or None."""
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def put(self, key: str, body: dict[str, Any]) -> None:
        """Store a body, evicting the least recently used beyond capacity."""
        if self.capacity == 0:
            return
        with self._lock:
            self._items[key] = body
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
