"""The aiohttp application: routes, the error middleware, authorization and the body edge.

Routes: POST /v1/chat/completions, POST /models/{model_id}/v1/chat/completions, GET /v1/models,
GET /health, GET /info, GET /metrics, and with --record-requests GET and DELETE /mock/requests
(the request log of request_log.py, filled by `record_middleware` and `record_answer`). Every
error, from a handler or from aiohttp's router (404, 405, 413), leaves through `error_middleware`
as the configured envelope with Content-Type application/json; anything unexpected is logged and
answered 500 with the envelope, never a crash.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web

from mock_server import chat
from mock_server.backend import Backend
from mock_server.cache import ResponseCache, cache_key, is_deterministic
from mock_server.config import ServerConfig
from mock_server.errors import (
    ApiError,
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    envelope,
)
from mock_server.faults import FAULT_NAMES, InjectedFault, parse_faults
from mock_server.images import ImageDescriber
from mock_server.metrics import Metrics
from mock_server.plan import MAX_CHOICES, make_plan
from mock_server.render import Identity
from mock_server.request import ChatRequest, parse_json, validate_body
from mock_server.request_log import CLIENT_GONE, RequestLog, make_entry
from mock_server.state import ModelSlot
from spec.schemas import spec_version

log = logging.getLogger("mock_server.app")

CONFIG_KEY = web.AppKey("config", ServerConfig)
SLOT_KEY = web.AppKey("slot", ModelSlot)
CACHE_KEY = web.AppKey("cache", ResponseCache)
METRICS_KEY = web.AppKey("metrics", Metrics)
REQUEST_LOG_KEY = web.AppKey("request_log", RequestLog)
RAW_BODY_KEY = web.RequestKey("raw_body", bytes)  # the body as read_body read it
RECEIVED_KEY = web.RequestKey("received", float)  # unix seconds when the request arrived
RECORDED_KEY = web.RequestKey("recorded", bool)
REQUEST_LOG_PATH = "/mock/requests"
BODY_READ_TIMEOUT_S = 1.0  # reading, for the log, a body that the handler left unread (e.g. after a 401)
# Values clients put in `model` for "whatever is served" (huggingface_hub sends `dummy` with a base_url).
PLACEHOLDER_MODELS = frozenset({"tgi", "dummy", "default", ""})
TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


def server_version() -> str:
    """The installed chatconform version."""
    try:
        return version("chatconform")
    except PackageNotFoundError:
        return "unknown"


def _style(request: web.Request) -> str:
    return request.app[CONFIG_KEY].error_style


def error_response(error: ApiError, style: str) -> web.Response:
    """The JSON response of an error in the configured envelope style."""
    return web.json_response(envelope(error, style), status=error.status, headers=error.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Map every failure to one envelope; count requests by route and status."""
    metrics = request.app[METRICS_KEY]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc, _style(request))
    except web.HTTPException as exc:
        response = error_response(_from_http(exc, request), _style(request))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = error_response(InternalError(f"internal error: {type(exc).__name__}"), _style(request))
    metrics.count_request(route, response.status)
    return response


def _from_http(exc: web.HTTPException, request: web.Request) -> ApiError:
    if exc.status == 404:
        return NotFound(f"no route for {request.method} {request.path}")
    if exc.status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", ()) or ())
        headers = {"Allow": ", ".join(allowed)} if allowed else {}
        return MethodNotAllowed(f"method {request.method} is not allowed on {request.path}"
                                + (f"; use {', '.join(allowed)}" if allowed else ""), headers=headers)
    if exc.status == 413:
        return PayloadTooLarge(f"the request body is larger than the limit of "
                               f"{request.app[CONFIG_KEY].max_body_bytes} bytes")
    error = BadRequest(exc.reason or f"HTTP {exc.status}")
    error.status = exc.status if 400 <= exc.status < 500 else 400
    return error


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
    if not hmac.compare_digest(token.encode(), key.encode()):
        raise Unauthorized("Invalid credentials in Authorization header")


async def read_body(request: web.Request) -> bytes:
    """The raw body after the content-type and size checks (415, 413)."""
    config = request.app[CONFIG_KEY]
    content_type = request.headers.get("Content-Type")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            raise UnsupportedMediaType(f"Content-Type must be application/json, got {content_type!r}")
    length = request.content_length
    if length is not None and length > config.max_body_bytes:
        raise PayloadTooLarge(f"the request body is {length} bytes, larger than the limit of "
                              f"{config.max_body_bytes} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the request body is larger than the limit of {config.max_body_bytes} bytes") from None
    request[RAW_BODY_KEY] = raw
    return raw


