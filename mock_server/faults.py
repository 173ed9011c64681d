"""Fault injection: `x-mock-fault` makes one answer break one rule of the spec, on purpose.

For proving that conformance checks can fail. Off unless the server runs with `--allow-faults`
(CHATCONFORM_MOCK_ALLOW_FAULTS); a request naming a fault on a server without it is refused with 400,
so a fault is never applied, or dropped, by surprise. The header holds comma-separated names:

  http-500          answer 500 with the error envelope instead of generating
  stall=S           wait S seconds (at most 120) before the first byte of the answer: a dead
                    server, silent (no SSE keep-alive comments either), so client read timeouts fire
  slow=S            hold every token back S seconds (at most 10): a stream that is slow but alive
                    (keep-alive comments fill its gaps); a non-streamed answer comes S x tokens later
  wrong-content-type  send the JSON body as text/plain
  no-id             leave `id` out of the body / every chunk
  bad-usage         total_tokens one more than prompt + completion
  no-role           the first chunk of a stream has no role
  double-finish     a stream repeats the finish chunk of each choice
  no-usage-chunk    a stream leaves out the usage chunk although it was requested
  error-mid-stream  a stream sends an error event after its first token chunk, then ends
  no-done           a stream ends without `data: [DONE]`
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from mock_server.errors import ApiError, BadRequest


class Fault(str, enum.Enum):
    """The faults `x-mock-fault` names; code tests them as members, so a misspelt name cannot exist."""

    HTTP_500 = "http-500"
    STALL = "stall"
    SLOW = "slow"
    WRONG_CONTENT_TYPE = "wrong-content-type"
    NO_ID = "no-id"
    BAD_USAGE = "bad-usage"
    NO_ROLE = "no-role"
    DOUBLE_FINISH = "double-finish"
    NO_USAGE_CHUNK = "no-usage-chunk"
    ERROR_MID_STREAM = "error-mid-stream"
    NO_DONE = "no-done"


FAULT_NAMES = tuple(f.value for f in Fault)
MAX_STALL_S = 120.0
MAX_SLOW_S = 10.0  # per token
DELAY_LIMITS = {Fault.STALL: MAX_STALL_S, Fault.SLOW: MAX_SLOW_S}  # the faults that take seconds, and their bound


class InjectedFault(ApiError):
    """The 500 of the `http-500` fault."""

    status, error_type, openai_type, code = 500, "internal", "server_error", "injected_fault"


@dataclass(frozen=True)
class Faults:
    """The faults one request asked for."""

    names: frozenset[Fault] = frozenset()
    stall_s: float = 0.0  # before the first byte
    slow_s: float = 0.0  # before every token

    def __contains__(self, fault: object) -> bool:
        # Only members: a plain string (a typo among them) would otherwise be silently never found.
        if not isinstance(fault, Fault):
            raise TypeError(f"ask for a Fault member, got {fault!r}")
        return fault in self.names


NO_FAULTS = Faults()


def parse_faults(header: str | None, allowed: bool) -> Faults:
    """Read `x-mock-fault`; 400 naming the problem when faults are off or a name is unknown."""
    if header is None or not header.strip():
        return NO_FAULTS
    if not allowed:
        raise BadRequest("x-mock-fault: fault injection is disabled on this server (start it with --allow-faults)",
                         param="x-mock-fault")
    names: set[Fault] = set()
    delays = dict.fromkeys(DELAY_LIMITS, 0.0)
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name not in FAULT_NAMES:
            raise BadRequest(f"x-mock-fault: unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}",
                             param="x-mock-fault")
        fault = Fault(name)
        if fault in DELAY_LIMITS:
            delays[fault] = _seconds(fault, value, item.strip())
        elif value:
            raise BadRequest(f"x-mock-fault: {name} takes no value, got {item.strip()!r}", param="x-mock-fault")
        names.add(fault)
    return Faults(frozenset(names), stall_s=delays[Fault.STALL], slow_s=delays[Fault.SLOW])


def _seconds(fault: Fault, value: str, item: str) -> float:
    name, limit = fault.value, DELAY_LIMITS[fault]
    try:
        seconds = float(value)
    except ValueError:
        raise BadRequest(f"x-mock-fault: {name} needs seconds, as {name}=2.5, got {item!r}",
                         param="x-mock-fault") from None
    if not 0 <= seconds <= limit:
        raise BadRequest(f"x-mock-fault: {name} must be in [0, {limit:g}] seconds, got {seconds:g}",
                         param="x-mock-fault")
    return seconds


def break_body(body: dict[str, Any], faults: Faults) -> dict[str, Any]:
    """A non-streaming body (or a chunk) with the requested body faults applied."""
    if not faults.names:
        return body
    out = dict(body)
    if Fault.NO_ID in faults:
        out.pop("id", None)
    usage = out.get("usage")
    if Fault.BAD_USAGE in faults and isinstance(usage, dict):
        out["usage"] = {**usage, "total_tokens": usage["total_tokens"] + 1}
    return out
