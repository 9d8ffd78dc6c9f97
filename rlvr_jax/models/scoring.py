"""Teacher-forced scoring of a model: target-token logprobs and entropies, chunk by chunk over the sequence.

A [B, T, V] float32 logits tensor is 4.9 GB for B = 8, T = 1024, V = 151936, so the model is
run once for its final hidden states and `model.project` is applied to one sequence chunk at a
time inside `lax.map`; each chunk body is rematerialised (`jax.checkpoint`), so the backward pass
also keeps only the hidden states and recomputes one chunk's logits at a time. A sequence that fits
in one chunk is projected directly (its logits are kept for the backward pass instead of recomputed). The softmax is
always taken in float32, whatever the compute dtype (bf16 hidden states and logits work).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rlvr_jax.models.transformer import init_cache, prompt_positions


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
    if T <= chunk:  # one chunk: no map, and no recompute of the LM head in the backward pass
        return logprobs_from_logits(project(hidden_BxTxD), targets_BxT)
    C = chunk
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


def _one_per_group(x, group: int):
    """Row 0 of each group of `group` consecutive rows ([B, ...] -> [B / group, ...]; shard-local)."""
    return x.reshape(x.shape[0] // group, group, *x.shape[1:])[:, 0]


def _repeat_per_group(x, group: int):
    """Each row `group` times in a row ([U, ...] -> [U * group, ...])."""
    return jnp.broadcast_to(x[:, None], (x.shape[0], group, *x.shape[1:])).reshape(-1, *x.shape[1:])


def response_logprobs_and_entropy(model, prompt_BxP, prompt_mask_BxP, response_BxN, group: int, chunk: int):
    """logp of every response token given its prompt and the response before it, and the entropy there.

    Returns float32 `[B, N]`, from `response_hidden` projected chunk by chunk (only the N positions that
    predict response tokens are projected onto the vocabulary).
    """
    h_BxNxD = response_hidden(model, prompt_BxP, prompt_mask_BxP, response_BxN, group)
    return chunked_logprobs_and_entropy(model.project, h_BxNxD, response_BxN, chunk)


def response_hidden(model, prompt_BxP, prompt_mask_BxP, response_BxN, group: int):
    """Final hidden states `[B, N, D]` at the N positions that predict the response tokens.

    Prompts are left-padded; rows come in groups of `group` consecutive rows sharing one prompt (the
    sampler's prompt-major order). With group > 1 each prompt runs once and its keys/values, repeated to
    the group's rows through a differentiable KV cache, are read by all G responses (their gradients add
    up in the prompt's activations): (G - 1) / G of the prompt compute is skipped. group = 1 runs one full
    forward per row.
    """
    B, P = prompt_BxP.shape
    N = response_BxN.shape[1]
    if group > 1 and B % group:
        raise ValueError(f"{B} rows do not split into groups of {group} (rollout.group_size)")
    prompt_mask = prompt_mask_BxP.astype(bool)
    pos_BxP = prompt_positions(prompt_mask)
    # response token j sits at position len(prompt) + j; inputs are the response minus its last token
    pos_BxM = jnp.sum(prompt_mask, -1, dtype=jnp.int32)[:, None] + jnp.arange(N - 1, dtype=jnp.int32)[None]
    inputs_BxM = response_BxN[:, :-1].astype(jnp.int32)
    kv_BxS = jnp.concatenate([prompt_mask, jnp.ones((B, N - 1), bool)], axis=1)
    if group <= 1:
        h, _ = model(jnp.concatenate([prompt_BxP.astype(jnp.int32), inputs_BxM], 1),
                     jnp.concatenate([pos_BxP, pos_BxM], 1), kv_mask_BxS=kv_BxS, return_hidden=True)
        h_BxNxD = h[:, P - 1:]
    else:
        remat = model.cfg.remat
        one = lambda x: _one_per_group(x, group)  # noqa: E731
        rep = lambda x: _repeat_per_group(x, group)  # noqa: E731
        cache = init_cache(model.cfg, B // group, P + N - 1)
        h_UxPxD, cache = model(one(prompt_BxP).astype(jnp.int32), one(pos_BxP), kv_mask_BxS=one(kv_BxS),
                               cache=cache, cache_index=0, return_hidden=True, remat=remat)
        h_BxNxD = rep(h_UxPxD[:, -1:])  # the last prompt token predicts response token 0
        if N > 1:
            cache = [(rep(k), rep(v)) for k, v in cache]
            h_BxMxD, _ = model(inputs_BxM, pos_BxM, kv_mask_BxS=kv_BxS, cache=cache, cache_index=P,
                               return_hidden=True, remat=remat)
            h_BxNxD = jnp.concatenate([h_BxNxD, h_BxMxD], axis=1)
    return h_BxNxD


def token_logprobs_and_entropy_reference(model, tokens_BxT, positions_BxT, kv_mask_BxT, targets_BxT):
    """Unchunked version of `token_logprobs_and_entropy` (full [B, T, V] logits); for tests."""
    logits, _ = model(tokens_BxT, positions_BxT, kv_mask_BxS=kv_mask_BxT)
    return logprobs_from_logits(logits, targets_BxT)
