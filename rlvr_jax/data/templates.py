"""Prompt templates: chat (the tokenizer's chat template, through `models.tokenizer.format_prompt`), plain
(`{question}` substitution), none."""
from __future__ import annotations

from typing import Any, Callable

from rlvr_jax.data.schemas import DataError
from rlvr_jax.models.tokenizer import format_prompt

DEFAULT_PLAIN = ("Question: {question}\nPlease reason step by step, and put your final answer within "
                 "\\boxed{}.\nAnswer:")
DEFAULT_CHAT_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."
TEMPLATES = ("chat", "plain", "none")


def make_template(kind: str, *, tokenizer: Any = None, system_prompt: str = "", plain_template: str = DEFAULT_PLAIN,
                  chat_suffix: str = DEFAULT_CHAT_SUFFIX) -> Callable[[str], str]:
    """question -> prompt text. `chat` needs an object with `apply_chat_template` (e.g. an HF tokenizer)."""
    if kind == "none":
        return lambda question: question
    if kind == "plain":
        if "{question}" not in plain_template:
            raise DataError(f"plain prompt template {plain_template!r} has no {{question}} placeholder")
        return lambda question: plain_template.replace("{question}", question)
    if kind == "chat":
        if tokenizer is None or not hasattr(tokenizer, "apply_chat_template"):
            raise DataError("config.data.template: 'chat' needs a tokenizer with apply_chat_template "
                            f"(got {type(tokenizer).__name__}); use 'plain' for base models")

        return lambda question: format_prompt(tokenizer, question + chat_suffix, chat=True, system=system_prompt)
    raise DataError(f"config.data.template: {kind!r} is not one of {', '.join(map(repr, TEMPLATES))}")
