"""The rich tables `python -m bench.server` prints: one per concurrency level, then a summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console, JustifyMethod
from rich.table import Table

from bench.server_stats import LevelSummary, ServerRecord

MIN_WIDTH = 140  # columns of the summary table

# (label, how to read it from a summary, unit scale, format); times are shown in ms.
Metric = tuple[str, Callable[[LevelSummary], float | None], float, str]
METRICS: list[Metric] = [
    ("total tok/s (median of rounds)", lambda s: s.total_tok_s, 1.0, "{:.1f}"),
    ("total tok/s (best round)", lambda s: s.total_tok_s_best, 1.0, "{:.1f}"),
    ("per-stream decode tok/s p50", lambda s: s.decode_tok_s_p50, 1.0, "{:.1f}"),
    ("latency p50 (ms)", lambda s: s.latency_p50_s, 1000.0, "{:.0f}"),
    ("latency p99 (ms)", lambda s: s.latency_p99_s, 1000.0, "{:.0f}"),
    ("TTFT p50 (ms)", lambda s: s.ttft_p50_s, 1000.0, "{:.0f}"),
    ("TTFT p99 (ms)", lambda s: s.ttft_p99_s, 1000.0, "{:.0f}"),
]


def ratio(ours: float | None, peer: float | None) -> float | None:
    """ours / peer, None when either is missing or the peer's is 0."""
    return ours / peer if ours is not None and peer else None


def _num(value: float | None, scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value * scale)


def _errors(s: LevelSummary | None) -> str:
    if s is None:
        return "-"
    detail = ", ".join(f"{'no status' if k == '0' else k} x{v}" for k, v in sorted(s.non_200.items()))
    return f"{s.errors}/{s.requests}" + (f" ({detail})" if detail else "")


def _tokens(s: LevelSummary | None) -> str:
    if s is None or s.tokens_min is None:
        return "-"
    span = str(s.tokens_min) if s.tokens_min == s.tokens_max else f"{s.tokens_min}-{s.tokens_max}"
    return f"{span} from {'/'.join(s.token_sources)}"


def level_table(streams: int, ours: LevelSummary | None, peer: LevelSummary | None,
                peer_name: str = "llama.cpp") -> Table:
    """Every figure of one level, ours beside the peer's, with ours/peer."""
    table = Table(title=f"{streams} concurrent stream{'s' if streams != 1 else ''}", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("metric", "left"), ("ours", "right"), (peer_name, "right"), (f"ours/{peer_name}", "right"))
    for header, justify in columns:
        table.add_column(header, justify=justify)
    for label, read, scale, fmt in METRICS:
        a = read(ours) if ours else None
        b = read(peer) if peer else None
        table.add_row(label, _num(a, scale, fmt), _num(b, scale, fmt), _num(ratio(a, b), 1.0, "{:.2f}x"))
    table.add_row("errors / requests", _errors(ours), _errors(peer), "")
    table.add_row("tokens per stream", _tokens(ours), _tokens(peer), "")
    for name, s in (("ours", ours), (peer_name, peer)):
        if s is not None and s.error_examples:
            table.add_row(f"first errors ({name})", "; ".join(s.error_examples)[:300], "", "")
    return table


def summary_table(levels: list[int], ours: ServerRecord, peer: ServerRecord | None) -> Table:
    """One row per level: total tok/s (median) of both and the ratio, latency and TTFT p50/p99."""
    name = peer.name if peer else "llama.cpp"
    table = Table(title=f"summary: total tok/s (median of rounds), ratio = ours/{name}, times in ms as p50/p99",
                  title_justify="left")
    for header in ("streams", "ours tok/s", "peer tok/s", "ratio", "ours latency", "peer latency",
                   "ours TTFT", "peer TTFT", "ours errors", "peer errors"):
        table.add_column(header, justify="right")
    for n in levels:
        a = ours.summary(n)
        b = peer.summary(n) if peer else None
        table.add_row(
            str(n), _num(a.total_tok_s if a else None), _num(b.total_tok_s if b else None),
            _num(ratio(a.total_tok_s if a else None, b.total_tok_s if b else None), 1.0, "{:.2f}x"),
            _pair(a, "latency"), _pair(b, "latency"), _pair(a, "ttft"), _pair(b, "ttft"), _errors(a), _errors(b))
    return table


def _pair(s: LevelSummary | None, kind: str) -> str:
    if s is None:
        return "-"
    p50, p99 = getattr(s, f"{kind}_p50_s"), getattr(s, f"{kind}_p99_s")
    return f"{_num(p50, 1000.0, '{:.0f}')}/{_num(p99, 1000.0, '{:.0f}')}"


def prefix_table(records: list[ServerRecord]) -> Table:
    """Per server and round: cold and warm TTFT of the shared-prefix pair, and cold/warm."""
    table = Table(title="shared prefix: TTFT of a cold request, then of one sharing its system turn (ms)",
                  title_justify="left")
    for header in ("server", "round", "prefix tokens", "cold TTFT", "warm TTFT", "cold/warm", "errors"):
        table.add_column(header, justify="right")
    for record in records:
        for run in record.prefix:
            table.add_row(record.name, str(run.round + 1), str(run.prefix_tokens),
                          _num(run.cold_ttft_s, 1000.0, "{:.0f}"), _num(run.warm_ttft_s, 1000.0, "{:.0f}"),
                          _num(run.speedup, 1.0, "{:.2f}x"), "; ".join(run.errors)[:120])
    return table


def render(report: dict[str, Any], ours: ServerRecord, peers: ServerRecord | list[ServerRecord] | None,
           console: Console | None = None) -> None:
    """Print the header, a table per level and peer, the summary per peer, and the shared-prefix table."""
    console = console or Console()
    if not console.is_terminal and console.width < MIN_WIDTH:  # piped: rich would fold at 80 columns
        console = Console(width=MIN_WIDTH)
    others = [] if peers is None else [peers] if isinstance(peers, ServerRecord) else list(peers)
    machine, config = report["machine"], report["config"]
    console.print(f"[bold]bench.server[/]: {machine['cpu_model']}, {machine['logical_cpus']} logical CPUs, "
                  f"{config['threads']} threads per server, max_tokens {config['max_tokens']}, "
                  f"{config['repeat']} round(s); load average (1 min) {machine['load_average_start'][0]} at start, "
                  f"{machine['load_average_end'][0]} at end")
    for record in (ours, *others):
        startup = ", ".join(f"{s:.1f}" for s in record.startup_s)
        console.print(f"  {record.name}: model {record.model_id}, ready after {startup} s, "
                      f"load at each round's start {record.load_1m}")
    notes = report.get("peer_notes") or ({"llama.cpp": report["peer_note"]} if report.get("peer_note") else {})
    for name, note in notes.items():
        if note:
            console.print(f"  {name}: [yellow]{note}[/]")
    levels: list[int] = config["streams"]
    columns: list[ServerRecord | None] = [*others] or [None]
    for peer in columns:
        for n in levels:
            console.print(level_table(n, ours.summary(n), peer.summary(n) if peer is not None else None,
                                      peer.name if peer is not None else "llama.cpp"))
        console.print(summary_table(levels, ours, peer))
    if any(r.prefix for r in (ours, *others)):
        console.print(prefix_table([ours, *others]))
