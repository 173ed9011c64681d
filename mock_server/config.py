"""The server's configuration: one frozen dataclass, filled from the CLI, then the environment, then defaults.

Each field has an environment variable `CHATCONFORM_MOCK_<FIELD>` (upper case), e.g.
`CHATCONFORM_MOCK_API_KEY`, `CHATCONFORM_MOCK_PORT`. A CLI flag that is given wins over the variable; a
variable that is set wins over the default. Bad values are refused with a message naming the
option, where it came from, the rule and the value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from mock_server.errors import ERROR_STYLES
from mock_server.latency import LatencyError, parse_profile
from mock_server.sse_framing import FramingError, parse_framing

MODELS = ("smollm2", "tiny")
WEIGHTS = ("int4", "fp32")
DEVICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error")
REPLAY_SPEEDS = ("recorded", "instant")
# Options of the model server that record and replay (no model) cannot honour: refused with them on the command line.
MODEL_ONLY = ("model", "weights", "device", "threads", "max_batch", "max_queue", "load_delay", "cache_size",
              "allow_remote_images", "allow_faults", "keepalive", "spin", "record_requests", "strict_models",
              "aliases", "sse_framing", "latency")
ENV_PREFIX = "CHATCONFORM_MOCK_"


class ConfigError(ValueError):
    """A configuration value is invalid; names the option, its source, the rule and the value."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything `chatconform serve` can be told."""

    host: str = "127.0.0.1"
    port: int = 8080
    model: str = "smollm2"  # the SmolLM2 reference, or `tiny` (random weights, instant start)
    weights: str = "int4"
    api_key: str | None = None  # None: any token (or none) is accepted
    device: str = "auto"
    threads: int | None = None  # ONNX Runtime intra-op threads; None: one per core
    log_level: str = "info"
    error_style: str = "auto"  # the envelope: hf, openai, or auto (each client's own; see errors.py)
    max_batch: int = 8  # sequences decoded together in one step
    max_queue: int = 32  # admitted requests waiting for a batch slot; more get 429
    max_body_bytes: int = 8 * 1024 * 1024
    load_delay: float = 0.0  # seconds during which the model reports itself as loading (503)
    cache_size: int = 256  # responses kept for deterministic requests; 0 disables x-use-cache hits
    allow_remote_images: bool = False
    max_image_bytes: int = 4 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    allow_faults: bool = False  # honour x-mock-fault (see faults.py); off: such requests get 400
    keepalive: float = 15.0  # seconds of silence in a stream before a `: keep-alive` SSE comment; 0: never
    sse_framing: tuple[str, ...] = ()  # legal but unusual SSE framing of every stream (sse_framing.py); (): plain
    latency: str | None = None  # a latency profile added to every answer (latency.py); None: none
    # Seconds a client has to send a request's headers (from connecting, or from its previous
    # answer on a kept-alive connection) and then its body; a slower one is closed (the body: 408).
    # 0: wait forever.
    read_timeout: float = 30.0
    spin: bool = True  # idle ONNX Runtime intra-op threads spin-wait (False: they sleep)
    record_requests: bool = False  # keep the last requests (request_log.py), readable at GET /mock/requests
    strict_models: bool = False  # only the served id and `aliases` are served; other model ids get 404
    aliases: tuple[str, ...] = ()  # more ids for the served model, listed by GET /v1/models
    # Record and replay (recorder.py, replayer.py; no model is loaded): at most one of record / replay.
    record: str | None = None  # folder the recording proxy writes one cassette per exchange to
    upstream: str | None = None  # the base URL --record forwards every request to
    upstream_key: str | None = None  # bearer token sent upstream instead of the client's (never written)
    replay: str | None = None  # folder of cassettes answered from, offline
    replay_speed: str = "recorded"  # recorded, instant, or a factor (2: twice as fast)
    match_ignore: tuple[str, ...] = ()  # body fields (dotted paths) not matched, beyond cassette_match.DEFAULT_IGNORE

    def public(self) -> dict[str, Any]:
        """The effective configuration for reports and /info, the API key masked."""
        data = asdict(self)
        data["api_key"] = None if self.api_key is None else "***"
        data["upstream_key"] = None if self.upstream_key is None else "***"
        return data


def _int(low: int, high: int | None = None) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(f"{name}: must be an integer, got {value!r}") from None
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            bound = f"[{low}, {high}]" if high is not None else f">= {low}"
            raise ConfigError(f"{name}: must be an integer {bound}, got {value!r}")
        return value
    return parse


