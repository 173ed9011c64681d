"""Typed request -> generation plan: prompt ids, sampling parameters, constraint, one request per choice.

Everything that can be wrong with a valid-by-schema request is found here, before any work is
queued: the API's limits (limits.py), context length and logit_bias ids outside the vocabulary
(reference_model's `check_admissible`, the rule the generator applies too), a schema or regex
that does not compile, tool_choice naming an undeclared function or needing tools that are
absent. Each is a 422 naming the request field (engine_errors.py maps the engine's names). `n`
choices are n independent requests; with a seed, choice i uses seed + i (mod 2^64) so that the
choices differ and the whole answer is still reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mock_server.backend import Backend
from mock_server.engine_errors import FieldNames, api_error
from mock_server.errors import ValidationFailed
from mock_server.limits import API_LIMITS
from mock_server.prompt import Describer, template_messages
from mock_server.request import ChatRequest, ResponseFormatIn
from reference_model.errors import ReferenceModelError, RequestError
from reference_model.generation import GenerationRequest, check_admissible
from reference_model.grammar import (
    CompiledGrammar,
    JsonObject,
    JsonSchema,
    Regex,
    ResponseFormat,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
    compile_constraint,
)
from reference_model.sampling import MAX_SEED, SamplingParams

MAX_CHOICES = API_LIMITS.max_choices


@dataclass(frozen=True)
class Plan:
    """What to generate for one HTTP request."""

    requests: tuple[GenerationRequest, ...]  # one per choice, in choice order
    prompt_tokens: int
    tool_descriptions: tuple[tuple[str, str | None], ...]  # declared tools: (name, description)
    fields: FieldNames = field(default_factory=FieldNames)  # where the engine's inputs sit in this request, for its errors


def field_names(request: ChatRequest) -> FieldNames:
    """Where this request's token limit and response format sit."""
    fmt = request.response_format
    return FieldNames(max_tokens=request.max_tokens_param,
                      response_format=fmt.param if fmt is not None else "response_format")


def _response_format(fmt: ResponseFormatIn | None) -> ResponseFormat | None:
    if fmt is None or fmt.kind == "text":
        return None
    if fmt.kind == "json_object":
        return JsonObject()
    if fmt.kind == "regex":
        return Regex(fmt.pattern or "")
    # json (hf) or json_schema (openai); an absent json_schema.schema means any JSON value
    return JsonSchema(True if fmt.schema is None else fmt.schema)


def _tool_choice(request: ChatRequest) -> ToolChoice | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if choice.mode == "named":
        return ToolChoice(ToolChoiceMode.NAMED, choice.name)
    return ToolChoice(ToolChoiceMode(choice.mode))


def _grammar(request: ChatRequest, backend: Backend) -> CompiledGrammar | None:
    tools = [ToolSpec(t.name, t.parameters if t.parameters is not None else {"type": "object"})
             for t in request.tools]
    return compile_constraint(backend.tokenizer, _response_format(request.response_format),
                              tools=tools, tool_choice=_tool_choice(request),
                              max_calls=API_LIMITS.max_tool_calls if request.parallel_tool_calls else 1)


def _sampling(request: ChatRequest, choice: int) -> SamplingParams:
    seed = None if request.seed is None else (request.seed + choice) % (MAX_SEED + 1)
    return SamplingParams(
        temperature=request.temperature, top_p=request.top_p,
        frequency_penalty=request.frequency_penalty, presence_penalty=request.presence_penalty,
        max_tokens=request.max_tokens, seed=seed, logprobs=request.logprobs,
        top_logprobs=request.top_logprobs if request.logprobs else 0, stop=request.stop,
        logit_bias=request.logit_bias)


def _check_stops(stops: tuple[str, ...]) -> None:
    limit = API_LIMITS.max_stop_chars
    for index, stop in enumerate(stops):
        if len(stop) > limit:
            raise ValidationFailed(f"$.stop[{index}]: a stop sequence of {len(stop)} characters "
                                   f"({stop[:20]!r}...) is longer than the maximum of {limit} characters on this "
                                   f"server [rule: maxLength {limit}]", param=f"stop[{index}]")


def make_plan(request: ChatRequest, backend: Backend, describe: Describer | None = None) -> Plan:
    """Build the plan (CPU work: templating, tokenizing, grammar compilation; run it off the loop)."""
    info = backend.info
    if request.n > MAX_CHOICES:
        raise ValidationFailed(f"$.n: {request.n} is greater than the maximum of {MAX_CHOICES} on this server "
                               f"[rule: maximum]", param="n")
    _check_stops(request.stop)
    if len(request.messages) > info.context_length:
        # Every message takes at least one token of the prompt: refused before templating them all.
        raise ValidationFailed(f"$.messages: {len(request.messages)} messages cannot fit in the context length "
                               f"{info.context_length} (each takes at least one token) "
                               f"[rule: prompt + max_tokens <= context length]", param="messages")
    messages = template_messages(request, describe)
    try:
        prompt_ids = tuple(backend.template.encode(messages, backend.tokenizer))
    except ReferenceModelError as exc:  # the template or tokenizer refuses the conversation
        raise ValidationFailed(f"$.messages: {exc} [rule: chat template]", param="messages") from None
    fields = field_names(request)
    try:
        requests = tuple(GenerationRequest(prompt_ids, _sampling(request, i), None) for i in range(request.n))
        check_admissible(requests[0], vocab_size=info.vocab_size, context_length=info.context_length)
        grammar = _grammar(request, backend)
    except RequestError as exc:
        raise api_error(exc, fields) from None
    requests = tuple(GenerationRequest(r.prompt_ids, r.params, grammar) for r in requests)
    return Plan(requests=requests, prompt_tokens=len(prompt_ids),
                tool_descriptions=tuple((t.name, t.description) for t in request.tools), fields=fields)
