"""The conformance checks: one module per area of the spec, one test per clause (at least), in clause order.

Run them through `chatconform check` or `pytest --pyargs conformance.checks --base-url URL`.

Writing a check:

- decorate it with `@clause("<id>")` (conformance.registry); its docstring is the clause's requirement;
- use the fixtures of conftest.py: `target` (conformance.client.Target), `suite_config`, `schemas`,
  `validate(kind, body, exchanges)`, `dialect`, and the session samples `responses` / `streams`
  (conformance.samples.SampleSet of Sample: label, body, exchange, root) that several checks inspect:
  iterate `judged()`, which raises NotExercised for a lost sample once the accepted ones are judged;
- a rule that one exchange shows (a stream's chunks, an error envelope) is judged by its judge in
  conformance.judges, registered under the clause ID and shared with the fuzz phases: the check
  picks the exchanges and calls `enforce(clause_id, exchange, label)`; values the spec defines
  (finish reasons, ranges, limits) come from spec.limits, never copied;
- what a check must observe before judging its rule goes through `need(...)` (NotExercised naming
  the root clause that judges it), never through Fail; NotApplicable (SKIPPED) is only for what
  the target legitimately does not offer (no key configured, no images, a format it refuses clearly);
- pass by returning; raise `Fail` (target breaks the clause), `Unsupported` (clear 4xx refusal),
  `Ignored` (accepted, no effect) or `NotApplicable` (cannot be observed here), always with the
  exchanges as evidence. The plugin maps them, with the clause level and --strict, to verdicts:
  Fail on a SHOULD clause is WARN unless strict; Fail on a MAY clause whose every exchange was a
  clear 4xx refusal is UNSUPPORTED. A plain AssertionError counts as Fail; any other exception is
  a suite-side ERROR.
- keep max_tokens small (1-32) and send `x-use-cache: false` where two answers must be computed;
- send a check's independent requests through `target.many([thunk, ...])`: they go out up to
  `--concurrency` at a time (one after the other by default), results in order.
"""
