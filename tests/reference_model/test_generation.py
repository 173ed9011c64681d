"""The generation loop on the tiny model: every parameter changes the output as documented."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from reference_model.constraints import Constraint
from reference_model.engine import Engine
from reference_model.errors import ContextLengthError, Param, RequestError
from reference_model.generation import (
    BatchGenerator,
    Finished,
    GenerationRequest,
    GenerationRequestError,
    GenerationSetupError,
    PromptTooLongError,
    TokenEvent,
    check_admissible,
    collect,
    generate,
    tool_call_id,
)
from reference_model.grammar import (
    ConstraintError,
    JsonSchema,
    Regex,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
    compile_constraint,
    compile_response_format,
)
from reference_model.sampling import Sampler, SamplingParamError, SamplingParams
from reference_model.stopping import FinishReason, cut_at_stop
from reference_model.tiny import TinyModel, build_tiny
from reference_model.tokenizer import Tokenizer

# The engine's golden: greedy continuation of "The quick brown fox jumps over the lazy dog."
GOLDEN_PROMPT_IDS = (504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30)
GOLDEN_TOKENS = [35351, 45319, 15048, 15048, 32202, 32202, 32202, 32202, 32202, 32202, 32202, 2923,
                 2923, 32127, 32127, 32127, 32127, 32127, 32127, 32127, 32127, 32127, 32127, 32127]
CHAT_PROMPT = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
ADD = ToolSpec("add", {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9},
                                                        "b": {"type": "integer", "minimum": 0, "maximum": 9}},
                       "required": ["a", "b"], "additionalProperties": False})
ECHO = ToolSpec("echo", {"type": "object", "properties": {"text": {"type": "string", "maxLength": 6}},
                         "required": ["text"], "additionalProperties": False})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_tiny(tmp_path_factory.mktemp("tiny-gen"), "fp32")


@pytest.fixture(scope="module")
def engine(tiny: TinyModel) -> Engine:
    return Engine(tiny, device="cpu", threads=1, max_batch=4)


@pytest.fixture(autouse=True)
def _no_leaked_sequences(request: pytest.FixtureRequest):
    yield
    if "engine" in request.fixturenames:
        assert request.getfixturevalue("engine").active == [], "a test left sequences in the engine"


@pytest.fixture(scope="module")
def chat_ids(tokenizer: Tokenizer) -> tuple[int, ...]:
    return tuple(tokenizer.encode(CHAT_PROMPT, special=True))


def run(engine: Engine, tokenizer: Tokenizer, prompt, constraint=None, **params) -> tuple[list[TokenEvent], Finished]:
    return collect(generate(engine, tokenizer, GenerationRequest(tuple(prompt), SamplingParams(**params),
                                                                 constraint)))


def ids_of(tokens: list[TokenEvent]) -> list[int]:
    return [t.token_id for t in tokens]


def content_of(tokens: list[TokenEvent], fin: Finished) -> str:
    return "".join(t.text for t in tokens) + fin.text


def reference_loop(engine: Engine, tokenizer: Tokenizer, prompt, params: SamplingParams, n: int) -> list[int]:
    """Tokens from the documented pipeline written out by hand: engine -> Sampler with the control mask."""
    allowed = np.ones(tokenizer.vocab_size, dtype=bool)
    allowed[[i for i in tokenizer.special_ids if i != tokenizer.eos_id]] = False
    sampler = Sampler(params, tokenizer.vocab_size)
    seq = engine.start(list(prompt), n)
    logits = engine.prefill(seq)
    out = []
    for _ in range(n):
        token = sampler.sample(logits, allowed).token_id
        if token == tokenizer.eos_id:
            break
        out.append(token)
        if len(out) < n:
            logits = engine.step({seq: token})[seq]
    engine.release(seq)
    return out


# --- sampling parameters ------------------------------------------------------------------------------


def test_greedy_matches_the_engine_golden(engine: Engine, tokenizer: Tokenizer) -> None:
    tokens, fin = run(engine, tokenizer, GOLDEN_PROMPT_IDS, temperature=0.0, max_tokens=len(GOLDEN_TOKENS))
    assert ids_of(tokens) == GOLDEN_TOKENS
    assert fin.reason is FinishReason.LENGTH and fin.completion_tokens == len(GOLDEN_TOKENS)
    assert fin.prompt_tokens == len(GOLDEN_PROMPT_IDS)
    assert content_of(tokens, fin) == tokenizer.decode(GOLDEN_TOKENS) == fin.content


@pytest.mark.parametrize("params", [
    {"temperature": 1.0, "seed": 7},
    {"temperature": 0.7, "top_p": 0.9, "seed": 99, "frequency_penalty": 0.5, "presence_penalty": -0.3},
    {"temperature": 1.3, "seed": 3, "logit_bias": {35351: 5.0, 100: -100.0}},
])
def test_sampled_tokens_follow_the_documented_pipeline(engine: Engine, tokenizer: Tokenizer, chat_ids, params) -> None:
    tokens, fin = run(engine, tokenizer, chat_ids, max_tokens=30, **params)
    assert ids_of(tokens) == reference_loop(engine, tokenizer, chat_ids, SamplingParams(max_tokens=30, **params), 30)
    assert fin.seed == params["seed"]


def test_same_seed_same_tokens_and_no_seed_is_fresh_and_replayable(engine: Engine, tokenizer: Tokenizer,
                                                                  chat_ids) -> None:
    a, _ = run(engine, tokenizer, chat_ids, temperature=1.0, seed=123, max_tokens=20)
    b, _ = run(engine, tokenizer, chat_ids, temperature=1.0, seed=123, max_tokens=20)
    c, _ = run(engine, tokenizer, chat_ids, temperature=1.0, seed=124, max_tokens=20)
    assert ids_of(a) == ids_of(b) and ids_of(a) != ids_of(c)
    x, fx = run(engine, tokenizer, chat_ids, temperature=1.0, max_tokens=20)
    y, fy = run(engine, tokenizer, chat_ids, temperature=1.0, max_tokens=20)
    assert fx.seed != fy.seed and ids_of(x) != ids_of(y)
    replay, _ = run(engine, tokenizer, chat_ids, temperature=1.0, seed=fx.seed, max_tokens=20)
    assert ids_of(replay) == ids_of(x)


def test_top_p_tiny_equals_greedy(engine: Engine, tokenizer: Tokenizer, chat_ids) -> None:
    greedy, _ = run(engine, tokenizer, chat_ids, temperature=0.0, max_tokens=15)
    for seed in range(3):
        nucleus, _ = run(engine, tokenizer, chat_ids, temperature=1.0, top_p=1e-6, seed=seed, max_tokens=15)
        assert ids_of(nucleus) == ids_of(greedy)
    wide, _ = run(engine, tokenizer, chat_ids, temperature=1.0, top_p=1.0, seed=0, max_tokens=15)
    assert ids_of(wide) != ids_of(greedy)


def repeats(ids: list[int]) -> int:
    return len(ids) - len(set(ids))


@pytest.mark.parametrize("penalty", ["frequency_penalty", "presence_penalty"])
def test_penalties_reduce_repetition(engine: Engine, tokenizer: Tokenizer, penalty: str) -> None:
    """The tiny model's greedy output repeats tokens; a penalty over generated tokens cuts that down."""
    plain, _ = run(engine, tokenizer, GOLDEN_PROMPT_IDS, temperature=0.0, max_tokens=24)
    penalized, _ = run(engine, tokenizer, GOLDEN_PROMPT_IDS, temperature=0.0, max_tokens=24, **{penalty: 2.0})
    assert repeats(ids_of(plain)) >= 15
    assert repeats(ids_of(penalized)) < repeats(ids_of(plain)) // 2
    # Penalties count generated tokens only, never the prompt: the first token is unchanged.
    assert ids_of(penalized)[0] == ids_of(plain)[0]


