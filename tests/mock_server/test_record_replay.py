"""Record through `serve --record` from the tiny-model mock, then replay offline with `serve --replay`: same bytes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conformance.cassette import Cassette, Frame, load, save
from mock_server.backend import EngineBackend
from mock_server.cassette_match import CassetteIndex, normalise
from mock_server.config import ConfigError, load_config
from mock_server.recorder import RECORDING_KEY, FrameSplitter, upstream_url
from mock_server.replayer import schedule, speed_factor
from mock_server.server import ServerThread
from tests.conformance.rawserver import RawServer, sse_head
from tests.mock_server.conftest import chat_body, sse_events, tiny_config, wait_until

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_KEY = "sk-upstream-0123456789"
CLIENT_KEY = "sk-client-9876543210"
JSON = {"Content-Type": "application/json"}
# name -> (method, path, httpx keyword arguments): a whole answer, a stream with usage, a 400, a GET
EXCHANGES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "chat": ("POST", "/v1/chat/completions", {"json": chat_body(seed=1)}),
    "stream": ("POST", "/v1/chat/completions",
               {"json": chat_body(seed=1, stream=True, stream_options={"include_usage": True})}),
    "error": ("POST", "/v1/chat/completions", {"content": b'{"messages": [', "headers": JSON}),
    "models": ("GET", "/v1/models", {}),
}


def recorder(folder: Path, upstream: str, key: str | None = UPSTREAM_KEY) -> ServerThread:
    """A recording proxy (not started) writing to `folder`."""
    return ServerThread(load_config({"host": "127.0.0.1", "port": 0, "record": str(folder), "upstream": upstream,
                                     "upstream_key": key}, env={}))


def replayer(folder: Path, speed: str = "instant", ignore: tuple[str, ...] = ()) -> ServerThread:
    """A replay server (not started) on `folder`."""
    return ServerThread(load_config({"host": "127.0.0.1", "port": 0, "replay": str(folder), "replay_speed": speed,
                                     "match_ignore": list(ignore)}, env={}))


def written(server: ServerThread) -> None:
    """Wait until the recorder has written the cassette of every exchange it has answered."""
    assert server.app is not None
    recording = server.app[RECORDING_KEY]
    wait_until(lambda: recording.pending == 0, "the recorder has written its cassettes")


def send(base_url: str, name: str, **headers: str) -> httpx.Response:
    method, path, kwargs = EXCHANGES[name]
    kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}
    return httpx.request(method, base_url + path, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def upstream(tiny_backend: EngineBackend) -> Iterator[ServerThread]:
    """The tiny-model mock, which wants UPSTREAM_KEY."""
    with ServerThread(tiny_config(api_key=UPSTREAM_KEY), tiny_backend) as srv:
        yield srv


@pytest.fixture(scope="module")
def recorded(upstream: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, httpx.Response]]:
    """The four EXCHANGES recorded through the proxy (upstream given as .../v1): the folder and what the client got."""
    folder = tmp_path_factory.mktemp("recorded") / "cassettes"
    with recorder(folder, upstream.base_url + "/v1") as rec:
        got = {name: send(rec.base_url, name, Authorization=f"Bearer {CLIENT_KEY}") for name in EXCHANGES}
        written(rec)
    return folder, got


def test_one_cassette_per_exchange_named_in_recording_order(recorded: tuple[Path, dict[str, httpx.Response]]) -> None:
    folder, got = recorded
    names = sorted(p.name for p in folder.iterdir())
    assert [re.sub(r"[0-9a-f]{8}\.json$", "H.json", n) for n in names] == [
        "0001-post-chat-completions-H.json", "0002-post-chat-completions-H.json",
        "0003-post-chat-completions-H.json", "0004-get-models-H.json"]
    assert [got[n].status_code for n in EXCHANGES] == [200, 200, 400, 200]
    cassettes = [load(folder / n) for n in names]
    for cassette, name in zip(cassettes, EXCHANGES, strict=True):
        assert cassette.response_bytes == got[name].content, name
        assert cassette.status == got[name].status_code and cassette.upstream.endswith("/v1")
        assert cassette.path == EXCHANGES[name][1]  # the client's path, not the joined upstream one
    chat, stream, error, _ = cassettes
    assert chat.request_json == chat_body(seed=1) and not chat.streamed
    assert error.request_text == '{"messages": [' and error.request_json is None
    # A stream: one frame per SSE event as it arrived, the usage chunk before [DONE], times non-decreasing.
    events = sse_events(got["stream"].text)
    assert [f.data.decode() for f in stream.frames] == [f"data: {e}\n\n" for e in events]
    assert events[-1] == "[DONE]" and json.loads(events[-2])["usage"]["completion_tokens"] == 8
    times = [f.at for f in stream.frames]
    assert times == sorted(times) and 0 < times[0] and times[-1] <= stream.elapsed_s


def test_the_relay_passes_the_upstreams_bytes_unchanged(recorded: tuple[Path, dict[str, httpx.Response]],
                                                        upstream: ServerThread) -> None:
    _, got = recorded
    for name in ("error", "models"):  # answers that are the same on every call
        direct = send(upstream.base_url, name, Authorization=f"Bearer {UPSTREAM_KEY}")
        assert (direct.status_code, direct.content) == (got[name].status_code, got[name].content), name
        assert direct.headers["content-type"] == got[name].headers["content-type"]


def test_replay_sends_the_recorded_bytes(recorded: tuple[Path, dict[str, httpx.Response]]) -> None:
    folder, got = recorded
    with replayer(folder) as rep:
        for name in EXCHANGES:
            again = send(rep.base_url, name)  # no key: the replay server is offline
            assert again.status_code == got[name].status_code, name
            assert again.content == got[name].content, name
            assert again.headers["content-type"] == got[name].headers["content-type"]
        assert send(rep.base_url, "stream").headers.get("content-length") is None  # a stream stays chunked


def test_no_key_reaches_a_cassette(recorded: tuple[Path, dict[str, httpx.Response]]) -> None:
    folder, _ = recorded
    for path in folder.iterdir():
        text = path.read_text(encoding="utf-8")
        assert UPSTREAM_KEY not in text and CLIENT_KEY not in text, path.name
        assert load(path).request_headers["authorization"] == "***"


def test_without_an_upstream_key_the_clients_own_authorization_goes_upstream(upstream: ServerThread,
                                                                               tmp_path: Path) -> None:
    with recorder(tmp_path, upstream.base_url, key=None) as rec:
        assert send(rec.base_url, "models", Authorization=f"Bearer {UPSTREAM_KEY}").status_code == 200
        refused = send(rec.base_url, "models", Authorization="Bearer sk-wrong-key")
        written(rec)
    assert refused.status_code == 401 and "Invalid credentials" in refused.text
    assert [load(p).status for p in sorted(tmp_path.glob("*.json"))] == [200, 401]
    assert not any(UPSTREAM_KEY in p.read_text() for p in tmp_path.glob("*.json"))


def test_an_unreachable_upstream_is_a_502_naming_it(tmp_path: Path) -> None:
    with recorder(tmp_path / "c", "http://127.0.0.1:9/v1") as rec:
        r = send(rec.base_url, "chat")
        oai = httpx.post(rec.base_url + "/v1/chat/completions", json=chat_body(), timeout=60,
                         headers={"User-Agent": "OpenAI/Python 2.0"})
    assert r.status_code == 502 and r.headers["content-type"].startswith("application/json")
    assert "http://127.0.0.1:9/v1" in r.json()["error"] and r.json()["error_type"] == "upstream"
    assert oai.status_code == 502 and oai.json()["error"]["code"] == "upstream_unreachable"
    assert not list((tmp_path / "c").glob("*.json"))  # nothing came back: nothing to record


def test_the_upstream_path_joins_the_base_once() -> None:
    assert upstream_url("https://router.huggingface.co/v1", "/v1/chat/completions") == \
        "https://router.huggingface.co/v1/chat/completions"
    assert upstream_url("https://router.huggingface.co/v1/", "/chat/completions") == \
        "https://router.huggingface.co/v1/chat/completions"
    assert upstream_url("http://127.0.0.1:8081", "/v1/models") == "http://127.0.0.1:8081/v1/models"
    assert upstream_url("https://h/openai/v1", "/v1/models") == "https://h/openai/v1/models"
    assert upstream_url("https://router.huggingface.co", "/cerebras/v1/chat/completions") == \
        "https://router.huggingface.co/cerebras/v1/chat/completions"


def test_a_stream_is_relayed_event_by_event(paused_backend: EngineBackend, tmp_path: Path) -> None:
    """The role chunk reaches the client while the upstream has produced no token yet: nothing waits for the end."""
    gate = paused_backend.generator.running_gate
    wait_until(lambda: paused_backend.stats()["outstanding"] == 0, "the upstream is idle")
    gate.clear()
    try:
        with ServerThread(tiny_config(keepalive=0), paused_backend) as up, recorder(tmp_path, up.base_url) as rec, \
                httpx.Client(timeout=60) as client, \
                client.stream("POST", rec.base_url + "/v1/chat/completions",
                              json=chat_body(max_tokens=2, stream=True), headers={"x-use-cache": "false"}) as r:
            chunks = r.iter_bytes()
            head = next(chunks)
            assert json.loads(head.decode().removeprefix("data: "))["choices"][0]["delta"]["role"] == "assistant"
            assert paused_backend.stats()["outstanding"] == 1  # the generation has not finished
            gate.set()
            text = (head + b"".join(chunks)).decode()
            written(rec)
    finally:
        gate.set()
    cassette = load(next(tmp_path.glob("*.json")))
    assert cassette.response_bytes.decode() == text and len(cassette.frames) == len(sse_events(text))


def test_concurrent_exchanges_get_distinct_files(upstream: ServerThread, tmp_path: Path) -> None:
    answers: dict[int, bytes] = {}
    with recorder(tmp_path, upstream.base_url) as rec:
        def run(seed: int) -> None:
            answers[seed] = httpx.post(rec.base_url + "/v1/chat/completions", json=chat_body(seed=seed, max_tokens=4),
                                       timeout=60).content

        threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        written(rec)
    files = sorted(tmp_path.glob("*.json"))
    assert [p.name[:4] for p in files] == ["0001", "0002", "0003", "0004"]
    by_seed = {load(p).request_json["seed"]: load(p).response_bytes for p in files}
    assert by_seed == answers


def test_a_miss_names_the_nearest_cassette_and_the_difference(recorded: tuple[Path, dict[str, httpx.Response]]) -> None:
    folder, _ = recorded
    with replayer(folder) as rep:
        r = httpx.post(rep.base_url + "/v1/chat/completions", json=chat_body(seed=1, max_tokens=9), timeout=60)
        oai = httpx.post(rep.base_url + "/v1/chat/completions", timeout=60, headers={"x-stainless-lang": "python"},
                         json=chat_body(seed=1, messages=[{"role": "user", "content": "Something else entirely"}]))
        route = httpx.get(rep.base_url + "/v1/embeddings", timeout=60)
    assert r.status_code == 404 and r.json()["error_type"] == "not_found"
    message = r.json()["error"]
    assert re.search(r"nearest cassette is 0001-post-chat-completions-[0-9a-f]{8}\.json", message), message
    assert "max_tokens: request 9, cassette 8" in message
    assert oai.status_code == 404 and oai.json()["error"]["code"] == "cassette_not_found"
    assert 'messages[0].content: request "Something else entirely", cassette "Hello, who are you?"' \
        in oai.json()["error"]["message"]
    assert route.status_code == 404 and 'path: request "/v1/embeddings", cassette "/v1/models"' in route.json()["error"]


def test_the_replay_server_honours_its_api_key(recorded: tuple[Path, dict[str, httpx.Response]]) -> None:
    folder, got = recorded
    config = load_config({"host": "127.0.0.1", "port": 0, "replay": str(folder), "api_key": "sk-replay-key"}, env={})
    with ServerThread(config) as rep:
        assert send(rep.base_url, "models").status_code == 401
        assert send(rep.base_url, "models", Authorization="Bearer sk-replay-key").content == got["models"].content


def test_ignored_fields_do_not_count(recorded: tuple[Path, dict[str, httpx.Response]]) -> None:
    folder, got = recorded
    with replayer(folder, ignore=("seed", "stream_options.include_usage")) as rep:
        tagged = httpx.post(rep.base_url + "/v1/chat/completions", timeout=60,
                            json={"metadata": {"run": "7"}, "user": "u-1", **chat_body(seed=5)})
        bare_stream = httpx.post(rep.base_url + "/v1/chat/completions", timeout=60,
                                 json=chat_body(seed=1, stream=True))
    assert tagged.content == got["chat"].content  # user, metadata: by default; seed: asked for
    assert bare_stream.content == got["stream"].content  # stream_options emptied by the removal: gone too
    key = normalise("POST", "/p", "b=2&a=1", {"t": 1.0, "x": {"y": 1}}, None, ("x.y",))
    assert key == normalise("POST", "/p", "a=1&b=2", {"t": 1}, None)


def test_the_same_request_plays_its_cassettes_in_order_then_repeats_the_last(upstream: ServerThread,
                                                                              tmp_path: Path) -> None:
    with recorder(tmp_path, upstream.base_url) as rec:
        first, second = (send(rec.base_url, "chat").content for _ in range(2))
        written(rec)
    assert first != second  # each answer has its own id
    with replayer(tmp_path) as rep:
        assert [send(rep.base_url, "chat").content for _ in range(3)] == [first, second, second]


def test_the_schedule_follows_the_speed() -> None:
    stream = Cassette("POST", "/v1/chat/completions", 200, frames=[Frame(0.1, b"a\n\n"), Frame(0.5, b"b\n\n"),
                                                                  Frame(2.0, b"c\n\n")], elapsed_s=2.1)
    whole = Cassette("GET", "/v1/models", 200, body=b"{}", elapsed_s=1.5)
    assert schedule(stream, speed_factor("recorded")) == [0.1, 0.5, 2.0]
    assert schedule(stream, speed_factor("2.0")) == [0.05, 0.25, 1.0]
    assert schedule(stream, speed_factor("instant")) == [0.0, 0.0, 0.0]
    assert schedule(whole, speed_factor("recorded")) == [1.5] and schedule(whole, speed_factor("instant")) == [0.0]
    assert load_config({"replay": "d", "replay_speed": "2"}, env={}).replay_speed == "2.0"


def test_recorded_speed_holds_a_late_frame_back_and_instant_does_not(tmp_path: Path) -> None:
    frames = [Frame(0.0, b"data: {}\n\n"), Frame(0.0, b"data: {}\n\n"), Frame(600.0, b"data: [DONE]\n\n")]
    save(Cassette("POST", "/v1/chat/completions", 200, request_json={"stream": True}, frames=frames,
                  response_headers={"content-type": "text/event-stream"}, elapsed_s=600.0), tmp_path / "0001-x.json")
    with replayer(tmp_path, speed="recorded") as slow, httpx.Client(timeout=httpx.Timeout(60, read=3)) as c, \
            c.stream("POST", slow.base_url + "/v1/chat/completions", json={"stream": True}) as r:
        received = b""
        with pytest.raises(httpx.ReadTimeout):
            for chunk in r.iter_bytes():
                received += chunk
    assert received == b"data: {}\n\ndata: {}\n\n"  # the frame recorded at 600 s has not come
    with replayer(tmp_path, speed="instant") as fast:
        r2 = httpx.post(fast.base_url + "/v1/chat/completions", json={"stream": True}, timeout=60)
    assert r2.content == b"".join(f.data for f in frames)


def test_the_splitter_cuts_events_whatever_the_chunks() -> None:
    data = b"data: a\r\n\r\ndata: b\n\n\n\n: c\r\rdata: d\n\ndata: tail"
    for size in (1, 2, 3, 7, len(data)):
        splitter = FrameSplitter()
        frames = [f for i in range(0, len(data), size) for f in splitter.feed(data[i:i + size], i)]
        frames += splitter.close(len(data))
        assert [f.data for f in frames] == [b"data: a\r\n\r\n", b"data: b\n\n", b"\n\n", b": c\r\r",
                                            b"data: d\n\n", b"data: tail"], size


def test_the_official_openai_client_works_against_the_replay(upstream: ServerThread, tmp_path: Path) -> None:
    def calls(base_url: str, key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        oai = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=60)
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        whole = oai.chat.completions.create(model="chatconform/tiny-random", messages=messages, max_tokens=5)
        stream = oai.chat.completions.create(model="chatconform/tiny-random", messages=messages, max_tokens=5,
                                             stream=True, stream_options={"include_usage": True})
        return whole.model_dump(), [chunk.model_dump() for chunk in stream]

    with recorder(tmp_path, upstream.base_url) as rec:
        live = calls(rec.base_url, CLIENT_KEY)
        written(rec)
    with replayer(tmp_path) as rep:
        replayed = calls(rep.base_url, "sk-anything")
    assert replayed == live
    assert live[0]["usage"]["completion_tokens"] == 5 and live[1][-1]["usage"]["completion_tokens"] == 5


def test_a_client_that_closes_after_done_still_gets_its_cassette_written(tmp_path: Path) -> None:
    """The openai client closes its connection as soon as it has read [DONE]; the upstream's end comes later.

    The recorder must not be cancelled by that close: the client had every byte, so the exchange is whole.
    """
    events = [b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n', b"data: [DONE]\n\n"]
    client_gone = threading.Event()

    def answer(request: bytes) -> Iterator[bytes | float]:
        yield sse_head()
        yield from events
        client_gone.wait(30)  # the upstream ends its answer only after the client has closed its connection
        yield 0.0

    with RawServer(answer) as upstream, recorder(tmp_path, upstream.base_url) as rec:
        with httpx.stream("POST", rec.base_url + "/v1/chat/completions", json={"stream": True}, timeout=60) as r:
            received = b""
            for piece in r.iter_raw():
                received += piece
                if received.endswith(b"data: [DONE]\n\n"):
                    break
        client_gone.set()  # the with-block closed the connection before the upstream's end
        written(rec)
    [cassette] = [load(p) for p in tmp_path.glob("*.json")]
    assert cassette.response_bytes == b"".join(events)


def test_cassettes_play_in_natural_number_order(tmp_path: Path) -> None:
    for number in (9, 10, 2):
        save(Cassette("GET", "/v1/models", 200, body=str(number).encode()), tmp_path / f"{number}-get-models.json")
    index = CassetteIndex.load(tmp_path)
    wanted = normalise("GET", "/v1/models", "", None, None)
    played = [index.match(wanted) for _ in range(4)]
    assert [c.body if c else None for c in played] == [b"2", b"9", b"10", b"10"]


def test_mode_options_are_checked() -> None:
    cases = {
        "--record needs --upstream": {"record": "d"},
        "--record and --replay exclude each other": {"record": "d", "upstream": "http://h", "replay": "d"},
        "--upstream applies only with --record": {"upstream": "http://h"},
        "--match-ignore applies only with --replay": {"match_ignore": ["seed"]},
        "--model does not apply with --replay": {"replay": "d", "model": "tiny"},
        "--upstream: must be an http(s) base URL": {"record": "d", "upstream": "ftp://h"},
        "--replay-speed: must be recorded, instant or a factor": {"replay": "d", "replay_speed": "fast"},
    }
    for expected, cli in cases.items():
        with pytest.raises(ConfigError, match=re.escape(expected)):
            load_config(cli, env={})
    ambient = load_config({}, env={"CHATCONFORM_MOCK_UPSTREAM_KEY": "sk-x", "CHATCONFORM_MOCK_MATCH_IGNORE": "a, b.c"})
    assert ambient.record is None and ambient.match_ignore == ("a", "b.c")  # the environment's other mode: left alone
    assert ambient.public()["upstream_key"] == "***"


def test_serve_refuses_a_bad_mode_before_starting(tmp_path: Path) -> None:
    for args, expected in ((["--record", str(tmp_path)], "--record needs --upstream"),
                           (["--replay", str(tmp_path / "none")], "no such folder of cassettes"),
                           (["--replay", str(tmp_path)], "holds no cassettes")):
        proc = subprocess.run([sys.executable, "-m", "mock_server", "--port", "0", *args], cwd=ROOT, timeout=60,
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr


def test_serve_replay_starts_without_a_model(recorded: tuple[Path, dict[str, httpx.Response]]) -> None:
    folder, got = recorded
    proc = subprocess.Popen([sys.executable, "-m", "mock_server", "--replay", str(folder), "--port", "0",
                             "--replay-speed", "instant", "--log-level", "warning"], cwd=ROOT,
                            env={**os.environ, "CHATCONFORM_MOCK_MODEL": "smollm2"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert match and f"replaying {folder}" in first, first
        assert send(match.group(0), "models").content == got["models"].content
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
