"""The command line of reference runs: `check --reference*` options and `chatconform reference export DIR`.

`check URL --reference` starts the oracle (the embedded mock, `python -m mock_server`, a subprocess
never imported) unless `--reference-url` names a running one or `--reference-file` a reference
file, and selects the `reference` profile. The choices reach the pytest session as
CHATCONFORM_REFERENCE_URL / CHATCONFORM_REFERENCE_FILE / CHATCONFORM_TARGET_WEIGHTS (SuiteConfig
fields), set for the run and restored after it.

`reference export DIR` asks an oracle every request of a reference run (conformance.reference.plan)
and writes manifest.json, corpus.jsonl and answers.jsonl (greedy tokens, logprobs, margins, usage),
for `check URL --reference-file DIR` where the model cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from conformance.config import ConfigError, load_config
from conformance.embedded import DEFAULT_MOCK_MODEL, EmbeddedMock, EmbeddedStartError
from conformance.reference.corpus import CORPUS, CORPUS_VERSION
from conformance.reference.oracle import (
    ANSWERS,
    CORPUS_FILE,
    FILE_FORMAT,
    MANIFEST,
    LiveOracle,
    OracleError,
)
from conformance.reference.plan import build_plan
from conformance.reference.tolerance import (
    DEFAULT_TARGET_WEIGHTS,
    EMBEDDED_TARGET_WEIGHTS,
    TARGET_WEIGHTS,
    TOLERANCES,
)

ORACLE_WEIGHTS = ("int4", "fp32")
# The oracle answers one request at a time: idle ONNX Runtime threads sleep instead of spinning, so it leaves
# the cores to the target when both share a machine.
ORACLE_ARGS = ("--no-spin",)
ENV = {"url": "CHATCONFORM_REFERENCE_URL", "file": "CHATCONFORM_REFERENCE_FILE",
       "target_weights": "CHATCONFORM_TARGET_WEIGHTS"}


def add_reference_arguments(parser: argparse.ArgumentParser) -> None:
    """The reference options of `chatconform check`."""
    group = parser.add_argument_group("reference runs (a target serving SmolLM2-135M-Instruct)")
    group.add_argument("--reference", action="store_true",
                       help="compare the target with the reference model, request for request (profile reference); "
                            "starts the oracle, the embedded mock, unless --reference-url or --reference-file is given")
    group.add_argument("--reference-url", metavar="URL", help="a running chatconform mock to use as the oracle")
    group.add_argument("--reference-file", type=Path, metavar="DIR",
                       help="the oracle's answers from `chatconform reference export DIR` instead of a live oracle")
    group.add_argument("--reference-weights", choices=ORACLE_WEIGHTS, default="int4",
                       help="graph of the started oracle: int4 (exact Q4_1 weights, default) or fp32")
    group.add_argument("--target-weights", choices=TARGET_WEIGHTS,
                       help=f"what the target runs, which sets the tolerances (default {DEFAULT_TARGET_WEIGHTS}; "
                            f"{EMBEDDED_TARGET_WEIGHTS} for the embedded mock): " + "; ".join(
                                f"{t.name}: {t.summary}" for t in TOLERANCES.values()))


@dataclass
class ReferenceSetup:
    """The reference part of one `check` run: the oracle it starts and the environment it sets."""

    args: argparse.Namespace
    wanted: bool = False
    oracle: EmbeddedMock | None = None
    saved: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReferenceSetup:
        """Read the options; any reference option selects the reference profile unless --profile is given."""
        wanted = bool(getattr(args, "reference", False) or getattr(args, "reference_url", None)
                      or getattr(args, "reference_file", None))
        if wanted and not args.profile:
            args.profile = "reference"
        return cls(args, wanted or args.profile == "reference")

    def start(self, embedded_target: bool, console: Console) -> None:
        """Start the oracle when needed and set the run's environment."""
        if not self.wanted:
            return
        args = self.args
        url, file = args.reference_url, args.reference_file
        if not url and file is None:
            model = getattr(args, "mock_model", DEFAULT_MOCK_MODEL)
            self.oracle = EmbeddedMock(model=model, api_key=None, load_delay=0.0,
                                       extra_args=["--weights", args.reference_weights, *ORACLE_ARGS])
            console.print(f"starting the reference oracle (model {model}, {args.reference_weights}) ...")
            url = self.oracle.start(on_step=lambda step: console.print(f"  oracle model: {step}", markup=False,
                                                                         highlight=False))
        weights = args.target_weights or (EMBEDDED_TARGET_WEIGHTS if embedded_target else DEFAULT_TARGET_WEIGHTS)
        self._set({"url": url, "file": str(file) if file is not None else None, "target_weights": weights})

    def _set(self, values: dict[str, str | None]) -> None:
        for name, value in values.items():
            var = ENV[name]
            self.saved.setdefault(var, os.environ.get(var))
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value

    def stop(self) -> None:
        """Restore the environment and stop a started oracle."""
        for var, value in self.saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        self.saved.clear()
        if self.oracle is not None:
            self.oracle.stop()
            self.oracle = None