def test_negative_penalty_increases_repetition(engine: Engine, tokenizer: Tokenizer, chat_ids) -> None:
    plain, _ = run(engine, tokenizer, chat_ids, temperature=1.0, seed=5, max_tokens=24)
    rewarded, _ = run(engine, tokenizer, chat_ids, temperature=1.0, seed=5, max_tokens=24, presence_penalty=-2.0,
                      frequency_penalty=-2.0)
    assert repeats(ids_of(rewarded)) > repeats(ids_of(plain))


def test_logit_bias_changes_the_output(engine: Engine, tokenizer: Tokenizer) -> None:
    tokens, _ = run(engine, tokenizer, GOLDEN_PROMPT_IDS, temperature=0.0, max_tokens=5, logit_bias={504: 100})
    assert ids_of(tokens) == [504] * 5
    tokens, _ = run(engine, tokenizer, GOLDEN_PROMPT_IDS, temperature=0.0, max_tokens=3,
                    logit_bias={GOLDEN_TOKENS[0]: -100})
    assert ids_of(tokens)[0] != GOLDEN_TOKENS[0]


def test_control_tokens_other_than_end_of_turn_are_never_sampled(engine: Engine, tokenizer: Tokenizer) -> None:
    tokens, fin = run(engine, tokenizer, GOLDEN_PROMPT_IDS, temperature=0.0, max_tokens=4, logit_bias={1: 100, 0: 100})
    assert not set(ids_of(tokens)) & set(tokenizer.special_ids) and fin.completion_tokens == 4


