"""The oracle: the reference model's answers, from a live mock over HTTP or from a reference file.

The suite never imports the mock or the model. A live oracle is any chatconform mock reached over
HTTP (`chatconform serve`, or the one `check --reference` starts as a subprocess); its `GET /info`
says which model and which weights it runs. A reference file (`chatconform reference export DIR`)
holds the same answers, filed under each request body without `model` (corpus.request_key), so a
provider can compare where our model cannot run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from conformance.client import Exchange, NoAnswer, Target
from conformance.config import SuiteConfig
from conformance.reference.answers import Answer
from conformance.reference.corpus import CORPUS_VERSION, request_key

FILE_FORMAT = 1
MANIFEST = "manifest.json"
ANSWERS = "answers.jsonl"
CORPUS_FILE = "corpus.jsonl"
WAIT = {"x-wait-for-model": "true"}  # a mock still loading holds the request instead of answering 503


class OracleError(RuntimeError):
    """The oracle could not answer (a suite-side error: the run cannot compare anything)."""


@dataclass(frozen=True)
class OracleReply:
    """The oracle's answer to one body: 200 with an Answer, or a refusal (e.g. beyond the tiny model's context)."""

    body: dict[str, Any]
    status: int
    answer: Answer | None
    exchange: Exchange | None = None  # live oracles only
    error: str | None = None  # the refusal's body, shortened

    @property
    def ok(self) -> bool:
        """Answered 200 with a usable first choice."""
        return self.status == 200 and self.answer is not None


class Oracle(Protocol):
    """Where the reference answers come from."""

    @property
    def info(self) -> dict[str, Any]:
        """Model, weights, fingerprint and source of the answers."""
        ...

    def ask(self, body: dict[str, Any]) -> OracleReply:
        """The reference answer to a body (without `model`)."""
        ...


class LiveOracle:
    """A chatconform mock reached over HTTP, asked through the suite's own client (exchanges kept as evidence)."""

    def __init__(self, base_url: str, config: SuiteConfig, api_key: str | None = None) -> None:
        self.base_url = base_url
        self.client = Target(replace(config, base_url=base_url, api_key=api_key, model=None, concurrency=1,
                                     delay=0.0, report_dir=None, expect_file=None))
        self._cache: dict[str, OracleReply] = {}
        self._info: dict[str, Any] | None = None

    @property
    def info(self) -> dict[str, Any]:
        """From the mock's GET /info: model, weights, model_sha256, system_fingerprint, context length."""
        if self._info is None:
            try:
                ex = self.client.get("/info")
            except NoAnswer as exc:
                raise OracleError(f"the reference oracle at {self.base_url} did not answer GET /info: {exc}") from exc
            data = ex.json if ex.status == 200 and isinstance(ex.json, dict) else {}
            self._info = {"source": self.base_url, "model": data.get("model", self.client.model),
                          "weights": data.get("weights", "unknown"), "model_sha256": data.get("model_sha256"),
                          "system_fingerprint": data.get("system_fingerprint"),
                          "context_length": (data.get("limits") or {}).get("context_length")}
        return self._info

    def ask(self, body: dict[str, Any]) -> OracleReply:
        """POST the body (with the oracle's model id); cached per body."""
        key = request_key(body)
        if key not in self._cache:
            self._cache[key] = self._send(body)
        return self._cache[key]

    def _send(self, body: dict[str, Any]) -> OracleReply:
        sent = dict(body, model=self.client.model) if self.client.model else dict(body)
        try:
            ex = self.client.chat(sent, headers=WAIT)
        except NoAnswer as exc:
            raise OracleError(f"the reference oracle at {self.base_url} did not answer: {exc}") from exc
        if ex.status == 200:
            answer = Answer.parse(ex.json)
            if answer is None:
                raise OracleError(f"the reference oracle answered 200 without a usable choice: {ex.body_text[:300]}")
            return OracleReply(body, 200, answer, ex)
        if 400 <= ex.status < 500 and ex.status not in (401, 403, 404):
            return OracleReply(body, ex.status, None, ex, ex.body_text[:300])
        raise OracleError(f"the reference oracle at {self.base_url} answered {ex.status}: {ex.body_text[:300]}")

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class FileOracle:
    """Answers read from a reference file written by `chatconform reference export`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        manifest_path = directory / MANIFEST
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OracleError(f"reference file: cannot read {manifest_path}: {exc}") from exc
        if self.manifest.get("format") != FILE_FORMAT or self.manifest.get("corpus_version") != CORPUS_VERSION:
            raise OracleError(
                f"reference file {directory}: format {self.manifest.get('format')} corpus "
                f"{self.manifest.get('corpus_version')}, this suite reads format {FILE_FORMAT} corpus "
                f"{CORPUS_VERSION}: export it again with this suite version")
        self.replies: dict[str, OracleReply] = {}
        for number, line in enumerate((directory / ANSWERS).read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                self._add(line, number)

    def _add(self, line: str, number: int) -> None:
        try:
            record = json.loads(line)
            answer = None if record["answer"] is None else Answer.from_json(record["answer"])
            self.replies[request_key(record["body"])] = OracleReply(record["body"], int(record["status"]), answer,
                                                                    error=record.get("error"))
        except (KeyError, TypeError, ValueError) as exc:
            raise OracleError(f"reference file {self.directory / ANSWERS}, line {number}: {exc}") from exc

    @property
    def info(self) -> dict[str, Any]:
        """The oracle description the export recorded, with the file as source."""
        return {**self.manifest.get("oracle", {}), "source": str(self.directory)}

    def ask(self, body: dict[str, Any]) -> OracleReply:
        """The filed answer (OracleError when the file has none: it was made by another suite version)."""
        try:
            return self.replies[request_key(body)]
        except KeyError:
            raise OracleError(f"the reference file {self.directory} has no answer for {request_key(body)[:200]}: "
                              f"export it again with this suite version") from None

    def close(self) -> None:
        """Nothing to release."""


def open_oracle(config: SuiteConfig) -> LiveOracle | FileOracle:
    """The oracle the configuration names: a reference file, else a live mock (OracleError when neither is set)."""
    if config.reference_file is not None:
        return FileOracle(config.reference_file)
    if config.reference_url:
        return LiveOracle(config.reference_url.rstrip("/"), config)
    raise OracleError("no reference oracle: run `chatconform check URL --reference` (it starts one), or give "
                      "--reference-url / --reference-file (CHATCONFORM_REFERENCE_URL / CHATCONFORM_REFERENCE_FILE)")
