"""The aiohttp application: routes, the error middleware, the body edge and the chat handler.

Routes: POST /v1/chat/completions, POST /models/{model_id}/v1/chat/completions, every provider's
chat route of the Inference Providers router (/cerebras/v1/chat/completions, ...: router.py), GET /v1/models,
GET /health, GET /info, GET /metrics (info_routes.py), and with --record-requests GET and DELETE
/mock/requests (the request log of request_log.py, filled by `record_middleware` and
`record_answer`). Every error, from a handler or from aiohttp's router (404, 405, 413), leaves
through `error_middleware` as an error envelope (errors.py: the configured style, or with `auto`
the one the client reads) with Content-Type application/json; anything unexpected is logged and
answered 500 with the envelope, never a crash. Which model ids are served: models.py.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import ContentEncodingError

from mock_server import chat, images, info_routes, memory, router
from mock_server.appkeys import (
    CACHE_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    RAW_BODY_KEY,
    RECEIVED_KEY,
    RECORDED_KEY,
    REQUEST_LOG_KEY,
    REQUEST_LOG_PATH,
    SLOT_KEY,
    catalog,
    check_auth,
    error_style,
    server_version,
)
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
    RequestTimeout,
    UnsupportedMediaType,
    envelope,
)
from mock_server.faults import Fault, InjectedFault, parse_faults
from mock_server.latency import latency_for
from mock_server.metrics import Metrics
from mock_server.plan import make_plan
from mock_server.render import Identity
from mock_server.request import ChatRequest, parse_json, validate_body
from mock_server.request_log import CLIENT_GONE, RequestLog, make_entry
from mock_server.sse_framing import framing_for
from mock_server.state import ModelSlot

__all__ = ["REQUEST_LOG_KEY", "SLOT_KEY", "create_app", "error_response"]

log = logging.getLogger("mock_server.app")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY_READ_TIMEOUT_S = 1.0  # reading, for the log, a body that the handler left unread (e.g. after a 401)
CLOSE = {"Connection": "close"}  # the connection's input cannot be trusted any more: the client must reconnect
TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


def error_response(error: ApiError, style: str) -> web.Response:
    """The JSON response of an error in envelope `style` (hf or openai); `Connection: close` closes it."""
    response = web.json_response(envelope(error, style), status=error.status, headers=error.headers)
    if error.headers.get("Connection", "").lower() == "close":
        response.force_close()
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every failure to one envelope; count requests by route and status."""
    metrics = request.app[METRICS_KEY]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc, error_style(request))
    except web.HTTPException as exc:
        response = error_response(_from_http(exc, request), error_style(request))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = error_response(InternalError(f"internal error: {type(exc).__name__}"), error_style(request))
    metrics.count_request(route, response.status)
    return response


def _from_http(exc: web.HTTPException, request: web.Request) -> ApiError:
    if exc.status == 404:
        return NotFound(f"no route for {request.method} {request.path}")
    if exc.status == 405:
        allowed = sorted(exc.allowed_methods) if isinstance(exc, web.HTTPMethodNotAllowed) else []
        headers = {"Allow": ", ".join(allowed)} if allowed else {}
        return MethodNotAllowed(f"method {request.method} is not allowed on {request.path}"
                                + (f"; use {', '.join(allowed)}" if allowed else ""), headers=headers)
    if exc.status == 413:
        return PayloadTooLarge(f"the request body is larger than the limit of "
                               f"{request.app[CONFIG_KEY].max_body_bytes} bytes")
    error = BadRequest(exc.reason or f"HTTP {exc.status}")
    error.status = exc.status if 400 <= exc.status < 500 else 400
    return error


async def read_body(request: web.Request) -> bytes:
    """The raw body after the content-type and size checks (415, 413)."""
    content_type = request.headers.get("Content-Type")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            raise UnsupportedMediaType(f"Content-Type must be application/json, got {content_type!r}")
    raw = await read_raw(request)
    request[RAW_BODY_KEY] = raw
    return raw


async def read_raw(request: web.Request) -> bytes:
    """The raw body of any content type within the server's size limit (413) and read timeout (408)."""
    config = request.app[CONFIG_KEY]
    length = request.content_length
    if length is not None and length > config.max_body_bytes:
        raise PayloadTooLarge(f"the request body is {length} bytes, larger than the limit of "
                              f"{config.max_body_bytes} bytes")
    try:
        # A client that sends its body slower than this is dropped (408), not waited for.
        async with asyncio.timeout(config.read_timeout or None):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the request body is larger than the limit of {config.max_body_bytes} bytes") from None
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within the read timeout of {config.read_timeout} s "
                             f"[rule: read_timeout]") from None
    except (ContentEncodingError, web_protocol.RequestPayloadError) as exc:
        encoding = request.headers.get("Content-Encoding", "identity")
        raise BadRequest(f"the request body cannot be read as Content-Encoding {encoding[:40]!r}: "
                         f"{str(exc).splitlines()[-1].strip()[:120]} [rule: Content-Encoding]",
                         code="invalid_encoding", headers=CLOSE) from None
    return raw