# --- logprobs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("top", [0, 1, 5])
def test_logprob_entries_one_per_completion_token(engine: Engine, tokenizer: Tokenizer, chat_ids, top: int) -> None:
    tokens, fin = run(engine, tokenizer, chat_ids, temperature=0.0, max_tokens=12, logprobs=True, top_logprobs=top)
    entries = [t.logprob for t in tokens]
    assert len(entries) == fin.completion_tokens == 12 and all(e is not None for e in entries)
    assert "".join(e.text for e in entries) == fin.content
    for t, e in zip(tokens, entries, strict=True):
        assert e.token_id == t.token_id and e.logprob <= 0 and len(e.top) == top
        assert e.bytes == tokenizer.token_bytes(t.token_id)
        if top:  # greedy: the chosen token is the most likely one
            assert e.top[0].token_id == t.token_id and e.top[0].logprob == e.logprob
    plain, _ = run(engine, tokenizer, chat_ids, temperature=0.0, max_tokens=12)
    assert all(t.logprob is None for t in plain) and ids_of(plain) == ids_of(tokens)


# --- how generations end ------------------------------------------------------------------------------------


def test_end_of_turn_ends_with_stop_and_is_not_counted(engine: Engine, tokenizer: Tokenizer, chat_ids) -> None:
    tokens, fin = run(engine, tokenizer, chat_ids, temperature=0.0, logprobs=True, logit_bias={tokenizer.eos_id: 100})
    assert tokens == [] and fin.reason is FinishReason.STOP and fin.completion_tokens == 0 and fin.content == ""


def test_end_of_turn_under_a_grammar_only_when_it_accepts(engine: Engine, tokenizer: Tokenizer, chat_ids) -> None:
    """eos is pushed up by +100 but masked until the regex accepts: one token of letters, then the end."""
    compiled = compile_response_format(Regex("[a-z]{1,12}"), tokenizer)
    tokens, fin = run(engine, tokenizer, chat_ids, compiled, temperature=0.0, logit_bias={tokenizer.eos_id: 100})
    assert fin.reason is FinishReason.STOP and fin.completion_tokens == len(tokens) == 1
    assert 1 <= len(fin.content) < 12 and fin.content.isalpha()  # the grammar could go on: eos ended it