def _float(low: float) -> Callable[[str, Any], float]:
    def parse(name: str, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: must be a number, got {value!r}") from None
        if not (math.isfinite(number) and number >= low):
            raise ConfigError(f"{name}: must be a finite number >= {low}, got {value!r}")
        return number
    return parse


def _choice(options: tuple[str, ...]) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise ConfigError(f"{name}: must be one of {', '.join(options)}, got {value!r}")
        return text
    return parse


def _text(name: str, value: Any) -> str:
    text = str(value)
    if not text:
        raise ConfigError(f"{name}: must be a non-empty string, got {value!r}")
    return text


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: must be a boolean (true/false/1/0), got {value!r}")


def _ids(name: str, value: Any) -> tuple[str, ...]:
    # A comma-separated string (an environment variable) or a list (repeated --alias flags).
    items = value.split(",") if isinstance(value, str) else list(value)
    ids = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    bad = [item for item in ids if any(c.isspace() for c in item)]
    if bad:
        raise ConfigError(f"{name}: model ids hold no whitespace, got {bad[0]!r}")
    return ids


def _framing(name: str, value: Any) -> tuple[str, ...]:
    # A comma-separated string; the variants' names in their canonical order.
    try:
        return parse_framing(str(value)).names
    except FramingError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _latency(name: str, value: Any) -> str:
    # A preset or key=value pairs; kept in canonical form (`none` for no latency).
    try:
        return parse_profile(str(value)).text()
    except LatencyError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _url(name: str, value: Any) -> str:
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: must be an http(s) base URL such as http://127.0.0.1:8081, got {value!r}")
    return text


def _speed(name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text in REPLAY_SPEEDS:
        return text
    try:
        factor = float(text)
    except ValueError:
        factor = math.nan
    if not (math.isfinite(factor) and factor > 0):
        raise ConfigError(f"{name}: must be recorded, instant or a factor > 0 (2: twice as fast), got {value!r}")
    return str(factor)


def _fields(name: str, value: Any) -> tuple[str, ...]:
    # Dotted paths: a comma-separated string (an environment variable) or a list (repeated flags).
    items = value.split(",") if isinstance(value, str) else list(value)
    paths = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    bad = [p for p in paths if any(not part or part.isspace() for part in p.split("."))]
    if bad:
        raise ConfigError(f"{name}: a field is a dotted path such as stream_options.include_usage, got {bad[0]!r}")
    return paths


PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "host": _text, "port": _int(0, 65535), "model": _choice(MODELS), "weights": _choice(WEIGHTS),
    "api_key": _text, "device": _choice(DEVICES), "threads": _int(1, 1024), "log_level": _choice(LOG_LEVELS),
    "error_style": _choice(ERROR_STYLES), "max_batch": _int(1, 256), "max_queue": _int(0, 100_000),
    "max_body_bytes": _int(1024), "load_delay": _float(0.0), "cache_size": _int(0),
    "allow_remote_images": _bool, "max_image_bytes": _int(1), "max_image_pixels": _int(1),
    "allow_faults": _bool, "keepalive": _float(0.0), "read_timeout": _float(0.0), "record_requests": _bool, "spin": _bool,
    "sse_framing": _framing, "latency": _latency,
    "strict_models": _bool, "aliases": _ids,
    "record": _text, "upstream": _url, "upstream_key": _text, "replay": _text, "replay_speed": _speed,
    "match_ignore": _fields,
}


def load_config(cli: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> ServerConfig:
    """Build the config: a CLI value that is not None, else `CHATCONFORM_MOCK_<NAME>` from env, else the default."""
    cli = cli or {}
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(ServerConfig):
        parse = PARSERS[f.name]
        if cli.get(f.name) is not None:
            values[f.name] = parse(f"--{f.name.replace('_', '-')}", cli[f.name])
        elif env.get(ENV_PREFIX + f.name.upper()) not in (None, ""):
            var = ENV_PREFIX + f.name.upper()
            values[f.name] = parse(var, env[var])
    _check_modes(values, {name for name, value in cli.items() if value is not None})
    return ServerConfig(**values)


def _check_modes(values: Mapping[str, Any], given: set[str]) -> None:
    """Record and replay exclude each other, and each refuses the flags (`given`) it cannot honour.

    A variable of the environment for another mode is ambient, not asked for: it is left alone.
    """
    record, replay = values.get("record"), values.get("replay")
    if record is not None and replay is not None:
        raise ConfigError(f"--record and --replay exclude each other: record from an upstream or replay a folder, "
                          f"got --record {record!r} and --replay {replay!r}")
    if record is not None and values.get("upstream") is None:
        raise ConfigError("--record needs --upstream URL (or CHATCONFORM_MOCK_UPSTREAM): the server to record from")
    needs = {"upstream": "record", "upstream_key": "record", "replay_speed": "replay", "match_ignore": "replay"}
    for name, needed in needs.items():
        if name in given and values.get(needed) is None:
            raise ConfigError(f"--{name.replace('_', '-')} applies only with --{needed}")
    mode = "--record" if record is not None else "--replay" if replay is not None else None
    for name in MODEL_ONLY if mode is not None else ():
        if name in given:
            raise ConfigError(f"--{name.replace('_', '-')} does not apply with {mode}: no model is loaded")
