"""`chatconform check [BASE_URL]`: run the suite in-process with pytest and gate on the result."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from conformance.config import (
    DEFAULT_BURST,
    DEFAULT_FUZZ_SHRINK,
    DEFAULT_MAX_RESPONSE_BYTES,
    DIALECTS,
    MAX_BURST,
    MAX_CONCURRENCY,
    PROFILES,
    ConfigError,
    load_config,
    select_clauses,
)
from conformance.embedded import (
    DEFAULT_LOAD_DELAY,
    DEFAULT_MOCK_MODEL,
    EmbeddedMock,
    EmbeddedStartError,
    embedded_max_queue,
)
from conformance.gate import EXIT_INTERRUPTED, EXIT_SUITE_ERROR, ExpectFileError, gate, read_expect
from conformance.plugin import OPTION_FIELDS, PREFIX, default_report_dir
from conformance.progress import ProgressPlugin, failing_table, summary_table
from conformance.reference.export import ReferenceSetup, add_reference_arguments
from conformance.repeat import MAX_REPEAT
from conformance.results import ResultsError, load_results

PLUGIN_MODULE = "conformance.plugin"
BASE_URL_PLUGIN = "pytest_base_url.plugin"  # --base-url and the base_url fixture come from pytest-base-url


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `chatconform check`."""
    parser.add_argument("base_url", nargs="?", metavar="BASE_URL",
                        help="target base URL, e.g. http://host:8080 (default: start the embedded mock provider)")
    parser.add_argument("--api-key", "-k", help="bearer token (env CHATCONFORM_API_KEY); never written into reports")
    parser.add_argument("--model", help="model id sent in requests (default: the first id of GET /v1/models)")
    parser.add_argument("--dialect", choices=DIALECTS, help="response_format and error dialect (default hf)")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="named set of clause groups (default: all)")
    parser.add_argument("--clause", action="append", default=[], metavar="PREFIX",
                        help="only clauses whose ID starts with PREFIX (repeatable)")
    parser.add_argument("--strict", action="store_true", default=None, help="SHOULD clauses count as MUST")
    parser.add_argument("--timeout", type=float, help="per-request and stream stall timeout in seconds (default 30)")
    parser.add_argument("--concurrency", type=int, metavar="N",
                        help=f"at most N requests in flight (default 1, at most {MAX_CONCURRENCY}); checks run one "
                             "after another, and a check's independent requests (samples, seeds, repeats, "
                             "invalid bodies) are sent N at a time. The burst is the only exception (see --burst)")
    parser.add_argument("--delay", type=float,
                        help="seconds between requests (rate-limited providers): a request starts at least this "
                             "long after the previous one started or ended")
    parser.add_argument("--seed", type=int, help="seed of every random choice (default 1234)")
    parser.add_argument("--fuzz-budget", type=int, help="fuzz examples per operation (default 60)")
    parser.add_argument("--fuzz-shrink", type=int, metavar="N",
                        help=f"requests a fuzz phase may add, beyond --fuzz-budget, to shrink a failing case "
                             f"(default {DEFAULT_FUZZ_SHRINK}; 0: report the smallest failure found, unshrunk)")
    parser.add_argument("--burst", type=int, metavar="N",
                        help=f"send N concurrent tiny requests (max_tokens 1), up to 3 times until one gets a "
                             f"429, to judge its Retry-After (default {DEFAULT_BURST}, at most {MAX_BURST}); ignores "
                             "--concurrency and --delay. 0 turns it off: use it for rate-limited or paid providers")
    parser.add_argument("--max-response-bytes", type=int, metavar="N",
                        help=f"largest response body read (default {DEFAULT_MAX_RESPONSE_BYTES}, 64 MiB); a bigger "
                             "one is cut and counts as no answer (transport.answer.every-request)")
    parser.add_argument("--report-dir", type=Path, help="report folder (default reports/<target>/<UTC time>/)")
    parser.add_argument("--expect", type=Path, metavar="FILE", help="clause IDs known to fail, one per line (# comments)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help=f"run the suite N times against the same target (default 1, at most {MAX_REPEAT}; the "
                             "embedded mock is started once) and gate on one merged report: a clause whose verdict "
                             "differs between runs is FLAKY, and a flaky required clause fails the gate. SKIPPED "
                             "runs (nothing observable) do not make a clause flaky; an ERROR in any run stays ERROR. "
                             "Each run's own report is kept in run-1/, run-2/ ... of the report folder")
    parser.add_argument("--list", action="store_true", help="print the selected clauses and exit")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    parser.add_argument("--mock-model", default=DEFAULT_MOCK_MODEL,
                        help=f"model of the embedded mock when no BASE_URL is given (default {DEFAULT_MOCK_MODEL})")
    parser.add_argument("--mock-open", action="store_true",
                        help="serve the embedded mock without a token (default: a fresh token per run)")
    parser.add_argument("--mock-load-delay", type=float, default=DEFAULT_LOAD_DELAY,
                        help="seconds the embedded mock reports loading, so the loading clauses are observable")
    add_reference_arguments(parser)


def list_clauses(args: argparse.Namespace, console: Console) -> int:
    """Print ID, level, group and requirement of the selected clauses."""
    env_prefixes = os.environ.get("CHATCONFORM_CLAUSE", "")
    prefixes = tuple(args.clause) or tuple(p for p in env_prefixes.split(",") if p)
    profile = args.profile or os.environ.get("CHATCONFORM_PROFILE") or "default"
    try:
        clauses = select_clauses(profile, prefixes)
    except ConfigError as exc:
        console.print(f"chatconform check: {exc}", markup=False)
        return EXIT_SUITE_ERROR
    for c in clauses:
        print(f"{c.id}\t{c.level}\t{c.group}\t{c.requirement}")
    return 0


def _plugin_autoloaded() -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == PLUGIN_MODULE for ep in entry_points(group="pytest11"))


