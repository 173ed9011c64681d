"""Conversation -> the chat template's plain {role, content} messages.

The model's ChatML template knows only a role and a string per message, so everything else is
written into text here, the same way for every request:

* content parts: text parts joined with "\\n"; an image part becomes a short description of the
  image (see `images.py`) in brackets, at its place;
* `developer` is a `system` message; a message `name` prefixes its content as `name: `;
* tools (unless tool_choice is `none`): a system-message preamble, `tool_prompt` first, then the
  tools' definitions as JSON lines inside `<tools>`, then the calling convention (Hermes style:
  the format `reference_model.tool_calls` reads; one block per call, several when
  parallel_tool_calls is on). It is appended to the first system message, or becomes the first
  message when there is none;
* an assistant message's tool calls: its content, then one `<tool_call>` block per call;
* a `tool` message: a `user` turn holding `<tool_response>` with the function's name (found from
  the `tool_call_id`) and the result.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from mock_server.request import ChatRequest, ImagePart, Message, TextPart

DEFAULT_TOOL_PROMPT = ("You may call a function to answer the user. "
                       "The functions you can call are listed below.")
CALL_BLOCK = "<tool_call>\n{\"name\": <function name>, \"arguments\": <arguments as a JSON object>}\n</tool_call>"
# The grammar allows one block, or with parallel_tool_calls several: the prompt says the same.
CALLING_CONVENTION = "To call a function, reply with this block and nothing else:\n" + CALL_BLOCK
# Short on purpose: two tools, a question and a call must fit a 256-token context (the tiny model's).
PARALLEL_CALLING_CONVENTION = "To call functions, reply with one block per call and nothing else:\n" + CALL_BLOCK

# An image part -> the text that stands for it in the prompt (raises ApiError when unusable).
Describer = Callable[[ImagePart, str], str]


def _content(message: Message, where: str, describe: Describer | None) -> str:
    pieces = []
    for part in message.parts:
        if isinstance(part, TextPart):
            pieces.append(part.text)
        else:
            param = f"{where}.content[{part.index}]"
            if describe is None:
                from mock_server.errors import ValidationFailed

                raise ValidationFailed(f"$.{param}: image parts are not supported by this server "
                                       f"[rule: text-only]", param=param)
            pieces.append(describe(part, param))
    return "\n".join(pieces)


def tool_preamble(request: ChatRequest) -> str:
    """The system text that presents the tools ("" when there are none or tool_choice is none)."""
    if not request.tools or (request.tool_choice is not None and request.tool_choice.mode == "none"):
        return ""
    lines = [request.tool_prompt if request.tool_prompt is not None else DEFAULT_TOOL_PROMPT, "<tools>"]
    for tool in request.tools:
        fn: dict[str, object] = {"name": tool.name}
        if tool.description:
            fn["description"] = tool.description
        fn["parameters"] = tool.parameters if tool.parameters is not None else {"type": "object"}
        lines.append(json.dumps({"type": "function", "function": fn}, ensure_ascii=False))
    lines += ["</tools>", PARALLEL_CALLING_CONVENTION if request.parallel_tool_calls else CALLING_CONVENTION]
    return "\n".join(lines)


def _call_block(name: str, arguments: str) -> str:
    try:
        args: object = json.loads(arguments)
        args_text = json.dumps(args, ensure_ascii=False)
    except json.JSONDecodeError:
        args_text = arguments  # history is the client's text; keep it as sent
    return "<tool_call>\n" + '{"name": ' + json.dumps(name) + ', "arguments": ' + args_text + "}\n</tool_call>"


def template_messages(request: ChatRequest, describe: Describer | None = None) -> list[dict[str, str]]:
    """The {role, content} messages the chat template renders for this request."""
    names_by_call: dict[str, str] = {}
    out: list[dict[str, str]] = []
    for i, message in enumerate(request.messages):
        where = f"messages[{i}]"
        text = _content(message, where, describe)
        if message.role == "tool":
            name = names_by_call.get(message.tool_call_id or "", "")
            head = f"<tool_response>\n{{\"name\": {json.dumps(name)}, \"tool_call_id\": " \
                   f"{json.dumps(message.tool_call_id)}}}\n"
            out.append({"role": "user", "content": head + text + "\n</tool_response>"})
            continue
        if message.name:
            text = f"{message.name}: {text}"
        if message.role == "assistant" and message.tool_calls:
            blocks = []
            for call in message.tool_calls:
                names_by_call[call.id] = call.name
                blocks.append(_call_block(call.name, call.arguments))
            text = "\n".join(([text] if text else []) + blocks)
        role = "system" if message.role == "developer" else message.role
        out.append({"role": role, "content": text})
    preamble = tool_preamble(request)
    if preamble:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + preamble}
        else:
            out.insert(0, {"role": "system", "content": preamble})
    return out