def _header_flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.headers.get(name)
    if value is None:
        return default
    return value.strip().lower() in TRUE_VALUES


def _check_model(chat_request: ChatRequest, served: str, path_model: str | None) -> None:
    """The body's `model` must be the served one (or a placeholder) and agree with the path's."""
    requested = chat_request.model
    if requested is None or requested in PLACEHOLDER_MODELS or requested == served:
        return
    if path_model is not None:
        raise ValidationFailed(f"$.model: {requested!r} disagrees with the model in the path {path_model!r} "
                               f"[rule: model matches path]", param="model")
    raise NotFound(f"model not found: {requested} (this server serves {served})", param="model")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions and /models/{model_id}/v1/chat/completions."""
    check_auth(request)
    app = request.app
    config, slot = app[CONFIG_KEY], app[SLOT_KEY]
    path_model = request.match_info.get("model_id")
    if path_model is not None and path_model != slot.model_id:
        raise NotFound(f"model not found: {path_model} (this server serves {slot.model_id})")
    faults = parse_faults(request.headers.get("x-mock-fault"), config.allow_faults)
    body = parse_json(await read_body(request))
    chat_request = validate_body(body)
    _check_model(chat_request, slot.model_id, path_model)
    backend = await slot.get(wait=_header_flag(request, "x-wait-for-model", False))
    if "http-500" in faults:
        raise InjectedFault("injected fault: the server failed")
    if faults.stall_s:
        await asyncio.sleep(faults.stall_s)
    use_cache = _header_flag(request, "x-use-cache", True) and config.cache_size > 0 and not faults.names
    cache = app[CACHE_KEY]
    key = cache_key(body) if use_cache and is_deterministic(chat_request) else None
    version_text = server_version()
    ident = Identity.new(backend.info.id, chat.fingerprint(backend, version_text))
    hit = cache.get(key) if key is not None else None
    if hit is not None:
        app[METRICS_KEY].cache_hits += 1
        answer = chat.Answer.replay(hit)
    else:
        describer = ImageDescriber(config)
        plan = await asyncio.to_thread(make_plan, chat_request, backend, describer)
        ticket = await chat.admit(backend, plan)
        answer = chat.Answer.live(ticket, plan, None if key is None else functools.partial(cache.put, key))
    headers = {"x-cache": "hit" if hit is not None else "miss"}
    if chat_request.stream:
        return await chat.stream(request, answer, chat_request, ident, config.error_style, headers, faults,
                                 keepalive=config.keepalive)
    body_out = await chat.complete(answer, chat_request, ident, faults)
    if "wrong-content-type" in faults:
        return web.Response(text=json.dumps(body_out), content_type="text/plain", headers=headers)
    return web.json_response(body_out, headers=headers)


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models: the one served model."""
    check_auth(request)
    slot = request.app[SLOT_KEY]
    created = slot.backend.info.created if slot.backend is not None else 0
    return web.json_response({"object": "list", "data": [
        {"id": slot.model_id, "object": "model", "created": created, "owned_by": "chatconform"}]})


async def health(request: web.Request) -> web.Response:
    """GET /health: 200 when ready, 503 (loading envelope) before."""
    slot = request.app[SLOT_KEY]
    slot.check_failed()
    if not slot.ready:
        raise slot.loading_error()
    return web.json_response({"status": "ok", "model": slot.model_id})


def _info(app: web.Application) -> dict[str, Any]:
    config, slot = app[CONFIG_KEY], app[SLOT_KEY]
    backend: Backend | None = slot.backend
    info = backend.info if backend is not None else None
    return {
        "model": slot.model_id, "version": server_version(), "spec_version": spec_version(),
        "ready": slot.ready, "weights": config.weights,
        "provider": info.provider if info else None, "model_sha256": info.digest if info else None,
        "system_fingerprint": chat.fingerprint(backend, server_version()) if backend else None,
        "limits": {"context_length": info.context_length if info else None, "max_batch": config.max_batch,
                   "max_queue": config.max_queue, "max_body_bytes": config.max_body_bytes, "max_n": MAX_CHOICES,
                   "max_stop_sequences": 4, "max_top_logprobs": 5, "max_image_bytes": config.max_image_bytes,
                   "max_image_pixels": config.max_image_pixels},
        "features": {"stream": True, "n": True, "logprobs": True, "logit_bias": True, "tools": True,
                     "tool_choice": ["auto", "none", "required", "named"], "tool_prompt": True,
                     "response_format": ["json", "regex", "text", "json_object", "json_schema"],
                     "images": "data: URLs" + (" and http(s)" if config.allow_remote_images else ""),
                     "reasoning_effort": "accepted; the model does not reason, so every level is the same",
                     "x-use-cache": config.cache_size > 0, "x-wait-for-model": True,
                     "error_style": config.error_style, "unknown_fields": "refused with 422",
                     "x-mock-fault": list(FAULT_NAMES) if config.allow_faults else False,
                     "sse_keepalive_s": config.keepalive or False,
                     "request_log": REQUEST_LOG_PATH if config.record_requests else False},
        "config": config.public(),
    }


