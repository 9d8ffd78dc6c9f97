"""Mechanism probes on a real policy: sampling bias and semantic coupling, measured by teacher forcing.

Both take an update rule as a callable `update(model, batch) -> new model` (the input model is
left untouched), so they do not depend on the trainer. The default is one plain SGD ascent
step on sum_i weight_i * log p(answer_i | prompt_i). A batch is a dict of host arrays
tokens_BxT / mask_BxT (left-padded prompt of `prompt_len` tokens + right-padded answer),
prompt_len and weight_B.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rlvr_jax.eval.modes import build_rows, check_shapes, row_scores, sequence_logprobs

Update = Callable[[nnx.Module, dict], nnx.Module]


@functools.partial(jax.jit, static_argnums=(0, 5))
def _weighted_logp_grad(graphdef, params, rest, tokens_BxT, mask_BxT, prompt_len, weight_B):
    def f(p):
        return jnp.sum(weight_B * row_scores(nnx.merge(graphdef, p, rest), tokens_BxT, mask_BxT, prompt_len)[0])
    return jax.grad(f)(params)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _logp_rows(graphdef, params, rest, tokens_BxT, mask_BxT, prompt_len):
    return row_scores(nnx.merge(graphdef, params, rest), tokens_BxT, mask_BxT, prompt_len)[0]


@functools.partial(jax.jit, static_argnums=(0, 5))
def _per_row_grads(graphdef, params, rest, tokens_BxT, mask_BxT, prompt_len):
    """Flattened gradient of each row's log p(answer | prompt): [B, num_params]."""
    def one(t, m):
        g = jax.grad(lambda p: row_scores(nnx.merge(graphdef, p, rest), t[None], m[None], prompt_len)[0][0])(params)
        return jnp.concatenate([x.reshape(-1) for x in jax.tree.leaves(g)])
    return jax.vmap(one)(tokens_BxT, mask_BxT)


def sgd_update(lr: float) -> Update:
    """One SGD ascent step on sum_i weight_i * log p(answer_i | prompt_i); returns a new model."""
    def update(model, batch):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        w = jnp.asarray(batch.get("weight_B", np.ones(len(batch["tokens_BxT"]))), jnp.float32)
        g = _weighted_logp_grad(graphdef, params, rest, jnp.asarray(batch["tokens_BxT"]),
                                jnp.asarray(batch["mask_BxT"]), int(batch["prompt_len"]), w)
        return nnx.merge(graphdef, jax.tree.map(lambda p, d: p + lr * d, params, g), rest)
    return update


def sampling_bias(logp_before_QxA, logp_after_QxA, correct_QxA, sampled_QxA) -> dict:
    """Change in log-prob of correct answers that were sampled vs correct answers that were not.

    Pooled means over modes, the per-query difference (queries with both kinds), and the change
    of the total probability of unsampled correct answers. The paper predicts gap > 0.
    """
    before, after = np.asarray(logp_before_QxA, np.float64), np.asarray(logp_after_QxA, np.float64)
    correct, sampled = np.asarray(correct_QxA, bool), np.asarray(sampled_QxA, bool)
    delta = np.where(np.isfinite(before) & np.isfinite(after), after - before, np.nan)
    sc, uc = correct & sampled, correct & ~sampled
    both = sc.any(1) & uc.any(1)
    with np.errstate(invalid="ignore"):
        per_q = (np.nansum(np.where(sc, delta, 0), 1) / sc.sum(1) - np.nansum(np.where(uc, delta, 0), 1) / uc.sum(1))
    mass = lambda lp, sel: np.where(sel, np.exp(np.where(sel, lp, -np.inf)), 0.0).sum(1)  # noqa: E731
    return {"delta_QxA": delta,
            "mean_delta_sampled_correct": float(np.nanmean(delta[sc])) if sc.any() else float("nan"),
            "mean_delta_unsampled_correct": float(np.nanmean(delta[uc])) if uc.any() else float("nan"),
            "gap_per_query": per_q[both], "gap": float(np.mean(per_q[both])) if both.any() else float("nan"),
            "frac_queries_gap_positive": float(np.mean(per_q[both] > 0)) if both.any() else float("nan"),
            "unsampled_correct_mass_before": mass(before, uc), "unsampled_correct_mass_after": mass(after, uc)}


def grpo_weights(rewards_QxG, eps: float = 1e-6) -> np.ndarray:
    """(r - mean) / (std + eps) / G: the per-sample weights of a GRPO step (sequence-mean aggregation)."""
    r = np.asarray(rewards_QxG, np.float64)
    return (r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + eps) / r.shape[1]