def test_text_held_for_a_stop_is_released_by_end_of_turn(engine: Engine, tokenizer: Tokenizer, chat_ids) -> None:
    """'a' may start the stop 'ab', so it is held; end-of-turn (allowed once 'a' is complete) releases it."""
    compiled = compile_response_format(Regex("a(bc)?"), tokenizer)
    a = tokenizer.encode("a")[0]
    tokens, fin = run(engine, tokenizer, chat_ids, compiled, temperature=0.0, stop=["ab"], logprobs=True,
                      logit_bias={tokenizer.eos_id: 100, a: 50})
    assert [t.token_id for t in tokens] == [a]
    assert fin.reason is FinishReason.STOP and fin.content == "a" and fin.text == ""
    assert tokens[0].text == "a" == tokens[0].logprob.text and fin.completion_tokens == 1


def test_complete_grammar_ends_without_another_forward_pass(engine: Engine, tokenizer: Tokenizer, chat_ids,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fed: list[dict] = []
    original = engine.step
    monkeypatch.setattr(engine, "step", lambda tokens: fed.append(dict(tokens)) or original(tokens))
    tokens, fin = run(engine, tokenizer, chat_ids, compile_response_format(Regex("(yes|no)"), tokenizer),
                      temperature=0.0, max_tokens=50)
    assert fin.reason is FinishReason.STOP and fin.content in ("yes", "no")
    assert len(fed) == len(tokens) - 1  # the last token is never fed: the grammar allows nothing after it


def test_context_end_is_length(tiny: TinyModel, tokenizer: Tokenizer) -> None:
    small = Engine(tiny, device="cpu", threads=1, max_batch=1, max_context=16)
    tokens, fin = run(small, tokenizer, GOLDEN_PROMPT_IDS, temperature=0.0)
    assert fin.reason is FinishReason.LENGTH
    assert fin.completion_tokens == len(tokens) == 16 - len(GOLDEN_PROMPT_IDS)
    assert ids_of(tokens) == GOLDEN_TOKENS[:len(tokens)]
    assert small.active == []


@pytest.mark.parametrize("stops", [["piracy"], [" Other", "NYC", "zzz"], ["y pi"], ["\u00e9\u00e9", "gray gray"]])
def test_stop_sequences_cut_content_and_end_with_stop(engine: Engine, tokenizer: Tokenizer, chat_ids, stops) -> None:
    full, _ = run(engine, tokenizer, chat_ids, temperature=0.0, max_tokens=40)
    whole = tokenizer.decode(ids_of(full))
    expected, matched = cut_at_stop(whole, stops)
    tokens, fin = run(engine, tokenizer, chat_ids, temperature=0.0, max_tokens=40, stop=stops, logprobs=True)
    assert fin.content == expected == content_of(tokens, fin)
    assert "".join(t.logprob.text for t in tokens) == fin.content
    assert not any(s in fin.content for s in stops)
    if matched:
        assert fin.reason is FinishReason.STOP
        # Counted up to and including the token that completed the stop, and no further.
        n = fin.completion_tokens
        assert stops and any(s in tokenizer.decode(ids_of(full)[:n]) for s in stops)
        assert not any(s in tokenizer.decode(ids_of(full)[:n - 1]) for s in stops)
        assert ids_of(tokens) == ids_of(full)[:n]
    else:
        assert fin.reason is FinishReason.LENGTH and ids_of(tokens) == ids_of(full)


# --- constrained decoding and tools ----------------------------------------------------------------------------


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99},
                                           "tag": {"enum": ["x", "y"]}, "s": {"type": "string", "maxLength": 4}},
          "required": ["n", "tag", "s"], "additionalProperties": False}


def test_json_schema_output_is_valid(engine: Engine, tokenizer: Tokenizer, chat_ids) -> None:
    compiled = compile_response_format(JsonSchema(SCHEMA), tokenizer)
    for seed in range(4):
        tokens, fin = run(engine, tokenizer, chat_ids, compiled, temperature=1.0, seed=seed, max_tokens=60)
        assert fin.reason is FinishReason.STOP
        jsonschema.validate(json.loads(fin.content), SCHEMA)
        assert content_of(tokens, fin) == fin.content


