"""Teacher-forced over-sharpening instruments: exact probabilities of every candidate answer.

For a query with an enumerable answer set we score each candidate (ending in EOS) under the
policy, so nothing is sampled: mass on each correct answer, wrong mass, correct-mode coverage,
the normalised entropy over correct answers and the over-sharpening index, the divergence of
the policy restricted to correct answers from the reference restricted to correct answers
(the paper's Corollary 2.1: ideal RLVR keeps pi_ref's ratios among correct answers).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rlvr_jax.eval.passk import bootstrap_ci

_LOGIT_BUDGET = 1 << 24  # floats of [rows, L, V] logits materialised per call


def row_scores(model, tokens_BxT, mask_BxT, prompt_len: int):
    """Pure: (sum of answer-token logprobs, sum of next-token entropies, answer length) per row.

    Rows are a left-padded prompt of `prompt_len` tokens followed by a right-padded answer;
    only the answer positions are projected to the vocabulary.
    """
    pos_BxT = jnp.maximum(jnp.cumsum(mask_BxT.astype(jnp.int32), axis=1) - 1, 0)
    h_BxTxD, _ = model(tokens_BxT, pos_BxT, kv_mask_BxS=mask_BxT, return_hidden=True)
    h_BxLxD = h_BxTxD[:, prompt_len - 1:-1]  # the states that predict the answer tokens
    logp_BxLxV = jax.nn.log_softmax(model.project(h_BxLxD).astype(jnp.float32), axis=-1)
    tgt_BxL = tokens_BxT[:, prompt_len:]
    amask_BxL = mask_BxT[:, prompt_len:]
    tok_BxL = jnp.take_along_axis(logp_BxLxV, tgt_BxL[..., None], axis=-1)[..., 0]
    ent_BxL = -jnp.sum(jnp.exp(logp_BxLxV) * logp_BxLxV, axis=-1)
    return (jnp.sum(jnp.where(amask_BxL, tok_BxL, 0.0), -1), jnp.sum(jnp.where(amask_BxL, ent_BxL, 0.0), -1),
            jnp.sum(amask_BxL, -1))


@functools.partial(jax.jit, static_argnums=(0, 4))
def _score_rows(graphdef, state, tokens_BxT, mask_BxT, prompt_len: int):
    return row_scores(nnx.merge(graphdef, state), tokens_BxT, mask_BxT, prompt_len)


def build_rows(prompt_BxP, prompt_mask_BxP, answers_NxL, answer_mask_NxL, query_N):
    """Host: rows of (prompt of query_N[i]) + answer i, as int32 tokens and a bool mask [N, P + L]."""
    tokens = np.concatenate([np.asarray(prompt_BxP)[query_N], answers_NxL], axis=1).astype(np.int32)
    mask = np.concatenate([np.asarray(prompt_mask_BxP, bool)[query_N], np.asarray(answer_mask_NxL, bool)], axis=1)
    return tokens, mask


def check_shapes(prompt_BxP, prompt_mask_BxP, answers_BxAxL, answer_mask_BxAxL):
    if prompt_BxP.ndim != 2 or prompt_mask_BxP.shape != prompt_BxP.shape:
        raise ValueError(f"prompt_BxP {prompt_BxP.shape} and prompt_mask_BxP {prompt_mask_BxP.shape} must be "
                         "equal [queries, prompt_len] arrays")
    if answers_BxAxL.ndim != 3 or answer_mask_BxAxL.shape != answers_BxAxL.shape:
        raise ValueError(f"answers_BxAxL {answers_BxAxL.shape} and answer_mask_BxAxL {answer_mask_BxAxL.shape} "
                         "must be equal [queries, candidates, length] arrays")
    if answers_BxAxL.shape[0] != prompt_BxP.shape[0]:
        raise ValueError(f"answers_BxAxL: {answers_BxAxL.shape[0]} queries but {prompt_BxP.shape[0]} prompts")
    if not prompt_mask_BxP[:, -1].all():
        bad = int(np.flatnonzero(~prompt_mask_BxP[:, -1])[0])
        raise ValueError(f"prompt_mask_BxP: row {bad} does not end in a real token; prompts must be left-padded")


def score_sequences(model, prompt_BxP, prompt_mask_BxP, answers_BxAxL, answer_mask_BxAxL, *,
                    rows_per_call: int | None = None):
    """Teacher-forced (logp, entropy_sum, num_tokens), each [B, A] float64/int, of every candidate answer.

    Answers are right-padded (mask False after the last token); a candidate whose mask is all
    False is absent and gets logp = -inf. Rows are scored in fixed-size jitted chunks.
    """
    prompt_BxP, prompt_mask_BxP = np.asarray(prompt_BxP), np.asarray(prompt_mask_BxP, bool)
    answers_BxAxL, answer_mask_BxAxL = np.asarray(answers_BxAxL), np.asarray(answer_mask_BxAxL, bool)
    check_shapes(prompt_BxP, prompt_mask_BxP, answers_BxAxL, answer_mask_BxAxL)
    B, P = prompt_BxP.shape
    _, A, L = answers_BxAxL.shape
    present_BxA = answer_mask_BxAxL.any(-1)
    qi, ai = np.nonzero(present_BxA)
    tokens_NxT, mask_NxT = build_rows(prompt_BxP, prompt_mask_BxP, answers_BxAxL[qi, ai],
                                      answer_mask_BxAxL[qi, ai], qi)
    N = tokens_NxT.shape[0]
    rows = rows_per_call or min(max(1, min(256, _LOGIT_BUDGET // (L * model.cfg.vocab_size))),
                                1 << max(N - 1, 0).bit_length())  # power-of-two buckets: few compiles
    pad = (-N) % rows
    tokens_NxT = np.concatenate([tokens_NxT, np.repeat(tokens_NxT[:1], pad, 0)]) if pad and N else tokens_NxT
    mask_NxT = np.concatenate([mask_NxT, np.repeat(mask_NxT[:1], pad, 0)]) if pad and N else mask_NxT
    graphdef, state = nnx.split(model)
    outs = [_score_rows(graphdef, state, jnp.asarray(tokens_NxT[s:s + rows]), jnp.asarray(mask_NxT[s:s + rows]), P)
            for s in range(0, N, rows)]
    logp = np.full((B, A), -np.inf)
    ent = np.zeros((B, A))
    ntok = np.zeros((B, A), np.int64)
    if N:
        cat = [np.concatenate([np.asarray(o[j]) for o in outs])[:N] for j in range(3)]
        logp[qi, ai], ent[qi, ai], ntok[qi, ai] = cat[0], cat[1], cat[2]
    return logp, ent, ntok


def sequence_logprobs(model, prompt_BxP, prompt_mask_BxP, answers_BxAxL, answer_mask_BxAxL, **kw) -> np.ndarray:
    """Exact log pi(answer | prompt) of every candidate: [B, A] (absent candidates: -inf)."""
    return score_sequences(model, prompt_BxP, prompt_mask_BxP, answers_BxAxL, answer_mask_BxAxL, **kw)[0]


def token_entropy(model, prompt_BxP, prompt_mask_BxP, responses_BxNxL, response_mask_BxNxL, **kw) -> np.ndarray:
    """Mean next-token entropy (nats) along each query's given responses (e.g. samples): [B]."""
    _, ent, ntok = score_sequences(model, prompt_BxP, prompt_mask_BxP, responses_BxNxL, response_mask_BxNxL, **kw)
    return ent.sum(1) / np.maximum(ntok.sum(1), 1)


