"""The generation loop on the real int4 model: exact golden tokens at temperature 0 and one seeded golden.

Goldens were generated once by this loop on the CPU engine (2 threads) and frozen; the smallest
top-2 logprob margin along each greedy path is at least 0.08, so rounding differences between
runs cannot flip them. Prompts go through the real chat template and tokenizer.
"""

from __future__ import annotations

import json

import pytest

from reference_model.chat_template import ChatTemplate
from reference_model.engine import Engine
from reference_model.generation import BatchGenerator, Finished, GenerationRequest, collect, generate, tool_call_id
from reference_model.grammar import (
    JsonSchema,
    Regex,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
    compile_constraint,
    compile_response_format,
)
from reference_model.sampling import SamplingParams
from reference_model.stopping import FinishReason
from reference_model.tokenizer import Tokenizer

pytestmark = pytest.mark.slow

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
COUNT = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
HAIKU = [{"role": "system", "content": "You are a poet."}, {"role": "user", "content": "Write a haiku about the sea."}]
STORY = [{"role": "user", "content": "Tell me a short story about a cat."}]
JSON_ASK = [{"role": "user", "content": "What is the capital of France? Answer in JSON with keys city and country."}]
YES_NO = [{"role": "user", "content": "Is Paris in France? Answer yes or no."}]
WEATHER_SYSTEM = ('You can call tools. Tools: get_weather(city: string) returns the weather. To call one, write '
                  '<tool_call>\n{"name": "get_weather", "arguments": {"city": "..."}}\n</tool_call>')
WEATHER_ASK = [{"role": "system", "content": WEATHER_SYSTEM},
               {"role": "user", "content": "What is the weather like in Paris today?"}]

GREEDY = {  # name -> (messages, golden token ids, golden content); all end with <|im_end|>
    "capital": (CAPITAL, [504, 3575, 282, 4649, 314, 7042, 30], "The capital of France is Paris."),
    "count": (COUNT, [33, 28, 216, 34, 28, 216, 35, 28, 216, 36, 28, 216, 37, 28, 216, 38, 28, 216, 39, 28, 216, 40,
                      28, 216, 41, 28, 216, 33, 32], "1, 2, 3, 4, 5, 6, 7, 8, 9, 10"),
    "haiku": (HAIKU, [504, 6147, 282, 260, 5065, 28, 253, 13879, 284, 551, 31616, 274, 4313, 28, 253, 8216, 338, 523,
                      9816, 2612, 253, 21651, 288, 260, 6122, 284, 46997, 282, 260, 3426, 30],
              "The waves of the ocean, a silent and unyielding presence, a poem that will forever remain a "
              "testament to the beauty and majesty of the sea."),
}
SEEDED = (STORY, SamplingParams(temperature=0.8, top_p=0.95, seed=42, max_tokens=30),
          [2705, 1194, 28, 281, 253, 37209, 3102, 32047, 281, 260, 1911, 282, 260, 20959, 28, 253, 2644, 3365, 47809,
           9318, 418, 260, 48732, 282, 253, 1165, 28, 551, 37101, 19179],
          "One day, in a quaint town nestled in the heart of the countryside, a cat named Luna stood at the "
          "doorstep of a small, unassuming apartment")
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                "country": {"type": "string", "maxLength": 20}},
               "required": ["city", "country"], "additionalProperties": False}
WEATHER = ToolSpec("get_weather", {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                                   "required": ["city"], "additionalProperties": False})


@pytest.fixture(scope="module")
def engine() -> Engine:
    from reference_model.prepared import prepare

    return Engine(prepare("int4"), device="cpu", threads=2, max_batch=4, max_context=1024)


@pytest.fixture(scope="module")
def encode(chat_template: ChatTemplate, tokenizer: Tokenizer):
    return lambda messages: tuple(chat_template.encode(messages, tokenizer))


def ids_of(tokens) -> list[int]:
    return [t.token_id for t in tokens]


@pytest.mark.parametrize("name", sorted(GREEDY))
def test_greedy_goldens(engine: Engine, tokenizer: Tokenizer, encode, name: str) -> None:
    messages, golden, content = GREEDY[name]
    params = SamplingParams(temperature=0.0, max_tokens=60, logprobs=True, top_logprobs=2)
    tokens, fin = collect(generate(engine, tokenizer, GenerationRequest(encode(messages), params)))
    assert ids_of(tokens) == golden
    assert fin.content == content == "".join(t.text for t in tokens) + fin.text
    assert fin.reason is FinishReason.STOP and fin.completion_tokens == len(golden)
    assert all(t.logprob.top[0].token_id == t.token_id for t in tokens)


