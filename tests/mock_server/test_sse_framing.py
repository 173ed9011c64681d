"""SSE framing variants: legal streams that the suite's strict parser reads as the plain one; what clients make of them.

CLIENTS is the observed table (also in README.md, "Unusual SSE framing"): for each framing, whether the
official openai client and huggingface_hub's InferenceClient read the same text as from the plain
framing, or which exception they raise. A client upgrade that changes a row fails its test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from openai.types.chat import ChatCompletionMessageParam

from conformance.sse import parse_sse
from mock_server.backend import EngineBackend
from mock_server.cli import add_arguments
from mock_server.config import ConfigError, load_config
from mock_server.keepalive import PacedWriter
from mock_server.render import SSE_KEEPALIVE
from mock_server.server import ServerThread
from mock_server.sse_framing import ALLOWED, Framing, Variant, parse_framing
from tests.mock_server.conftest import tiny_config

SEED = 3  # the tiny model's answer to this seed holds a two-byte character (U+05B7), so `split` cuts one
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello, who are you?"}]
BODY = {"messages": MESSAGES, "max_tokens": 12, "seed": SEED}
HEADER = "x-mock-sse-framing"
SAME = "same"  # the client read the plain framing's text

# framing -> (openai, huggingface_hub): SAME, or the name of the exception the client raised.
# Observed with openai 3.57.0 and huggingface_hub 2.4.0.
CLIENTS: dict[str, tuple[str, str]] = {
    "plain": (SAME, SAME),
    "crlf": (SAME, SAME),
    "cr": (SAME, SAME),
    "comments": (SAME, SAME),
    "keepalive": (SAME, SAME),
    "retry-id": (SAME, SAME),
    "event-field": (SAME, SAME),
    "split": (SAME, SAME),
    # huggingface_hub parses each `data:` line as a whole JSON document
    "multiline-data": (SAME, "JSONDecodeError"),
    "crlf,split": (SAME, SAME),
    "cr,split": (SAME, SAME),
    # openai keeps the last event id and dispatches an empty event at the blank line after a comment
    # (the spec dispatches nothing there), then fails to parse its empty data as JSON
    "retry-id,keepalive": ("JSONDecodeError", SAME),
    "crlf,comments,event-field,split,multiline-data": (SAME, "JSONDecodeError"),
}


@pytest.fixture(scope="module")
def framed(tiny_backend: EngineBackend) -> Iterator[ServerThread]:
    """Plain framing by default; no keep-alive comments of the server's own (a busy machine could add some)."""
    with ServerThread(tiny_config(keepalive=0), tiny_backend) as srv:
        yield srv



def sse(payload: dict[str, Any]) -> bytes:
    """The plain event the server wrote before framings existed: `data: <compact JSON>` and a blank line."""
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

