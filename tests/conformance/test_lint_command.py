"""`chatconform lint DIR`: the clause judges run offline over recorded exchanges (cassettes).

Cassettes are written by hand (conformance.cassette.Cassette + save) for a clean answer, a clean
stream with usage, an error envelope and the model list; each lints clean, and a hand-broken copy
of one is flagged with the clause it breaks and exit code 1. Cassettes recorded from real answers
of the embedded tiny mock (over httpx) lint clean too, and lint runs on the light install.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conformance import judges
from conformance.cassette import Cassette, Frame, load, redact_headers, save, split_events
from conformance.cli import main
from conformance.lint import EXIT_BROKEN, EXIT_CLEAN, EXIT_USAGE
from reference_model.extras import MOCK_MODULES
from spec.clauses import load_catalogue
from tests.test_packaging import BLOCK

ROOT = Path(__file__).resolve().parents[2]
REQUEST = {"model": "m", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 2}
USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
ANSWER = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1767225600, "model": "m",
          "system_fingerprint": "fp-1",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "logprobs": None,
                       "finish_reason": "length"}],
          "usage": USAGE}
JSON_HEADERS = {"content-type": "application/json"}
HF_ERROR = {"error": "Input validation error: temperature must be in [0, 2]", "error_type": "validation"}
MODELS = {"object": "list", "data": [{"id": "m", "object": "model", "created": 1767225600, "owned_by": "chatconform"}]}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, *, usage: Any = None,
          choices: list[dict[str, Any]] | None = None, chunk_id: str = "chatcmpl-2") -> dict[str, Any]:
    """A chat.completion.chunk with one choice (or the given choices)."""
    found = choices if choices is not None else [{"index": 0, "delta": delta or {}, "logprobs": None,
                                                  "finish_reason": finish}]
    return {"id": chunk_id, "object": "chat.completion.chunk", "created": 1767225600, "model": "m",
            "system_fingerprint": "fp-1", "choices": found, "usage": usage}


def stream_chunks() -> list[dict[str, Any]]:
    """A clean stream of two content chunks, then the usage chunk (include_usage true)."""
    return [chunk({"role": "assistant", "content": "Hel"}), chunk({"content": "lo"}, "length"),
            chunk(choices=[], usage=USAGE)]


def frames_of(chunks: list[dict[str, Any]], done: bool = True) -> list[Frame]:
    """One SSE event per chunk, then data: [DONE] unless `done` is False."""
    events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + ([b"data: [DONE]\n\n"] if done else [])
    return [Frame(0.01 * (i + 1), event) for i, event in enumerate(events)]


def answer_cassette(body: Any = None) -> Cassette:
    """A 200 chat completion (ANSWER unless given) to a non-streaming request."""
    return Cassette("POST", "/v1/chat/completions", 200, request_headers=dict(JSON_HEADERS), request_json=REQUEST,
                    response_headers=dict(JSON_HEADERS), body=json.dumps(ANSWER if body is None else body).encode(),
                    elapsed_s=0.1, upstream="http://127.0.0.1:9")


def stream_cassette(chunks: list[dict[str, Any]] | None = None, done: bool = True) -> Cassette:
    """A 200 stream with include_usage true (the clean chunks unless given)."""
    request = dict(REQUEST, stream=True, stream_options={"include_usage": True})
    return Cassette("POST", "/v1/chat/completions", 200, request_headers=dict(JSON_HEADERS), request_json=request,
                    response_headers={"content-type": "text/event-stream"},
                    frames=frames_of(stream_chunks() if chunks is None else chunks, done), elapsed_s=0.05,
                    upstream="http://127.0.0.1:9")


def error_cassette(body: Any = None) -> Cassette:
    """A 422 error envelope (HF shape unless given) refusing temperature 5."""
    return Cassette("POST", "/v1/chat/completions", 422, request_json=dict(REQUEST, temperature=5),
                    response_headers=dict(JSON_HEADERS), body=json.dumps(HF_ERROR if body is None else body).encode(),
                    upstream="http://127.0.0.1:9")


def models_cassette(body: Any = None) -> Cassette:
    """A 200 GET /v1/models."""
    return Cassette("GET", "/v1/models", 200, response_headers=dict(JSON_HEADERS),
                    body=json.dumps(MODELS if body is None else body).encode(), upstream="http://127.0.0.1:9")


CLEAN: dict[str, Callable[[], Cassette]] = {"answer": answer_cassette, "stream": stream_cassette,
                                            "error": error_cassette, "models": models_cassette}


def lint(*argv: str | Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`chatconform lint ARGV...` in this process: exit code, stdout, stderr."""
    code = main(["lint", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def problem_clauses(result: Path) -> dict[str, set[str]]:
    """file name -> the clause IDs with problems, from a --json result."""
    doc = json.loads(result.read_text(encoding="utf-8"))
    return {Path(c["file"]).name: {p["clause"] for p in c["problems"]} for c in doc["cassettes"]}


# --- clean cassettes --------------------------------------------------------------------------------------


@pytest.fixture()
def clean_dir(tmp_path: Path) -> Path:
    """A folder with one clean cassette of each kind."""
    folder = tmp_path / "clean"
    for i, (name, build) in enumerate(CLEAN.items()):
        save(build(), folder / f"{i:04d}-{name}.json")
    return folder


def test_clean_cassettes_of_every_kind_lint_clean(clean_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    result = tmp_path / "lint.json"
    code, out, _ = lint(clean_dir, "--json", result, "--verbose", capsys=capsys)
    assert code == EXIT_CLEAN, out
    doc = json.loads(result.read_text(encoding="utf-8"))
    assert doc["format"] == "chatconform.lint/1" and doc["exit_code"] == EXIT_CLEAN
    kinds = {Path(c["file"]).name.split("-", 1)[1]: c["kind"] for c in doc["cassettes"]}
    assert kinds == {"answer.json": "answer", "stream.json": "stream", "error.json": "error", "models.json": "models"}
    judged = {c["kind"]: set(c["judged"]) for c in doc["cassettes"]}
    assert {"usage.total.sum", "response.object.value", "response.body.schema-valid"} <= judged["answer"]
    assert {"stream.terminator.done", "stream.usage.last-chunk", "usage.total.sum"} <= judged["stream"]
    assert {"errors.envelope.shape", "errors.envelope.hf-fields"} <= judged["error"]
    assert judged["models"] == {"routes.models.lists-served", "routes.models.entry"}
    assert all(not c["problems"] for c in doc["cassettes"])
    summary = doc["summary"]
    assert (summary["cassettes"], summary["fail"], summary["warn"], summary["unreadable"]) == (4, 0, 0, 0)
    assert "lint clean: 4 cassettes" in out


def test_every_judge_keeps_quiet_about_the_clean_answers_of_every_kind() -> None:
    """Run on all four clean exchanges, whatever kinds it names, no judge finds a problem or raises: each
    one reads only what applies to it."""
    exchanges = {name: build().to_exchange() for name, build in CLEAN.items()}
    found = {(cid, name): problems for cid in judges.JUDGES if cid != "stream.errors.before-stream"
             for name, ex in exchanges.items() if (problems := judges.problems(cid, ex))}
    assert found == {}


# --- hand-broken copies ----------------------------------------------------------------------------------


def _usage_total_wrong() -> Cassette:
    return answer_cassette(dict(ANSWER, usage=dict(USAGE, total_tokens=8)))


def _object_wrong() -> Cassette:
    return answer_cassette(dict(ANSWER, object="text_completion"))


def _no_finish_in_stream() -> Cassette:
    chunks = stream_chunks()
    chunks[1]["choices"][0]["finish_reason"] = None
    return stream_cassette(chunks)


def _no_done() -> Cassette:
    return stream_cassette(done=False)


def _chunk_id_changes() -> Cassette:
    chunks = stream_chunks()
    chunks[1]["id"] = "chatcmpl-other"
    return stream_cassette(chunks)


def _error_without_message() -> Cassette:
    return error_cassette({"error": {"type": "invalid_request_error", "param": "temperature", "code": None}})


def _error_empty_message() -> Cassette:
    return error_cassette({"error": "", "error_type": "validation"})


def _models_entry_without_owner() -> Cassette:
    models = copy.deepcopy(MODELS)
    del models["data"][0]["owned_by"]
    return models_cassette(models)


BROKEN: dict[str, tuple[Callable[[], Cassette], str]] = {
    "usage-total-wrong": (_usage_total_wrong, "usage.total.sum"),
    "object-wrong": (_object_wrong, "response.object.value"),
    "finish-missing-in-stream": (_no_finish_in_stream, "stream.finish-reason.exactly-once"),
    "no-done": (_no_done, "stream.terminator.done"),
    "chunk-id-changes": (_chunk_id_changes, "stream.chunk.id-consistent"),
    "error-without-message": (_error_without_message, "errors.envelope.openai-fields"),
    "error-empty-message": (_error_empty_message, "errors.envelope.hf-fields"),
    "model-entry-without-owner": (_models_entry_without_owner, "routes.models.entry"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_hand_broken_cassette_is_flagged_with_its_clause(name: str, clean_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    build, clause_id = BROKEN[name]
    broken = save(build(), clean_dir / f"9999-{name}.json")
    result = tmp_path / "lint.json"
    code, out, _ = lint(clean_dir, "--json", result, capsys=capsys)
    assert code == EXIT_BROKEN, out
    found = problem_clauses(result)
    assert clause_id in found[broken.name], found
    assert all(not clauses for file, clauses in found.items() if file != broken.name), found  # the clean ones stay so
    level = load_catalogue().get(clause_id).level
    assert f"{broken}: FAIL {clause_id} ({level}):" in out
    assert "lint FAILED" in out


def test_a_should_problem_warns_and_fails_only_under_strict(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    body = {k: v for k, v in ANSWER.items() if k != "system_fingerprint"}
    file = save(answer_cassette(body), tmp_path / "no-fingerprint.json")
    assert load_catalogue().get("response.system-fingerprint.present").level == "SHOULD"
    code, out, _ = lint(file, capsys=capsys)
    assert code == EXIT_CLEAN
    assert f"{file}: WARN response.system-fingerprint.present (SHOULD): response: system_fingerprint" in out
    assert "1 warnings" in out
    code, out, _ = lint(file, "--strict", capsys=capsys)
    assert code == EXIT_BROKEN
    assert f"{file}: FAIL response.system-fingerprint.present (SHOULD)" in out


def test_a_rule_about_the_request_is_judged_from_the_recorded_request(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """n 2 asks for two choices: the same one-choice answer breaks response.choices.count; a stop sequence
    in the content breaks params.stop.excluded-from-output."""
    two = answer_cassette()
    two.request_json = dict(REQUEST, n=2)
    stopped = answer_cassette()
    stopped.request_json = dict(REQUEST, stop=["there"])
    result = tmp_path / "lint.json"
    code, _, _ = lint(save(two, tmp_path / "d" / "n2.json").parent, "--json", result, capsys=capsys)
    assert code == EXIT_BROKEN
    assert problem_clauses(result)["n2.json"] == {"response.choices.count"}
    code, _, _ = lint(save(stopped, tmp_path / "s.json"), "--json", result, capsys=capsys)
    assert code == EXIT_BROKEN
    assert problem_clauses(result)["s.json"] == {"params.stop.excluded-from-output"}


def test_answers_outside_the_api_or_its_kinds_are_read_but_not_judged(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A 404 HTML page for /favicon.ico, GET /health and a redirect: no judge reads them."""
    folder = tmp_path / "other"
    save(Cassette("GET", "/favicon.ico", 404, response_headers={"content-type": "text/html"}, body=b"<h1>no</h1>"),
         folder / "0001.json")
    save(Cassette("GET", "/health", 200, body=b""), folder / "0002.json")
    save(Cassette("POST", "/v1/chat/completions", 307, response_headers={"location": "/v2"}), folder / "0003.json")
    result = tmp_path / "lint.json"
    code, out, _ = lint(folder, "--json", result, capsys=capsys)
    assert code == EXIT_CLEAN, out
    doc = json.loads(result.read_text(encoding="utf-8"))
    assert [(c["kind"], c["judged"]) for c in doc["cassettes"]] == [(None, [])] * 3
    assert doc["summary"]["judged"] == 0


# --- unreadable cassettes and usage errors -----------------------------------------------------------------


def test_a_malformed_cassette_exits_2_naming_the_file_and_field(clean_dir: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads((clean_dir / "0000-answer.json").read_text(encoding="utf-8"))
    doc["response"]["status"] = "two hundred"
    bad = clean_dir / "0005-bad-status.json"
    bad.write_text(json.dumps(doc), encoding="utf-8")
    (clean_dir / "0006-not-json.json").write_text("{not json", encoding="utf-8")
    code, out, err = lint(clean_dir, capsys=capsys)
    assert code == EXIT_USAGE
    assert f"{bad}: response.status must be an HTTP status" in err
    assert f"{clean_dir / '0006-not-json.json'}: not JSON" in err
    assert "4 cassettes" in out and "2 unreadable" in out  # the readable ones are still judged


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = lint(tmp_path / "missing", capsys=capsys)
    assert code == EXIT_USAGE and "missing: no such file or folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = lint(tmp_path / "empty", capsys=capsys)
    assert code == EXIT_USAGE and "no cassette files" in err
    code, _, err = lint(capsys=capsys)
    assert code == EXIT_USAGE and "give a cassette folder" in err


def test_list_names_the_single_exchange_clauses_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = lint("--list", capsys=capsys)
    assert code == EXIT_CLEAN
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in out.splitlines()}
    assert rows["usage.total.sum"] == ["MUST", "answer,stream"]
    assert rows["response.system-fingerprint.present"] == ["SHOULD", "answer,stream"]
    assert rows["errors.envelope.shape"] == ["MUST", "error"]
    assert rows["routes.models.entry"] == ["MUST", "models"]
    # several exchanges or the live target: judged by `chatconform check` only
    for clause_id in ("response.id.unique", "stream.liveness.no-stall", "stream.errors.before-stream",
                      "params.seed.reproducible", "stream.content.parity"):
        assert clause_id not in rows
    assert set(rows) == {cid for cid, kinds in judges.SCOPES.items() if kinds}


# --- cassettes of real answers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_server() -> Iterator[str]:
    """The embedded mock with the tiny model, on a free local port."""
    from mock_server.config import load_config
    from mock_server.server import ServerThread

    with ServerThread(load_config({"model": "tiny", "port": 0, "host": "127.0.0.1"}, env={})) as server:
        server.wait_ready(120)
        yield server.base_url


def record(client: httpx.Client, base_url: str, method: str, path: str, body: Any = None) -> Cassette:
    """Send one request and keep the exchange as a cassette: a stream's events as frames, each with its time."""
    request = client.build_request(method, base_url + path, json=body)
    started = time.monotonic()
    response = client.send(request, stream=True)
    try:
        data = b"".join(response.iter_bytes())
    finally:
        response.close()
    elapsed = time.monotonic() - started
    recorded = Cassette(method, path, response.status_code, request_headers=redact_headers(request.headers.items()),
                        request_json=body, response_headers=redact_headers(response.headers.items()),
                        elapsed_s=elapsed, upstream=base_url)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        recorded.frames = [Frame(elapsed, event) for event in split_events(data)]
    else:
        recorded.body = data
    return recorded


def test_cassettes_of_the_tiny_mock_lint_clean(tiny_server: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """An answer, a stream with usage, an n 2 answer with logprobs, a refused request and the model list."""
    chat = "/v1/chat/completions"
    plan: list[tuple[str, str, Any]] = [
        ("GET", "/v1/models", None),
        ("POST", chat, {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}),
        ("POST", chat, {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "stream": True,
                        "stream_options": {"include_usage": True}}),
        ("POST", chat, {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 4, "n": 2,
                        "logprobs": True, "top_logprobs": 2, "temperature": 0}),
        ("POST", chat, {"messages": [{"role": "user", "content": "Say hello."}], "temperature": 5}),
    ]
    folder = tmp_path / "recorded"
    with httpx.Client(timeout=60) as client:
        for i, (method, path, body) in enumerate(plan):
            save(record(client, tiny_server, method, path, body), folder / f"{i:04d}.json")
    assert load(folder / "0002.json").streamed and load(folder / "0004.json").status == 422
    result = tmp_path / "lint.json"
    code, out, _ = lint(folder, "--json", result, "--strict", capsys=capsys)
    assert code == EXIT_CLEAN, out
    doc = json.loads(result.read_text(encoding="utf-8"))
    assert [c["kind"] for c in doc["cassettes"]] == ["models", "answer", "stream", "answer", "error"]
    judged = set(doc["cassettes"][3]["judged"])
    assert {"logprobs.top.count", "logprobs.tokens.concatenate", "response.choices.count"} <= judged


# --- the light install ---------------------------------------------------------------------------------------



def test_lint_runs_without_the_mock_extra(clean_dir: Path, tmp_path: Path) -> None:
    """No aiohttp, numpy or model package on the lint path: it runs where they cannot be imported."""
    save(_usage_total_wrong(), clean_dir / "9999-broken.json")
    script = BLOCK.format(names=sorted(MOCK_MODULES)) + textwrap.dedent(f"""
        from conformance.cli import main
        code = main(["lint", {str(clean_dir)!r}])
        assert not [m for m in sys.modules if m.split(".")[0] in {sorted(MOCK_MODULES)!r}], "a mock module loaded"
        sys.exit(code)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         check=False)
    assert run.returncode == EXIT_BROKEN, run.stdout + run.stderr
    assert "FAIL usage.total.sum (MUST)" in run.stdout
