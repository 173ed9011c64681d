"""The attacker's run against the mock server: 10,000 malformed or extreme requests, stalls, memory, slow clients.

    .venv/bin/python -m bench.abuse                  # 10,000 requests, the tiny model, about 3-6 minutes
    .venv/bin/python -m bench.abuse --count 2000 --seed 7 --json reports/abuse.json

The server runs as a subprocess under a memory cap (tests/abuse/harness.py), so that a regression
cannot take the machine down. Printed:
- the status of every abuse request (tests/abuse/bodies.py, seeded), per mutation family;
- the server's RSS after each of `--rounds` equal parts of that stream: it rises over the first
  parts and then stays within a band (a leak would keep climbing; see bench/README.md);
- stall: how long /health takes while heavy requests (7.5 MB bodies) are in flight, beside how
  long those take (before the fix, /health waited for them);
- memory: the server's RSS before a batch of large requests, right after, and a moment later
  (after malloc_trim has returned the freed pages);
- slow clients: a normal request's latency while many connections dribble half a request, and
  how many of those the read timeout closed; again with 256 open files and 300 such clients
  (and how much the server logged meanwhile).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.abuse.bodies import abuse_requests
from tests.abuse.harness import MEMORY_CAP_BYTES, MockProcess
from tests.abuse.runner import Tally, run_all

MIB = 1024 * 1024
HEAVY_BODY = json.dumps({"messages": [{"role": "user", "content": "hello there " * 2500}] * 250,
                         "max_tokens": 2}).encode()
NORMAL = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}


def load() -> str:
    """The 1-minute load average, for judging the figures."""
    return f"{os.getloadavg()[0]:.2f}"


def abuse_rounds(server: MockProcess, seed: int, count: int, rounds: int, workers: int) -> tuple[Tally, list[int]]:
    """The seeded abuse stream sent in `rounds` equal parts: the tally of all, and the RSS (MB) after each part."""
    requests = abuse_requests(seed, count)
    tally = Tally()
    rss_mb: list[int] = []
    for r in range(rounds):
        part = run_all(server.base_url, itertools.islice(requests, count // rounds + (r < count % rounds)),
                       workers=workers)
        tally.statuses.update(part.statuses)
        for kind, counts in part.by_kind.items():
            tally.by_kind[kind].update(counts)
        tally.bad.extend(part.bad)
        rss_mb.append(round(server.rss_bytes() / MIB))
    return tally, rss_mb


def stall(server: MockProcess, heavy: int) -> dict[str, Any]:
    """/health latencies while `heavy` heavy requests run, and how long those took."""
    durations: list[float] = []

    def one() -> None:
        start = time.perf_counter()
        httpx.post(server.base_url + "/v1/chat/completions", content=HEAVY_BODY,
                   headers={"Content-Type": "application/json"}, timeout=300)
        durations.append(time.perf_counter() - start)

    threads = [threading.Thread(target=one) for _ in range(heavy)]
    for thread in threads:
        thread.start()
    health: list[float] = []
    while any(t.is_alive() for t in threads) and len(health) < 1000:
        start = time.perf_counter()
        httpx.get(server.base_url + "/health", timeout=300)
        health.append(time.perf_counter() - start)
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    return {"heavy_requests": heavy, "heavy_body_bytes": len(HEAVY_BODY),
            "heavy_seconds_max": round(max(durations), 3), "health_probes": len(health),
            "health_seconds_max": round(max(health, default=0.0), 3)}


def memory(server: MockProcess, batch: int) -> dict[str, Any]:
    """RSS before, right after, and 2 s after `batch` large requests (7.5 MB bodies)."""
    before = server.rss_bytes()
    with httpx.Client(base_url=server.base_url, timeout=300) as client:
        for _ in range(batch):
            client.post("/v1/chat/completions", content=HEAVY_BODY, headers={"Content-Type": "application/json"})
    after = server.rss_bytes()
    time.sleep(2.0)  # the trim runs half a second after a large request
    settled = server.rss_bytes()
    return {"batch": batch, "rss_before_mb": round(before / MIB), "rss_after_mb": round(after / MIB),
            "rss_settled_mb": round(settled / MIB)}


def slow_clients(server: MockProcess, crowd: int) -> dict[str, Any]:
    """A normal request's latency while `crowd` connections hold half a request; how many were closed."""
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(crowd)]
    try:
        for sock in socks:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        start = time.perf_counter()
        status = httpx.post(server.base_url + "/v1/chat/completions", json=NORMAL, timeout=300).status_code
        latency = time.perf_counter() - start
        closed = 0
        for sock in socks:
            sock.settimeout(60)
            try:
                closed += sock.recv(1) == b""
            except OSError:
                pass
    finally:
        for sock in socks:
            sock.close()
    return {"crowd": crowd, "normal_status": status, "normal_seconds": round(latency, 3), "closed": closed}


