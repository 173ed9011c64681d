"""Breakers of the bugs users report most on real servers, and of the clauses added in catalogue 1.1.0.

Streamed tool-call deltas malformed in each common way, parallel calls sharing an index, a tool call
reported with finish_reason stop, logprobs in the completions shape or with 20 alternatives nobody
asked for, usage counting one of n choices, and a history holding an assistant tool call with empty
content refused. See breakers.py for what a breaker is; the transforms live in
breaker_observations_hooks.py.
"""

from __future__ import annotations

from tests.conformance.breaker_hooks import (
    both,
    each_chunk,
    each_logprob_entry,
    messages_have,
    on_answer,
    on_chunks,
    refuse_when,
)
from tests.conformance.breaker_hooks import breaker as _b
from tests.conformance.breaker_observations_hooks import (
    arguments_object,
    completions_shape,
    drop_type,
    fragments_repeat_header,
    id_in_function,
    refuses_tool_calls_content,
    second_call_same_index,
    shift_logprob,
    tool_calls_object,
    twenty_alternatives,
    usage_one_choice,
)
from tests.conformance.breaker_transforms import rename_finish, tool_stream
from tests.conformance.breaking_proxy import Breaker

OBSERVATIONS: tuple[Breaker, ...] = (
    # streamed tool-call deltas
    _b("tool-delta-id-in-function", "tools.stream.first-fragment", "the call id sent inside function",
       reply=on_chunks(tool_stream(id_in_function))),
    _b("tool-delta-no-type", "tools.stream.first-fragment", "tool-call deltas without type",
       reply=on_chunks(tool_stream(drop_type))),
    _b("tool-delta-name-repeated", "tools.stream.name-once",
       "arguments in several deltas, each repeating id, type and function.name",
       reply=on_chunks(fragments_repeat_header)),
    _b("tool-calls-object", "stream.chunk.schema-valid", "delta.tool_calls an object instead of an array",
       reply=on_chunks(tool_calls_object)),
    _b("tool-delta-arguments-object", "stream.chunk.schema-valid",
       "streamed function.arguments a JSON object instead of a string",
       reply=on_chunks(arguments_object)),
    _b("tool-calls-same-index", "tools.stream.index-distinct", "a second streamed call reuses index 0 of the first",
       reply=on_chunks(second_call_same_index)),
    _b("tool-stream-finish-stop", "tools.stream.finish-reason", "a stream with tool calls ends with finish_reason stop",
       reply=each_chunk(rename_finish("tool_calls", "stop"))),
    # tool-result history
    _b("tool-calls-content-refused", "message.assistant.tool-calls-content",
       "400 on an assistant tool call whose content is null or empty",
       request=refuse_when(messages_have(refuses_tool_calls_content), "messages: assistant content must be a non-empty string",
                           status=400)),
    # logprobs
    _b("logprobs-completions-shape", "logprobs.content.present",
       "logprobs as {tokens, token_logprobs, top_logprobs, text_offset}", reply=on_answer(completions_shape)),
    _b("top-absent-twenty", "logprobs.top.count", "20 alternatives per token when top_logprobs is absent",
       reply=on_answer(twenty_alternatives)),
    _b("stream-logprobs-differ", "logprobs.stream.parity", "streamed logprobs 0.01 lower than the answer's",
       reply=each_chunk(each_logprob_entry(shift_logprob))),
    # usage
    _b("usage-n-one-choice", "usage.n.all-choices", "with n 2, usage counts the tokens of one choice",
       reply=both(on_answer(usage_one_choice), each_chunk(usage_one_choice))),
)
