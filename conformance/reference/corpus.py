"""The reference corpus: conversations both sides answer, and the request bodies built from them.

The conversations exercise what the chat template and the tokenizer must get right: with and
without a system message (SmolLM2's template adds its own default system prompt when there is
none), an empty system message, several turns, Latin, CJK, Cyrillic, Greek, Arabic and Hebrew
text, emoji with modifiers and joiners, combining characters, code, JSON, markdown, runs of spaces,
tabs and blank lines, CRLF line ends, leading and trailing whitespace, digits, punctuation runs, and
a long prompt (about 900 tokens). Only the roles the model's template knows (system, user,
assistant) and plain string contents are used: names, tools and images are written into the
prompt by each server's own convention, which the model's template does not define.

Every body is greedy (temperature 0) with logprobs and five alternatives per token; the oracle is
asked the same body without `model`, which `request_key` leaves out when it files answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

CORPUS_VERSION = 1
GREEDY_MAX_TOKENS = 32
TOP_LOGPROBS = 5


@dataclass(frozen=True)
class Conversation:
    """One conversation of the corpus: an id, what it exercises, and its messages."""

    id: str
    purpose: str
    messages: tuple[tuple[str, str], ...]  # (role, content)

    def as_messages(self) -> list[dict[str, str]]:
        """The messages as request JSON."""
        return [{"role": role, "content": content} for role, content in self.messages]


def _user(text: str) -> tuple[tuple[str, str], ...]:
    return (("user", text),)


_FIB = "```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```\n"
_STEPS = " ".join(
    f"Step {i}: {verb} the {thing} and keep a note of what you saw, because the garden changes every week "
    f"and the notes from {season} will help you decide what to plant next year."
    for i, (verb, thing, season) in enumerate([
        ("water", "tomatoes", "spring"), ("prune", "roses", "summer"), ("weed", "carrot rows", "autumn"),
        ("mulch", "strawberries", "winter"), ("check", "compost heap", "spring"), ("sow", "beans", "summer"),
        ("stake", "sunflowers", "autumn"), ("net", "cabbages", "winter"), ("feed", "lemon tree", "spring"),
        ("harvest", "courgettes", "summer"), ("rake", "leaves", "autumn"), ("clean", "tools", "winter"),
        ("divide", "irises", "spring"), ("thin", "lettuce", "summer"), ("plant", "garlic", "autumn"),
        ("order", "seeds", "winter"), ("repot", "herbs", "spring"), ("dry", "lavender", "summer"),
    ], start=1))

CORPUS: tuple[Conversation, ...] = (
    Conversation("plain", "one user turn, no system message (the template's default system prompt)",
                 _user("What is the capital of France? Answer in one sentence.")),
    Conversation("system", "a system message", (
        ("system", "You are a pirate. Answer in one short sentence."), ("user", "Where do parrots live?"))),
    Conversation("empty-system", "an empty system message", (("system", ""), ("user", "Name a primary colour."))),
    Conversation("multi-turn", "user, assistant, user", (
        ("user", "My name is Ada."), ("assistant", "Nice to meet you, Ada! How can I help you today?"),
        ("user", "What is my name?"))),
    Conversation("multi-turn-system", "a system message and three exchanges", (
        ("system", "You answer with one word."), ("user", "Is water wet?"), ("assistant", "Yes."),
        ("user", "Is fire cold?"), ("assistant", "No."), ("user", "Is ice cold?"))),
    Conversation("many-turns", "seven short turns", (
        ("user", "Say one."), ("assistant", "One."), ("user", "Say two."), ("assistant", "Two."),
        ("user", "Say three."), ("assistant", "Three."), ("user", "Now count to five, starting where we stopped."))),
    Conversation("unicode-latin", "accents, guillemets, dashes, ligature-free Latin",
                 _user("Translate to English: « Où est la bibliothèque ? » — naïve café, Ångström, Straße, façade.")),
    Conversation("unicode-cjk", "Japanese and Chinese", _user("日本語で「ありがとう」はどういう意味ですか？简体中文也可以回答。")),
    Conversation("unicode-emoji", "emoji, a skin-tone modifier, a zero-width-joiner sequence",
                 _user("Describe these emoji in words: 🙂🚀🌍👍🏽👨‍👩‍👧 (the last one is a family).")),
    Conversation("unicode-combining", "combining accents and compatibility characters",
                 _user("Is e\u0301 the same letter as \u00e9? And is \u212b the same as \u00c5? Answer briefly.")),
    Conversation("unicode-scripts", "Cyrillic, Greek, Arabic, Hebrew",
                 _user("Привет! Γειά σου! مرحبا! שלום! Which languages are these greetings in?")),
    Conversation("code-python", "a fenced code block with indentation", _user(_FIB + "What does fib(10) return?")),
    Conversation("code-json", "JSON with a syntax error",
                 _user('Fix this JSON: {"name": "Ada", "tags": ["math", "engines",], "born": 1815}')),
    Conversation("markdown", "a heading, a list and a table", _user(
        "# Pets\n\n- cat\n- dog\n\n| name | legs |\n|------|------|\n| cat  | 4    |\n| bird | 2    |\n\n"
        "Turn the table into one sentence.")),
    Conversation("whitespace-runs", "runs of spaces, tabs and blank lines inside the text",
                 _user("Count the words:  one   two\t\tthree\n\n\nfour    five")),
    Conversation("whitespace-edges", "leading and trailing spaces and newlines around the content",
                 _user("   \n  Please reply with a haiku about spaces.  \n\n  ")),
    Conversation("crlf-tabs", "CRLF line ends and a tab indent",
                 _user("line one\r\nline two\r\n\tindented line\r\n\r\nWhich line is indented?")),
    Conversation("digits", "long numbers and decimals",
                 _user("What is 12345678 + 87654321? Also, is 3.14159 bigger than 2.71828?")),
    Conversation("punctuation", "runs of punctuation",
                 _user("Hello!!! Is this... really?!? Yes --- no *** maybe ### ok @@@ (fine) [done] {end}")),
    Conversation("long", "a long prompt (about 900 tokens)", (
        ("system", "You are a gardening assistant."), ("user", _STEPS + "\n\nWhich step is about garlic?"))),
)


def greedy_body(messages: list[dict[str, str]], **overrides: Any) -> dict[str, Any]:
    """A greedy request for the messages: logprobs with five alternatives, then the overrides."""
    body: dict[str, Any] = {"messages": messages, "max_tokens": GREEDY_MAX_TOKENS, "temperature": 0,
                            "logprobs": True, "top_logprobs": TOP_LOGPROBS}
    body.update(overrides)
    return body


def request_key(body: dict[str, Any]) -> str:
    """The body without `model`, as canonical JSON: how answers are filed and found again."""
    return json.dumps({k: v for k, v in body.items() if k != "model"}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))


def by_id(conversation_id: str) -> Conversation:
    """The corpus conversation with this id."""
    for conversation in CORPUS:
        if conversation.id == conversation_id:
            return conversation
    raise KeyError(conversation_id)
