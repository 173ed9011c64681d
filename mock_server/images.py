"""image_url parts -> a short deterministic description that goes into the prompt.

The reference model reads text only, so an image is decoded (Pillow), checked against the size
and pixel limits, and described by what can be measured: format, size, and its average colour
named after the nearest of a few basic colours, e.g. `[image: PNG, 64x48 pixels, mostly red]`.
Accepted: base64 `data:image/...` URLs; http(s) URLs only with `--allow-remote-images` (fetched
with the same byte limit). Anything else, or bytes that do not decode as an image, is a 422
naming the content part.
"""

from __future__ import annotations

import base64
import binascii
import io
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from mock_server.config import ServerConfig
from mock_server.errors import ValidationFailed
from mock_server.request import ChatRequest, ImagePart

# name -> RGB; the average colour gets the nearest name (squared distance in RGB).
BASIC_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "red": (220, 30, 30),
    "green": (30, 160, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40), "orange": (245, 140, 30),
    "purple": (130, 50, 160), "pink": (245, 150, 190), "brown": (120, 75, 40), "cyan": (40, 200, 220),
}
FETCH_TIMEOUT_S = 10.0  # for the whole fetch: connecting, the headers and every byte
# Plans that fetch remote images run in this pool, not the shared one: a slow image host then
# delays only the requests that name such images (which queue here), never anyone else's.
REMOTE_FETCH_WORKERS = 4
_REMOTE_POOL: list[ThreadPoolExecutor] = []


def fetches_remote(request: ChatRequest) -> bool:
    """Whether planning this request fetches an http(s) image."""
    return any(isinstance(part, ImagePart) and part.url.startswith(("http://", "https://"))
               for message in request.messages for part in message.parts)


def remote_pool() -> ThreadPoolExecutor:
    """The worker pool of plans that fetch remote images (created on first use)."""
    if not _REMOTE_POOL:
        _REMOTE_POOL.append(ThreadPoolExecutor(REMOTE_FETCH_WORKERS, thread_name_prefix="remote-image"))
    return _REMOTE_POOL[0]


def nearest_colour(rgb: tuple[float, float, float]) -> str:
    """The basic colour name closest to an RGB triple."""
    return min(BASIC_COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(BASIC_COLOURS[n], rgb, strict=True)))


class ImageDescriber:
    """Callable (part, param) -> description text; raises ValidationFailed naming `param`."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config

    def __call__(self, part: ImagePart, param: str) -> str:
        data = self._bytes(part.url, param)
        return describe_image(data, param, max_pixels=self.config.max_image_pixels)

    def _bytes(self, url: str, param: str) -> bytes:
        limit = self.config.max_image_bytes
        if url.startswith("data:"):
            header, comma, payload = url[5:].partition(",")
            if not comma:
                raise ValidationFailed(f"$.{param}.image_url.url: a data URL needs a ',' before its data "
                                       f"[rule: data URL]", param=f"{param}.image_url.url")
            media, *flags = header.split(";")
            if not media.lower().startswith("image/"):
                raise ValidationFailed(f"$.{param}.image_url.url: media type {media!r} is not an image "
                                       f"[rule: image/*]", param=f"{param}.image_url.url")
            if "base64" not in [f.lower() for f in flags]:
                raise ValidationFailed(f"$.{param}.image_url.url: only base64 data URLs are supported "
                                       f"[rule: ;base64]", param=f"{param}.image_url.url")
            if len(payload) > limit * 4 // 3 + 8:
                raise ValidationFailed(f"$.{param}.image_url.url: the image is larger than {limit} bytes "
                                       f"[rule: max_image_bytes]", param=f"{param}.image_url.url")
            try:
                return base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise ValidationFailed(f"$.{param}.image_url.url: the data is not valid base64 [rule: base64]",
                                       param=f"{param}.image_url.url") from None
        if url.startswith(("http://", "https://")):
            if not self.config.allow_remote_images:
                raise ValidationFailed(f"$.{param}.image_url.url: remote images are disabled on this server "
                                       f"(start it with --allow-remote-images), or send a data: URL "
                                       f"[rule: data URL only]", param=f"{param}.image_url.url")
            return self._fetch(url, param, limit)
        raise ValidationFailed(f"$.{param}.image_url.url: {url[:40]!r} is neither an http(s) URL nor a data: URL "
                               f"[rule: URL scheme]", param=f"{param}.image_url.url")

    def _fetch(self, url: str, param: str, limit: int) -> bytes:
        import httpx

        where = f"{param}.image_url.url"
        deadline = time.monotonic() + FETCH_TIMEOUT_S
        try:
            # Redirects are not followed: the URL the client named is the only one fetched.
            with httpx.stream("GET", url, timeout=FETCH_TIMEOUT_S, follow_redirects=False) as response:
                if response.is_redirect:
                    raise ValidationFailed(f"$.{where}: fetching the image gave a redirect (HTTP "
                                           f"{response.status_code}), which this server does not follow "
                                           f"[rule: no redirects]", param=where)
                if response.status_code != 200:
                    raise ValidationFailed(f"$.{where}: fetching the image gave HTTP {response.status_code} "
                                           f"[rule: fetchable]", param=where)
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise ValidationFailed(f"$.{where}: the image is larger than {limit} bytes "
                                               f"[rule: max_image_bytes]", param=where)
                    if time.monotonic() > deadline:  # a host that drips bytes
                        raise ValidationFailed(f"$.{where}: the image did not arrive within {FETCH_TIMEOUT_S} s "
                                               f"[rule: fetch timeout]", param=where)
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise ValidationFailed(f"$.{where}: the image could not be fetched: {type(exc).__name__} "
                                   f"[rule: fetchable]", param=where) from None


def describe_image(data: bytes, param: str, *, max_pixels: int) -> str:
    """Decode image bytes and describe them; 422 naming `param` when they are not a usable image."""
    where = f"{param}.image_url.url"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ValidationFailed(f"$.{where}: the image has {width}x{height} pixels, more than the limit of "
                                       f"{max_pixels} [rule: max_image_pixels]", param=where)
            kind = image.format or "image"
            image.load()
    except ValidationFailed:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValidationFailed(f"$.{where}: the data does not decode as an image ({type(exc).__name__}) "
                               f"[rule: decodable image]", param=where) from None
    # The average colour of a small thumbnail: cheap, and the same for the same image everywhere.
    small = np.asarray(image.convert("RGB").resize((8, 8), Image.Resampling.BOX), dtype=np.float64)  # [8, 8, 3]
    mean = small.reshape(-1, 3).mean(axis=0)
    return f"[image: {kind}, {width}x{height} pixels, mostly {nearest_colour(tuple(mean))}]"