def _stream(base_url: str, framing: str | None, body: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> bytes:
    extra = {} if framing is None else {HEADER: framing}
    with httpx.Client(base_url=base_url, timeout=60) as c:
        r = c.post("/v1/chat/completions", json={**(body or BODY), "stream": True}, headers={**extra, **(headers or {})})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/event-stream"
        return r.content


def _comparable(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks without what differs between two answers to one request (the id, the creation time)."""
    return [{k: v for k, v in c.items() if k not in ("id", "created")} for c in chunks]


def _content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


@pytest.fixture(scope="module")
def plain(framed: ServerThread) -> list[dict[str, Any]]:
    """The chunks of the plain stream of BODY."""
    body = _stream(framed.base_url, "plain")
    parsed = parse_sse(body)
    assert parsed.done and not parsed.framing_errors and parsed.chunks
    assert any(ord(ch) > 0x7F for ch in _content(parsed.chunks)), "the answer holds a multi-byte character"
    return parsed.chunks


# --- the framer itself -------------------------------------------------------------------------------------

PAYLOAD = {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": "naïve €5 \U0001F600\n\"q\""},
                                            "logprobs": None, "finish_reason": None}], "usage": None}


def test_plain_framer_writes_what_the_server_always_wrote() -> None:
    framer = Framing().framer(None)
    assert framer.event(PAYLOAD) == [sse(PAYLOAD)]
    assert framer.event("[DONE]") == [b"data: [DONE]\n\n"]
    assert framer.comment("keep-alive") == SSE_KEEPALIVE


def test_line_ends_and_fields() -> None:
    framer = parse_framing("cr,comments,retry-id,event-field,keepalive").framer(None)
    first, second = framer.event(PAYLOAD)[0], framer.event("[DONE]")[0]
    assert b"\n" not in first + second
    assert first.split(b"\r") == [b": event 1", b"retry: 3000", b"id: 1", b"event: message",
                                  sse(PAYLOAD)[:-2], b"", b""]
    assert second.split(b"\r") == [b": keep-alive", b"", b": event 2", b"id: 2", b"event: message",
                                   b"data: [DONE]", b"", b""]
    crlf = parse_framing("crlf").framer(None)
    assert crlf.event(PAYLOAD) == [sse(PAYLOAD).replace(b"\n", b"\r\n")]
    assert crlf.comment("keep-alive") == b": keep-alive\r\n\r\n"


def test_multiline_data_cuts_only_between_json_tokens() -> None:
    event = parse_framing("multiline-data").framer(None).event(PAYLOAD)[0]
    lines = event.decode().split("\n")
    assert lines[-2:] == ["", ""] and len(lines) > 6
    data = [line.removeprefix("data: ") for line in lines[:-2]]
    assert all(line.startswith("data: ") for line in lines[:-2])
    # Joined as SSE joins them, the lines are the same JSON value; without the newlines, the compact JSON:
    # so no cut falls inside a string, a number or a literal.
    assert json.loads("\n".join(data)) == PAYLOAD
    assert "".join(data) == json.dumps(PAYLOAD, ensure_ascii=False, separators=(",", ":"))


def test_split_cuts_inside_a_character_and_a_crlf_reproducibly() -> None:
    pieces = parse_framing("crlf,split").framer(7).event(PAYLOAD)
    whole = parse_framing("crlf").framer(7).event(PAYLOAD)[0]
    assert b"".join(pieces) == whole and len(pieces) >= 3
    assert any(not _is_utf8(piece) for piece in pieces), pieces  # a character cut in two
    assert any(a.endswith(b"\r") and b.startswith(b"\n") for a, b in itertools.pairwise(pieces)), pieces
    assert parse_framing("crlf,split").framer(7).event(PAYLOAD) == pieces
    assert [parse_framing("split").framer(seed).event(PAYLOAD) for seed in range(4)] != \
        [parse_framing("split").framer(7).event(PAYLOAD)] * 4


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("bad", ["crlff", "split,CRLF,lf", "crlf,cr", "plain,split", " , "])
def test_unknown_or_conflicting_variants_are_refused(bad: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_framing(bad)
    assert repr(bad) in str(err.value)


def test_option_and_environment() -> None:
    assert load_config({}, env={}).sse_framing == ()
    assert load_config({}, env={"CHATCONFORM_MOCK_SSE_FRAMING": "split,CRLF"}).sse_framing == ("crlf", "split")
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--sse-framing", "multiline-data,cr"])
    assert load_config(vars(args), env={"CHATCONFORM_MOCK_SSE_FRAMING": "crlf"}).sse_framing == \
        ("cr", "multiline-data")
    with pytest.raises(ConfigError) as err:
        load_config({"sse_framing": "crlf,bogus"}, env={})
    message = str(err.value)
    assert "--sse-framing" in message and "'bogus'" in message and "'crlf,bogus'" in message
    assert all(name in message for name in ALLOWED)


# --- the server --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("framing", list(CLIENTS))
def test_strict_parser_reads_the_same_chunks(framed: ServerThread, plain: list[dict[str, Any]], framing: str) -> None:
    body = _stream(framed.base_url, framing)
    parsed = parse_sse(body)
    assert not parsed.framing_errors and not parsed.non_json_events and parsed.error_event is None
    assert parsed.done and not parsed.after_done
    assert _comparable(parsed.chunks) == _comparable(plain)
    variants = parse_framing(framing).variants
    if Variant.CR in variants:
        assert b"\n" not in body
    if Variant.CRLF in variants:
        assert body.count(b"\n") == body.count(b"\r\n")
    if Variant.MULTILINE_DATA in variants:
        assert len([line for line in parsed.raw_lines if line.startswith("data:")]) > 5 * len(parsed.data)


def _openai_text(base_url: str, framing: str) -> str:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="sk-anything", max_retries=0, timeout=60)
    stream = client.chat.completions.create(model="chatconform/tiny-random", messages=MESSAGES,
                                            max_tokens=12, seed=SEED, stream=True, extra_headers={HEADER: framing})
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def _hf_text(base_url: str, framing: str) -> str:
    client = InferenceClient(base_url=base_url, api_key="hf_anything", timeout=60, headers={HEADER: framing})
    stream = client.chat_completion(messages=[dict(m) for m in MESSAGES], max_tokens=12, seed=SEED, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def _outcome(read: Any, base_url: str, framing: str, plain_text: str) -> str:
    try:
        text = read(base_url, framing)
    except Exception as exc:
        return type(exc).__name__
    assert text == plain_text, f"{framing}: the client read other text without raising"
    return SAME


@pytest.mark.parametrize("framing", list(CLIENTS))
def test_openai_client(framed: ServerThread, plain: list[dict[str, Any]], framing: str) -> None:
    assert _outcome(_openai_text, framed.base_url, framing, _content(plain)) == CLIENTS[framing][0]


@pytest.mark.parametrize("framing", list(CLIENTS))
def test_huggingface_hub_client(framed: ServerThread, plain: list[dict[str, Any]], framing: str) -> None:
    assert _outcome(_hf_text, framed.base_url, framing, _content(plain)) == CLIENTS[framing][1]


def test_server_option_applies_and_the_header_replaces_it(tiny_backend: EngineBackend,
                                                          plain: list[dict[str, Any]]) -> None:
    with ServerThread(tiny_config(keepalive=0, sse_framing="crlf,retry-id"), tiny_backend) as srv:
        default = _stream(srv.base_url, None)
        assert b"\r\nid: 1\r\n" in default and _comparable(parse_sse(default).chunks) == _comparable(plain)
        assert b"\r" not in _stream(srv.base_url, "plain")
        comments = _stream(srv.base_url, "comments")
        assert b"\r" not in comments and comments.startswith(b": event 1\ndata: ")


def test_bad_header_is_a_400_naming_it(framed: ServerThread) -> None:
    with httpx.Client(base_url=framed.base_url, timeout=60) as c:
        r = c.post("/v1/chat/completions", json={**BODY, "stream": True}, headers={HEADER: "crlf,chunky"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert HEADER in error and "'chunky'" in error and "'crlf,chunky'" in error
    assert all(name in error for name in ALLOWED)


def test_error_events_are_framed_too(tiny_backend: EngineBackend) -> None:
    with ServerThread(tiny_config(keepalive=0, allow_faults=True), tiny_backend) as srv:
        body = _stream(srv.base_url, "cr,multiline-data,split", headers={"x-mock-fault": "error-mid-stream"})
    parsed = parse_sse(body)
    assert b"\n" not in body and not parsed.framing_errors and not parsed.done
    assert parsed.error_event is not None and "injected fault" in parsed.error_event["error"]


def test_server_keepalives_follow_the_line_ends_and_break_openai_with_ids(tiny_backend: EngineBackend) -> None:
    """The server's own keep-alive comments (here in latency's waits) have the stream's line ends; after an
    `id:`, openai reads the blank line that ends such a comment as an empty event (as in `retry-id,keepalive`)."""
    with ServerThread(tiny_config(keepalive=0.1), tiny_backend) as srv:
        latency = {"x-mock-latency": "ttft=0.4,itl=0.4"}
        body = _stream(srv.base_url, "crlf", {**BODY, "max_tokens": 2}, latency)
        assert b": keep-alive\r\n\r\n" in body and body.count(b"\n") == body.count(b"\r\n")
        assert parse_sse(body).done
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="sk-anything", max_retries=0, timeout=60)
        for framing, fails in (("crlf", False), ("crlf,retry-id", True)):
            stream = client.chat.completions.create(model="m", messages=MESSAGES,
                                                    max_tokens=2, seed=SEED, stream=True,
                                                    extra_headers={HEADER: framing, **latency})
            if fails:
                with pytest.raises(json.JSONDecodeError):
                    list(stream)
            else:
                assert list(stream)[-1].choices[0].finish_reason == "length"


# --- split: the pieces reach the wire as separate writes --------------------------------------------------

def _http_chunks(port: int, body: dict[str, Any], framing: str) -> list[bytes]:
    """POST over a raw socket; the answer's HTTP/1.1 chunks, one per write of the server."""
    payload = json.dumps({**body, "stream": True}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\n{HEADER}: {framing}\r\nConnection: close\r\n\r\n").encode() + payload
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        for _ in range(100_000):  # bounded; ends when the server closes
            data = sock.recv(65536)
            if not data:
                break
            received += data
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower(), head
    chunks: list[bytes] = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks
        chunks.append(rest[:size])
        assert rest[size:size + 2] == b"\r\n"
        rest = rest[size + 2:]


@pytest.mark.parametrize("framing", ["split", "crlf,split", "cr,multiline-data,split"])
def test_split_pieces_are_separate_writes(framed: ServerThread, framing: str) -> None:
    chunks = _http_chunks(framed.port, BODY, framing)
    parsed = parse_sse(b"".join(chunks))
    assert parsed.done and not parsed.framing_errors
    # The same framer, fed the same events, cuts them where the server's writes were cut.
    framer = parse_framing(framing).framer(SEED)
    expected = [piece for data in parsed.data for piece in framer.event(data if data == "[DONE]" else json.loads(data))]
    assert chunks == expected
    assert len(chunks) > 2 * len(parsed.data)
    assert any(not _is_utf8(chunk) for chunk in chunks)  # a write ends inside a character


def test_paced_writer_sends_each_piece_as_its_own_write() -> None:
    written: list[bytes] = []

    class Recorder:
        async def write(self, data: bytes) -> None:
            written.append(data)

    async def run() -> None:
        await PacedWriter(Recorder(), 0).write_pieces(pieces)  # type: ignore[arg-type]

    pieces = parse_framing("split").framer(1).event(PAYLOAD)
    asyncio.run(run())
    assert written == pieces and len(pieces) > 1
