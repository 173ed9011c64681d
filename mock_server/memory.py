"""Giving memory back to the system after large requests.

Parsing a body of megabytes makes millions of small Python objects; once freed, glibc's malloc
keeps most of those pages in its arenas, so the process's RSS stays at its peak (525 MB became
1.8 GB and stayed, before this). `malloc_trim(0)` returns the free pages. It is called a moment
after a large request ended (debounced: one call for a burst), in a worker thread (ctypes
releases the GIL, so the loop keeps serving). Elsewhere than glibc it is a no-op.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging

LARGE_BODY_BYTES = 256 * 1024  # bodies from this size on trigger a trim
TRIM_DELAY_S = 0.5  # after the request, so that its objects are freed first

log = logging.getLogger("mock_server.memory")
_pending: set[asyncio.AbstractEventLoop] = set()


@functools.cache
def _libc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim with
        return None


def trim() -> bool:
    """Return free heap pages to the system now; whether glibc's malloc_trim was there to do it."""
    fn = _libc_trim()
    if fn is None:
        return False
    fn(0)
    return True


def release_later() -> None:
    """From the event loop: trim once, shortly, in a worker thread (calls in the meantime join that one)."""
    loop = asyncio.get_running_loop()
    if loop in _pending:
        return
    _pending.add(loop)

    def run() -> None:
        _pending.discard(loop)
        loop.run_in_executor(None, trim)

    loop.call_later(TRIM_DELAY_S, run)