def pytest_args(options: dict[str, Any]) -> list[str]:
    """The pytest command line for a run with these suite options."""
    # The terminal reporter is replaced by our progress display and summary; an ini file's addopts
    # (e.g. -ra, an option of that reporter) must not leak into the run.
    args = ["--pyargs", "conformance.checks", "-p", "no:cacheprovider", "-p", "no:terminal", "-o", "addopts=",
            "--rootdir", str(Path(__file__).resolve().parent)]
    if not _plugin_autoloaded():
        args += ["-p", PLUGIN_MODULE, "-p", BASE_URL_PLUGIN]
    if options.get("base_url") is not None:
        args += ["--base-url", str(options["base_url"])]  # pytest-base-url's option
    for name, key in OPTION_FIELDS.items():
        value = options.get(key)
        if key == "clause_prefixes":
            for prefix in value or ():
                args += [f"--{PREFIX}-clause", prefix]
        elif key == "strict":
            if value:
                args.append(f"--{PREFIX}-strict")
        elif value is not None:
            args += [f"--{PREFIX}-{name}", str(value)]
    if options.get("target_label"):
        args += [f"--{PREFIX}-target-label", str(options["target_label"])]
    return args


def run_check(args: argparse.Namespace) -> int:
    """The `check` subcommand: returns 0 (pass), 1 (regression), 2 (suite-side error) or 3 (nothing ran)."""
    console = Console(stderr=True)
    reference = ReferenceSetup.from_args(args)  # any --reference* option selects the reference profile
    if args.list:
        return list_clauses(args, console)
    if not 1 <= args.repeat <= MAX_REPEAT:
        console.print(f"chatconform check: repeat: must be an integer from 1 to {MAX_REPEAT}, got {args.repeat}")
        return EXIT_SUITE_ERROR
    options: dict[str, Any] = {
        "base_url": args.base_url, "api_key": args.api_key, "model": args.model, "dialect": args.dialect,
        "profile": args.profile, "clause_prefixes": tuple(args.clause), "strict": args.strict,
        "timeout": args.timeout, "concurrency": args.concurrency, "delay": args.delay, "seed": args.seed,
        "fuzz_budget": args.fuzz_budget, "fuzz_shrink": args.fuzz_shrink, "burst": args.burst,
        "report_dir": args.report_dir, "expect_file": args.expect, "max_response_bytes": args.max_response_bytes,
    }
    embedded: EmbeddedMock | None = None
    placeholder = options["base_url"] or os.environ.get("CHATCONFORM_BASE_URL") or "http://127.0.0.1:1"
    try:
        config = load_config(dict(options, base_url=placeholder))  # validate every value before starting anything
        expected = read_expect(config.expect_file) if config.expect_file else frozenset()
    except (ConfigError, ExpectFileError) as exc:
        console.print(f"chatconform check: {exc}", markup=False)
        return EXIT_SUITE_ERROR
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if not (options["base_url"] or os.environ.get("CHATCONFORM_BASE_URL")):
            # The embedded mock requires a token (a fresh one per run unless --api-key gives one), so
            # the authorization clauses are exercised; --mock-open serves without one instead.
            key = None if args.mock_open else (config.api_key or secrets.token_urlsafe(16))
            options["api_key"] = key
            # A queue no deeper than the run needs (--concurrency), so that the burst provokes a 429.
            embedded = EmbeddedMock(model=args.mock_model, api_key=key, load_delay=args.mock_load_delay,
                                    max_queue=embedded_max_queue(config.concurrency))
            if config.dialect == "openai":  # the mock speaks either error dialect; match the one under test
                embedded.extra_args = ["--error-style", "openai"]
            console.print(f"starting the embedded mock provider (model {args.mock_model}) ...")
            options["base_url"] = embedded.start(
                on_step=lambda step: console.print(f"  model: {step}", markup=False, highlight=False))
            slug = f"mock-{args.mock_model}"
            options["target_label"] = f"the embedded mock provider (model {args.mock_model}, int4 weights)"
        else:
            slug = None
        reference.start(embedded is not None, console)
        base_url = options["base_url"] or config.base_url
        report_dir = config.report_dir or _report_dir(base_url, slug)
        options["report_dir"] = report_dir
        if args.repeat > 1:
            from conformance.repeat import run_repeated  # it drives run_once: imported here, not in a cycle

            return run_repeated(options, args.repeat, expected, config.strict, console, quiet=args.quiet)
        stop, code = run_once(options, console, args.quiet)
        if stop is None and embedded is not None and not args.mock_open:
            from conformance.phases import run_open_phase

            stop, _ = run_open_phase(options, embedded, config.dialect, console, args.quiet, run_once)
        return stop if stop is not None else _finish(report_dir, expected, config.strict, code, console)
    except EmbeddedStartError as exc:
        console.print(f"chatconform check: {exc}", markup=False)
        return EXIT_SUITE_ERROR
    except KeyboardInterrupt:
        console.print("chatconform check: interrupted")
        return EXIT_INTERRUPTED
    finally:
        reference.stop()
        if embedded is not None:
            embedded.stop()
        signal.signal(signal.SIGTERM, previous)