def main(argv: list[str] | None = None) -> int:
    """Run every part; print the figures (and write them as JSON with --json)."""
    parser = argparse.ArgumentParser(prog="python -m bench.abuse", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="abuse requests (default 10,000)")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--rounds", type=int, default=10, help="parts of the abuse stream, RSS read after each (10)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent connections (default 4)")
    parser.add_argument("--heavy", type=int, default=2, help="heavy requests in flight during the stall probe")
    parser.add_argument("--batch", type=int, default=20, help="large requests in the memory probe")
    parser.add_argument("--crowd", type=int, default=200, help="slow connections in the slow-client probe")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= args.count:
        parser.error(f"--rounds must be in [1, --count], got {args.rounds}")
    report: dict[str, Any] = {"load_before": load(), "memory_cap_gib": MEMORY_CAP_BYTES / 1024 ** 3}
    with MockProcess("--read-timeout", "5") as server:
        report["rss_start_mb"] = round(server.rss_bytes() / MIB)
        start = time.perf_counter()
        tally, rss_rounds = abuse_rounds(server, args.seed, args.count, args.rounds, args.workers)
        report["abuse"] = {"count": args.count, "seed": args.seed, "seconds": round(time.perf_counter() - start, 1),
                           "rss_after_each_round_mb": rss_rounds,
                           "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
                           "bad": [f"{o.request.kind}: {o.status} {o.text[:160]}" for o in tally.bad[:20]]}
        print(f"abuse: {args.count} requests (seed {args.seed}) in {report['abuse']['seconds']} s, "
              f"load {load()}")
        print(tally.table())
        print(f"rss after each of {args.rounds} rounds (MB): {', '.join(map(str, rss_rounds))} "
              f"(at start {report['rss_start_mb']})")
        for line in report["abuse"]["bad"]:
            print("  5xx/no answer:", line)
        report["rss_after_abuse_mb"] = round(server.rss_bytes() / MIB)
        report["stall"] = stall(server, args.heavy)
        print("stall:", report["stall"])
        report["memory"] = memory(server, args.batch)
        print("memory:", report["memory"])
        report["slow_clients"] = slow_clients(server, args.crowd)
        print("slow clients:", report["slow_clients"])
        report["alive"] = server.alive()
    # The setting: 256 open files and more slow clients than that.
    with MockProcess("--read-timeout", "5", open_files=256) as server:
        log_before = len(server.log_text())
        report["slow_clients_256_files"] = slow_clients(server, args.crowd + 100)
        report["slow_clients_256_files"]["log_bytes"] = len(server.log_text()) - log_before
        print("slow clients, 256 open files:", report["slow_clients_256_files"])
    report["load_after"] = load()
    print(f"rss at start {report['rss_start_mb']} MB, after the abuse run {report['rss_after_abuse_mb']} MB; "
          f"server alive: {report['alive']}; load {report['load_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["alive"] and not tally.bad else 1


if __name__ == "__main__":
    sys.exit(main())
