"""The pytest plugin: options, clause selection, verdict mapping, result collection and reports.

Loaded through the `pytest11` entry point (`conformance.plugin`), it stays inert in a session
that collects no `@clause` check, and it is a good neighbour in every other project's pytest run:
the target comes from pytest-base-url's `--base-url` (its `base_url` fixture and ini value too),
and every option of ours is namespaced `--chatconform-<name>`, the CLI's option of the same name
(`--chatconform-strict` is `check --strict`, `--chatconform-timeout` is `check --timeout`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conformance import observed
from conformance.client import NoAnswer, Target, TargetUnreachable
from conformance.config import PROFILES, ConfigError, SuiteConfig, load_config
from conformance.gate import ExpectFileError, read_expect
from conformance.registry import clause_of, lookup
from conformance.results import (
    INTERRUPTED_MESSAGE,
    NO_CHECK_MESSAGE,
    CheckResult,
    clause_results,
    results_document,
)
from conformance.transport import TRANSPORT_ANSWER
from conformance.verdicts import (
    NOTE_PROPERTY,
    CheckOutcome,
    Fail,
    NotExercised,
    Unsupported,
    Verdict,
    refused_clearly,
)
from spec.clauses import Level

STATE_KEY = pytest.StashKey["RunState"]()
PREFIX = "chatconform"
# pytest option name (after --chatconform-) -> SuiteConfig field; each also reads CHATCONFORM_<FIELD>
OPTION_FIELDS = {
    "api-key": "api_key", "model": "model", "dialect": "dialect", "profile": "profile", "clause": "clause_prefixes",
    "strict": "strict", "timeout": "timeout", "concurrency": "concurrency", "delay": "delay", "seed": "seed",
    "fuzz-budget": "fuzz_budget", "fuzz-shrink": "fuzz_shrink", "burst": "burst",
    "max-response-bytes": "max_response_bytes", "report-dir": "report_dir", "expect": "expect_file",
}
BASE_URL_DEST = "base_url"  # pytest-base-url's option (--base-url, or the base_url ini value)
TRANSPORT_PREFIX = "transport."  # the transport clauses judge what the whole run recorded: their checks run last
LOST_MARK = "_chatconform_no_answer"  # set on an exception explained by a request that got no answer


def _dest(name: str) -> str:
    return f"{PREFIX}_{name.replace('-', '_')}"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The suite's options, all `--chatconform-<name>` (each also read from CHATCONFORM_<NAME>)."""
    group = parser.getgroup("chatconform", "chatconform conformance suite (the target is --base-url)")

    def add(name: str, help: str, **kwargs: Any) -> None:
        group.addoption(f"--{PREFIX}-{name}", dest=_dest(name), help=help, **kwargs)

    add("api-key", "bearer token (env CHATCONFORM_API_KEY)")
    add("model", "model id sent in requests (default: the first id of GET /v1/models)")
    add("dialect", "response_format/error dialect", choices=("hf", "openai"))
    add("profile", "named set of clause groups", choices=sorted(PROFILES))
    add("clause", "clause ID prefix (repeatable)", action="append", default=[])
    add("strict", "treat SHOULD clauses as MUST", action="store_true", default=False)
    add("timeout", "per-request and stream stall timeout (s)", type=float)
    add("concurrency", "at most N requests in flight (default 1); a check's independent requests go N at a time",
        type=int)
    add("delay", "seconds between requests (a start waits this long after the last start or answer)", type=float)
    add("seed", "seed of every random choice (default 1234)", type=int)
    add("fuzz-budget", "fuzz examples per operation", type=int)
    add("fuzz-shrink", "requests a fuzz phase may add to shrink a failure (default 20)", type=int)
    add("burst", "concurrent tiny requests sent (up to 3 times) to provoke a 429 (default 16; 0: none)", type=int)
    add("max-response-bytes", "largest response body read (default 64 MiB); a bigger one is cut: no complete answer",
        type=int)
    add("report-dir", "where to write reports")
    add("expect", "file of clause IDs known to fail")
    add("target-label", "how the report names the target (default: its base URL)")


_CONFIGS: list[pytest.Config] = []  # the sessions this plugin is in (pytest_keyboard_interrupt gets no config)


