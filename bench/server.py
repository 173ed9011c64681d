"""End-to-end server bench: our mock server against llama.cpp's OpenAI-compatible server, over loopback.

Run: .venv/bin/python -m bench.server [--streams 1,4,16,64] [--max-tokens 64] [--repeat 1]
                                      [--threads 2] [--skip-peer] [--json PATH]

Each server runs as a child process on 127.0.0.1 and a free port, one after the other (never both
at once): ours (`python -m mock_server`, SmolLM2 int4, CPU) and llama-cpp-python's server
(`.venv-peer`, the same Q4_1 GGUF). This process is the client (httpx, async). For each server: wait
until ready, one untimed warm-up request, then for each level N of `--streams`, N identical
streamed requests sent at once (temperature 0, `--max-tokens`, `stream_options.include_usage`,
`x-use-cache: false`). `--repeat` rounds, each starting both servers afresh, ours first.

Figures per level and server: total tok/s, latency p50/p99, TTFT p50/p99, per-stream decode tok/s,
errors (see `bench/server_stats.py` for the definitions, `bench/README.md` for how to read them).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.peer.measure import positive_int
from bench.server_client import (
    CHAT_PATH,
    MESSAGES,
    chat_body,
    client_for,
    fetch_model_id,
    messages_for,
    one_stream,
    run_level,
)
from bench.server_procs import (
    PEER_PYTHON,
    ManagedServer,
    ServerSpec,
    ServerStartError,
    free_port,
    ours_spec,
    peer_spec,
)
from bench.server_render import ratio, render
from bench.server_stats import ServerRecord

REPORT_VERSION = 1
DEFAULT_STREAMS = (1, 4, 16, 64)
MAX_STREAMS = 256
# Request numbers of round r start at r * this, so rounds never repeat a prompt (1 warm-up + the levels).
REQUESTS_PER_ROUND_BOUND = 100_000
BUILD_PEER_HINT = "build it with `make peer` (bench/peer/build.sh, about 10 minutes on 2 cores)"


class BenchError(RuntimeError):
    """The bench could not measure a server (it did not start, or its warm-up failed)."""


async def drive(base_url: str, record: ServerRecord, args: argparse.Namespace, round_index: int) -> None:
    """Warm up once, then run every level in order on one ready server."""
    model_id = record.model_id = await fetch_model_id(base_url)
    counter = itertools.count(round_index * REQUESTS_PER_ROUND_BOUND)  # --distinct-prompts: same numbers on both servers

    def body() -> dict[str, Any]:
        index = next(counter) if args.distinct_prompts else None
        return chat_body(model_id, args.max_tokens, messages_for(index))

    async with client_for(1, args.request_timeout) as client:
        warmup = await one_stream(client, base_url + CHAT_PATH, body(), args.request_timeout)
    record.warmups.append(warmup)
    if not warmup.ok:
        raise BenchError(f"{record.name}: the warm-up request failed: {warmup.error}")
    for streams in args.streams:
        run = await run_level(base_url, [body() for _ in range(streams)], round_index, args.request_timeout)
        record.runs.append(run)
        print(f"  {record.name} round {round_index + 1}: {streams:>3} streams, {run.tokens} tokens in "
              f"{run.wall_s:.2f} s, {run.total_tok_s:.1f} tok/s, "
              f"{sum(not r.ok for r in run.results)} errors", flush=True)


def measure_round(spec: ServerSpec, record: ServerRecord, args: argparse.Namespace, round_index: int,
                  log_dir: Path) -> None:
    """Start one server, drive it, stop it (even when the driving fails)."""
    record.load_1m.append(round(os.getloadavg()[0], 2))
    log_path = log_dir / f"{spec.name.replace('.', '')}-round{round_index + 1}.log"
    print(f"{spec.name}: starting (round {round_index + 1}, log {log_path})", flush=True)
    with ManagedServer(spec, log_path) as server:
        server.start(args.start_timeout)
        assert server.startup_s is not None
        record.startup_s.append(round(server.startup_s, 3))
        asyncio.run(drive(spec.base_url, record, args, round_index))


def peer_unavailable(args: argparse.Namespace) -> str | None:
    """Why llama.cpp is not measured, or None if it is."""
    if args.skip_peer:
        return "skipped (--skip-peer)"
    if not PEER_PYTHON.exists():
        return f"{PEER_PYTHON} is missing; {BUILD_PEER_HINT}"
    return None


def prepare_model() -> Path:
    """Prepare our int4 graph (converted on first use, so conversion never counts as startup) and
    return the GGUF both servers load."""
    from reference_model.prepared import prepare
    from reference_model.weights import ensure_gguf

    prepare("int4", progress=True)
    return ensure_gguf()


def run_bench(args: argparse.Namespace, log_dir: Path) -> tuple[dict[str, Any], ServerRecord, ServerRecord | None]:
    """Every round of both servers; returns the JSON report and the two records."""
    from bench.engine import cpu_model

    load_start = [round(x, 2) for x in os.getloadavg()]
    gguf = prepare_model()

    def make_ours(port: int) -> ServerSpec:
        return ours_spec(port, args.threads, args.max_queue, args.max_batch)

    def make_peer(port: int) -> ServerSpec:
        return peer_spec(port, args.threads, gguf)

    ours = ServerRecord("ours", make_ours(0).command)
    peer_note = peer_unavailable(args)
    peer = ServerRecord("llama.cpp", make_peer(0).command) if peer_note is None else None
    for round_index in range(args.repeat):
        measure_round(make_ours(free_port()), ours, args, round_index, log_dir)
        if peer is not None and peer_note is None:
            try:
                measure_round(make_peer(free_port()), peer, args, round_index, log_dir)
            except (ServerStartError, BenchError) as exc:
                peer_note = f"failed: {exc}"
    report = {
        "version": REPORT_VERSION,
        "config": {**{k: v for k, v in vars(args).items() if k != "json"}, "streams": list(args.streams),
                   "messages": MESSAGES, "gguf": str(gguf), "log_dir": str(log_dir)},
        "machine": {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count() or 0,
                    "load_average_start": load_start, "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "peer_note": peer_note,
        "servers": {r.name: r.to_dict() for r in (ours, peer) if r is not None},
        "comparison": comparison(args.streams, ours, peer),
    }
    return report, ours, peer


def comparison(levels: list[int], ours: ServerRecord, peer: ServerRecord | None) -> list[dict[str, Any]]:
    """Per level: both total tok/s (median of rounds) and ours / llama.cpp."""
    rows = []
    for n in levels:
        a, b = ours.summary(n), (peer.summary(n) if peer else None)
        ours_rate, peer_rate = (a.total_tok_s if a else None), (b.total_tok_s if b else None)
        rows.append({"streams": n, "ours_total_tok_s": ours_rate, "peer_total_tok_s": peer_rate,
                     "ratio": ratio(ours_rate, peer_rate)})
    return rows


def stream_levels(text: str) -> list[int]:
    """`--streams`: comma-separated integers in 1..MAX_STREAMS (256), distinct, kept in the order given."""
    parse = positive_int("--streams")
    levels = [parse(part.strip()) for part in text.split(",") if part.strip()]
    if not levels or len(set(levels)) != len(levels) or max(levels) > MAX_STREAMS:
        raise argparse.ArgumentTypeError(f"--streams: rule 'distinct integers in 1..{MAX_STREAMS}, comma-separated', got {text!r}")
    return levels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the CLI; `--max-queue` defaults to the largest level, so no level meets our 429."""
    p = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=stream_levels, default=list(DEFAULT_STREAMS),
                   help="concurrency levels (default 1,4,16,64)")
    p.add_argument("--max-tokens", type=positive_int("--max-tokens"), default=64, help="per request (64)")
    p.add_argument("--repeat", type=positive_int("--repeat"), default=1,
                   help="rounds; each restarts both servers; latencies pool, tok/s is the median (1)")
    p.add_argument("--threads", type=positive_int("--threads"), default=2, help="threads of each server (2)")
    p.add_argument("--max-queue", type=positive_int("--max-queue"), default=None,
                   help="our server's queue beyond the batch (default: the largest level)")
    p.add_argument("--max-batch", type=positive_int("--max-batch"), default=None,
                   help="our server's batch size (default: the server's own, 8)")
    p.add_argument("--distinct-prompts", action="store_true",
                   help="give every request its own system turn ('Request <n>. ...'), so llama.cpp cannot "
                        "reuse the previous request's prompt KV; the same prompts go to both servers")
    p.add_argument("--skip-peer", action="store_true", help="measure our server only")
    p.add_argument("--request-timeout", type=positive_int("--request-timeout"), default=600,
                   help="seconds one request may take in all (600)")
    p.add_argument("--start-timeout", type=positive_int("--start-timeout"), default=300,
                   help="seconds a server may take to become ready (300)")
    p.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = p.parse_args(argv)
    args.max_queue = args.max_queue or max(args.streams)
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: measure, print the tables, optionally write JSON."""
    args = parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-server-"))
    try:
        report, ours, peer = run_bench(args, log_dir)
    except (ServerStartError, BenchError) as exc:
        print(f"bench.server: {exc}", file=sys.stderr)
        return 1
    render(report, ours, peer)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