def sampling_bias_probe(model, prompt_BxP, prompt_mask_BxP, answers_BxAxL, answer_mask_BxAxL, correct_BxA, *,
                        group_size: int = 8, seed: int = 0, update: Update | None = None, lr: float = 0.1,
                        rows_per_call: int | None = None) -> dict:
    """Samples G candidates per query from the policy (restricted to the candidates), takes one update
    with GRPO weights, and reports `sampling_bias` plus the sampled counts [B, A].
    """
    args = (prompt_BxP, prompt_mask_BxP, answers_BxAxL, answer_mask_BxAxL)
    check_shapes(*(np.asarray(a) for a in args))
    correct = np.asarray(correct_BxA, bool)
    logp0 = sequence_logprobs(model, *args, rows_per_call=rows_per_call)
    rng = np.random.default_rng(seed)
    p = np.exp(logp0 - logp0.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    picks_BxG = np.stack([rng.choice(p.shape[1], group_size, p=row) for row in p])
    w_BxG = grpo_weights(np.take_along_axis(correct, picks_BxG, 1).astype(np.float64))
    qi, gi = np.nonzero(w_BxG != 0)
    counts = np.zeros_like(logp0, np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(p)), group_size), picks_BxG.reshape(-1)), 1)
    if len(qi) == 0:
        after = logp0
    else:
        a = picks_BxG[qi, gi]
        tokens, mask = build_rows(prompt_BxP, prompt_mask_BxP, np.asarray(answers_BxAxL)[qi, a],
                                  np.asarray(answer_mask_BxAxL)[qi, a], qi)
        batch = {"tokens_BxT": tokens, "mask_BxT": mask, "prompt_len": np.asarray(prompt_BxP).shape[1],
                 "weight_B": w_BxG[qi, gi]}
        new = (update or sgd_update(lr))(model, batch)
        after = sequence_logprobs(new, *args, rows_per_call=rows_per_call)
    out = sampling_bias(logp0, after, correct, counts > 0)
    out.update(counts_BxA=counts, logp_before=logp0, logp_after=after)
    return out


def coupling_probe(model, prompt_NxP, prompt_mask_NxP, answer_NxL, answer_mask_NxL, *, lr: float = 1e-3,
                   update: Update | None = None, query_id_N=None) -> dict:
    """Semantic coupling: for each item i (a query and one of its answers) take one update on log p(a_i | q_i)
    and record the change in log p(a_j | q_j) of every other item j, against <grad_i, grad_j>.

    Returns inner_NxN, delta_NxN (row i: the update on item i), the pairs used (i != j; items of the
    same query excluded when query ids are given), their flattened values, the Pearson correlation,
    and the least-squares slope (about lr for a small SGD step, by first-order Taylor expansion).
    """
    prompt_NxP, answer_NxL = np.asarray(prompt_NxP), np.asarray(answer_NxL)
    check_shapes(prompt_NxP, np.asarray(prompt_mask_NxP, bool), answer_NxL[:, None],
                 np.asarray(answer_mask_NxL)[:, None])
    N, P = prompt_NxP.shape
    tokens, mask = build_rows(prompt_NxP, prompt_mask_NxP, answer_NxL, answer_mask_NxL, np.arange(N))
    tokens, mask = jnp.asarray(tokens), jnp.asarray(mask)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    grads_NxD = _per_row_grads(graphdef, params, rest, tokens, mask, P)
    inner = np.asarray(grads_NxD @ grads_NxD.T, np.float64)
    base = np.asarray(_logp_rows(graphdef, params, rest, tokens, mask, P), np.float64)
    leaves, treedef = jax.tree.flatten(params)
    sizes = np.cumsum([0] + [x.size for x in leaves])
    delta = np.zeros((N, N))
    for i in range(N):
        if update is None:  # SGD on item i: params + lr * grad_i, rebuilt from the flat gradient
            gi = grads_NxD[i]
            new_p = jax.tree.unflatten(treedef, [x + lr * gi[a:b].reshape(x.shape).astype(x.dtype)
                                                 for x, a, b in zip(leaves, sizes[:-1], sizes[1:])])
        else:
            batch = {"tokens_BxT": np.asarray(tokens[i:i + 1]), "mask_BxT": np.asarray(mask[i:i + 1]),
                     "prompt_len": P, "weight_B": np.ones(1)}
            new_p = nnx.split(update(model, batch), nnx.Param, ...)[1]
        delta[i] = np.asarray(_logp_rows(graphdef, new_p, rest, tokens, mask, P), np.float64) - base
    pairs = ~np.eye(N, dtype=bool)
    if query_id_N is not None:
        q = np.asarray(query_id_N)
        pairs &= q[:, None] != q[None, :]
    x, y = inner[pairs], delta[pairs]
    corr = float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 else float("nan")
    slope = float((x @ y) / (x @ x)) if x.any() else float("nan")
    return {"inner_NxN": inner, "delta_NxN": delta, "pairs_NxN": pairs, "inner": x, "delta": y,
            "correlation": corr, "slope": slope}
