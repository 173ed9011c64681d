"""Typed request -> generation plan: prompt ids, sampling parameters, constraint, one request per choice.

Everything that can be wrong with a valid-by-schema request is found here, before any work is
queued: context length, logit_bias ids outside the vocabulary, a schema or regex that does not
compile, tool_choice naming an undeclared function or needing tools that are absent. Each is a
422 naming the parameter. `n` choices are n independent requests; with a seed, choice i uses
seed + i (mod 2^64) so that the choices differ and the whole answer is still reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

from mock_server.backend import Backend
from mock_server.errors import ValidationFailed, model_error
from mock_server.prompt import Describer, template_messages
from mock_server.request import ChatRequest, ResponseFormatIn
from reference_model.constraints import (
    JsonObject,
    JsonSchema,
    Regex,
    ResponseFormat,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
    compile_constraint,
)
from reference_model.errors import ReferenceModelError
from reference_model.generation import GenerationRequest
from reference_model.sampling import MAX_SEED, SamplingParams

MAX_CHOICES = 8


@dataclass(frozen=True)
class Plan:
    """What to generate for one HTTP request."""

    requests: tuple[GenerationRequest, ...]  # one per choice, in choice order
    prompt_tokens: int
    tool_descriptions: tuple[tuple[str, str | None], ...]  # declared tools: (name, description)


def _response_format(fmt: ResponseFormatIn | None) -> ResponseFormat | None:
    if fmt is None or fmt.kind == "text":
        return None
    if fmt.kind == "json_object":
        return JsonObject()
    if fmt.kind == "regex":
        return Regex(fmt.pattern or "", param=fmt.param)
    # json (hf) or json_schema (openai); an absent json_schema.schema means any JSON value
    return JsonSchema(True if fmt.schema is None else fmt.schema, param=fmt.param)


def _tool_choice(request: ChatRequest) -> ToolChoice | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if choice.mode == "named":
        return ToolChoice(ToolChoiceMode.NAMED, choice.name)
    return ToolChoice(ToolChoiceMode(choice.mode))


def _check_logit_bias(request: ChatRequest, vocab_size: int) -> None:
    for token, _ in request.logit_bias:
        if token >= vocab_size:
            raise ValidationFailed(f"$.logit_bias: token id {token} is outside the vocabulary [0, {vocab_size}) "
                                   f"[rule: token id range]", param=f"logit_bias.{token}")


def make_plan(request: ChatRequest, backend: Backend, describe: Describer | None = None) -> Plan:
    """Build the plan (CPU work: templating, tokenizing, grammar compilation; run it off the loop)."""
    info = backend.info
    if request.n > MAX_CHOICES:
        raise ValidationFailed(f"$.n: {request.n} is greater than the maximum of {MAX_CHOICES} on this server "
                               f"[rule: maximum]", param="n")
    _check_logit_bias(request, info.vocab_size)
    messages = template_messages(request, describe)
    try:
        prompt_ids = backend.template.encode(messages, backend.tokenizer)
    except ReferenceModelError as exc:
        raise model_error(exc, "messages") from None
    limit = info.context_length
    if len(prompt_ids) >= limit:
        raise ValidationFailed(f"$.messages: the prompt is {len(prompt_ids)} tokens, the context length is {limit}; "
                               f"at least one token must be left to generate [rule: context length]",
                               param="messages")
    if request.max_tokens is not None and len(prompt_ids) + request.max_tokens > limit:
        raise ValidationFailed(f"$.max_tokens: {request.max_tokens} plus the prompt's {len(prompt_ids)} tokens is "
                               f"more than the context length {limit} [rule: prompt + max_tokens <= context]",
                               param="max_tokens")
    tools = [ToolSpec(t.name, t.parameters if t.parameters is not None else {"type": "object"})
             for t in request.tools]
    try:
        constraint = compile_constraint(backend.tokenizer, _response_format(request.response_format),
                                        tools=tools, tool_choice=_tool_choice(request))
    except ReferenceModelError as exc:
        raise model_error(exc) from None
    requests = []
    for i in range(request.n):
        seed = None if request.seed is None else (request.seed + i) % (MAX_SEED + 1)
        try:
            params = SamplingParams(
                temperature=request.temperature, top_p=request.top_p,
                frequency_penalty=request.frequency_penalty, presence_penalty=request.presence_penalty,
                max_tokens=request.max_tokens, seed=seed, logprobs=request.logprobs,
                top_logprobs=request.top_logprobs if request.logprobs else 0, stop=request.stop,
                logit_bias=request.logit_bias)
        except ReferenceModelError as exc:
            raise model_error(exc) from None
        requests.append(GenerationRequest(prompt_ids=tuple(prompt_ids), params=params, constraint=constraint))
    return Plan(requests=tuple(requests), prompt_tokens=len(prompt_ids),
                tool_descriptions=tuple((t.name, t.description) for t in request.tools))
