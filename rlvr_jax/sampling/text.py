"""Text in, text out: tokenise with an HF tokenizer (chat template or plain), left-pad into buckets,
sample, decode. For users and the evaluation CLI; the trainer uses token ids directly."""
from __future__ import annotations

import numpy as np

from rlvr_jax.sampling.config import SamplingConfig
from rlvr_jax.sampling.sampler import Sampler, default_sampler


def encode(tokenizer, texts: list[str], chat: bool = True, system_prompt: str = "") -> list[list[int]]:
    """Token ids of each prompt; with chat=True through the tokenizer's chat template (generation prompt added)."""
    out = []
    for i, text in enumerate(texts):
        if chat:
            if not getattr(tokenizer, "chat_template", None):
                raise ValueError("generate: the tokenizer has no chat template; pass chat=False")
            msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
            msgs.append({"role": "user", "content": text})
            ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
        else:
            ids = tokenizer(text)["input_ids"]
        if len(ids) == 0:
            raise ValueError(f"generate: prompt {i} encodes to no tokens")
        out.append([int(t) for t in ids])
    return out


def left_pad(rows: list[list[int]], pad_id: int):
    """(ids [B, P], mask [B, P]) with P the longest row; `Sampler` pads further to a bucket."""
    P = max(map(len, rows))
    ids = np.full((len(rows), P), pad_id, np.int32)
    mask = np.zeros((len(rows), P), bool)
    for i, r in enumerate(rows):
        ids[i, P - len(r):], mask[i, P - len(r):] = r, True
    return ids, mask


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
