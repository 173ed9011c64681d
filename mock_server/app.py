"""The aiohttp application: routes, the error middleware, authorization and the body edge.

Routes: POST /v1/chat/completions, POST /models/{model_id}/v1/chat/completions, GET /v1/models,
GET /health, GET /info, GET /metrics. Every error, from a handler or from aiohttp's router (404,
405, 413), leaves through `error_middleware` as the configured envelope with Content-Type
application/json; anything unexpected is logged and answered 500 with the envelope, never a
crash.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web

from spec.schemas import spec_version

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
from mock_server.state import ModelSlot

log = logging.getLogger("mock_server.app")

CONFIG_KEY = web.AppKey("config", ServerConfig)
SLOT_KEY = web.AppKey("slot", ModelSlot)
CACHE_KEY = web.AppKey("cache", ResponseCache)
METRICS_KEY = web.AppKey("metrics", Metrics)
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
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the request body is larger than the limit of {config.max_body_bytes} bytes") from None


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
    key = cache_key(body) if use_cache and not chat_request.stream and is_deterministic(chat_request) else None
    version_text = server_version()
    ident = Identity.new(backend.info.id, chat.fingerprint(backend, version_text))
    if key is not None:
        hit = cache.get(key)
        if hit is not None:
            app[METRICS_KEY].cache_hits += 1
            return web.json_response({**hit, "id": ident.id, "created": ident.created}, headers={"x-cache": "hit"})
    describer = ImageDescriber(config)
    plan = await asyncio.to_thread(make_plan, chat_request, backend, describer)
    ticket = await chat.admit(backend, plan)
    headers = {"x-cache": "miss"}
    if chat_request.stream:
        return await chat.stream(request, ticket, plan, chat_request, ident, config.error_style, headers, faults)
    body_out = await chat.complete(ticket, plan, chat_request, ident, faults)
    if key is not None:
        cache.put(key, body_out)
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
                     "x-mock-fault": list(FAULT_NAMES) if config.allow_faults else False},
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


def create_app(config: ServerConfig, backend: Backend | None = None) -> web.Application:
    """The application; without a backend, the model is loaded in the background on startup."""
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG_KEY] = config
    app[CACHE_KEY] = ResponseCache(config.cache_size)
    app[METRICS_KEY] = Metrics()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/models/{model_id:.+}/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get("/info", info)
    app.router.add_get("/metrics", metrics)

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
