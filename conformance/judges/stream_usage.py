"""The usage-chunk rules of a stream, judged once (see stream.py for what a stream judge takes).

The usage chunk is found by what makes it one, a non-null usage, never by its choices: a server
whose usage chunk also carries a choice (as LiteLLM's n 2 stream does) breaks
stream.usage.last-chunk (its choices list is not empty), not the rules about the other chunks.
When several chunks carry usage, the usage chunk is the last of them.
"""

from __future__ import annotations

from typing import Any

from conformance.exchange import Exchange
from conformance.judges.registry import STREAM, Problem, judge
from conformance.judges.stream import answered_stream, chunk_choices, request_of


def with_usage(ex: Exchange) -> bool:
    """The request asked for a usage chunk (stream_options.include_usage true)."""
    options = request_of(ex).get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def usage_chunks(chunks: list[dict[str, Any]]) -> list[int]:
    """The positions of the chunks that carry a usage (a non-null usage field)."""
    return [i for i, chunk in enumerate(chunks) if chunk.get("usage") is not None]


def usage_chunk(chunks: list[dict[str, Any]]) -> int | None:
    """The position of the usage chunk: the last chunk that carries a usage (None when none does)."""
    carrying = usage_chunks(chunks)
    return carrying[-1] if carrying else None


@judge("stream.usage.absent-unless-requested", on=[STREAM])
def absent_unless_requested(ex: Exchange) -> list[Problem]:
    """Without include_usage true, every chunk has at least one choice and a null or absent usage."""
    stream = answered_stream(ex)
    if stream is None or with_usage(ex):
        return []
    found = []
    for i, chunk in enumerate(stream.chunks):
        if not chunk_choices(chunk):
            found.append(Problem(f"chunk {i}: no choice although usage was not requested",
                                 expected="at least one choice", actual=chunk.get("choices")))
        if chunk.get("usage") is not None:
            found.append(Problem(f"chunk {i}: usage although not requested", expected="null or absent",
                                 actual=chunk.get("usage")))
    return found


@judge("stream.usage.last-chunk", on=[STREAM])
def usage_last(ex: Exchange) -> list[Problem]:
    """With include_usage true, exactly one chunk carries usage; it is the last chunk, with an empty choices list."""
    stream = answered_stream(ex)
    if stream is None or not with_usage(ex):
        return []
    chunks = stream.chunks
    carrying = usage_chunks(chunks)
    if len(carrying) != 1:
        found = [Problem(f"{len(carrying)} chunks carry usage", expected=1, actual=carrying[:10])]
        if not carrying:
            return found
    else:
        found = []
    last = carrying[-1]
    if last != len(chunks) - 1:
        found.append(Problem(f"the usage chunk is chunk {last}, not the last chunk", expected=len(chunks) - 1,
                             actual=last))
    if chunks[last].get("choices") != []:
        found.append(Problem(f"the usage chunk (chunk {last}) has a choices list that is not empty", expected=[],
                             actual=chunks[last].get("choices")))
    return found


def _others(ex: Exchange) -> list[tuple[int, dict[str, Any]]]:
    """(position, chunk) of every chunk but the usage chunk, in a stream that asked for usage."""
    stream = answered_stream(ex)
    if stream is None or not with_usage(ex):
        return []
    skip = usage_chunk(stream.chunks)
    return [(i, chunk) for i, chunk in enumerate(stream.chunks) if i != skip]


@judge("stream.usage.null-elsewhere", on=[STREAM])
def usage_null_elsewhere(ex: Exchange) -> list[Problem]:
    """With include_usage true, every chunk other than the usage chunk has usage null or absent."""
    return [Problem(f"chunk {i}: usage outside the usage chunk", expected="null or absent", actual=chunk["usage"])
            for i, chunk in _others(ex) if chunk.get("usage") is not None]


@judge("stream.usage.explicit-null", on=[STREAM])
def usage_explicit_null(ex: Exchange) -> list[Problem]:
    """With include_usage true, every chunk other than the usage chunk carries the usage field with the value null."""
    return [Problem(f"chunk {i}: usage is not an explicit null", expected="usage: null",
                    actual=chunk.get("usage", "(absent)"))
            for i, chunk in _others(ex) if not ("usage" in chunk and chunk["usage"] is None)]


__all__ = ["usage_chunk", "usage_chunks", "with_usage"]