@pytest.mark.parametrize("choice", [ToolChoice(ToolChoiceMode.REQUIRED), ToolChoice(ToolChoiceMode.NAMED, "echo")])
def test_required_and_named_give_schema_valid_calls(engine: Engine, tokenizer: Tokenizer, chat_ids, choice) -> None:
    compiled = compile_constraint(tokenizer, tools=[ADD, ECHO], tool_choice=choice)
    schemas = {t.name: t.parameters_schema for t in (ADD, ECHO)}
    names = set()
    for seed in range(4):
        tokens, fin = run(engine, tokenizer, chat_ids, compiled, temperature=1.0, seed=seed, max_tokens=120,
                          logprobs=True, stop=["name"])  # stops never cut call text
        assert fin.reason is FinishReason.TOOL_CALLS and fin.content == "" and fin.text == ""
        assert all(t.text == "" and t.logprob.text == "" for t in tokens)
        assert fin.completion_tokens == len(tokens) > 0
        assert [c.id for c in fin.tool_calls] == [tool_call_id(seed, i) for i in range(len(fin.tool_calls))]
        assert len({c.id for c in fin.tool_calls}) == len(fin.tool_calls)
        for call in fin.tool_calls:
            jsonschema.validate(json.loads(call.arguments), dict(schemas[call.name]))
            names.add(call.name)
    if choice.mode is ToolChoiceMode.NAMED:
        assert names == {"echo"}
    else:
        assert names and names <= {"add", "echo"}


def test_required_call_cut_by_max_tokens_is_length_without_calls(engine: Engine, tokenizer: Tokenizer,
                                                                 chat_ids) -> None:
    compiled = compile_constraint(tokenizer, tools=[ADD], tool_choice=ToolChoice(ToolChoiceMode.REQUIRED))
    tokens, fin = run(engine, tokenizer, chat_ids, compiled, temperature=0.0, max_tokens=5)
    assert fin.reason is FinishReason.LENGTH and fin.tool_calls == () and fin.content == ""
    assert len(tokens) == 5


def test_auto_text_is_released(engine: Engine, tokenizer: Tokenizer, chat_ids) -> None:
    compiled = compile_constraint(tokenizer, tools=[ADD])
    plain, _ = run(engine, tokenizer, chat_ids, temperature=0.0, max_tokens=20)
    tokens, fin = run(engine, tokenizer, chat_ids, compiled, temperature=0.0, max_tokens=20)
    # The random model's greedy text never starts like a call, so auto leaves it unchanged.
    assert ids_of(tokens) == ids_of(plain) and fin.content == tokenizer.decode(ids_of(plain))
    assert fin.reason is FinishReason.LENGTH and fin.tool_calls == ()


def test_auto_output_that_becomes_a_call_is_held_then_parsed(engine: Engine, tokenizer: Tokenizer, chat_ids) -> None:
    """auto with a one-digit text format: '<' (pushed up) rules the text out, and the grammar writes the call."""
    compiled = compile_constraint(tokenizer, Regex("[0-9]"), tools=[ADD])
    less_than = tokenizer.encode("<")[0]
    tokens, fin = run(engine, tokenizer, chat_ids, compiled, temperature=0.0, max_tokens=60, seed=4,
                      logit_bias={less_than: 100})
    assert tokens[0].token_id == less_than
    assert fin.reason is FinishReason.TOOL_CALLS and fin.content == "" and all(t.text == "" for t in tokens)
    assert [c.name for c in fin.tool_calls] == ["add"] and fin.tool_calls[0].id == tool_call_id(4, 0)
    jsonschema.validate(json.loads(fin.tool_calls[0].arguments), dict(ADD.parameters_schema))
    seven = tokenizer.encode("7")[0]
    tokens, fin = run(engine, tokenizer, chat_ids, compiled, temperature=0.0, max_tokens=60, logit_bias={seven: 100})
    assert fin.reason is FinishReason.STOP and fin.content == "7" and [t.text for t in tokens] == ["7"]