async def info(request: web.Request) -> web.Response:
    """GET /info: model, version, limits, features, effective configuration."""
    check_auth(request)
    return web.json_response(_info(request.app))


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text."""
    app = request.app
    backend = app[SLOT_KEY].backend
    stats = backend.stats() if backend is not None else {}
    text = app[METRICS_KEY].render(stats, ready=app[SLOT_KEY].ready, cache_size=len(app[CACHE_KEY]))
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def list_requests(request: web.Request) -> web.Response:
    """GET /mock/requests: the recorded requests, oldest first."""
    check_auth(request)
    entries = request.app[REQUEST_LOG_KEY].all()
    return web.json_response({"object": "list", "data": [entry.to_json() for entry in entries]})


async def clear_requests(request: web.Request) -> web.Response:
    """DELETE /mock/requests: forget the recorded requests."""
    check_auth(request)
    request.app[REQUEST_LOG_KEY].clear()
    return web.Response(status=204)


@web.middleware
async def record_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Stamp the arrival time; record a request whose client went away before any answer (499)."""
    request[RECEIVED_KEY] = time.time()
    try:
        return await handler(request)
    except asyncio.CancelledError:
        if not request.get(RECORDED_KEY) and request.path != REQUEST_LOG_PATH:
            _record(request, CLIENT_GONE, False, request.get(RAW_BODY_KEY))
        raise


async def record_answer(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: record the request as its answer starts (before the client can have it)."""
    if request.get(RECORDED_KEY) or request.path == REQUEST_LOG_PATH:
        return
    raw = request.get(RAW_BODY_KEY)
    if raw is None and request.body_exists:
        raw = await _unread_body(request)
    _record(request, response.status, response.content_type == "text/event-stream", raw)


async def _unread_body(request: web.Request) -> bytes | None:
    """The body a handler refused before reading it (401, 404), within the size limit; None when unreadable."""
    length = request.content_length
    if length is not None and length > request.app[CONFIG_KEY].max_body_bytes:
        return None
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            return await request.read()
    except (web.HTTPException, OSError, TimeoutError, ValueError):
        return None


def _record(request: web.Request, status: int, streamed: bool, raw: bytes | None) -> None:
    request[RECORDED_KEY] = True
    entry = make_entry(method=request.method, path=request.path, query=request.query, headers=request.headers,
                       raw=raw, status=status, streamed=streamed,
                       timestamp=request.get(RECEIVED_KEY, time.time()))
    request.app[REQUEST_LOG_KEY].record(entry, len(raw or b""))


def create_app(config: ServerConfig, backend: Backend | None = None) -> web.Application:
    """The application; without a backend, the model is loaded in the background on startup."""
    middlewares = [record_middleware, error_middleware] if config.record_requests else [error_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=config.max_body_bytes)
    app[CONFIG_KEY] = config
    app[CACHE_KEY] = ResponseCache(config.cache_size)
    app[METRICS_KEY] = Metrics()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/models/{model_id:.+}/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/info", info)
    app.router.add_get("/metrics", metrics)
    if config.record_requests:
        app[REQUEST_LOG_KEY] = RequestLog()
        app.router.add_get(REQUEST_LOG_PATH, list_requests)
        app.router.add_delete(REQUEST_LOG_PATH, clear_requests)
        app.on_response_prepare.append(record_answer)

    async def on_startup(app: web.Application) -> None:
        app[SLOT_KEY] = slot = ModelSlot(config, backend)
        if backend is None:
            from mock_server.backend import load_backend

            slot.start_loading(lambda: load_backend(config))

    async def on_cleanup(app: web.Application) -> None:
        slot = app[SLOT_KEY]
        if slot.backend is not None and backend is None:
            slot.backend.close()  # a backend handed in belongs to the caller

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
