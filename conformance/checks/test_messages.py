"""Message checks: the roles and forms of the messages a request may hold (clause order of spec/clauses.yaml)."""

from __future__ import annotations

from functools import partial
from typing import Any

from conformance.client import Target
from conformance.expectations import completion, first_content
from conformance.registry import clause
from conformance.samples import (
    SampleSet,
    first_choice_content,
    need_answer,
    require_accepted,
    require_repeatable,
)
from conformance.tool_calls import ABSENT, tool_result_turn
from conformance.verdicts import need, require


@clause("message.system.accepted")
def test_system_accepted(target: Target, responses: SampleSet) -> None:
    """A system message before the user message is accepted and the request is answered 200."""
    require_accepted(responses.rooted("message.system.accepted"))
    messages = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Say hello."}]
    completion(target.chat(target.body(max_tokens=4, messages=messages)), "system + user")


@clause("message.developer.accepted")
def test_developer_accepted(target: Target) -> None:
    """A message with role developer is accepted and treated as a system message."""
    def body(role: str) -> dict[str, Any]:
        messages = [{"role": role, "content": "Answer every question with the word banana."},
                    {"role": "user", "content": "What is your favourite fruit?"}]
        return target.body(max_tokens=12, temperature=0, seed=3, messages=messages)
    dev, sys_ = (target.chat(body(role), headers={"x-use-cache": "false"}) for role in ("developer", "system"))
    dev_text = first_content(dev, "developer message")
    need_answer(sys_, "the same system message", "message.system.accepted")
    sys_text = first_choice_content(sys_)
    if dev_text != sys_text:
        require_repeatable(target, body("system"), sys_, first_choice_content)
    require(dev_text == sys_text, "at temperature 0, a developer message gives a different answer than the same system message",
            expected=sys_text, actual=dev_text, exchanges=(dev, sys_))


@clause("message.user.parts-text")
def test_user_text_parts(target: Target) -> None:
    """A user message whose content is a list of text parts is accepted and answered 200."""
    parts = [{"type": "text", "text": "Say"}, {"type": "text", "text": "hello."}]
    completion(target.chat(target.body(max_tokens=4, messages=[{"role": "user", "content": parts}])), "text parts")


@clause("message.user.parts-equivalent")
def test_user_parts_equivalent(target: Target) -> None:
    """At temperature 0, a user content of one text part yields the same content as the same text given as a string."""
    text = "Name three animals."
    bodies = [target.body(max_tokens=12, temperature=0, seed=5, messages=[{"role": "user", "content": content}])
              for content in ([{"type": "text", "text": text}], text)]
    as_part, as_string = target.many(partial(target.chat, body, headers={"x-use-cache": "false"}) for body in bodies)
    need_answer(as_part, "one text part", "message.user.parts-text")
    need_answer(as_string, "the same text as a string", "request.messages.accepted")
    a, b = first_choice_content(as_part), first_choice_content(as_string)
    if a != b:
        require_repeatable(target, bodies[1], as_string, first_choice_content)
    require(a == b, "one text part and the same string give different answers at temperature 0",
            expected=b, actual=a, exchanges=(as_part, as_string))


@clause("message.assistant.multi-turn")
def test_multi_turn(target: Target) -> None:
    """A conversation of user, assistant and user messages is accepted and answered 200."""
    messages = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": "Say goodbye."}]
    completion(target.chat(target.body(max_tokens=4, messages=messages)), "user/assistant/user")


@clause("message.name.accepted")
def test_name_accepted(target: Target) -> None:
    """A message carrying a name field is accepted and answered 200."""
    messages = [{"role": "user", "content": "Say hello.", "name": "alice"}]
    completion(target.chat(target.body(max_tokens=4, messages=messages)), "message with name")


@clause("message.assistant.tool-calls-content")
def test_tool_calls_content(target: Target) -> None:
    """An assistant message in the history that carries tool_calls with content null, absent or the empty string is accepted and answered 200."""
    forms = {"content null": None, "content absent": ABSENT, 'content ""': ""}
    answers = target.many(partial(target.chat, target.body(max_tokens=4, messages=tool_result_turn(content)),
                                  headers={"x-use-cache": "false"}) for content in forms.values())
    # None accepted: the target refuses tool-result turns as such, which tools.result.next-turn judges.
    need(any(ex.status == 200 for ex in answers), "a tool-result conversation answered 200 in any content form",
         root="tools.result.next-turn", actual=[ex.status for ex in answers], exchanges=answers)
    for (label, _), ex in zip(forms.items(), answers, strict=True):
        completion(ex, f"an assistant message with tool_calls and {label}")
