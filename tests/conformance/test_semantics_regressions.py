"""What the suite must not conclude: conditional clauses stay quiet when their condition was not seen,
a refused request is not an open target, and fuzzing a server that needs `model` still generates.

Each test runs `chatconform check` (in-process, see test_breakers.run_suite) against a breaking proxy
and asserts the verdict of a clause the breaker must NOT flag (the breakers' own clauses are held to
FAIL or IGNORED by test_breakers.py).
"""

from __future__ import annotations

from pathlib import Path

from tests.conformance.breaker_hooks import KEYED_TOKEN, messages_have, refuse_when
from tests.conformance.breaker_hooks import breaker as _b
from tests.conformance.breaker_requests import has_image
from tests.conformance.breakers import BREAKERS_BY_NAME
from tests.conformance.suite_verdicts import Use, verdict
from tests.conformance.test_breakers import run_suite

IMAGES_REFUSED = _b("images-refused", "vision.image-url.accepted-or-refused", "422 naming the image part",
                    request=refuse_when(messages_have(has_image), "image_url: images are not supported"))
MODEL_REQUIRED = _b("model-required-400", "fuzz.valid.accepted", "400 to a chat request without a model",
                    request=refuse_when(lambda b: not isinstance(b.get("model"), str), "model: required", status=400))
NOTHING_GENERATED = _b("every-chat-400", "request.messages.accepted", "400 to every chat request",
                       request=refuse_when(lambda b: True, "model: not served here", status=400))
FUZZ_ARGS = ("--fuzz-budget", "4")





def test_no_image_clauses_without_images(using: Use, tmp_path: Path) -> None:
    """A server that refuses images clearly: data-url and detail-accepted are SKIPPED, not WARN or FAIL."""
    run = run_suite(using(IMAGES_REFUSED).url, tmp_path, ("vision.image-url",))
    assert verdict(run, "vision.image-url.accepted-or-refused") == "UNSUPPORTED", run.describe(
        "vision.image-url.accepted-or-refused")
    for cid in ("vision.image-url.data-url", "vision.image-url.detail-accepted"):
        assert verdict(run, cid) == "SKIPPED", run.describe(cid)


def test_image_clauses_not_exercised_when_images_crash(using: Use, tmp_path: Path) -> None:
    """A server that answers images with 500: the conditional clauses are NOT_EXERCISED, rooted in accepted-or-refused."""
    run = run_suite(using(BREAKERS_BY_NAME["image-500"]).url, tmp_path, ("vision.image-url",))
    assert verdict(run, "vision.image-url.accepted-or-refused") == "FAIL"
    for cid in ("vision.image-url.data-url", "vision.image-url.detail-accepted"):
        assert verdict(run, cid) == "NOT_EXERCISED", run.describe(cid)
        assert run.clause(cid)["checks"][0].get("root") == "vision.image-url.accepted-or-refused"


def test_a_500_without_a_token_is_not_an_open_target(using: Use, tmp_path: Path) -> None:
    """A keyed server answering 500 to an unauthenticated request is not judged "open"."""
    proxy = using(BREAKERS_BY_NAME["unauthenticated-500"], "keyed_proxy")
    run = run_suite(proxy.url, tmp_path, ("headers.authorization",), ("--api-key", KEYED_TOKEN))
    assert verdict(run, "headers.authorization.required") == "FAIL"
    assert verdict(run, "headers.authorization.ignored-when-open") == "NOT_EXERCISED", run.describe(
        "headers.authorization.ignored-when-open")


def test_the_wrong_token_check_names_the_token_it_sent(using: Use, tmp_path: Path) -> None:
    """headers.authorization.invalid sends a token other than the key, and its message says which."""
    proxy = using(BREAKERS_BY_NAME["auth-not-enforced"], "keyed_proxy")
    run = run_suite(proxy.url, tmp_path, ("headers.authorization.invalid",), ("--api-key", KEYED_TOKEN))
    check = run.clause("headers.authorization.invalid")["checks"][0]
    assert check["verdict"] == "FAIL"
    assert "chatconform-wrong-token-0000" in check["message"] and KEYED_TOKEN not in check["message"]


def test_fuzzing_a_server_that_needs_a_model_reaches_generation(using: Use, tmp_path: Path) -> None:
    """Every fuzz body names the model: fuzz.valid.accepted passes with 2xx answers counted in its note."""
    run = run_suite(using(MODEL_REQUIRED).url, tmp_path, ("fuzz.valid.accepted",), FUZZ_ARGS)
    check = run.clause("fuzz.valid.accepted")["checks"][0]
    assert check["verdict"] == "PASS", run.describe("fuzz.valid.accepted")
    generated = int(check["message"].split(" answered 2xx")[0].rsplit(" ", 1)[-1])
    assert generated > 0, check["message"]


def test_fuzzing_without_any_generation_is_not_a_pass(using: Use, tmp_path: Path) -> None:
    """A server that answers every chat request 400 (with an envelope) leaves fuzz.valid.accepted NOT_EXERCISED."""
    run = run_suite(using(NOTHING_GENERATED).url, tmp_path, ("fuzz.valid.accepted",), FUZZ_ARGS)
    assert verdict(run, "fuzz.valid.accepted") == "NOT_EXERCISED", run.describe("fuzz.valid.accepted")
    assert run.clause("fuzz.valid.accepted")["checks"][0].get("root") == "request.messages.accepted"
