"""The exchanges the running check observed: the last one becomes the evidence of its PASS.

Every request the Target sends is noted here, and so is every shared sample a check judges (they
were sent during another check's setup). The plugin clears the list when a check starts and reads
it when the check passes, so a PASS row of the report shows one exchange it was judged on.
"""

from __future__ import annotations

import threading

from conformance.exchange import Exchange

_lock = threading.Lock()  # Target.many sends from several threads
_last: Exchange | None = None  # only the last one is ever read


def note(exchange: Exchange) -> None:
    """Record an exchange the running check sent or judged."""
    global _last
    with _lock:
        _last = exchange


def reset() -> None:
    """Forget what earlier checks observed (a check is starting)."""
    global _last
    with _lock:
        _last = None


def last() -> Exchange | None:
    """The last exchange the running check observed, or None."""
    with _lock:
        return _last
