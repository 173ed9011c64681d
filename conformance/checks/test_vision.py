"""image_url content parts: accepted and used, or refused clearly.

The images are built here, without an imaging library: a PNG written with zlib and struct, and a
JPEG kept as a constant (a 2x2 baseline JPEG, 632 bytes).
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any, NoReturn

from conformance.client import Exchange, Target
from conformance.no_answer import raise_unanswered
from conformance.registry import clause
from conformance.verdicts import Fail, NotApplicable, NotExercised, Unsupported, refused_clearly, require

FRESH = {"x-use-cache": "false"}
ROOT = "vision.image-url.accepted-or-refused"  # whether the target takes images at all

# A 2x2 red baseline JPEG (quality 50).
JPEG_2X2_B64 = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBk"
    "eFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAACAAID"
    "ASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKB"
    "kaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZ"
    "mqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQF"
    "BgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5"
    "OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX"
    "2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDHooorhPqD/9k="
)


def png_bytes(width: int = 4, height: int = 4, rgb: tuple[int, int, int] = (30, 120, 220)) -> bytes:
    """A valid RGB PNG of one colour (8-bit, no interlace), written by hand."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    # Each scanline: filter byte 0, then width RGB triples.
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def data_url(mime: str, payload: bytes) -> str:
    """A base64 data: URL."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


PNG_URL = data_url("image/png", png_bytes())
JPEG_URL = f"data:image/jpeg;base64,{JPEG_2X2_B64}"


def _image_request(target: Target, url: str, **image_fields: Any) -> Exchange:
    part = {"type": "image_url", "image_url": {"url": url, **image_fields}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "Describe this image in one sentence."}, part]}]
    return target.chat(target.body(messages=messages, max_tokens=8, temperature=0), headers=FRESH)


def _names_image(ex: Exchange) -> bool:
    return "image" in ex.body_text.lower()


def _no_images(ex: Exchange) -> NoReturn:
    """Why a server's image answer leaves the clause's condition ("a server that accepts images") unobserved.

    A clear 4xx refusal means the server takes no images: the clause does not apply (SKIPPED).
    Anything else (a 5xx, a 4xx without an error envelope) neither accepts nor refuses:
    vision.image-url.accepted-or-refused judges that, and this clause is not exercised.
    """
    raise_unanswered([ex], "image requests")  # no HTTP answer: the transport clause's to judge
    if refused_clearly(ex):
        raise NotApplicable(f"the target takes no images: it refused a plain PNG image part with {ex.status}, "
                            "and the clause applies to servers that accept images", exchanges=ex)
    raise NotExercised(f"a plain PNG image part was neither accepted nor refused clearly ({ex.status}), so whether "
                       "the target accepts images was not observed (judged by vision.image-url.accepted-or-refused)",
                       root=ROOT, actual=f"{ex.status} {ex.body_text[:200]}", exchanges=ex)


@clause("vision.image-url.accepted-or-refused")
def test_image_url_accepted_or_refused(target: Target) -> None:
    """A user message with an image_url part holding a PNG data URL is answered 200, or refused with a 4xx error naming the image part."""
    ex = _image_request(target, PNG_URL)
    if ex.status == 200:
        require(isinstance(ex.json, dict), "200 without a JSON body", actual=ex.body_text[:300], exchanges=ex)
        return
    if refused_clearly(ex) and _names_image(ex):
        raise Unsupported(f"image parts refused with {ex.status}", exchanges=ex)
    raise Fail("an image_url part is neither answered 200 nor refused with a 4xx error naming the image part",
               expected="200, or 4xx + envelope naming the image", actual=f"{ex.status} {ex.body_text[:300]}",
               exchanges=ex)


@clause("vision.image-url.data-url")
def test_image_url_data_url(target: Target) -> None:
    """A server that accepts images accepts base64 data: URLs of PNG and JPEG images."""
    png, jpeg = target.many([lambda: _image_request(target, PNG_URL), lambda: _image_request(target, JPEG_URL)])
    if png.status != 200 and jpeg.status != 200:
        _no_images(png)  # neither format taken: whether the server takes images at all decides
    for kind, ex in (("PNG", png), ("JPEG", jpeg)):
        require(ex.status == 200, f"the target accepts images, yet a {kind} data URL was not accepted", expected=200,
                actual=f"{ex.status} {ex.body_text[:300]}", exchanges=(png, jpeg))


@clause("vision.image-url.undecodable")
def test_image_url_undecodable(target: Target) -> None:
    """An image_url part whose url is neither an http(s) URL nor a decodable image data URL is refused with a 4xx error."""
    for url in ("data:image/png;base64,AAAAAAAA", "data:image/png;base64,not base64 at all!",
                "ftp://example.invalid/cat.png", "just some text"):
        ex = _image_request(target, url)
        require(400 <= ex.status < 500, f"an undecodable image url {url!r} must be refused with a 4xx error",
                expected="4xx", actual=f"{ex.status} {ex.body_text[:300]}", exchanges=ex)


@clause("vision.image-url.detail-accepted")
def test_image_url_detail_accepted(target: Target) -> None:
    """A server that accepts images accepts image_url.detail auto, low or high."""
    plain = _image_request(target, PNG_URL)
    if plain.status != 200:
        _no_images(plain)
    for detail in ("auto", "low", "high"):
        ex = _image_request(target, PNG_URL, detail=detail)
        require(ex.status == 200, f"the target accepts images, yet image_url.detail {detail} was not accepted",
                expected=200, actual=f"{ex.status} {ex.body_text[:300]}", exchanges=(plain, ex))
