"""Keeping the API key out of the log, whatever a client sends; and the log short when file descriptors run out.

aiohttp logs a request line it cannot parse with the offending header quoted (a key followed by a
NUL byte is printed raw), and a traceback may hold a header's value. A filter on each logger the
server writes through rewrites the record: the configured key and any Authorization header's
value become `<redacted>`.
"""

from __future__ import annotations

import logging
import re
import time

REDACTED = "<redacted>"
# An Authorization header as aiohttp quotes it: up to the end of the line or of the bytes' repr.
AUTHORIZATION = re.compile(r"(?i)(authorization\s*:\s*)[^\r\n'\"]*")
LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal", "mock_server")


def redact(text: str, key: str | None) -> str:
    """text with every Authorization value and the key itself replaced."""
    text = AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    return text.replace(key, REDACTED) if key else text


class RedactFilter(logging.Filter):
    """Rewrites a record's message and traceback through `redact` (the record is kept)."""

    def __init__(self, key: str | None) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; always lets the record through."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: leave it to the handler to report
            return True
        record.msg, record.args = redact(message, self.key), ()
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.key)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self.key)
        return True


class AcceptErrorThrottle(logging.Filter):
    """asyncio's `socket.accept() out of system resource` (EMFILE) at most once per `every` seconds, no traceback.

    Hundreds of half-open connections at a low open-file limit made asyncio log a traceback
    hundreds of times a second (69 MB in 30 s); the read timeout frees the files, and one line
    every few seconds says what happens meanwhile.
    """

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, every: float = 10.0) -> None:
        super().__init__()
        self.every = every
        self.last = float("-inf")
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Let the first record of a period through (with the count since the last), drop the rest."""
        if not str(record.msg).startswith(self.MESSAGE):
            return True
        now = time.monotonic()
        if now - self.last < self.every:
            self.suppressed += 1
            return False
        self.last = now
        record.msg = f"{self.MESSAGE}: too many open files? ({self.suppressed} more since the last report; " \
                     f"slow clients are closed after --read-timeout)"
        record.args, record.exc_info, record.exc_text = (), None, None
        self.suppressed = 0
        return True


def install(key: str | None) -> None:
    """Put one RedactFilter (for this key) on each logger the server writes through, replacing an earlier one."""
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, AcceptErrorThrottle) for f in asyncio_log.filters):
        asyncio_log.addFilter(AcceptErrorThrottle())
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RedactFilter)]:
            logger.removeFilter(old)
        logger.addFilter(RedactFilter(key))
