"""Verdicts against the issue's targets, and the rich tables `python -m bench.engine` prints."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bench.engine_types import (
    BATCH8_RATIO_TARGET,
    DECODE_RATIO_TARGET,
    MB,
    MIB,
    PEAK_MEMORY_TARGET_MB,
    PREFILL_RATIO_TARGET,
    BenchReport,
    OurMeasurement,
    Verdict,
)


def peer_peak_mb(peer: dict[str, Any]) -> float:
    """The peer's peak RSS in decimal MB (it reports MiB)."""
    mib: float = peer["peak_rss_mib"]
    return round(mib * MIB / MB, 1)


def _peer_number(peer: dict[str, Any] | None, key: str) -> float | None:
    """One of the peer's measurements, or None when llama.cpp was not measured."""
    if not peer:
        return None
    value: float = peer[key]
    return value


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def verdicts(ours: OurMeasurement, peer: dict[str, Any] | None) -> list[Verdict]:
    """The four targets: decode and prefill ratios to llama.cpp, peak memory, batch-8 speed-up."""
    decode = _ratio(ours.decode_tok_s, peer["decode_tok_s"]) if peer else None
    prefill = _ratio(ours.prefill_tok_s, peer["prefill_tok_s"]) if peer else None
    batch = _ratio(ours.batch_rate(8), ours.batch_rate(1))
    return [
        Verdict("decode ours/llama.cpp", decode, f">= {DECODE_RATIO_TARGET}x",
                None if decode is None else decode >= DECODE_RATIO_TARGET),
        Verdict("prefill ours/llama.cpp", prefill, f">= {PREFILL_RATIO_TARGET}x",
                None if prefill is None else prefill >= PREFILL_RATIO_TARGET),
        Verdict("peak RSS ours (MB)", ours.peak_rss_mb, f"< {PEAK_MEMORY_TARGET_MB:g} MB",
                ours.peak_rss_mb < PEAK_MEMORY_TARGET_MB),
        Verdict("batch-8 / batch-1 total tok/s", batch, f">= {BATCH8_RATIO_TARGET}x",
                None if batch is None else batch >= BATCH8_RATIO_TARGET),
    ]