def pytest_configure(config: pytest.Config) -> None:
    """Register the clause marker and the run state."""
    config.addinivalue_line("markers", "clause(id): the spec clause a conformance check verifies")
    _CONFIGS[:] = [config]
    config.stash[STATE_KEY] = RunState(config)


@dataclass
class RunState:
    """Everything one pytest session of the suite accumulates."""

    pytest_config: pytest.Config
    _config: SuiteConfig | None = None
    _target: Target | None = None
    active: bool = False
    checks: dict[str, list[CheckResult]] = field(default_factory=dict)
    expected: frozenset[str] = frozenset()
    started: float = field(default_factory=time.time)
    unreachable: str | None = None
    report_dir: Path | None = None
    document: dict[str, Any] | None = None
    lost_before: int = 0  # requests without an answer when the current check began
    interrupted: bool = False  # Ctrl-C or SIGTERM: the report says so, and which clauses never ran

    @property
    def config(self) -> SuiteConfig:
        """The SuiteConfig, built on first use from options, then environment, then defaults."""
        if self._config is None:
            opts = {field_name: self.pytest_config.getoption(_dest(name)) for name, field_name in OPTION_FIELDS.items()}
            opts["clause_prefixes"] = tuple(opts["clause_prefixes"] or ())
            opts["base_url"] = self.pytest_config.getoption(BASE_URL_DEST, default=None) or None  # ini unset: ""
            try:
                self._config = load_config(opts)
            except ConfigError as exc:
                raise pytest.UsageError(f"chatconform: {exc}") from None
        return self._config

    def target(self) -> Target:
        """The session's Target (created on first use)."""
        if self.unreachable:
            pytest.exit(f"chatconform: target unreachable: {self.unreachable}", returncode=2)
        if self._target is None:
            try:
                self._target = Target(self.config)
                self._target.observe_loading()
            except TargetUnreachable as exc:
                self.unreachable = str(exc)
                pytest.exit(f"chatconform: target unreachable: {exc}", returncode=2)
        return self._target


def session_state(config: pytest.Config) -> RunState:
    """The RunState of a pytest session."""
    return config.stash[STATE_KEY]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the checks whose clause the profile and --clause prefixes select; deselect the rest."""
    checks = [item for item in items if clause_of(item) is not None]
    if not checks:
        return
    state = session_state(config)
    state.active = True
    suite = state.config  # raises a usage error naming the problem (e.g. no base URL)
    if suite.expect_file is not None:
        try:
            state.expected = read_expect(suite.expect_file)
        except ExpectFileError as exc:
            raise pytest.UsageError(f"chatconform: {exc}") from None
    selected = {c.id for c in suite.selected_clauses()}
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        cid = clause_of(item)
        (drop if cid is not None and cid not in selected else keep).append(item)
    # Checks run in catalogue order within their module already; keep pytest's order, but the
    # transport checks judge what every other check's requests met: they run last.
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = [i for i in keep if not _transport(i)] + [i for i in keep if _transport(i)]


def _transport(item: pytest.Item) -> bool:
    return (clause_of(item) or "").startswith(TRANSPORT_PREFIX)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Note the requests lost so far; once the target is unresponsive, run no check that would send more."""
    if clause_of(item) is None:
        return
    state = session_state(item.config)
    target = state._target
    state.lost_before = len(target.transport.failures) if target is not None else 0
    observed.reset()
    _stop_if_unresponsive(item, target)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """The same stop after the fixtures ran: the first check's setup may have created the Target, and found it dead."""
    if clause_of(item) is not None:
        _stop_if_unresponsive(item, session_state(item.config)._target)


