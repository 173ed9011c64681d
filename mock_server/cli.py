"""`chatconform serve` (and `python -m mock_server`): run the mock provider."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from mock_server.config import DEVICES, LOG_LEVELS, MODELS, WEIGHTS, ConfigError, load_config
from mock_server.errors import ERROR_STYLES
from reference_model.extras import MockExtraMissing, require_mock_extra

DESCRIPTION = ("Serve the Chat Completion API (/v1/chat/completions) with a real model. Every option can also "
               "be set with an environment variable CHATCONFORM_MOCK_<OPTION> (e.g. CHATCONFORM_MOCK_API_KEY); a flag "
               "wins over the variable.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The serve options; defaults are None so that the environment and the config defaults apply."""
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080; 0 picks a free one)")
    parser.add_argument("--model", choices=MODELS,
                        help="smollm2: the SmolLM2-135M-Instruct reference (default); tiny: random weights, instant")
    parser.add_argument("--weights", choices=WEIGHTS, help="weight format of the graph (default int4)")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer <key>' (or CHATCONFORM_MOCK_API_KEY)")
    parser.add_argument("--device", choices=DEVICES, help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: one per core)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="logging level (default info)")
    parser.add_argument("--error-style", choices=ERROR_STYLES,
                        help="error envelope: auto (default: openai for the OpenAI SDKs, hf for every other "
                             "client), hf {error, error_type}, or openai {error: {message, type, param, code}}")
    parser.add_argument("--strict-models", action="store_true", default=None,
                        help="serve only the model's own id and the --alias ids; any other model id gets 404 "
                             "(default: any model id is served as an alias of the loaded model)")
    parser.add_argument("--alias", dest="aliases", action="append", metavar="MODEL_ID",
                        help="another id for the served model, listed by GET /v1/models (repeatable; "
                             "CHATCONFORM_MOCK_ALIASES takes a comma-separated list)")
    parser.add_argument("--max-batch", type=int, help="sequences decoded together (default 8)")
    parser.add_argument("--max-queue", type=int, help="requests waiting beyond the batch before 429 (default 32)")
    parser.add_argument("--max-body-bytes", type=int, help="largest request body (default 8 MiB); more gets 413")
    parser.add_argument("--load-delay", type=float,
                        help="report the model as loading (503) for this many seconds after start")
    parser.add_argument("--cache-size", type=int, help="responses kept for x-use-cache (default 256; 0: off)")
    parser.add_argument("--allow-remote-images", action="store_true", default=None,
                        help="fetch http(s) image URLs (default: data: URLs only)")
    parser.add_argument("--allow-faults", action="store_true", default=None,
                        help="honour x-mock-fault headers that break the spec on purpose (for testing checkers)")
    parser.add_argument("--keepalive", type=float, metavar="SECONDS",
                        help="send an SSE comment ': keep-alive' after this many seconds without stream output "
                             "(default 15; 0: never)")
    parser.add_argument("--sse-framing", metavar="VARIANT[,VARIANT]",
                        help="frame every stream in legal but unusual SSE: crlf, cr, comments, keepalive, retry-id, "
                             "event-field, split, multiline-data (default plain; a request's x-mock-sse-framing "
                             "header replaces it)")
    parser.add_argument("--latency", metavar="PROFILE",
                        help="add time to first token and between tokens: a preset (none, fast, typical, slow-ttft, "
                             "mobile) or ttft=S,itl=S,jitter=F,seed=N (default none; a request's x-mock-latency "
                             "header replaces it)")
    parser.add_argument("--read-timeout", type=float, metavar="SECONDS",
                        help="close a client that takes longer to send a request's headers, or then its body "
                             "(408), and idle kept-alive connections (default 30; 0: never)")
    parser.add_argument("--no-spin", dest="spin", action="store_false", default=None,
                        help="idle ONNX Runtime threads sleep instead of spin-waiting (slower on idle cores; "
                             "kinder to a machine shared with other busy processes)")
    parser.add_argument("--record-requests", action="store_true", default=None,
                        help="keep the last 1000 requests (authorization redacted) and list them at "
                             "GET /mock/requests (DELETE clears them)")
    add_cassette_arguments(parser)


def add_cassette_arguments(parser: argparse.ArgumentParser) -> None:
    """Record and replay: the flags of recorder.py and replayer.py (no model is loaded in either mode)."""
    parser.add_argument("--record", metavar="DIR",
                        help="record instead of serving the model: forward every request to --upstream, relay its "
                             "answer, and write one cassette per exchange to DIR")
    parser.add_argument("--upstream", metavar="URL",
                        help="the base URL --record forwards to (http://127.0.0.1:8081, https://router.huggingface.co"
                             "/v1): a request's path is appended, its first segments given once when the base ends "
                             "with them (/v1/models on .../v1 goes to .../v1/models)")
    parser.add_argument("--upstream-key", metavar="KEY",
                        help="send 'Authorization: Bearer KEY' upstream instead of the client's own (or "
                             "CHATCONFORM_MOCK_UPSTREAM_KEY); never written to a cassette")
    parser.add_argument("--replay", metavar="DIR",
                        help="answer from the cassettes in DIR, offline (no model, no network); a request no "
                             "cassette matches gets 404 cassette_not_found naming the nearest one")
    parser.add_argument("--replay-speed", metavar="SPEED",
                        help="recorded (default): each stream frame and answer at its recorded time; instant: no "
                             "waits; a factor: 2 plays twice as fast")
    parser.add_argument("--match-ignore", dest="match_ignore", action="append", metavar="FIELD",
                        help="a request body field (dotted path, e.g. stream_options.include_usage) not matched in "
                             "replay, besides user and metadata (repeatable; CHATCONFORM_MOCK_MATCH_IGNORE takes a "
                             "comma-separated list)")


def run(args: argparse.Namespace) -> int:
    """Build the config from the parsed flags and serve until interrupted."""
    try:
        require_mock_extra("chatconform serve")
    except MockExtraMissing as exc:
        print(f"chatconform serve: {exc}", file=sys.stderr)
        return 2
    from mock_server.server import serve_forever

    try:
        config = load_config(vars(args))
    except ConfigError as exc:
        print(f"chatconform serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve_forever(config, announce=lambda line: print(line, flush=True)))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"chatconform serve: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # found at start: a --replay folder that is missing, empty or holds a bad cassette
        print(f"chatconform serve: {exc}", file=sys.stderr)
        return 2
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve` to the chatconform command."""
    parser = subparsers.add_parser("serve", help="run the mock provider (real model) on a local port",
                                   description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mock_server`."""
    parser = argparse.ArgumentParser(prog="python -m mock_server", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
