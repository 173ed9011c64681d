"""Breakers of the reference profile: the reference model served, its answers got wrong.

Each runs `chatconform check PROXY --reference` with an embedded tiny-model oracle: the proxy fronts
the tiny mock, so oracle and target hold the same random weights, and the unbroken proxy gives zero
disagreements (tests/conformance/test_reference.py). The transforms live in
breaker_reference_hooks.py.
"""

from __future__ import annotations

from tests.conformance.breaker_hooks import breaker as _b
from tests.conformance.breaker_hooks import on_answer, rewrite_request
from tests.conformance.breaker_reference_hooks import (
    completion_plus_one,
    double_bos,
    drop_first_space,
    extra_space,
    one_token_early,
    scale_logprobs,
    shift_tops,
    stops_on_tokens_reply,
    stops_on_tokens_request,
    temper_logprobs,
    top_p_first_reply,
    top_p_first_request,
)
from tests.conformance.breaker_transforms import in_usage, rename_finish
from tests.conformance.breaking_proxy import Breaker

# The oracle: the unbroken tiny-model mock behind the proxy, asked directly (the test puts its URL in place of
# ORACLE_URL), compared as the same graph (tolerance 1e-3). Starting an oracle per breaker, as `--reference`
# does, would cost a model load each; test_reference.py runs that path end to end.
ORACLE_URL = "{oracle}"
REFERENCE_ARGS = ("--reference-url", ORACLE_URL, "--target-weights", "same-graph")


def _ref(name: str, clauses: str, description: str, **hooks: object) -> Breaker:
    return _b(name, clauses, description, suite_args=REFERENCE_ARGS, **hooks)


REFERENCE: tuple[Breaker, ...] = (
    _ref("ref-template-extra-space", "usage.reference.prompt-tokens",
         "the chat template writes a space after every message", request=rewrite_request(extra_space)),
    _ref("ref-template-double-bos", "usage.reference.prompt-tokens", "a doubled BOS: one prompt token more",
         reply=on_answer(in_usage(double_bos))),
    _ref("ref-detok-drops-space", "response.reference.greedy-tokens",
         "detokenisation loses the first space of the content", reply=on_answer(drop_first_space)),
    _ref("ref-logprobs-scaled", "logprobs.reference.chosen", "every logprob times 1.1",
         reply=on_answer(scale_logprobs)),
    _ref("ref-top-logprobs-shifted", "logprobs.reference.top-set", "each token gets the next position's alternatives",
         reply=on_answer(shift_tops)),
    _ref("ref-max-tokens-one-early", "params.reference.max-tokens", "generation stops one token before max_tokens",
         request=rewrite_request(one_token_early)),
    _ref("ref-stop-on-tokens", "params.reference.stop", "stop sequences matched on whole tokens, not on the text",
         request=stops_on_tokens_request, reply=stops_on_tokens_reply),
    _ref("ref-length-as-stop", "response.reference.finish-reason", "a generation cut by max_tokens reported as stop",
         reply=on_answer(rename_finish("length", "stop"))),
    _ref("ref-completion-plus-one", "usage.reference.completion-tokens", "completion_tokens one more than generated",
         reply=on_answer(in_usage(completion_plus_one))),
    _ref("ref-top-p-before-temperature", "params.reference.top-p-set",
         "top_p applied to the untempered distribution, temperature after it",
         request=top_p_first_request, reply=top_p_first_reply),
    _ref("ref-logprobs-tempered", "logprobs.reference.temperature",
         "sampled logprobs divided by the temperature, not renormalised", reply=on_answer(temper_logprobs)),
)