def _stop_if_unresponsive(item: pytest.Item, target: Target | None) -> None:
    """NoAnswer instead of the check, when the target is unresponsive (the transport checks still judge)."""
    if target is not None and target.unresponsive and not _transport(item):
        lost = target.transport.lost_exchanges()
        raise NoAnswer(f"not run: {target.unresponsive} (judged by {TRANSPORT_ANSWER})", tuple(lost[-1:]))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remember when the run started."""
    session_state(session.config).started = time.time()


def lost_answer(exc: BaseException, state: RunState) -> NoAnswer | None:
    """The NoAnswer that explains an unforeseen exception, if a request got no answer behind it.

    A check or fixture that did not expect a lost request may fail on what it lacks (a KeyError, a
    None): that is the transport clause's finding, never a suite-side error. It counts when the
    exception carries a NoAnswer in its chain, when requests were lost while its check ran (the
    setup of its fixtures included), or when pytest re-raises a cached fixture error already
    explained so (the mark set here).
    """
    found = getattr(exc, LOST_MARK, None)
    if isinstance(found, NoAnswer):
        return found
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, NoAnswer):
        cause = cause.__cause__ or cause.__context__
    target = state._target
    if cause is None and target is not None:
        lost = target.transport.lost_exchanges()
        if len(lost) > state.lost_before:
            why = f"{len(lost) - state.lost_before} request(s) of this check got no answer"
            cause = NoAnswer(f"not exercised: {why}; the check then failed on what it lacked: "
                             f"{type(exc).__name__}: {exc} (judged by {TRANSPORT_ANSWER})",
                             tuple(lost[state.lost_before:][-2:]))
    if cause is not None:
        try:
            setattr(exc, LOST_MARK, cause)
        except AttributeError:  # an exception type without a __dict__: nothing to remember it on
            pass
    return cause


def verdict_for(outcome: BaseException, level: Level, strict: bool) -> Verdict:
    """Map what a check raised to a verdict, given its clause's level and --strict."""
    if isinstance(outcome, Fail):
        if level is Level.SHOULD and not strict:
            return Verdict.WARN
        if level is Level.MAY:
            statuses = [ex.status for ex in outcome.exchanges]
            accepted = any(200 <= s < 300 for s in statuses)
            if statuses and not accepted and refused_clearly(outcome.exchanges[-1]):
                return Verdict.UNSUPPORTED  # an optional feature, refused clearly
        return Verdict.FAIL
    if isinstance(outcome, Unsupported) and not outcome.permitted:
        # A feature the clause requires was refused: clear, but still a failure of a required clause.
        if level is Level.MUST or (strict and level is Level.SHOULD):
            return Verdict.FAIL
    if isinstance(outcome, CheckOutcome):
        return outcome.verdict
    if isinstance(outcome, AssertionError):
        return Verdict.FAIL if level is Level.MUST or strict else Verdict.WARN
    return Verdict.ERROR


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Turn a check's outcome into a verdict, record it, and shape the pytest report to match."""
    report = yield
    cid = clause_of(item)
    if cid is None:
        return report
    state = session_state(item.config)
    clause = lookup(cid)
    strict = state.config.strict
    record: CheckResult | None = None
    if call.when == "call":
        if call.excinfo is None:
            note = "; ".join(str(v) for k, v in item.user_properties if k == NOTE_PROPERTY)
            seen = observed.last()
            record = CheckResult(item.nodeid, Verdict.PASS, message=note, duration_s=call.duration,
                                 evidence=[seen.evidence()] if seen is not None else [])
        else:
            exc = _explained(call.excinfo.value, clause.level, strict, state)
            verdict = verdict_for(exc, clause.level, strict)
            if isinstance(exc, TargetUnreachable):
                state.unreachable = str(exc)
                item.session.shouldstop = f"chatconform: target unreachable: {exc}"
            record = _record(item.nodeid, verdict, exc, call.duration)
            if isinstance(exc, pytest.skip.Exception):
                record = CheckResult(item.nodeid, Verdict.SKIPPED, message=str(exc.msg), duration_s=call.duration)
            _shape(report, record, cid, state.expected)
    elif call.excinfo is not None and report.outcome != "passed":
        exc = _explained(call.excinfo.value, clause.level, strict, state)
        if isinstance(exc, pytest.skip.Exception):
            record = CheckResult(item.nodeid, Verdict.SKIPPED, message=str(exc.msg))
        elif isinstance(exc, CheckOutcome):
            record = _record(item.nodeid, verdict_for(exc, clause.level, strict), exc, call.duration)
            # A fixture failed: whatever the verdict, pytest must not run the check's body without it.
            _shape(report, record, cid, state.expected, setup=call.when == "setup")
        else:
            record = _record(item.nodeid, Verdict.ERROR, exc, call.duration)
    if record is not None:
        report.user_properties.append(("chatconform_verdict", str(record.verdict)))
        state.checks.setdefault(cid, []).append(record)
    return report


def _explained(exc: BaseException, level: Level, strict: bool, state: RunState) -> BaseException:
    """A would-be suite ERROR that a lost request explains becomes that request's NoAnswer."""
    if isinstance(exc, TargetUnreachable) or verdict_for(exc, level, strict) is not Verdict.ERROR:
        return exc
    return lost_answer(exc, state) or exc


