"""Text in, text out: tokenise with an HF tokenizer (chat template or plain), left-pad into buckets,
sample, decode. For users and the evaluation CLI; the trainer uses token ids directly."""
from __future__ import annotations

import numpy as np

from rlvr_jax.models.tokenizer import format_prompt, left_pad, tokenize_prompts
from rlvr_jax.sampling.config import SamplingConfig
from rlvr_jax.sampling.sampler import Sampler, default_sampler


def encode(tokenizer, texts: list[str], chat: bool = True, system_prompt: str = "") -> list[list[int]]:
    """Token ids of each prompt, through the one prompt encoder (`models.tokenizer`), unpadded."""
    toks, mask = tokenize_prompts(tokenizer, [format_prompt(tokenizer, t, chat=chat, system=system_prompt)
                                              for t in texts], chat=chat)
    return [row[m].tolist() for row, m in zip(toks, mask)]


def generate(policy, tokenizer, texts: list[str], cfg: SamplingConfig, key, chat: bool = True, memory=None,
             sampler: Sampler | None = None, system_prompt: str = "") -> list[str]:
    """cfg.num_samples completions per text (prompt-major list), decoded without special tokens.

    Without stop_token_ids in cfg, the tokenizer's EOS token stops a response.
    """
    if isinstance(texts, str):
        texts = [texts]
    eos = getattr(tokenizer, "eos_token_id", None)
    if not cfg.stop_token_ids and eos is not None:
        cfg = cfg.replace(stop_token_ids=(int(eos),))
    ids, mask = left_pad(encode(tokenizer, texts, chat, system_prompt), cfg.pad_id)
    r = (sampler or default_sampler())(policy, ids, mask, key, cfg, memory)
    tokens, lengths, truncated = np.asarray(r.tokens_BxN), np.asarray(r.lengths_B), np.asarray(r.truncated_B)
    out = []
    for row in range(tokens.shape[0]):
        n = int(lengths[row]) - (0 if truncated[row] else 1)  # drop the stop token
        out.append(tokenizer.decode(tokens[row, :n].tolist(), skip_special_tokens=True))
    return out
