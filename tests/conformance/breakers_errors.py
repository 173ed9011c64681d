"""Breakers of the error rules: invalid requests must be refused with a 4xx and a clear envelope.

See breakers.py for what a breaker is; the transforms live in breaker_hooks.py, breaker_requests.py,
breaker_stream.py and breaker_transforms.py.
"""

from __future__ import annotations

from dataclasses import replace

from tests.conformance.breaker_hooks import breaker as _b
from tests.conformance.breaker_hooks import (
    hf_error,
    on_error,
    rewrite_request,
)
from tests.conformance.breaker_requests import (
    clamp,
    coerce_strings,
    drop_bad_parts,
    drop_bad_tools,
    format_value_invalid,
    include_usage_truthy,
    number,
    pop_when,
    repair_messages,
    set_when,
)
from tests.conformance.breaker_transforms import (
    canned_completion,
    detail_envelope,
    hf_message,
    not_json,
    openai_envelope_untyped,
    restatus,
)
from tests.conformance.breaking_proxy import Breaker

ERRORS: tuple[Breaker, ...] = (
    # errors
    _b("bad-input-500", "errors.client-input.never-5xx", "invalid requests answered 500",
       reply=restatus((400, 413, 415, 422), 500)),
    _b("bad-input-200", "errors.messages.empty errors.messages.missing errors.message.role-invalid",
       "invalid requests answered 200 with a canned completion", reply=on_error(canned_completion)),
    _b("detail-envelope", "errors.envelope.shape", "errors as {detail: ...}", reply=on_error(detail_envelope)),
    _b("empty-error-message", "errors.envelope.hf-fields", "error message empty",
       reply=on_error(hf_message(lambda m: ""))),
    _b("vague-error", "errors.envelope.names-problem", "every error says only 'invalid request'",
       reply=on_error(hf_message(lambda m: "invalid request"))),
    _b("error-text-plain", "errors.envelope.content-type", "errors sent as text/plain",
       reply=on_error(lambda c, r: replace(r, headers={**r.headers, "content-type": "text/plain"}))),
    _b("validation-409", "errors.status.validation", "validation errors as 409", reply=restatus((422,), 409)),
    _b("malformed-422", "errors.json.malformed", "malformed JSON answered 422",
       reply=restatus((400,), 422, when=not_json)),
    _b("not-object-500", "errors.body.not-object", "a JSON body that is not an object answered 500",
       request=lambda c: hf_error(500, "internal error", "internal")
       if c.is_chat and c.json() is not None and not isinstance(c.json(), dict) else c),
    _b("content-type-400", "errors.content-type.unsupported", "a wrong content type answered 400",
       reply=restatus((415,), 400)),
    _b("temperature-clamped", "errors.temperature.range", "temperature outside [0, 2] clamped",
       request=rewrite_request(clamp("temperature", 0, 2))),
    _b("top-p-clamped", "errors.top-p.range", "top_p outside (0, 1] clamped",
       request=rewrite_request(lambda b: set_when("top_p", lambda x: 1.0 if x["top_p"] > 1 else 0.5,
                                              lambda x: (v := number(x, "top_p")) is not None and not 0 < v <= 1)(b))),
    _b("max-tokens-abs", "errors.max-tokens.negative", "a negative max_tokens made positive",
       request=rewrite_request(set_when("max_tokens", lambda b: max(1, min(-b["max_tokens"], 16)),
                                    lambda b: (number(b, "max_tokens") or 0) < 0))),
    _b("max-tokens-capped", "errors.max-tokens.beyond-context", "a max_tokens beyond the context capped to 16",
       request=rewrite_request(set_when("max_tokens", lambda b: 16, lambda b: (number(b, "max_tokens") or 0) > 4096))),
    _b("penalties-clamped", "errors.frequency-penalty.range errors.presence-penalty.range",
       "penalties outside [-2, 2] clamped",
       request=rewrite_request(lambda b: clamp("presence_penalty", -2, 2)(clamp("frequency_penalty", -2, 2)(b)))),
    _b("top-logprobs-clamped", "errors.top-logprobs.range", "top_logprobs outside [0, 20] clamped",
       request=rewrite_request(clamp("top_logprobs", 0, 20))),
    _b("top-logprobs-implies-logprobs", "errors.top-logprobs.without-logprobs",
       "top_logprobs without logprobs: logprobs turned on",
       request=rewrite_request(set_when("logprobs", lambda b: True,
                                    lambda b: b.get("top_logprobs") is not None and b.get("logprobs") is not True))),
    _b("stop-truncated", "errors.stop.too-many", "more than four stop sequences: the first four kept",
       request=rewrite_request(set_when("stop", lambda b: b["stop"][:4],
                                    lambda b: isinstance(b.get("stop"), list) and len(b["stop"]) > 4))),
    _b("n-forced-one", "errors.n.invalid", "an invalid n replaced by 1",
       request=rewrite_request(set_when("n", lambda b: 1, lambda b: b.get("n") is not None
                                    and not (isinstance(b["n"], int) and not isinstance(b["n"], bool) and b["n"] >= 1)))),
    _b("seed-abs", "errors.seed.negative", "a negative seed made positive",
       request=rewrite_request(set_when("seed", lambda b: -b["seed"], lambda b: (number(b, "seed") or 0) < 0))),
    _b("logit-bias-clamped", "errors.logit-bias.range", "logit_bias values clamped to [-100, 100]",
       request=rewrite_request(set_when("logit_bias", lambda b: {k: min(max(v, -100), 100) if isinstance(v, (int, float)) else v
                                                             for k, v in b["logit_bias"].items()},
                                    lambda b: isinstance(b.get("logit_bias"), dict)))),
    _b("tool-choice-unknown-auto", "errors.tool-choice.unknown-function errors.tool-choice.invalid",
       "an unknown tool_choice (string or function) replaced by auto",
       request=rewrite_request(set_when("tool_choice", lambda b: "auto" if b.get("tools") else None,
                                    lambda b: (isinstance(b.get("tool_choice"), str)
                                               and b["tool_choice"] not in ("auto", "none", "required"))
                                    or (isinstance(b.get("tool_choice"), dict) and (b["tool_choice"].get("function") or {}).get("name")
                                        not in [(t.get("function") or {}).get("name") for t in b.get("tools") or []
                                                if isinstance(t, dict)])))),
    _b("format-type-unknown-dropped", "errors.format.type-unknown", "a response_format of unknown type dropped",
       request=rewrite_request(pop_when("response_format", when=lambda b: isinstance(b.get("response_format"), dict)
                                    and b["response_format"].get("type") not in ("json", "regex", "text", "json_object",
                                                                                 "json_schema")))),
    _b("wrong-type-coerced", "errors.field.wrong-type", "numbers and booleans sent as strings are parsed",
       request=rewrite_request(coerce_strings)),
    _b("content-repaired", "errors.message.content-invalid", "a user message without valid content gets \"\"",
       request=rewrite_request(repair_messages)),
    _b("bad-parts-dropped", "errors.content-part.type-unknown", "unknown or incomplete content parts dropped",
       request=rewrite_request(drop_bad_parts)),
    _b("bad-tools-dropped", "errors.tools.invalid-definition", "tools without a name or of another type dropped",
       request=rewrite_request(drop_bad_tools)),
    _b("bad-format-dropped", "errors.format.invalid-schema errors.format.invalid-regex",
       "a response_format whose schema or regex is invalid dropped",
       request=rewrite_request(pop_when("response_format", when=format_value_invalid))),
    _b("include-usage-truthy", "errors.stream-options.type", "a non-boolean include_usage read as truthy",
       request=rewrite_request(include_usage_truthy)),
    _b("tool-choice-without-tools-dropped", "errors.tool-choice.without-tools", "tool_choice without tools dropped",
       request=rewrite_request(pop_when("tool_choice", when=lambda b: not b.get("tools")))),
    _b("too-large-400", "errors.body.too-large", "an oversized body answered 400", reply=restatus((413,), 400)),
    _b("openai-envelope-untyped", "errors.envelope.openai-fields", "OpenAI-shaped errors whose error.type is null",
       reply=on_error(openai_envelope_untyped)),
)