def _record(nodeid: str, verdict: Verdict, exc: BaseException, duration: float) -> CheckResult:
    if isinstance(exc, CheckOutcome):
        root = exc.root if isinstance(exc, NotExercised) else None
        return CheckResult(nodeid, verdict, exc.message, exc.expected, exc.actual, duration, exc.evidence(), root)
    text = f"{type(exc).__name__}: {exc}".strip()
    return CheckResult(nodeid, verdict, text[:2000], duration_s=duration)


def _shape(report: pytest.TestReport, record: CheckResult, cid: str, expected: frozenset[str],
           setup: bool = False) -> None:
    """PASS/WARN pass; UNSUPPORTED/IGNORED/SKIPPED skip with the verdict in the reason; FAIL/ERROR fail.

    setup: the outcome came from a fixture; a WARN there skips (pytest runs the body of a check
    whose setup passed, and its fixture value does not exist).
    """
    verdict = record.verdict
    summary = f"{verdict} {cid}: {record.message}"
    if record.expected is not None or record.actual is not None:
        summary += f"\n  expected: {record.expected!r}\n  actual:   {record.actual!r}"
    if verdict in (Verdict.FAIL, Verdict.ERROR):
        if cid in expected:
            report.outcome = "skipped"
            report.wasxfail = f"expected failure of {cid}: {record.message}"
            return
        report.outcome = "failed"
        report.longrepr = summary + "".join(f"\n  reproduce: {e.get('curl', '')}" for e in record.evidence[:2])
    elif verdict in (Verdict.PASS, Verdict.WARN) and not setup:
        report.outcome = "passed"
        report.longrepr = None
        if verdict is Verdict.WARN:
            report.sections.append(("chatconform", summary))
    else:
        report.outcome = "skipped"
        report.longrepr = (str(report.location[0]), (report.location[1] or 0) + 1, summary)


def default_report_dir(base_url: str, now: datetime | None = None) -> Path:
    """reports/<target-slug>/<UTC timestamp>/ under the working directory."""
    now = now or datetime.now(UTC)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", re.sub(r"^https?://", "", base_url)).strip("-").lower() or "target"
    return Path("reports") / slug / now.strftime("%Y%m%dT%H%M%SZ")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write results.json, junit.xml and index.html for an active run."""
    state = session_state(session.config)
    if not state.active or state._config is None:
        return
    from conformance.report.writer import write_reports
    from conformance.version import suite_version

    suite = state.config
    finished = time.time()
    target = state._target
    selected = suite.selected_clauses()
    clauses = clause_results(selected, state.checks, state.expected,
                             missing=INTERRUPTED_MESSAGE if state.interrupted else NO_CHECK_MESSAGE)
    label = session.config.getoption(_dest("target-label"), default=None)
    doc = results_document(
        suite_version=suite_version(),
        target={
            "label": label or suite.base_url,
            "base_url": suite.base_url,
            "models": list(target.models) if target else [],
            "model": target.model if target else suite.model,
            "system_fingerprint": target.system_fingerprint if target else None,
        },
        config=suite.to_json(), seed=suite.seed,
        started=_iso(state.started), finished=_iso(finished), duration_s=finished - state.started,
        clauses=clauses,
        extra=_run_notes(state, target),
    )
    state.document = doc
    out = suite.report_dir or default_report_dir(suite.base_url)
    state.report_dir = write_reports(doc, Path(out))
    if target is not None:
        target.close()


def _run_notes(state: RunState, target: Target | None) -> dict[str, Any] | None:
    """Top-level notes of results.json: why the run could not reach, or stopped sending to, the target."""
    notes: dict[str, Any] = {}
    if state.unreachable:
        notes["unreachable"] = state.unreachable
    if target is not None and target.unresponsive:
        notes["unresponsive"] = target.unresponsive
    if state.interrupted:
        notes["interrupted"] = True
    return notes or None


def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Ctrl-C (or SIGTERM through the CLI): the report is still written, marked interrupted."""
    if excinfo.type is KeyboardInterrupt:
        for config in _CONFIGS:
            session_state(config).interrupted = True


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print where the reports went."""
    state = session_state(config)
    if state.report_dir is not None:
        terminalreporter.write_line(f"chatconform: reports written to {state.report_dir}")