def _restricted_log(logp_QxA, keep_QxA):
    """Log of the distribution restricted to `keep` and renormalised (-inf elsewhere), and the log-mass."""
    lp = np.where(keep_QxA, logp_QxA, -np.inf)
    m = np.max(lp, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        log_mass = np.log(np.sum(np.exp(lp - m), axis=1)) + m[:, 0]
    return lp - log_mass[:, None], log_mass


def _kl(logq_QxA, logr_QxA, keep_QxA):
    """KL(q || r) over the kept entries (0 * log 0 = 0)."""
    q = np.exp(logq_QxA)
    with np.errstate(invalid="ignore"):
        terms = np.where(keep_QxA & (q > 0), q * (logq_QxA - logr_QxA), 0.0)
    return terms.sum(1)


def correct_mode_metrics(logp_QxA, correct_QxA, ref_logp_QxA=None, *, candidate_QxA=None, full_space=False,
                         threshold: float = 0.01) -> dict[str, np.ndarray]:
    """Per-query arrays of the over-sharpening metrics from candidate logprobs (any policy, any size).

    mass_correct, mass_wrong = 1 - mass_correct; with `full_space` (the candidates are the whole
    well-formed answer space) also mass_space and mass_outside = 1 - mass_space.
    coverage_abs: #correct with p >= threshold; coverage_rel: #correct with p >= threshold * mass_correct.
    entropy_norm: entropy of the renormalised distribution over correct answers / log(#correct)
    (nan with one correct answer). candidate_QxA marks the real candidates of padded rows (default:
    all). With a reference: kl_policy_ref, kl_ref_policy and tv between the
    policy and the reference, each restricted to correct answers and renormalised (0 = ideal RLVR).
    """
    logp = np.asarray(logp_QxA, np.float64)
    correct = np.asarray(correct_QxA, bool)
    if correct.shape != logp.shape:
        raise ValueError(f"correct_QxA {correct.shape} must match logp_QxA {logp.shape}")
    cand = np.ones_like(correct) if candidate_QxA is None else np.asarray(candidate_QxA, bool)
    correct = correct & cand
    n_correct = correct.sum(1)
    if (n_correct == 0).any():
        raise ValueError(f"correct_QxA: query {int(np.flatnonzero(n_correct == 0)[0])} has no correct candidate")
    p = np.where(cand, np.exp(np.where(cand, logp, -np.inf)), 0.0)
    mass_correct = np.where(correct, p, 0.0).sum(1)
    out = {"n_correct": n_correct, "mass_correct": mass_correct, "mass_wrong": 1.0 - mass_correct,
           "coverage_abs": (correct & (p >= threshold)).sum(1),
           "coverage_rel": (correct & (p >= threshold * mass_correct[:, None])).sum(1)}
    if full_space:
        out["mass_space"] = p.sum(1)
        out["mass_outside"] = 1.0 - out["mass_space"]
        out["mass_wrong_in_space"] = out["mass_space"] - mass_correct
    logq, _ = _restricted_log(logp, correct)
    q = np.where(correct, np.exp(logq), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ent = -np.where(q > 0, q * logq, 0.0).sum(1)
        out["entropy_norm"] = np.where(n_correct > 1, ent / np.log(np.maximum(n_correct, 2)), np.nan)
    if ref_logp_QxA is not None:
        ref = np.asarray(ref_logp_QxA, np.float64)
        if ref.shape != logp.shape:
            raise ValueError(f"ref_logp_QxA {ref.shape} must match logp_QxA {logp.shape}")
        logr, _ = _restricted_log(ref, correct)
        r = np.where(correct, np.exp(logr), 0.0)
        out["kl_policy_ref"] = _kl(logq, logr, correct)
        out["kl_ref_policy"] = _kl(logr, logq, correct)
        out["tv"] = 0.5 * np.abs(q - r).sum(1)
        out["ref_mass_correct"] = np.where(correct, np.exp(np.where(correct, ref, -np.inf)), 0.0).sum(1)
    return out


def summarize_metrics(per_query: dict[str, np.ndarray], *, seed: int = 0, num_boot: int = 1000) -> dict:
    """Mean over queries (nan-aware) with a bootstrap interval for each metric: {name: {mean, lo, hi}}."""
    out = {}
    for k, v in per_query.items():
        v = np.asarray(v, np.float64)
        if np.isnan(v).all():
            out[k] = {"mean": None, "lo": None, "hi": None}
            continue
        keep = ~np.isnan(v)
        m, lo, hi = bootstrap_ci(v[keep], seed=seed, num_boot=num_boot)
        out[k] = {"mean": m, "lo": lo, "hi": hi}
    return out


def measure_modes(model, prompt_BxP, prompt_mask_BxP, answers_BxAxL, answer_mask_BxAxL, correct_BxA, *,
                  ref_model=None, ref_logp_BxA=None, full_space: bool = False, threshold: float = 0.01,
                  seed: int = 0, rows_per_call: int | None = None) -> dict:
    """Scores every candidate under the policy (and the reference) and returns per-query metrics and a summary.

    Pass `ref_logp_BxA` (e.g. cached from the base policy) or `ref_model`; without either the
    divergence metrics are omitted. Returns {"logp", "ref_logp", "per_query", "summary"}.
    """
    args = (prompt_BxP, prompt_mask_BxP, answers_BxAxL, answer_mask_BxAxL)
    logp = sequence_logprobs(model, *args, rows_per_call=rows_per_call)
    if ref_logp_BxA is None and ref_model is not None:
        ref_logp_BxA = sequence_logprobs(ref_model, *args, rows_per_call=rows_per_call)
    per_q = correct_mode_metrics(logp, correct_BxA, ref_logp_BxA, full_space=full_space, threshold=threshold,
                                 candidate_QxA=np.asarray(answer_mask_BxAxL, bool).any(-1))
    return {"logp": logp, "ref_logp": ref_logp_BxA, "per_query": per_q, "summary": summarize_metrics(per_q, seed=seed)}
