"""The varied text corpus the tokenizer golden is made from (names are stable case IDs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenizerCase:
    """One text to tokenize, and whether control-token texts in it are parsed as control tokens."""

    name: str
    text: str
    special: bool


_PLAIN: list[tuple[str, str]] = [
    # English prose
    ("prose.sentence", "The quick brown fox jumps over the lazy dog."),
    ("prose.paragraph", "It was the best of times, it was the worst of times, it was the age of wisdom, "
     "it was the age of foolishness; it was the epoch of belief, it was the epoch of incredulity."),
    ("prose.contractions", "I'm sure they'll say we've done what you'd've done, isn't it? Don't."),
    ("prose.punctuation", "Wait... what?! (Really.) \"Quoted\" -- 'single' [brackets] {braces} <angle>; a:b"),
    ("prose.capitals", "NASA and the UN met in NEW YORK; CamelCaseWords and snake_case_words too."),
    ("prose.newline_paragraphs", "First paragraph.\n\nSecond paragraph.\nA line break."),
    # code
    ("code.python", "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
     "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"),
    ("code.python_class", "class Point:\n\tdef __init__(self, x, y):\n\t\tself.x = x  # tab indented\n"),
    ("code.javascript", "const add = (a, b) => a + b;\nconsole.log(`sum: ${add(2, 3)}`);\n"
     "if (x !== null && y >= 10) { return [...items]; }"),
    ("code.json", '{"name": "SmolLM2", "layers": 30, "ratio": 0.75, "tags": ["a", "b"], '
     '"nested": {"ok": true, "none": null}}'),
    ("code.json_pretty", '{\n  "model": "smollm2",\n  "messages": [\n    {"role": "user", "content": "hi"}\n  ]\n}'),
    ("code.shell", "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do wc -l \"$f\" | sort -n >> out.log; done\n"),
    ("code.html", "<div class=\"main\"><p>Hello&nbsp;world</p><br/></div>"),
    ("code.sql", "SELECT id, COUNT(*) AS n FROM users WHERE age > 21 GROUP BY id ORDER BY n DESC;"),
    # digits and numbers
    ("digits.single", "7"),
    ("digits.long_run", "12345678901234567890123456789012345678901234567890"),
    ("digits.decimals", "3.14159 2.71828 -0.5 1e-5 6.022e23 0.000001"),
    ("digits.phone_like", "+1 (555) 123-4567, 555.867.5309, +44 20 7946 0958"),
    ("digits.money_dates", "$1,234,567.89 on 2024-03-15T10:30:00Z, 15/03/2024, 99% of 1000"),
    ("digits.mixed_words", "abc123def 4x4 mp3 h264 x86_64 2nd 3rd 21st"),
    # whitespace runs
    ("ws.single_space", " "),
    ("ws.spaces_run", "a      b"),
    ("ws.leading_spaces", "   leading spaces"),
    ("ws.trailing_spaces", "trailing spaces   "),
    ("ws.tabs", "\tone\t\ttwo\t\t\tthree"),
    ("ws.newlines", "\n\nline\n\n\n\nafter four newlines\n"),
    ("ws.crlf", "windows\r\nline\r\nendings\r\n"),
    ("ws.mixed", " \t \n  \t\n\n   x \t y  \n"),
    ("ws.only_newlines", "\n\n\n"),
    ("ws.many_spaces", " " * 40),
    # unicode
    ("unicode.accents", "Café naïve résumé façade jalapeño Ångström Øresund Straße"),
    ("unicode.cjk_chinese", "我喜欢自然语言处理。今天天气很好！"),
    ("unicode.cjk_japanese", "こんにちは、世界。カタカナと漢字を混ぜる。"),
    ("unicode.korean", "안녕하세요 세계"),
    ("unicode.arabic", "مرحبا بالعالم، كيف حالك؟"),
    ("unicode.devanagari", "नमस्ते दुनिया, यह एक परीक्षण है।"),
    ("unicode.cyrillic_greek", "Привет, мир! Γειά σου Κόσμε αβγδε"),
    ("unicode.combining_marks", "e\u0301 a\u0308 n\u0303 Z\u0351\u0352\u0353 o\u0336v\u0336e\u0336r"),
    ("unicode.math_symbols", "∀x ∈ ℝ: x² ≥ 0 ⇒ √x² = |x|, ∑ᵢ aᵢ ≈ ∞ ≠ π"),
    ("unicode.nbsp_zero_width", "non\u00a0breaking\u200bzero\u200dwidth\ufeffbom"),
    # emoji
    ("emoji.simple", "I love it 😀👍🎉!"),
    ("emoji.zwj_family", "👨‍👩‍👧‍👦 family, 👩‍💻 coder, 🏳️‍🌈 flag"),
    ("emoji.flags", "🇫🇷🇩🇪🇯🇵🇺🇸"),
    ("emoji.skin_tones", "👋🏻👋🏽👋🏿"),
    ("emoji.keycap", "1️⃣ #️⃣ ©️ ™️"),
    # URLs and paths
    ("url.https", "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?query=a%20b&x=1#frag"),
    ("url.email_path", "mail me: first.last+tag@example.org, see /usr/local/bin/python3 or C:\\Users\\me"),
    # single characters
    ("char.letter", "a"),
    ("char.space_letter", " a"),
    ("char.newline", "\n"),
    ("char.tab", "\t"),
    ("char.punct", "!"),
    ("char.emoji", "🙂"),
    ("char.cjk", "中"),
    ("char.nul_free_control", "\x07\x1b"),
    # long words
    ("long.word", "Pneumonoultramicroscopicsilicovolcanoconiosis"),
    ("long.german", "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft"),
    ("long.repeated_letter", "a" * 200),
    ("long.no_spaces", "thisisaverylongidentifierwithoutanyseparators_and_then_some_more_snake_case"),
    ("long.base64", "TWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsuTWFueSBoYW5kcyBtYWtlIGxpZ2h0IHdvcmsu=="),
    # empty
    ("empty", ""),
]

_CHATML_CONVERSATION = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n"
    "<|im_start|>assistant\n2 + 2 = 4.<|im_end|>\n"
    "<|im_start|>user\nAnd in French? 🇫🇷<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def corpus_cases(control_tokens: list[str]) -> list[TokenizerCase]:
    """Return every golden case; `control_tokens` are the texts of token ids 0..16 from the GGUF."""
    cases = [TokenizerCase(name, text, special=False) for name, text in _PLAIN]
    # Each control token alone, in both modes: special=False must split it into plain tokens.
    for token_id, text in enumerate(control_tokens):
        for special in (False, True):
            mode = "special" if special else "plain"
            cases.append(TokenizerCase(f"control.{token_id}.{mode}", text, special))
    embedded = f"before{control_tokens[2]}after {control_tokens[1]}user\nhi{control_tokens[0]}"
    for special in (False, True):
        mode = "special" if special else "plain"
        cases.append(TokenizerCase(f"control.embedded.{mode}", embedded, special))
        cases.append(TokenizerCase(f"chatml.conversation.{mode}", _CHATML_CONVERSATION, special))
        cases.append(TokenizerCase(f"control.adjacent.{mode}", "".join(control_tokens[:3]) * 2, special))
        cases.append(TokenizerCase(f"control.partial.{mode}", "<|im_start <|im_end|x <|endoftext|", special))
    names = [case.name for case in cases]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise ValueError(f"tokenizer corpus: duplicate case names {sorted(duplicates)}")
    return cases
