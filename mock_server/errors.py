"""The mock server's one error hierarchy and its one mapping to a status and an envelope.

Every failure the server reports is an `ApiError`. `envelope(error, style)` turns it into the
JSON body, in Hugging Face's shape `{"error": "...", "error_type": "..."}` (style `hf`) or
OpenAI's `{"error": {"message", "type", "param", "code"}}` (style `openai`). The same body is sent
as a JSON response before a stream starts and as the last SSE event after it began.

The server's configured style may also be `auto` (the default): each request gets the envelope its
client reads (`request_style`). The official openai SDKs read only OpenAI's shape (with the hf one
they show nothing but "Error code: 404"), and huggingface_hub reads the hf one best (an OpenAI
envelope shows as a dict's repr). An OpenAI SDK is recognised by the `x-stainless-lang` header
every Stainless-generated SDK sends, or a User-Agent naming OpenAI (`OpenAI/Python 2.x`,
`AsyncOpenAI/Python ...`, `OpenAI/JS ...`); every other client gets the hf envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ENVELOPES = ("hf", "openai")
ERROR_STYLES = ("auto", *ENVELOPES)


class ApiError(Exception):
    """A failure reported to the client: HTTP status, kind, message, and the parameter at fault."""

    status: int = 500
    error_type: str = "internal"  # HF/TGI `error_type`
    openai_type: str = "server_error"  # OpenAI `error.type`
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = dict(headers or {})
        if code is not None:
            self.code = code


class BadRequest(ApiError):
    """The body is not JSON, or not a JSON object (400)."""

    status, error_type, openai_type, code = 400, "bad_request", "invalid_request_error", "invalid_json"


class Unauthorized(ApiError):
    """Missing or wrong bearer token (401)."""

    status, error_type, openai_type, code = 401, "authentication", "authentication_error", "invalid_api_key"


class NotFound(ApiError):
    """Unknown route or model (404)."""

    status, error_type, openai_type, code = 404, "not_found", "invalid_request_error", "not_found"


class MethodNotAllowed(ApiError):
    """Known route, wrong method (405)."""

    status, error_type, openai_type, code = 405, "method_not_allowed", "invalid_request_error", "method_not_allowed"


class PayloadTooLarge(ApiError):
    """The body exceeds the server's size limit (413)."""

    status, error_type, openai_type, code = 413, "payload_too_large", "invalid_request_error", "payload_too_large"


class RequestTimeout(ApiError):
    """The client did not send its request within the read timeout (408); the connection is closed."""

    status, error_type, openai_type, code = 408, "timeout", "invalid_request_error", "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


class UnsupportedMediaType(ApiError):
    """The content type is not application/json (415)."""

    status, error_type, openai_type, code = 415, "unsupported_media_type", "invalid_request_error", \
        "unsupported_media_type"


class ValidationFailed(ApiError):
    """The body is JSON but breaks a rule of the spec or of the model (422); names param, rule, value."""

    status, error_type, openai_type, code = 422, "validation", "invalid_request_error", None


class Overloaded(ApiError):
    """The queue is full (429); carries Retry-After."""

    status, error_type, openai_type, code = 429, "overloaded", "rate_limit_error", "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class GenerationFailed(ApiError):
    """A valid request whose generation failed inside the model (424, TGI's status for it)."""

    status, error_type, openai_type, code = 424, "generation", "server_error", "generation_failed"


class ModelLoading(ApiError):
    """The model is still loading (503); says how long it should take."""

    status, error_type, openai_type, code = 503, "loading", "server_error", "model_loading"

    def __init__(self, message: str, *, estimated_time: float) -> None:
        seconds = max(0.0, float(estimated_time))
        super().__init__(message, headers={"Retry-After": str(max(0, int(seconds + 0.999)))})
        self.estimated_time = seconds


class InternalError(ApiError):
    """A bug in the server itself (500); never the answer to client input."""

    status, error_type, openai_type, code = 500, "internal", "server_error", "internal_error"


def request_style(configured: str, headers: Mapping[str, str]) -> str:
    """The envelope (`hf` or `openai`) for one request: the configured one, or with `auto` the client's."""
    if configured != "auto":
        return configured
    agent = headers.get("User-Agent", "").lower()
    if "x-stainless-lang" in headers or agent.startswith(("openai/", "asyncopenai/")) or " openai/" in agent:
        return "openai"
    return "hf"


def envelope(error: ApiError, style: str = "hf") -> dict[str, Any]:
    """The JSON error body of `error` in envelope `style` (`hf` or `openai`)."""
    if style not in ENVELOPES:
        raise ValueError(f"error envelope must be one of {ENVELOPES}, got {style!r}")
    if style == "openai":
        body: dict[str, Any] = {"error": {"message": error.message, "type": error.openai_type,
                                          "param": error.param, "code": error.code}}
    else:
        body = {"error": error.message, "error_type": error.error_type}
    if isinstance(error, ModelLoading):
        body["estimated_time"] = error.estimated_time
    return body