def test_tool_choice_none_never_calls(engine: Engine, tokenizer: Tokenizer, chat_ids) -> None:
    assert compile_constraint(tokenizer, tools=[ADD], tool_choice=ToolChoice(ToolChoiceMode.NONE)) is None
    tokens, fin = run(engine, tokenizer, chat_ids, None, temperature=1.0, seed=1, max_tokens=20)
    assert fin.tool_calls == () and fin.reason is FinishReason.LENGTH


# --- batching --------------------------------------------------------------------------------------------------


def _mixed_requests(tokenizer: Tokenizer, chat_ids) -> list[GenerationRequest]:
    compiled = compile_response_format(JsonSchema(SCHEMA), tokenizer)
    tools = compile_constraint(tokenizer, tools=[ADD, ECHO], tool_choice=ToolChoice(ToolChoiceMode.REQUIRED))
    return [
        GenerationRequest(chat_ids, SamplingParams(temperature=1.0, seed=11, max_tokens=25)),
        GenerationRequest(GOLDEN_PROMPT_IDS, SamplingParams(temperature=0.0, max_tokens=18, frequency_penalty=1.0, seed=0)),
        GenerationRequest(chat_ids, SamplingParams(temperature=0.9, seed=12, max_tokens=60), compiled),
        GenerationRequest(chat_ids[:5], SamplingParams(temperature=1.2, top_p=0.8, seed=13, max_tokens=9,
                                                       logprobs=True, top_logprobs=3)),
        GenerationRequest(chat_ids, SamplingParams(temperature=1.0, seed=14, max_tokens=80), tools),
        GenerationRequest(GOLDEN_PROMPT_IDS, SamplingParams(temperature=1.0, seed=15, max_tokens=30, stop=["a"])),
    ]


