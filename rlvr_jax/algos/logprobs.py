"""Target-token logprobs and entropies, computed chunk by chunk over the sequence.

A [B, T, V] float32 logits tensor is 4.9 GB for B = 8, T = 1024, V = 151936, so the model is
run once for its final hidden states and `model.project` is applied to one sequence chunk at a
time inside `lax.map`; each chunk body is rematerialised (`jax.checkpoint`), so the backward pass
also keeps only the hidden states and recomputes one chunk's logits at a time. The softmax is
always taken in float32, whatever the compute dtype (bf16 hidden states and logits work).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def logprobs_from_logits(logits_BxTxV, targets_BxT):
    """(logp of the target tokens, entropy of the distribution), both float32 `[B, T]`."""
    logits = logits_BxTxV.astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    tgt = jnp.take_along_axis(logits, targets_BxT[..., None].astype(jnp.int32), axis=-1)[..., 0]
    probs = jnp.exp(logits - logz[..., None])
    entropy = logz - jnp.sum(probs * logits, axis=-1)
    return tgt - logz, entropy


def chunked_logprobs_and_entropy(project, hidden_BxTxD, targets_BxT, chunk: int):
    """`logprobs_from_logits(project(hidden), targets)` without holding more than [B, chunk, V] logits.

    project: hidden [B, C, D] -> logits [B, C, V] (e.g. `model.project`). chunk need not divide T.
    """
    if chunk <= 0:
        raise ValueError(f"config.algo.logprob_chunk: {chunk} must be > 0")
    B, T, D = hidden_BxTxD.shape
    C = min(chunk, T)
    n = -(-T // C)
    pad = n * C - T
    h = jnp.pad(hidden_BxTxD, ((0, 0), (0, pad), (0, 0)))
    tgt = jnp.pad(targets_BxT.astype(jnp.int32), ((0, 0), (0, pad)))
    h_NxBxCxD = h.reshape(B, n, C, D).transpose(1, 0, 2, 3)
    tgt_NxBxC = tgt.reshape(B, n, C).transpose(1, 0, 2)

    @jax.checkpoint
    def one_chunk(args):
        h_c, t_c = args
        return logprobs_from_logits(project(h_c), t_c)

    logp, ent = jax.lax.map(one_chunk, (h_NxBxCxD, tgt_NxBxC))
    unchunk = lambda x: x.transpose(1, 0, 2).reshape(B, n * C)[:, :T]  # noqa: E731
    return unchunk(logp), unchunk(ent)


def token_logprobs_and_entropy(model, tokens_BxT, positions_BxT, kv_mask_BxT, targets_BxT, chunk: int):
    """Runs `model` on tokens and returns (logp of targets, entropy), float32 `[B, T]`, chunked over T.

    targets_BxT is usually tokens shifted left by one (the next token); positions and kv_mask are
    passed to the model as is (left padding). chunk: `algo.logprob_chunk`.
    """
    hidden, _ = model(tokens_BxT, positions_BxT, kv_mask_BxS=kv_mask_BxT, return_hidden=True)
    return chunked_logprobs_and_entropy(model.project, hidden, targets_BxT, chunk)


def token_logprobs_and_entropy_reference(model, tokens_BxT, positions_BxT, kv_mask_BxT, targets_BxT):
    """Unchunked version of `token_logprobs_and_entropy` (full [B, T, V] logits); for tests."""
    logits, _ = model(tokens_BxT, positions_BxT, kv_mask_BxS=kv_mask_BxT)
    return logprobs_from_logits(logits, targets_BxT)
