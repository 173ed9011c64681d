"""End-to-end server bench: our mock server against llama.cpp's OpenAI-compatible server, over loopback.

Run: .venv/bin/python -m bench.server [--streams 1,4,16,64] [--max-tokens 64] [--repeat 1]
                                      [--threads 2] [--skip-peer] [--json PATH]
                                      [--llama-server CMD] [--prefix-tokens 400]

Each server runs as a child process on 127.0.0.1 and a free port, one after the other (never two
at once): ours (`python -m mock_server`, SmolLM2 int4, CPU), llama-cpp-python's server
(`.venv-peer`, the same Q4_1 GGUF) and, when `--llama-server` (or $CHATCONFORM_LLAMA_SERVER) gives
its command, llama.cpp's C++ llama-server with 16 parallel slots and continuous batching (`-np 16
-cb`). This process is the client (httpx, async). For each server: wait until ready, one untimed
warm-up request, the shared-prefix pair (`bench.server_prefix`: a cold request with a new
`--prefix-tokens` system turn, then one sharing it; cold TTFT / warm TTFT), then for each level N
of `--streams`, N identical streamed requests sent at once (temperature 0, `--max-tokens`,
`stream_options.include_usage`, `x-use-cache: false`). `--repeat` rounds, each starting every
server afresh, ours first.

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
from bench.server_prefix import prefix_pair, system_turn
from bench.server_procs import (
    PEER_PYTHON,
    ManagedServer,
    ServerSpec,
    ServerStartError,
    free_port,
    llama_server_spec,
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
LLAMA_SERVER_ENV = "CHATCONFORM_LLAMA_SERVER"  # the llama-server command, e.g. "path/start.sh {port}"


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
    if args.prefix_tokens:
        pair = await prefix_pair(base_url, model_id, args.prefix_system[round_index], round_index,
                                 args.prefix_tokens, args.request_timeout)
        record.prefix.append(pair)
        print(f"  {record.name} round {round_index + 1}: shared {args.prefix_tokens}-token prefix, TTFT cold "
              f"{pair.cold_ttft_s} s, warm {pair.warm_ttft_s} s", flush=True)
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
    """Why llama-cpp-python's server is not measured, or None if it is."""
    if args.skip_peer:
        return "skipped (--skip-peer)"
    if not PEER_PYTHON.exists():
        return f"{PEER_PYTHON} is missing; {BUILD_PEER_HINT}"
    return None


def llama_server_unavailable(args: argparse.Namespace) -> str | None:
    """Why llama-server is not measured, or None if it is."""
    if args.skip_peer:
        return "skipped (--skip-peer)"
    if not args.llama_server:
        return f"no command: pass --llama-server CMD or set ${LLAMA_SERVER_ENV}"
    return None


def prepare_model() -> Path:
    """Prepare our int4 graph (converted on first use, so conversion never counts as startup) and
    return the GGUF both servers load."""
    from reference_model.prepared import prepare
    from reference_model.weights import ensure_gguf

    prepare("int4", progress=True)
    return ensure_gguf()


def run_bench(args: argparse.Namespace, log_dir: Path) -> tuple[dict[str, Any], ServerRecord, list[ServerRecord]]:
    """Every round of every server; returns the JSON report, our record and the peers' records."""
    from bench.engine import cpu_model

    load_start = [round(x, 2) for x in os.getloadavg()]
    gguf = prepare_model()
    # One new system turn per round, the same for every server (each starts afresh per round).
    args.prefix_system = [system_turn(f"round {r + 1}", args.prefix_tokens) if args.prefix_tokens else ""
                          for r in range(args.repeat)]
    makers: dict[str, Any] = {
        "ours": lambda port: ours_spec(port, args.threads, args.max_queue, args.max_batch),
        "llama.cpp": lambda port: peer_spec(port, args.threads, gguf),
        "llama-server": lambda port: llama_server_spec(port, args.threads, args.llama_server, args.llama_server_slots),
    }
    notes = {"llama.cpp": peer_unavailable(args), "llama-server": llama_server_unavailable(args)}
    ours = ServerRecord("ours", makers["ours"](0).command)
    peers = [ServerRecord(name, makers[name](0).command) for name, note in notes.items() if note is None]
    for round_index in range(args.repeat):
        measure_round(makers["ours"](free_port()), ours, args, round_index, log_dir)
        for peer in peers:
            if notes[peer.name] is not None:
                continue
            try:
                measure_round(makers[peer.name](free_port()), peer, args, round_index, log_dir)
            except (ServerStartError, BenchError) as exc:
                notes[peer.name] = f"failed: {exc}"
    config = {k: v for k, v in vars(args).items() if k not in ("json", "prefix_system")}
    report = {
        "version": REPORT_VERSION,
        "config": {**config, "streams": list(args.streams), "messages": MESSAGES, "gguf": str(gguf),
                   "log_dir": str(log_dir)},
        "machine": {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count() or 0,
                    "load_average_start": load_start, "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "peer_note": notes["llama.cpp"],
        "peer_notes": notes,
        "servers": {r.name: r.to_dict() for r in (ours, *peers)},
        "comparison": comparison(args.streams, ours, peers),
    }
    return report, ours, peers


def comparison(levels: list[int], ours: ServerRecord, peers: ServerRecord | list[ServerRecord] | None
               ) -> list[dict[str, Any]]:
    """Per level: every server's total tok/s (median of rounds), the stronger peer and ours / it."""
    others = [] if peers is None else [peers] if isinstance(peers, ServerRecord) else list(peers)
    rows = []
    for n in levels:
        a = ours.summary(n)
        ours_rate = a.total_tok_s if a else None
        rates = {p.name: (s.total_tok_s if (s := p.summary(n)) else None) for p in others}
        known = {k: v for k, v in rates.items() if v is not None}
        strongest = max(known, key=lambda k: known[k]) if known else None
        peer_rate = known.get(strongest) if strongest else None
        rows.append({"streams": n, "ours_total_tok_s": ours_rate, "peer_total_tok_s": peer_rate,
                     "stronger_peer": strongest, "peers_total_tok_s": rates,
                     "ratio": ratio(ours_rate, peer_rate),
                     "ours_ttft_p50_s": a.ttft_p50_s if a else None, "ours_ttft_p99_s": a.ttft_p99_s if a else None})
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
    p.add_argument("--llama-server", default=os.environ.get(LLAMA_SERVER_ENV) or None, metavar="CMD",
                   help=f"command starting llama.cpp's llama-server ('{{port}}' is replaced by the port, else "
                        f"--port is appended); default ${LLAMA_SERVER_ENV}; absent: that peer is skipped")
    p.add_argument("--llama-server-slots", type=positive_int("--llama-server-slots"), default=16,
                   help="llama-server's parallel slots (-np, with -cb) (16)")
    p.add_argument("--prefix-tokens", type=int, default=400,
                   help="system-turn tokens of the shared-prefix TTFT pair (400; 0 skips it)")
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
        report, ours, peers = run_bench(args, log_dir)
    except (ServerStartError, BenchError) as exc:
        print(f"bench.server: {exc}", file=sys.stderr)
        return 1
    render(report, ours, peers)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