def test_batched_equals_alone_with_joins_and_leaves(engine: Engine, tokenizer: Tokenizer, chat_ids,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    requests = _mixed_requests(tokenizer, chat_ids)
    alone = [generate(engine, tokenizer, r) for r in requests]
    calls: list[int] = []
    original = engine.step
    monkeypatch.setattr(engine, "step", lambda tokens: calls.append(len(tokens)) or original(tokens))
    gen = BatchGenerator(engine, tokenizer, max_batch=3)
    rids = [gen.add(r) for r in requests[:4]]
    assert gen.waiting == 4 and gen.running == 0
    got: dict[int, list] = {rid: [] for rid in rids}
    steps = 0
    while gen.has_work():
        before = len(calls)
        for rid, events in gen.step().items():
            got.setdefault(rid, []).extend(events)
        assert len(calls) - before <= 1  # one batched forward per step
        steps += 1
        assert gen.running <= 3
        if steps == 3:  # later requests join while others are mid-generation
            rids += [gen.add(r) for r in requests[4:]]
    assert max(calls) == 3
    for rid, expected in zip(rids, alone, strict=True):
        assert got[rid] == expected


def test_cancel_frees_the_slot_and_stops_events(engine: Engine, tokenizer: Tokenizer, chat_ids) -> None:
    gen = BatchGenerator(engine, tokenizer, max_batch=1)
    a = gen.add(GenerationRequest(chat_ids, SamplingParams(temperature=0.0, max_tokens=50)))
    b = gen.add(GenerationRequest(chat_ids, SamplingParams(temperature=0.0, max_tokens=3)))
    c = gen.add(GenerationRequest(chat_ids, SamplingParams(temperature=0.0, max_tokens=3)))
    gen.step()
    gen.step()
    assert gen.running == 1 and gen.waiting == 2 and len(engine.active) == 1
    gen.cancel(a)
    gen.cancel(c)  # still waiting: never starts
    seen: dict[int, list] = {}
    while gen.has_work():
        for rid, events in gen.step().items():
            seen.setdefault(rid, []).extend(events)
    assert set(seen) == {b}
    assert isinstance(seen[b][-1], Finished) and seen[b][-1].completion_tokens == 3
    gen.cancel(12345)  # unknown ids: no effect
    gen.step()
    assert engine.active == []


def test_a_failing_request_is_dropped_and_the_others_lose_nothing(engine: Engine, tokenizer: Tokenizer,
                                                                  chat_ids) -> None:
    from reference_model.generation import GenerationFailed
    from reference_model.sampling import SamplingError

    good = GenerationRequest(chat_ids, SamplingParams(temperature=1.0, seed=8, max_tokens=10))
    expected = generate(engine, tokenizer, good)
    gen = BatchGenerator(engine, tokenizer)
    bad_id = gen.add(GenerationRequest(chat_ids, SamplingParams(temperature=0.0, max_tokens=10)))
    good_id = gen.add(good)
    got = gen.step()[good_id]

    def broken(*args, **kwargs):
        raise SamplingError("no token is allowed at this position")

    gen._running[bad_id].sampler.sample = broken  # type: ignore[method-assign]
    with pytest.raises(GenerationFailed) as info:
        gen.step()
    assert info.value.request_ids == (bad_id,) and "no token is allowed" in str(info.value)
    assert gen.running == 1 and len(engine.active) == 1
    while gen.has_work():
        events = gen.step()
        assert bad_id not in events
        got += events.get(good_id, [])
    assert got == expected


def test_masks_are_prefetched_before_each_forward(engine: Engine, tokenizer: Tokenizer, chat_ids,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    prefetch, step = Constraint.prefetch, engine.step
    monkeypatch.setattr(Constraint, "prefetch", lambda self: log.append("prefetch") or prefetch(self))
    monkeypatch.setattr(engine, "step", lambda tokens: log.append(f"step{len(tokens)}") or step(tokens))
    compiled = compile_response_format(JsonSchema(SCHEMA), tokenizer)
    tokens, _ = run(engine, tokenizer, chat_ids, compiled, temperature=0.0, max_tokens=60)
    steps = [i for i, e in enumerate(log) if e.startswith("step")]
    assert len(steps) == len(tokens) - 1
    assert all(log[i - 1] == "prefetch" for i in steps)


# --- validation before any work -----------------------------------------------------------------------------


def test_bad_requests_fail_before_any_work(engine: Engine, tokenizer: Tokenizer, chat_ids,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_forward", lambda *a, **k: pytest.fail("a forward pass ran"))
    gen = BatchGenerator(engine, tokenizer)
    limit = engine.context_length
    cases = [
        (GenerationRequest((1,) * limit, SamplingParams()), PromptTooLongError, Param.PROMPT),
        (GenerationRequest((1,) * 10, SamplingParams(max_tokens=limit - 9)), PromptTooLongError, Param.MAX_TOKENS),
        (GenerationRequest((1, 49152), SamplingParams()), GenerationRequestError, Param.PROMPT),
        (GenerationRequest((1,), SamplingParams(logit_bias={49152: 1.0})), SamplingParamError, Param.LOGIT_BIAS),
    ]
    for request, kind, param in cases:
        with pytest.raises(kind) as info:
            gen.add(request)
        assert info.value.param is param and isinstance(info.value, RequestError)
        with pytest.raises(kind) as same:  # the server's early check is the same rule, the same message
            check_admissible(request, vocab_size=tokenizer.vocab_size, context_length=limit)
        assert str(same.value) == str(info.value)
    assert isinstance(cases[0][1](Param.PROMPT, "x", prompt_tokens=1, limit=1), ContextLengthError)
    assert gen.add(GenerationRequest((1,) * 10, SamplingParams(max_tokens=limit - 10))) == 0  # exactly fits
    assert gen.waiting == 1 and engine.active == []
    with pytest.raises(GenerationRequestError, match="prompt must be a non-empty"):
        GenerationRequest((), SamplingParams())
    with pytest.raises(GenerationSetupError, match="params must be a SamplingParams"):
        GenerationRequest((1,), {"temperature": 0})  # type: ignore[arg-type]
    with pytest.raises(ConstraintError) as bad:
        compile_response_format(Regex("a(b"), tokenizer)
    assert bad.value.param is Param.RESPONSE_FORMAT
    with pytest.raises(GenerationSetupError, match=r"max_batch must be an int in \[1, 4\]"):
        BatchGenerator(engine, tokenizer, max_batch=9)
