"""What every route shares: the application's keys, the server version, authorization, the error style."""

from __future__ import annotations

import functools
import hmac
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from mock_server.cache import ResponseCache
from mock_server.config import ServerConfig
from mock_server.errors import Unauthorized, request_style
from mock_server.metrics import Metrics
from mock_server.models import ModelCatalog
from mock_server.request_log import RequestLog
from mock_server.state import ModelSlot

CONFIG_KEY = web.AppKey("config", ServerConfig)
SLOT_KEY = web.AppKey("slot", ModelSlot)
CACHE_KEY = web.AppKey("cache", ResponseCache)
METRICS_KEY = web.AppKey("metrics", Metrics)
REQUEST_LOG_KEY = web.AppKey("request_log", RequestLog)
RAW_BODY_KEY = web.RequestKey("raw_body", bytes)  # the body as read_body read it
RECEIVED_KEY = web.RequestKey("received", float)  # unix seconds when the request arrived
RECORDED_KEY = web.RequestKey("recorded", bool)
REQUEST_LOG_PATH = "/mock/requests"


@functools.cache
def server_version() -> str:
    """The installed chatconform version (read once: a metadata lookup takes ~1 ms, on every request otherwise)."""
    try:
        return version("chatconform")
    except PackageNotFoundError:
        return "unknown"


def error_style(request: web.Request) -> str:
    """The error envelope (`hf` or `openai`) this request's answer uses."""
    return request_style(request.app[CONFIG_KEY].error_style, request.headers)


def catalog(app: web.Application) -> ModelCatalog:
    """The model ids this server answers to."""
    config = app[CONFIG_KEY]
    return ModelCatalog(app[SLOT_KEY].model_id, config.aliases, config.strict_models)


def check_auth(request: web.Request) -> None:
    """401 unless the bearer token equals the configured key (no key configured: anything goes)."""
    key = request.app[CONFIG_KEY].api_key
    if key is None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower().rstrip(":") != "bearer" or not token:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <key>'")
    # aiohttp keeps a header's non-UTF-8 bytes as surrogate escapes: encode them back to the bytes sent.
    if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), key.encode()):
        raise Unauthorized("Invalid credentials in Authorization header")