def run_once(options: dict[str, Any], console: Console, quiet: bool) -> tuple[int | None, int]:
    """One pytest session writing its report into options["report_dir"].

    Returns (the exit code to stop with, or None to go on reading the results; pytest's exit code).
    """
    mode = "off" if quiet else ("rich" if console.is_terminal else "lines")
    progress = ProgressPlugin(console, mode=mode)
    code = int(pytest.main(pytest_args(options), plugins=[progress]))
    if progress.interrupted:
        report = Path(options["report_dir"]) / "index.html"
        where = f"; partial report, marked interrupted: {report}" if report.exists() else ""
        console.print(f"chatconform check: interrupted{where}", markup=False)
        return EXIT_INTERRUPTED, code
    if progress.collect_errors:
        console.print(f"chatconform check: the checks could not be collected: {', '.join(progress.collect_errors)}")
        return EXIT_SUITE_ERROR, code
    return None, code


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _report_dir(base_url: str, slug: str | None) -> Path:
    if slug is None:
        return default_report_dir(base_url)
    return Path("reports") / slug / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _finish(report_dir: Path, expected: frozenset[str], strict: bool, pytest_code: int, console: Console) -> int:
    """Read results.json, print the summary, decide the exit code."""
    doc = read_run(report_dir, pytest_code, console)
    return EXIT_SUITE_ERROR if doc is None else conclude(doc, report_dir, expected, strict)


def read_run(report_dir: Path, pytest_code: int, console: Console) -> dict[str, Any] | None:
    """The results document of a finished run; None (after saying why) when the run is a suite-side error."""
    try:
        doc = load_results(report_dir / "results.json")
    except ResultsError:
        console.print(f"chatconform check: the run wrote no results (pytest exit code {pytest_code})")
        return None
    if doc.get("unreachable"):
        console.print(f"chatconform check: target unreachable: {doc['unreachable']}", markup=False)
        return None
    if pytest_code in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        console.print(f"chatconform check: pytest ended with {pytest.ExitCode(pytest_code).name}")
        return None
    if doc.get("unresponsive"):  # the target's fault, not the suite's: the gate decides (transport clause)
        console.print(f"chatconform check: {doc['unresponsive']}; the run stopped sending", markup=False)
    return doc


def conclude(doc: dict[str, Any], report_dir: Path, expected: frozenset[str], strict: bool,
             notes: tuple[str, ...] = ()) -> int:
    """Gate a results document: print the summary tables, `notes` and the gate line, write gate.json."""
    result = gate(doc, expected, strict)
    out = Console()
    out.print(f"{doc['summary']['checks']} checks over {len(doc['clauses'])} clauses in {doc['duration_s']:.1f} s "
              f"against {doc['target'].get('label') or doc['target']['base_url']}", markup=False)
    out.print(summary_table(doc, result))
    failing = failing_table(doc, result)
    if failing is not None:
        out.print(failing)
    if result.fixed:
        out.print(f"[green]fixed[/] (listed in --expect, now passing): {', '.join(result.fixed)}")
    if result.expected:
        out.print(f"expected failures: {', '.join(result.expected)}")
    if result.regressions:
        out.print(f"[bold red]regressions[/]: {', '.join(result.regressions)}")
    if result.orphaned:
        out.print(f"[bold red]not exercised, no failing root[/]: {', '.join(result.orphaned)}")
    for note in notes:
        out.print(note)
    out.print(f"gate: exit {result.code}: {result.reason}")
    out.print(f"report: {report_dir}/index.html")
    (report_dir / "gate.json").write_text(json.dumps(result.__dict__, indent=1) + "\n", encoding="utf-8")
    return result.code

