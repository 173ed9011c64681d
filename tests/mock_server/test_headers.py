"""x-use-cache, x-wait-for-model with a loading model (--load-delay), /metrics, and image parts."""

from __future__ import annotations

import base64
import io
import threading

import httpx
from PIL import Image

from mock_server.server import ServerThread
from spec import schemas
from tests.mock_server.conftest import chat_body, tiny_config


def test_cache_hits_deterministic_requests_only(client: httpx.Client) -> None:
    body = chat_body(temperature=0, max_tokens=5, messages=[{"role": "user", "content": "cache me"}])
    first = client.post("/v1/chat/completions", json=body)
    second = client.post("/v1/chat/completions", json=body)
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert second.json()["choices"] == first.json()["choices"] and second.json()["id"] != first.json()["id"]
    fresh = client.post("/v1/chat/completions", json=body, headers={"x-use-cache": "false"})
    assert fresh.headers["x-cache"] == "miss"
    random = chat_body(temperature=1, max_tokens=5)
    assert client.post("/v1/chat/completions", json=random).headers["x-cache"] == "miss"
    assert client.post("/v1/chat/completions", json=random).headers["x-cache"] == "miss"


def test_unseeded_requests_without_cache_differ(client: httpx.Client) -> None:
    body = chat_body(temperature=1, max_tokens=8)
    answers = [client.post("/v1/chat/completions", json=body, headers={"x-use-cache": "false"}).json()
               for _ in range(3)]
    assert len({a["id"] for a in answers}) == 3
    assert len({a["choices"][0]["message"]["content"] for a in answers}) >= 2


def test_loading_model_answers_503_or_waits(tiny_backend) -> None:  # type: ignore[no-untyped-def]
    with ServerThread(tiny_config(load_delay=1.5), tiny_backend) as srv, \
            httpx.Client(base_url=srv.base_url, timeout=60) as c:
        health = c.get("/health")
        r = c.post("/v1/chat/completions", json=chat_body(max_tokens=1))
        assert health.status_code == 503 and r.status_code == 503
        assert schemas.validate("ErrorLoading", r.json()) == [], r.json()
        assert 0 < r.json()["estimated_time"] <= 1.5 and "currently loading" in r.json()["error"]
        assert int(r.headers["Retry-After"]) >= 1
        waited = c.post("/v1/chat/completions", json=chat_body(max_tokens=1), headers={"x-wait-for-model": "true"})
        assert waited.status_code == 200
        assert c.get("/health").status_code == 200


def test_metrics_are_prometheus_text(client: httpx.Client) -> None:
    client.post("/v1/chat/completions", json=chat_body(max_tokens=2))
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    lines = r.text.splitlines()
    assert "chatconform_model_ready 1" in lines
    assert any(line.startswith('chatconform_requests_total{route="/v1/chat/completions",status="200"}')
               for line in lines)
    tokens = next(line for line in lines if line.startswith("chatconform_generated_tokens_total "))
    assert int(tokens.split()[1]) >= 2


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (16, 8), kind: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=kind)
    mime = "png" if kind == "PNG" else "jpeg"
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()


def _image_message(url: str, detail: str | None = None) -> list[dict]:
    image: dict = {"url": url} if detail is None else {"url": url, "detail": detail}
    return [{"role": "user", "content": [{"type": "text", "text": "Describe this image."},
                                         {"type": "image_url", "image_url": image}]}]


def test_data_url_images_are_described_into_the_prompt(client: httpx.Client) -> None:
    red = client.post("/v1/chat/completions", json=chat_body(messages=_image_message(_png((230, 20, 20))),
                                                             temperature=0, max_tokens=4))
    blue_image = _image_message(_png((20, 40, 230), kind="JPEG"), "low")
    blue = client.post("/v1/chat/completions", json=chat_body(messages=blue_image, temperature=0, max_tokens=4))
    assert red.status_code == blue.status_code == 200, (red.text, blue.text)
    text_only = client.post("/v1/chat/completions", json=chat_body(
        messages=[{"role": "user", "content": "Describe this image."}], temperature=0, max_tokens=4))
    # The description ("[image: PNG, 16x8 pixels, mostly red]") is part of the prompt.
    assert red.json()["usage"]["prompt_tokens"] > text_only.json()["usage"]["prompt_tokens"] + 8


def test_bad_images_are_422_naming_the_part(client: httpx.Client) -> None:
    for url in ("data:image/png;base64,not-base64!!", "data:image/png;base64," + base64.b64encode(b"hello").decode(),
                "data:text/plain;base64,aGVsbG8=", "https://example.com/cat.png", "file:///etc/passwd"):
        r = client.post("/v1/chat/completions", json=chat_body(messages=_image_message(url)))
        assert r.status_code == 422, (url, r.text)
        assert "messages[0].content[1]" in r.json()["error"], r.json()


def test_image_pixel_limit(tiny_backend) -> None:  # type: ignore[no-untyped-def]
    with ServerThread(tiny_config(max_image_pixels=100), tiny_backend) as srv:
        r = httpx.post(srv.base_url + "/v1/chat/completions", timeout=60,
                       json=chat_body(messages=_image_message(_png((0, 0, 0), size=(20, 20)))))
        assert r.status_code == 422 and "max_image_pixels" in r.json()["error"]


def test_server_survives_parallel_garbage(client: httpx.Client) -> None:
    def garbage(i: int) -> int:
        return client.post("/v1/chat/completions", content=bytes([i % 256]) * i,
                           headers={"content-type": "application/json"}).status_code

    statuses: list[int] = []
    threads = [threading.Thread(target=lambda i=i: statuses.append(garbage(i))) for i in range(1, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses and all(400 <= s < 500 for s in statuses), statuses
    assert client.post("/v1/chat/completions", json=chat_body(max_tokens=1)).status_code == 200


def test_remote_images_are_fetched_when_allowed(tiny_backend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import functools
    import http.server

    (tmp_path / "green.png").write_bytes(base64.b64decode(_png((20, 170, 60)).split(",", 1)[1]))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    images = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{images.server_address[1]}"
    try:
        with ServerThread(tiny_config(allow_remote_images=True), tiny_backend) as srv, \
                httpx.Client(base_url=srv.base_url, timeout=60) as c:
            ok = c.post("/v1/chat/completions", json=chat_body(messages=_image_message(url + "/green.png")))
            missing = c.post("/v1/chat/completions", json=chat_body(messages=_image_message(url + "/none.png")))
        assert ok.status_code == 200, ok.text
        assert missing.status_code == 422 and "HTTP 404" in missing.json()["error"]
    finally:
        images.shutdown()