def register_reference(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `chatconform reference export DIR`."""
    parser = subparsers.add_parser(
        "reference", help="reference runs: export the oracle's answers to a file",
        description="Reference runs compare a server that serves SmolLM2-135M-Instruct with the reference model "
                    "(chatconform check URL --reference). `export` writes the oracle's answers to a file, so the "
                    "comparison can run where the model cannot: chatconform check URL --reference-file DIR.")
    kinds = parser.add_subparsers(dest="reference_kind", metavar="ACTION", required=True)
    export = kinds.add_parser(
        "export", help="write the reference corpus and the oracle's answers (JSON lines) into DIR",
        description="Ask the oracle (the embedded mock, or --reference-url) every request of a reference run and "
                    "write DIR/manifest.json, DIR/corpus.jsonl and DIR/answers.jsonl (greedy tokens, logprobs, "
                    "margins, usage). Then: chatconform check URL --reference-file DIR.")
    export.add_argument("directory", type=Path, metavar="DIR")
    export.add_argument("--reference-url", metavar="URL", help="a running chatconform mock (default: start one)")
    export.add_argument("--weights", choices=ORACLE_WEIGHTS, default="int4", help="graph of the started oracle")
    export.add_argument("--mock-model", default=DEFAULT_MOCK_MODEL, help="model of the started oracle")
    export.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds")
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """The `reference export` subcommand: 0 written, 2 the oracle failed."""
    console = Console(stderr=True)
    started: EmbeddedMock | None = None
    try:
        url = args.reference_url
        if not url:
            started = EmbeddedMock(model=args.mock_model, api_key=None, load_delay=0.0,
                                   extra_args=["--weights", args.weights, *ORACLE_ARGS])
            console.print(f"starting the reference oracle (model {args.mock_model}, {args.weights}) ...")
            url = started.start()
        config = load_config({"base_url": url, "timeout": args.timeout}, env={})
        oracle = LiveOracle(url.rstrip("/"), config)
        try:
            manifest = export(args.directory, oracle)
        finally:
            oracle.close()
    except (EmbeddedStartError, OracleError, ConfigError) as exc:
        console.print(f"chatconform reference export: {exc}", markup=False)
        return 2
    finally:
        if started is not None:
            started.stop()
    counts = manifest["counts"]
    print(f"reference answers of {manifest['oracle'].get('model')} ({manifest['oracle'].get('weights')}) written to "
          f"{args.directory}: {counts['answers']} answers ({counts['refused']} refused), {counts['sampling']} "
          f"sampling settings")
    print(f"compare a server with: chatconform check URL --reference-file {args.directory} --target-weights "
          f"{DEFAULT_TARGET_WEIGHTS}")
    return 0


def export(directory: Path, oracle: LiveOracle) -> dict[str, Any]:
    """Run the plan against the oracle and write the reference file; the manifest written."""
    from conformance.version import suite_version

    plan = build_plan(oracle)
    directory.mkdir(parents=True, exist_ok=True)
    cases = list(plan.cases())
    with (directory / ANSWERS).open("w", encoding="utf-8") as out:
        for case in cases:
            reply = case.reply
            out.write(json.dumps({"case": case.name, "kind": case.kind, "conversation": case.conversation.id,
                                  "body": case.body, "status": reply.status, "error": reply.error,
                                  "answer": reply.answer.to_json() if reply.answer else None},
                                 ensure_ascii=False) + "\n")
    with (directory / CORPUS_FILE).open("w", encoding="utf-8") as out:
        for conversation in CORPUS:
            out.write(json.dumps({"id": conversation.id, "purpose": conversation.purpose,
                                  "messages": conversation.as_messages()}, ensure_ascii=False) + "\n")
    manifest = {
        "format": FILE_FORMAT, "corpus_version": CORPUS_VERSION, "suite_version": suite_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "oracle": {k: v for k, v in oracle.info.items() if k != "source"},
        "counts": {"answers": len(cases), "refused": sum(1 for c in cases if not c.reply.ok),
                   "sampling": len(plan.sampling)},
        "sampling": [{"conversation": p.conversation.id, "temperature": p.temperature, "top_p": p.top_p,
                      "detection": round(p.detection, 4)} for p in plan.sampling],
        "tolerances": {t.name: {"margin": t.margin if t.judged else None, "mean_chosen": t.mean_chosen if t.judged
                                else None, "summary": t.summary, "why_not": t.why_not or None}
                       for t in TOLERANCES.values()},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest

