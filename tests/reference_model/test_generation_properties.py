"""Property tests of the generation loop on the tiny model, and of content assembly over token streams."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from reference_model.engine import Engine
from reference_model.generation import BatchGenerator, Finished, GenerationRequest, collect, generate
from reference_model.generation_output import OutputAssembler, OutputMode
from reference_model.grammar import (
    JsonSchema,
    Regex,
    compile_response_format,
)
from reference_model.logprobs import LogprobTracker
from reference_model.sampling import SamplingParams
from reference_model.stopping import FinishReason, cut_at_stop
from reference_model.tiny import TinyModel, build_tiny
from reference_model.tokenizer import Tokenizer
from reference_model.tool_calls import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
CHAT_PROMPT = "<|im_start|>user\nAnswer in JSON<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_tiny(tmp_path_factory.mktemp("tiny-props"), "fp32")


@pytest.fixture(scope="module")
def engine(tiny: TinyModel) -> Engine:
    return Engine(tiny, device="cpu", threads=1, max_batch=4, max_context=256)


@pytest.fixture(scope="module")
def prompt(tokenizer: Tokenizer) -> tuple[int, ...]:
    return tuple(tokenizer.encode(CHAT_PROMPT, special=True))


# --- content assembly over arbitrary token streams ------------------------------------------------

ALPHABET = "ab \n.{}\"<>_é😀"


def assemble(tokenizer: Tokenizer, ids: list[int], stops: list[str], *, tools=(), calls_only: bool = False,
             natural: bool = True):
    """Push ids (stopping at a stop, as the loop does); returns (pushed, emitted token texts, final)."""
    out = OutputAssembler(tokenizer, stops, tools=tools, calls_only=calls_only)
    tracker = LogprobTracker(tokenizer)
    texts, pushed = [], 0
    for token in ids:
        released = out.push(token, tracker.record(token, -0.5))
        pushed += 1
        texts += [(r.text, r.logprob.text) for r in released]
        if out.stop_matched:
            break
    final = out.finish(natural=natural)
    texts += [(r.text, r.logprob.text) for r in final.tokens]
    return pushed, texts, final


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURES)
@given(text=st.text(alphabet=ALPHABET, max_size=30),
       stops=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=3), max_size=4))
def test_token_texts_concatenate_to_the_cut_content(tokenizer: Tokenizer, text: str, stops: list[str]) -> None:
    """Streamed token texts == content == the whole decoded output cut at the first stop; never a stop in it."""
    ids = tokenizer.encode(text)
    pushed, texts, final = assemble(tokenizer, ids, stops)
    expected, matched = cut_at_stop(tokenizer.decode(ids), stops)
    assert final.content == expected and final.text == ""
    assert "".join(t for t, _ in texts) == "".join(lp for _, lp in texts) == expected
    assert len(texts) == pushed  # one event per pushed token
    if matched:  # the last pushed token completed the stop: one token earlier there was none
        assert cut_at_stop(tokenizer.decode(ids[:pushed - 1]), stops)[1] is False
    else:
        assert pushed == len(ids)
    assert not any(s in final.content for s in stops)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(text=st.text(alphabet=ALPHABET, max_size=20), natural=st.booleans())
def test_auto_mode_holds_a_possible_call_and_releases_text(tokenizer: Tokenizer, text: str, natural: bool) -> None:
    tool = "f"
    call = TOOL_CALL_OPEN + '{"name": "f", "arguments": {"x": 1}}' + TOOL_CALL_CLOSE
    pushed, texts, final = assemble(tokenizer, tokenizer.encode(call), [], tools=[tool], natural=natural)
    assert final.mode is OutputMode.CALLS and final.content == "" and all(t == "" for t, _ in texts)
    assert [(c.name, c.arguments) for c in final.tool_calls] == [("f", '{"x": 1}')]  # complete, cut or not
    ids = tokenizer.encode(text)
    _, texts, final = assemble(tokenizer, ids, [], tools=[tool])
    is_call = text.startswith(TOOL_CALL_OPEN)
    assert final.mode is (OutputMode.CALLS if is_call else OutputMode.TEXT)
    if not is_call:
        assert final.content == tokenizer.decode(ids) == "".join(t for t, _ in texts)


def test_a_possible_call_is_held_until_decided(tokenizer: Tokenizer) -> None:
    out = OutputAssembler(tokenizer, (), tools=["f"])
    ids = tokenizer.encode("<tool_cat")
    released = [out.push(t) for t in ids]
    assert all(r == [] for r in released[:-1])  # "<", "<tool", "<tool_" may still be the marker
    assert "".join(x.text for x in released[-1]) == "<tool_cat" and out.mode is OutputMode.TEXT


def test_split_character_waits_for_its_last_byte(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("😀")
    assert len(ids) > 1
    out = OutputAssembler(tokenizer)
    assert out.push(ids[0]) == []
    released = [r for t in ids[1:] for r in out.push(t)]  # every token leaves once the character is whole
    assert [r.token_id for r in released] == ids and "".join(r.text for r in released) == "😀"
    assert released[-1].text == "😀"
    final = OutputAssembler(tokenizer)
    final.push(ids[0])
    end = final.finish(natural=False)  # cut inside the character: U+FFFD, carried by that token
    assert [r.text for r in end.tokens] == ["\ufffd"] and end.content == "\ufffd"


# --- the tiny model under grammars: every output that ends with stop is valid ------------------------

LEAF = st.sampled_from([
    {"type": "string", "maxLength": 6},
    {"type": "integer", "minimum": -5, "maximum": 500},
    {"type": "boolean"},
    {"type": "null"},
    {"enum": ["red", "green", "blue"]},
    {"type": "number", "minimum": 0, "maximum": 10},
    {"type": "string", "enum": ["a b", "c\"d"]},
])
VALUE = st.one_of(LEAF, LEAF.map(lambda item: {"type": "array", "items": item, "maxItems": 3}))
KEYS = st.sampled_from(["name", "age", "tags", "city", "ok", "n", "when"])


def objects(value: st.SearchStrategy) -> st.SearchStrategy:
    return st.tuples(st.dictionaries(KEYS, value, min_size=1, max_size=4), st.booleans()).map(
        lambda pair: {"type": "object", "properties": pair[0], "required": sorted(pair[0]),
                      "additionalProperties": False} if pair[1] else
        {"type": "object", "properties": pair[0], "required": sorted(pair[0])[:1], "additionalProperties": False})


SCHEMAS = st.one_of(objects(VALUE), objects(st.one_of(VALUE, objects(LEAF))),
                    VALUE.map(lambda v: {"type": "array", "items": v, "minItems": 1, "maxItems": 2}))


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURES)
@given(schema=SCHEMAS, seed=st.integers(0, 2**32 - 1), temperature=st.sampled_from([0.0, 0.8, 1.5]))
def test_json_schema_outputs_are_valid(engine: Engine, tokenizer: Tokenizer, prompt, schema: dict, seed: int,
                                       temperature: float) -> None:
    compiled = compile_response_format(JsonSchema(schema), tokenizer)
    request = GenerationRequest(prompt, SamplingParams(temperature=temperature, seed=seed, max_tokens=230), compiled)
    tokens, fin = collect(generate(engine, tokenizer, request))
    assert fin.reason in (FinishReason.STOP, FinishReason.LENGTH)
    if fin.reason is FinishReason.STOP:
        jsonschema.validate(json.loads(fin.content), schema)
    else:  # bounded shapes: only a long float can run out of tokens
        assert "number" in json.dumps(schema), fin.content


REGEXES = st.sampled_from([
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    r"(yes|no|maybe)",
    r"[a-z]{1,8}@[a-z]{2,5}\.(com|org)",
    r"Answer: (A|B|C)\.( [A-Za-z ]{0,20})?",
    r"-?[0-9]{1,6}(\.[0-9]{1,3})?",
    r"#[0-9a-f]{6}",
    r"\+?[0-9]{2,3} [0-9]{3}-[0-9]{4}",
    r"(ERROR|WARN|INFO): [a-z ]{1,20}",
    r"[A-Z][a-z]{1,9}( [A-Z][a-z]{1,9}){0,2}",
])


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURES)
@given(pattern=REGEXES, seed=st.integers(0, 2**32 - 1), temperature=st.sampled_from([0.0, 1.0, 2.0]),
       top_p=st.sampled_from([1.0, 0.5]))
def test_regex_outputs_match_in_full(engine: Engine, tokenizer: Tokenizer, prompt, pattern: str, seed: int,
                                     temperature: float, top_p: float) -> None:
    compiled = compile_response_format(Regex(pattern), tokenizer)
    params = SamplingParams(temperature=temperature, top_p=top_p, seed=seed, max_tokens=100)
    _, fin = collect(generate(engine, tokenizer, GenerationRequest(prompt, params, compiled)))
    assert fin.reason is FinishReason.STOP  # every pattern is bounded
    assert re.fullmatch(pattern, fin.content), (pattern, fin.content)


# --- seeds and batching ---------------------------------------------------------------------------------

PARAMS = st.builds(lambda t, p, f, pr, seed, n: SamplingParams(temperature=t, top_p=p, frequency_penalty=f,
                                                               presence_penalty=pr, seed=seed, max_tokens=n),
                   st.sampled_from([0.0, 0.5, 1.0, 1.7]), st.sampled_from([1.0, 0.9, 0.3]),
                   st.sampled_from([0.0, 1.0, -1.0]), st.sampled_from([0.0, 1.5]),
                   st.integers(0, 2**64 - 1), st.integers(1, 24))


@settings(max_examples=15, deadline=None, suppress_health_check=FIXTURES)
@given(params=PARAMS, others=st.lists(PARAMS, min_size=1, max_size=3), delay=st.integers(0, 4))
def test_same_seed_same_tokens_alone_or_batched(engine: Engine, tokenizer: Tokenizer, prompt,
                                                params: SamplingParams, others: list[SamplingParams],
                                                delay: int) -> None:
    alone = generate(engine, tokenizer, GenerationRequest(prompt, params))
    again = generate(engine, tokenizer, GenerationRequest(prompt, params))
    assert alone == again
    gen = BatchGenerator(engine, tokenizer)
    for other in others:
        gen.add(GenerationRequest(prompt[: 3 + other.max_tokens % 7], other))
    events: list = []
    rid = None
    step = 0
    while gen.has_work() or rid is None:
        if step == delay:  # joins a batch already under way
            rid = gen.add(GenerationRequest(prompt, params))
        events += gen.step().get(rid, []) if rid is not None else []
        step += 1
    assert events == alone
    assert engine.active == []


def test_different_seeds_differ_somewhere_over_a_batch(engine: Engine, tokenizer: Tokenizer, prompt) -> None:
    gen = BatchGenerator(engine, tokenizer)
    rids = [gen.add(GenerationRequest(prompt, SamplingParams(temperature=1.0, seed=s, max_tokens=8)))
            for s in range(4)]
    outs: dict[int, list] = {r: [] for r in rids}
    while gen.has_work():
        for rid, events in gen.step().items():
            outs[rid] += events
    contents = [e[-1].content for e in outs.values()]
    assert all(isinstance(e[-1], Finished) for e in outs.values())
    assert len(set(contents)) >= 3


# --- stop sequences on the model, streamed or not ---------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(data=st.data(), seed=st.integers(0, 1000))
def test_stop_sequences_never_leak(engine: Engine, tokenizer: Tokenizer, prompt, data, seed: int) -> None:
    """Stops taken from the unstopped output (across token boundaries) cut it exactly; no prefix shows one."""
    base = SamplingParams(temperature=1.0, seed=seed, max_tokens=30)
    _, full = collect(generate(engine, tokenizer, GenerationRequest(prompt, base)))
    text = full.content
    assume(len(text) > 4)
    picks = data.draw(st.lists(st.tuples(st.integers(0, len(text) - 1), st.integers(1, 6)), min_size=1, max_size=3))
    stops = [text[i:i + n] for i, n in picks] + data.draw(st.lists(st.text(min_size=1, max_size=3), max_size=1))
    stops = [s for s in stops if s][:4]
    params = SamplingParams(temperature=1.0, seed=seed, max_tokens=30, stop=stops, logprobs=True)
    tokens, fin = collect(generate(engine, tokenizer, GenerationRequest(prompt, params)))
    expected, matched = cut_at_stop(text, stops)
    assert fin.content == expected
    assert (fin.reason is FinishReason.STOP) == matched
    streamed = ""
    for event in tokens:
        streamed += event.text
        assert not any(s in streamed for s in stops)
    assert streamed + fin.text == expected
    assert len(tokens) == fin.completion_tokens and all(t.logprob.text == t.text for t in tokens)
