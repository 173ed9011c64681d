"""SSE keep-alive: a stream that has had nothing to send for `interval` seconds sends `: keep-alive`.

Gaps come from a request waiting in the generator's queue for a batch slot, a long prompt being
read before the first token, or the `slow` fault holding tokens back. The comment is a line
every SSE client skips (the official clients do), and it tells proxies and load balancers
that the connection is alive. The interval is `--keepalive` (CHATCONFORM_MOCK_KEEPALIVE, default 15 s;
0 turns it off). The `stall` fault is not paced: it waits before the answer's first byte, so a
stalled answer stays silent and a client's read timeout fires, as against a dead server.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from mock_server.render import SSE_KEEPALIVE
from mock_server.scheduler import TicketItem


class Source(Protocol):
    """Where a stream's items come from (a live ticket or a cached replay)."""

    async def next(self, timeout: float | None = None) -> TicketItem:
        """The next item; TimeoutError when none comes within `timeout` seconds."""
        ...


class PacedWriter:
    """Writes to a prepared SSE response, and fills each silence longer than `interval` with a comment."""

    def __init__(self, response: web.StreamResponse, interval: float, comment: bytes = SSE_KEEPALIVE) -> None:
        self.response = response
        self.interval = interval
        self.comment = comment  # the keep-alive event, in the stream's line ends (sse_framing.py)
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()  # the headers just went out

    async def write(self, data: bytes) -> None:
        """Send bytes; the silence starts again."""
        await self.response.write(data)
        self._last = self._loop.time()

    async def write_pieces(self, pieces: list[bytes]) -> None:
        """Send each piece as its own write (one HTTP chunk each), yielding to the loop in between."""
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(0)
            await self.write(piece)

    async def _keepalive(self) -> None:
        await self.write(self.comment)

    def _quiet_left(self) -> float:
        return self._last + self.interval - self._loop.time()

    async def next(self, source: Source) -> TicketItem:
        """The source's next item, sending keep-alive comments while it keeps the stream silent."""
        if self.interval <= 0:
            return await source.next()
        while True:
            left = self._quiet_left()
            if left <= 0:
                await self._keepalive()
                continue
            try:
                return await source.next(left)
            except TimeoutError:
                continue

    async def pause(self, seconds: float) -> None:
        """Wait `seconds` without output of its own, sending keep-alive comments meanwhile."""
        end = self._loop.time() + seconds
        while (left := end - self._loop.time()) > 0:
            if self.interval > 0:
                quiet = self._quiet_left()
                if quiet <= 0:
                    await self._keepalive()
                    continue
                left = min(left, quiet)
            await asyncio.sleep(left)
