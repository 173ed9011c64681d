"""The eight chat conversations the greedy decoding goldens are made from (stable names)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecodePrompt:
    """One named conversation; rendered with the GGUF's chat template plus the generation prompt."""

    name: str
    messages: list[dict[str, str]]


_LONG_INSTRUCTION = (
    "You are helping me plan a community vegetable garden for a primary school. The plot is a "
    "rectangle of about twelve by eight metres, facing south, with a brick wall along the north "
    "side and a row of tall trees to the east that shade the ground until late morning. The soil "
    "is heavy clay that stays wet in spring and cracks in late summer. We have a budget of four "
    "hundred euros for the first year, a water tap near the wall, and about twenty children aged "
    "seven to ten who will work in the garden for one hour every Tuesday and Thursday afternoon "
    "during term time. Nobody can water the garden during the six weeks of the summer holiday, "
    "although a parent can visit once a week. The head teacher wants the children to harvest "
    "something before the summer holiday starts, and again in September when they come back. "
    "Some children have allergies to nuts and to strawberries, so please avoid those. We would "
    "also like a small area that attracts bees and butterflies, and a place where the class can "
    "sit in a circle to talk about what they see. Please write a step by step plan: how to "
    "prepare the soil, how to divide the plot into beds with paths, which vegetables and flowers "
    "to choose and when to sow them, how to organise the children into small teams with clear "
    "jobs, how to spend the budget, and how to keep the garden alive during the holiday. Keep "
    "the language simple enough that a teacher with no gardening experience can follow it."
)


def decode_prompts() -> list[DecodePrompt]:
    """Return the eight golden conversations in a fixed order."""
    return [
        DecodePrompt("short_qa", [{"role": "user", "content": "What is the capital of France?"}]),
        DecodePrompt("long_instruction", [{"role": "user", "content": _LONG_INSTRUCTION}]),
        DecodePrompt("code_request", [{
            "role": "user",
            "content": "Write a Python function that checks whether a string is a palindrome, "
                       "ignoring case and punctuation.",
        }]),
        DecodePrompt("multi_turn", [
            {"role": "user", "content": "Hi! Can you recommend a good book about space?"},
            {"role": "assistant", "content": "Sure! \"Cosmos\" by Carl Sagan is a classic that "
                                             "explains the universe in a clear and poetic way."},
            {"role": "user", "content": "Nice. Is there something shorter for a teenager?"},
        ]),
        DecodePrompt("system_prompted", [
            {"role": "system", "content": "You are a pirate. Always answer in the voice of a pirate, "
                                          "in two sentences at most."},
            {"role": "user", "content": "How do I make a cup of tea?"},
        ]),
        DecodePrompt("json_list", [{
            "role": "user",
            "content": "List three fruits with their colour as a JSON array of objects with the "
                       "keys \"name\" and \"colour\". Reply with JSON only.",
        }]),
        DecodePrompt("non_english", [{
            "role": "user",
            "content": "Bonjour ! Peux-tu m'expliquer en quelques phrases pourquoi le ciel est bleu ?",
        }]),
        DecodePrompt("math", [{
            "role": "user",
            "content": "A train travels 180 km in 2 hours and then 120 km in 1.5 hours. "
                       "What is its average speed over the whole trip? Show your steps.",
        }]),
    ]