def _mark(v: Verdict) -> str:
    if v.passed is None:
        return "[yellow]n/a[/]"
    return "[green]PASS[/]" if v.passed else "[red]MISS[/]"


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def _comparison_table(report: BenchReport) -> Table:
    ours, peer = report.ours, report.peer
    by_name = {v.name: v for v in report.verdicts}
    t = Table(title=f"ours ({ours.weights}, {ours.provider}) vs llama.cpp "
                    f"(prompt {ours.prompt_tokens} tokens, decode {ours.decode_tokens}, "
                    f"{ours.n_threads} threads, median of {ours.repeats}"
                    f"{', passive waits' if report.config.get('passive') else ''})")
    for col in ("metric", "ours median (best)", "llama.cpp median (best)", "ratio", "ratio of bests",
                "target", "verdict"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    rows = [
        ("prefill tok/s", ours.prefill_tok_s, ours.prefill_best_tok_s,
         _peer_number(peer, "prefill_tok_s"), _peer_number(peer, "prefill_best_tok_s"), "prefill ours/llama.cpp"),
        ("decode tok/s", ours.decode_tok_s, ours.decode_best_tok_s,
         _peer_number(peer, "decode_tok_s"), _peer_number(peer, "decode_best_tok_s"), "decode ours/llama.cpp"),
    ]
    for label, om, ob, pm, pb, key in rows:
        v = by_name[key]
        t.add_row(label, f"{om:.1f} ({ob:.1f})", "-" if pm is None else f"{pm:.1f} ({pb:.1f})",
                  _num(v.value, "{:.2f}x"), _num(_ratio(ob, pb), "{:.2f}x"), v.target, _mark(v))
    mem = by_name["peak RSS ours (MB)"]
    peer_mem = peer_peak_mb(peer) if peer else None
    t.add_row("peak RSS MB", f"{ours.peak_rss_mb:.0f}", _num(peer_mem, "{:.0f}"),
              _num(_ratio(ours.peak_rss_mb, peer_mem), "{:.2f}x"), "", mem.target, _mark(mem))
    # The verdicts use medians; on a shared machine the best runs are the least disturbed ones,
    # and llama.cpp's spin-waiting threads suffer more from contention than ours.
    t.caption = "verdicts on medians; compare the ratio of bests when the load average exceeds the thread count"
    return t


def _batch_table(report: BenchReport) -> Table:
    ours = report.ours
    single = ours.batch_rate(1)
    t = Table(title=f"batched greedy decode ({ours.batch_tokens} steps, one Engine.step per token)")
    for col in ("sequences", "total tok/s (median)", "per sequence tok/s", "x one sequence", "runs"):
        t.add_column(col, justify="right")
    for b in ours.batched:
        t.add_row(str(b.batch), f"{b.total_tok_s:.1f}", f"{b.total_tok_s / b.batch:.1f}",
                  _num(_ratio(b.total_tok_s, single), "{:.2f}x"), ", ".join(f"{r:.1f}" for r in b.runs_tok_s))
    v = next(v for v in report.verdicts if v.name.startswith("batch-8"))
    t.caption = f"8 / 1 sequences: {_num(v.value, '{:.2f}x')} (target {v.target}) {_mark(v)}"
    return t


def _limit_table(report: BenchReport) -> Table:
    lim = report.limit
    w = lim.weight_bytes
    t = Table(title="physical limit (decode reads every weight byte once per token)")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row(f"memory bandwidth ({lim.bandwidth.n_threads}-thread numpy sum over "
              f"{lim.bandwidth.array_bytes / 1e9:.2f} GB, best of {len(lim.bandwidth.runs_gb_s)})",
              f"{lim.bandwidth.gb_s:.1f} GB/s")
    t.add_row("weight bytes per decode token: projections", f"{w.linear / MB:.1f} MB")
    t.add_row("weight bytes per decode token: head table", f"{w.head / MB:.1f} MB")
    t.add_row("weight bytes per decode token: other", f"{w.other / MB:.2f} MB")
    t.add_row("weight bytes per decode token: total", f"{w.total / MB:.1f} MB")
    t.add_row("bandwidth-bound decode", f"{lim.max_tok_s:.1f} tok/s")
    t.add_row("our decode / bound", f"{lim.our_decode_fraction:.0%}")
    return t


def render(report: BenchReport, console: Console | None = None) -> None:
    """Print the report's tables and notes."""
    # Wide enough for the tables when the output is a pipe or a file (rich then assumes 80).
    console = console or Console(width=max(120, Console().width))
    console.print(_comparison_table(report))
    if report.peer_note:
        console.print(f"[yellow]llama.cpp:[/] {report.peer_note}")
    console.print(_batch_table(report))
    console.print(_limit_table(report))
    m, ours = report.machine, report.ours
    console.print(f"onnxruntime {m.onnxruntime}, provider {ours.provider}, CPU {m.cpu_model} "
                  f"({m.logical_cpus} logical), {m.n_threads} threads; peak RSS with "
                  f"{max(b.batch for b in ours.batched)} sequences {ours.peak_rss_batched_mb:.0f} MB; "
                  f"1-min load average {m.load_average_start} -> {m.load_average_end}")
    if report.cuda is not None:
        c = report.cuda
        console.print(f"CUDA ({c.provider}): prefill {c.prefill_tok_s:.1f} tok/s, decode {c.decode_tok_s:.1f} "
                      f"tok/s, batched " + ", ".join(f"{b.batch}: {b.total_tok_s:.1f}" for b in c.batched)
                      + f" tok/s, peak RSS {c.peak_rss_mb:.0f} MB")
    else:
        console.print(f"CUDA: not available ({report.cuda_note})")
