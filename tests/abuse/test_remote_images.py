"""With --allow-remote-images: redirects are not followed, and a slow image host delays no one else."""

from __future__ import annotations

import base64
import http.server
import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from tests.abuse.harness import MockProcess

SLOW_REQUESTS = 8  # more than the shared worker pool's threads on a small machine (cores + 4)


def png() -> bytes:
    """A small red PNG."""
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (220, 30, 30)).save(out, format="PNG")
    return out.getvalue()


class ImageHost(http.server.ThreadingHTTPServer):
    """/img: a PNG; /redirect: 302 to /img; /slow: blocks until `release` is set."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.release = threading.Event()
        self.slow_seen = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    """The image host's routes."""

    server: ImageHost

    def do_GET(self) -> None:
        """Serve one of the routes."""
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/img")
            self.end_headers()
            return
        if self.path == "/slow":
            with self.server.lock:
                self.server.slow_seen += 1
            self.server.release.wait(120)
        data = png()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def host() -> Iterator[ImageHost]:
    """The image host in a thread."""
    server = ImageHost()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()


@pytest.fixture(scope="module")
def remote() -> Iterator[MockProcess]:
    """A mock server that fetches remote images."""
    with MockProcess("--allow-remote-images") as server:
        yield server


def image_request(url: str) -> dict[str, object]:
    """A request with one image part."""
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                                      {"type": "image_url", "image_url": {"url": url}}]}],
            "max_tokens": 2, "temperature": 0}


def test_a_direct_image_url_is_served(remote: MockProcess, host: ImageHost) -> None:
    response = httpx.post(remote.base_url + "/v1/chat/completions", json=image_request(host.url + "/img"), timeout=60)
    assert response.status_code == 200, response.text


def test_a_redirect_is_not_followed(remote: MockProcess, host: ImageHost) -> None:
    response = httpx.post(remote.base_url + "/v1/chat/completions", json=image_request(host.url + "/redirect"),
                          timeout=60)
    assert response.status_code == 422, response.text
    assert "redirect (HTTP 302)" in response.text and "[rule: no redirects]" in response.text
    assert "messages[0].content[1].image_url.url" in response.text


def test_a_slow_image_host_delays_no_other_request(remote: MockProcess, host: ImageHost) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png()).decode()
    with httpx.Client(base_url=remote.base_url, timeout=120,
                      limits=httpx.Limits(max_connections=SLOW_REQUESTS + 2)) as client, \
            ThreadPoolExecutor(SLOW_REQUESTS) as pool:
        slow = [pool.submit(client.post, "/v1/chat/completions", json=image_request(host.url + "/slow"))
                for _ in range(SLOW_REQUESTS)]
        normal = client.post("/v1/chat/completions", json=image_request(data_url))
        plain = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                           "max_tokens": 2})
        assert normal.status_code == 200 and plain.status_code == 200
        # The slow host still holds its requests: the others were not queued behind them.
        assert not any(f.done() for f in slow)
        host.release.set()
        assert all(f.result().status_code == 200 for f in slow)
