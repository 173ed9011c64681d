"""How one request is sent: bounded reads, one retry on a fresh connection, and the record of both.

`Sender` owns the connection pool and the `TransportLog` of a run. `send` and `stream` make one
attempt on the pool (a kept-alive connection when one is idle); an attempt without a complete HTTP
response (for a stream: without a response head) is repeated once on a fresh connection. A
recovered failure is recorded and the answer returned; a second failure, or a body over
--max-response-bytes, is recorded and raises `NoAnswer`. Once the log declares the target
unresponsive, every request raises NoAnswer unsent. Pacing and slots are the caller's (Target).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from conformance.config import SuiteConfig
from conformance.exchange import EVIDENCE_LIMIT, KEY_MARKER, REDACTED, Exchange, StreamExchange
from conformance.sse import SseParser
from conformance.transport import TRANSPORT_ANSWER, Reading, TransportLog, fresh_client, read, timeout_of, why_no_answer
from conformance.verdicts import NotExercised


class TargetUnreachable(RuntimeError):
    """The target could not be reached at all: a suite-side error, not a target failure."""


class NoAnswer(NotExercised):
    """A request got no complete HTTP answer, on a fresh connection either (or was not sent: unresponsive target).

    The check that sent it is NOT_EXERCISED, rooted in transport.answer.every-request, which judges
    the failure; the attempts are the evidence, the last one a status-0 exchange of this request.
    """

    def __init__(self, message: str, exchanges: tuple[Exchange, ...]) -> None:
        last = exchanges[-1] if exchanges else None
        super().__init__(message, root=TRANSPORT_ANSWER, exchanges=exchanges,
                         actual=None if last is None else last.transport_error)


def redact(headers: dict[str, str], key: str | None) -> dict[str, str]:
    """The headers as evidence: only the configured key is hidden, every other value is kept as sent.

    `Authorization: Bearer <key>` becomes REDACTED; the key anywhere else becomes KEY_MARKER. A wrong
    token or an empty Bearer stays literal, so that the curl line reproduces what was judged.
    """
    if not key:
        return dict(headers)
    out = {}
    for name, value in headers.items():
        if name.lower() == "authorization" and value == f"Bearer {key}":
            out[name] = REDACTED
        else:
            out[name] = value.replace(key, KEY_MARKER)
    return out


class Sender:
    """Sends requests to one target within bounds, retries transport failures once, records everything."""

    def __init__(self, config: SuiteConfig) -> None:
        self.config = config
        self.log = TransportLog()
        self.http = httpx.Client(
            timeout=timeout_of(config.timeout),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=max(20, config.concurrency)),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def send(self, method: str, url: str, sent: dict[str, str], content: bytes | None, *,
             retry: bool = True) -> Exchange:
        """One request, its whole answer read; retry False (the burst): one attempt, unrecorded, answered or not."""
        if retry:
            self.refuse_if_unresponsive(method, url, sent, content)

        def attempt(client: httpx.Client) -> tuple[Reading, Exchange]:
            reading = self._read(client, method, url, sent, content)
            ex = Exchange(method, url, redact(sent, self.config.api_key), _body_text(content), 0, {}, "",
                          reading.elapsed_s)
            return reading, self._fill(ex, reading)

        reading, ex = attempt(self.http)
        if not retry:
            return ex
        self.log.sent(reading)
        if reading.cut or reading.overran:  # an answer too big or too slow: trying again would cost as much
            raise self._lost((ex,))
        if reading.complete:
            self.log.answered()
            return ex
        self.log.retry()
        with fresh_client(self.config.timeout) as fresh:
            reading, second = attempt(fresh)
        if not reading.complete:
            raise self._lost((ex, second))
        self.log.recover((ex, second))
        return second

    def stream(self, url: str, sent: dict[str, str], content: bytes) -> StreamExchange:
        """POST a stream; one with a response head is returned whatever happened next (the stream
        clauses judge a stall or an early end), unless its body passed the size limit."""
        self.refuse_if_unresponsive("POST", url, sent, content)
        stream, reading = self._stream_attempt(self.http, url, sent, content)
        self.log.sent(reading)
        if reading.cut:
            raise self._lost((stream,))
        if reading.status is not None:
            self.log.answered()
            return stream
        self.log.retry()
        with fresh_client(self.config.timeout) as fresh:
            second, reading = self._stream_attempt(fresh, url, sent, content)
        if reading.status is None or reading.cut:
            raise self._lost((stream, second))
        self.log.recover((stream, second))
        return second

    def refuse_if_unresponsive(self, method: str, url: str, sent: dict[str, str], content: bytes | None) -> None:
        """Once the target is unresponsive, raise NoAnswer at once: the request is not sent."""
        why = self.log.unresponsive
        if why is None:
            return
        unsent = Exchange(method, url, redact(sent, self.config.api_key), _body_text(content), 0, {},
                          f"[not sent: {why}]", 0.0, transport_error=f"not sent: {why}")
        lost = self.log.lost_exchanges()
        raise NoAnswer(f"{why}; {method} {_path_of(url)} was not sent (judged by {TRANSPORT_ANSWER})",
                       tuple(lost[-1:]) + (unsent,))

    def _read(self, client: httpx.Client, method: str, url: str, sent: dict[str, str], content: bytes | None,
              raw: bool = False, on_piece: Callable[[bytes], None] | None = None) -> Reading:
        """One bounded attempt; TargetUnreachable when no connection was ever made to the target."""
        reading, connected = read(client, method, url, headers=sent, content=content, timeout=self.config.timeout,
                                  max_bytes=self.config.max_response_bytes, raw=raw, on_piece=on_piece)
        if connected:
            self.log.connected()
        elif reading.connect_failed and not self.log.ever_connected:
            raise TargetUnreachable(f"cannot connect to {url}: {reading.failure}")
        return reading

    def _fill(self, ex: Exchange, reading: Reading) -> Exchange:
        """Put an attempt's answer into its exchange: the response, or status 0 and why there was none."""
        ex.connection = reading.connection
        if reading.status is not None:
            ex.headers = reading.headers
        if reading.complete:
            ex.status, ex.body_text = reading.status or 0, reading.text()
            return ex
        ex.transport_error = why_no_answer(reading, self.config.timeout, self.config.max_response_bytes)
        ex.body_text = f"[no answer: {ex.transport_error}]"
        if reading.body:  # what did arrive is evidence too (up to the evidence limit)
            ex.body_text += "\n" + bytes(reading.body[:EVIDENCE_LIMIT]).decode(reading.encoding, errors="replace")
        return ex

    def _stream_attempt(self, client: httpx.Client, url: str, sent: dict[str, str],
                        content: bytes) -> tuple[StreamExchange, Reading]:
        """One attempt at a stream, parsed as it arrives (iter_raw: the bytes exactly as sent)."""
        parser = SseParser()
        started = time.monotonic()
        first_event: list[float] = []

        def feed(piece: bytes) -> None:
            if parser.feed(piece) and not first_event:
                first_event.append(time.monotonic() - started)

        reading = self._read(client, "POST", url, sent, content, raw=True, on_piece=feed)
        parse = parser.close()
        answered = reading.status is not None and not reading.cut
        if answered and reading.failure and not reading.stalled:
            parse.framing_errors.append(f"transport error: {reading.failure}")
        stream = StreamExchange(
            "POST", url, redact(sent, self.config.api_key), content.decode("utf-8"), reading.status or 0,
            reading.headers, bytes(reading.body).decode("utf-8", errors="replace"), reading.elapsed_s,
            connection=reading.connection,
            raw_lines=parse.raw_lines, data=parse.data, chunks=parse.chunks, done=parse.done,
            after_done=parse.after_done, error_event=parse.error_event,
            first_event_s=first_event[0] if first_event else None,
            stalled=answered and reading.stalled, framing_errors=parse.framing_errors,
            non_json_events=parse.non_json_events, overran=reading.overran,
        )
        if not answered:
            stream.status = 0
            stream.transport_error = why_no_answer(reading, self.config.timeout, self.config.max_response_bytes)
            stream.body_text = f"[no answer: {stream.transport_error}]\n" + stream.body_text[:EVIDENCE_LIMIT]
        return stream, reading

    def _lost(self, attempts: tuple[Exchange, ...]) -> NoAnswer:
        """Record a request without an answer; the NoAnswer to raise for it."""
        self.log.fail(attempts)
        last = attempts[-1]
        tries = "twice, the second time on a fresh connection" if len(attempts) > 1 else "once"
        return NoAnswer(f"no answer to {last.method} {_path_of(last.url)} (sent {tries}): {last.transport_error} "
                        f"(judged by {TRANSPORT_ANSWER})", attempts)


def _path_of(url: str) -> str:
    """The path of an absolute URL (for messages)."""
    return "/" + url.split("://", 1)[-1].partition("/")[2]


def _body_text(content: bytes | None) -> str | None:
    if content is None:
        return None
    return content.decode("utf-8", errors="replace")


__all__ = ["NoAnswer", "Sender", "TargetUnreachable", "redact"]