def parse_request(raw: bytes, use_cache: bool) -> tuple[ChatRequest, str | None]:
    """Body bytes -> (typed request, cache key or None): CPU work, run off the event loop."""
    body = parse_json(raw)
    chat_request = validate_body(body)
    return chat_request, cache_key(body) if use_cache and is_deterministic(chat_request) else None


def _header_flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.headers.get(name)
    if value is None:
        return default
    return value.strip().lower() in TRUE_VALUES


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions and /models/{model_id}/v1/chat/completions."""
    check_auth(request)
    app = request.app
    config, slot = app[CONFIG_KEY], app[SLOT_KEY]
    models = catalog(app)
    path_model = request.match_info.get("model_id")
    if path_model is not None:
        models.check_path(path_model)
    faults = parse_faults(request.headers.get("x-mock-fault"), config.allow_faults)
    framing = framing_for(request.headers.get("x-mock-sse-framing"), config.sse_framing)
    latency = latency_for(request.headers.get("x-mock-latency"), config.latency)
    raw = await read_body(request)
    use_cache = _header_flag(request, "x-use-cache", True) and config.cache_size > 0 and not faults.names
    # Parsing and validating an 8 MiB body takes seconds: in a thread, so that the loop serves others meanwhile.
    try:
        chat_request, key = await asyncio.to_thread(parse_request, raw, use_cache)
    finally:
        if len(raw) >= memory.LARGE_BODY_BYTES:
            memory.release_later()
    # Compiling a grammar (tools, response_format) leaves hundreds of MB free in malloc's arenas: trimmed after.
    grammar = bool(chat_request.tools) or (chat_request.response_format is not None
                                           and chat_request.response_format.kind != "text")
    try:
        answer_model = models.answer_id(chat_request.model, path_model)
        backend = await slot.get(wait=_header_flag(request, "x-wait-for-model", False))
        if Fault.HTTP_500 in faults:
            raise InjectedFault("injected fault: the server failed")
        if faults.stall_s:
            await asyncio.sleep(faults.stall_s)
        cache = app[CACHE_KEY]
        version_text = server_version()
        ident = Identity.new(answer_model, chat.fingerprint(backend, version_text))
        hit = cache.get(key) if key is not None else None
        if hit is not None:
            app[METRICS_KEY].cache_hits += 1
            answer = chat.Answer.replay(hit)
        else:
            describer = images.ImageDescriber(config)
            if config.allow_remote_images and images.fetches_remote(chat_request):
                plan = await asyncio.get_running_loop().run_in_executor(
                    images.remote_pool(), make_plan, chat_request, backend, describer)
            else:
                plan = await asyncio.to_thread(make_plan, chat_request, backend, describer)
            ticket = await chat.admit(backend, plan)
            answer = chat.Answer.live(ticket, plan, None if key is None else functools.partial(cache.put, key))
        headers = {"x-cache": "hit" if hit is not None else "miss"}
        if chat_request.stream:
            return await chat.stream(request, answer, chat_request, ident, error_style(request), headers, faults,
                                     keepalive=config.keepalive, framing=framing, latency=latency)
        body_out = await chat.complete(answer, chat_request, ident, faults, latency)
        if Fault.WRONG_CONTENT_TYPE in faults:
            return web.Response(text=json.dumps(body_out), content_type="text/plain", headers=headers)
        return web.json_response(body_out, headers=headers)
    finally:
        if grammar:
            memory.release_later()


@web.middleware
async def record_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
    for path in router.chat_paths():  # the Inference Providers router's per-provider routes
        app.router.add_post(path, chat_completions)
    app.router.add_get("/v1/models", info_routes.list_models)
    app.router.add_get("/health", info_routes.health)
    app.router.add_get("/info", info_routes.info)
    app.router.add_get("/metrics", info_routes.metrics)
    if config.record_requests:
        app[REQUEST_LOG_KEY] = RequestLog()
        app.router.add_get(REQUEST_LOG_PATH, info_routes.list_requests)
        app.router.add_delete(REQUEST_LOG_PATH, info_routes.clear_requests)
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