def test_seeded_sampling_golden(engine: Engine, tokenizer: Tokenizer, encode) -> None:
    messages, params, golden, content = SEEDED
    tokens, fin = collect(generate(engine, tokenizer, GenerationRequest(encode(messages), params)))
    assert ids_of(tokens) == golden and fin.content == content
    assert fin.reason is FinishReason.LENGTH and fin.completion_tokens == 30 and fin.seed == 42


def test_stop_and_penalty_on_the_real_model(engine: Engine, tokenizer: Tokenizer, encode) -> None:
    prompt = encode(COUNT)
    tokens, fin = collect(generate(engine, tokenizer, GenerationRequest(
        prompt, SamplingParams(temperature=0.0, max_tokens=40, stop=[", 5"], logprobs=True))))
    # ", 5" spans three tokens ("," " " "5"): counted up to the "5" that completed it, their text cut.
    assert fin.content == "1, 2, 3, 4" and fin.reason is FinishReason.STOP
    assert ids_of(tokens) == GREEDY["count"][1][:13]
    assert [t.text for t in tokens[-3:]] == ["", "", ""]
    assert "".join(t.logprob.text for t in tokens) == fin.content
    _, fin = collect(generate(engine, tokenizer, GenerationRequest(
        prompt, SamplingParams(temperature=0.0, max_tokens=40, frequency_penalty=2.0))))
    assert fin.content == "1, 2, 3, 4, 5,  6;"  # the penalized ", " pattern breaks down


def test_constrained_goldens(engine: Engine, tokenizer: Tokenizer, encode) -> None:
    greedy = SamplingParams(temperature=0.0, max_tokens=60)
    run = lambda messages, compiled: collect(generate(engine, tokenizer,
                                                      GenerationRequest(encode(messages), greedy, compiled)))
    tokens, fin = run(JSON_ASK, compile_response_format(JsonSchema(CITY_SCHEMA), tokenizer))
    assert fin.content == '{"city": "Paris", "country": "FRANCE"}' and fin.reason is FinishReason.STOP
    assert ids_of(tokens) == [39428, 20721, 1799, 476, 38634, 1002, 476, 16664, 1799, 476, 13422, 27305, 23597]
    tokens, fin = run(YES_NO, compile_response_format(Regex(r"(Yes|No), [a-zA-Z ,]{1,40}\."), tokenizer))
    assert fin.content == "No, Paris is not in France." and ids_of(tokens) == [5230, 28, 7042, 314, 441, 281, 4649, 30]
    named = compile_constraint(tokenizer, tools=[WEATHER], tool_choice=ToolChoice(ToolChoiceMode.NAMED, "get_weather"))
    tokens, fin = collect(generate(engine, tokenizer, GenerationRequest(
        encode(WEATHER_ASK), SamplingParams(temperature=0.0, max_tokens=60, seed=5), named)))
    assert fin.reason is FinishReason.TOOL_CALLS and fin.content == "" and fin.completion_tokens == 30
    assert [(c.id, c.name, json.loads(c.arguments)) for c in fin.tool_calls] == [
        (tool_call_id(5, 0), "get_weather", {"city": "Paris"})]
    # auto: this prompt gets text from the model, released unchanged.
    _, auto = run(WEATHER_ASK, compile_constraint(tokenizer, tools=[WEATHER]))
    _, free = run(WEATHER_ASK, None)
    assert auto.tool_calls == () and auto.content == free.content and auto.content.startswith("Paris, France")


def test_goldens_hold_when_batched(engine: Engine, tokenizer: Tokenizer, encode) -> None:
    """All greedy goldens and the seeded one, decoded together in one batch, come out unchanged."""
    gen = BatchGenerator(engine, tokenizer)
    expected = {}
    for messages, golden, _ in GREEDY.values():
        expected[gen.add(GenerationRequest(encode(messages), SamplingParams(temperature=0.0, max_tokens=60)))] = golden
    expected[gen.add(GenerationRequest(encode(SEEDED[0]), SEEDED[1]))] = SEEDED[2]
    got: dict[int, list] = {rid: [] for rid in expected}
    while gen.has_work():
        for rid, events in gen.step().items():
            got[rid] += events
    for rid, golden in expected.items():
        assert isinstance(got[rid][-1], Finished)
        assert ids_of(got[rid][:-1]) == golden
    assert engine.active == []
