"""The paper's toy over-sharpening experiment: a softmax policy over labels with fixed embeddings.

logits[q, y] = phi_y . W c_q with fixed label features phi (K x D) and query contexts c (M x Q);
only W is trained and it is shared by every query. Labels come in clusters; `overlap` is the
cosine between a label and its cluster-mates and between any two query contexts, so a logit
step dL = -lr * (phi phi^T) G (c^T c) spreads over similar labels and over all queries
(overlap 0: a tabular softmax, one free logit per query and label). The reference logits are
set exactly (W0 solves phi W0 c = L_ref), so every overlap starts from the same policy.
Each training query has several valid labels (in distinct clusters); RL samples G labels
(G = 0 means the exact expectation, "G = inf"), reward 1 for rewarded labels, GRPO
advantages, optionally IAC (positive advantages x (G - k)^alpha) and an exact KL to the
reference. Held-out queries are never trained on. Everything runs in one jitted lax.scan,
vmapped over runs (configs x seeds); group samples come from host-drawn uniforms, so runs with
the same seed share their random numbers.

What the math says here (tests/eval/test_toy.py checks each): in the tabular case the G = inf
step changes log(pi_a / pi_b) of two valid labels by lr (1 - J)(pi_a - pi_b) / sigma, so exact
policy gradient keeps ratios only between equally likely valid labels (the richer one gains);
with `valid_spread = 0` (all valid labels of a query equally likely under the reference) G = inf
keeps them equal forever while any finite G breaks the tie (sampling bias). With a KL term,
G = inf converges to pi | valid = pi_ref | valid when a fixed point exists (beta large enough).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.eval.modes import correct_mode_metrics

RENORMS = ("none", "g_alpha", "batch_mean")


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """One toy run; frozen so it can key caches. group_size 0 = exact expectation (G = inf)."""

    num_labels: int = 32
    num_valid: int = 4  # valid labels per query, each in its own cluster
    cluster_size: int = 4
    num_train: int = 16
    num_heldout: int = 16
    overlap: float = 0.5  # cosine between cluster-mates and between query contexts, in [0, 1)
    ref_scale: float = 1.0  # std of the reference logits of the invalid labels
    valid_spread: float = 0.0  # std of the valid labels' reference logits around the query's bonus (0: all equal)
    bonus_low: float = -0.5  # reference logit of the valid labels: uniform per query in [low, high]
    bonus_high: float = 2.5  # (sets per-query difficulty)
    group_size: int = 8
    steps: int = 200
    lr: float = 0.5  # SGD on W; the loss sums queries and averages the group
    iac_alpha: float = 0.0  # 0: plain GRPO
    iac_renorm: str = "batch_mean"  # none | g_alpha (/G^alpha) | batch_mean (/mean factor of mixed groups)
    kl_coef: float = 0.0  # exact KL(pi || pi_ref) per training query
    adv_eps: float = 1e-6
    rewarded: str = "all"  # all valid labels earn reward, or only "one" (the others stay valid but unrewarded)

    def __post_init__(self):
        if self.num_labels % self.cluster_size:
            raise ValueError(f"toy.cluster_size: {self.cluster_size} must divide num_labels={self.num_labels}")
        if not 1 <= self.num_valid <= self.num_labels // self.cluster_size:
            raise ValueError(f"toy.num_valid: {self.num_valid} must be in [1, number of clusters="
                             f"{self.num_labels // self.cluster_size}]")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"toy.overlap: {self.overlap} must be in [0, 1)")
        if self.group_size < 0 or self.group_size == 1:
            raise ValueError(f"toy.group_size: {self.group_size} must be >= 2, or 0 for the exact expectation")
        if self.iac_renorm not in RENORMS:
            raise ValueError(f"toy.iac_renorm: {self.iac_renorm!r} is not one of {RENORMS}")
        if self.rewarded not in ("all", "one"):
            raise ValueError(f"toy.rewarded: {self.rewarded!r} must be 'all' or 'one'")
        if self.num_train < 1 or self.num_heldout < 0 or self.steps < 1:
            raise ValueError("toy: num_train >= 1, num_heldout >= 0 and steps >= 1 are required")

    def replace(self, **kw) -> "ToyConfig":
        return dataclasses.replace(self, **kw)


def make_problem(cfg: ToyConfig, seed: int) -> dict[str, np.ndarray]:
    """Features, contexts, valid/rewarded masks and W0 of one seeded toy problem (host arrays)."""
    rng = np.random.default_rng(seed)
    K, C, Q = cfg.num_labels, cfg.num_labels // cfg.cluster_size, cfg.num_train + cfg.num_heldout
    a, b = np.sqrt(1.0 - cfg.overlap), np.sqrt(cfg.overlap)
    member_KxC = np.eye(C)[np.arange(K) // cfg.cluster_size]
    phi_KxD = np.concatenate([a * np.eye(K), b * member_KxC], axis=1)
    ctx_MxQ = np.concatenate([a * np.eye(Q), b * np.ones((1, Q))], axis=0)
    valid_QxK = np.zeros((Q, K), bool)
    rewarded_QxK = np.zeros((Q, K), bool)
    for q in range(Q):
        clusters = rng.choice(C, cfg.num_valid, replace=False)
        labels = clusters * cfg.cluster_size + rng.integers(0, cfg.cluster_size, cfg.num_valid)
        valid_QxK[q, labels] = True
        rewarded_QxK[q, labels if cfg.rewarded == "all" else labels[:1]] = True
    bonus_Q = rng.uniform(cfg.bonus_low, cfg.bonus_high, Q)
    noise_QxK = rng.standard_normal((Q, K))
    ref_logits_QxK = np.where(valid_QxK, bonus_Q[:, None] + cfg.valid_spread * noise_QxK, cfg.ref_scale * noise_QxK)
    w0_DxM = np.linalg.pinv(phi_KxD) @ ref_logits_QxK.T @ np.linalg.pinv(ctx_MxQ)  # exact: phi, ctx full rank
    return {"phi_KxD": phi_KxD, "ctx_MxQ": ctx_MxQ, "valid_QxK": valid_QxK, "rewarded_QxK": rewarded_QxK,
            "ref_logits_QxK": ref_logits_QxK, "w0_DxM": w0_DxM}


def logits_fn(w_DxM, phi_KxD, ctx_MxQ):
    """Policy logits [Q, K] for every query."""
    return (phi_KxD @ w_DxM @ ctx_MxQ).T


def _iac_factor(k_Q, G, alpha, renorm, mixed_Q):
    """(G - k)^alpha per query (G = inf: its g_alpha limit (1 - J)^alpha), renormalised."""
    f = jnp.power(jnp.maximum(G - k_Q, 0.0), alpha)
    if renorm == "g_alpha":
        f = f / jnp.power(G, alpha)
    elif renorm == "batch_mean":
        f = f / jnp.where(mixed_Q.any(), jnp.sum(f * mixed_Q) / jnp.maximum(mixed_Q.sum(), 1), 1.0)
    return f


def group_advantages(r_QxG, alpha, *, renorm: str = "batch_mean", eps: float = 1e-6):
    """GRPO advantages (r - mean) / (std + eps), positives times the IAC factor (alpha = 0: GRPO)."""
    G = r_QxG.shape[1]
    adv = (r_QxG - r_QxG.mean(1, keepdims=True)) / (r_QxG.std(1, keepdims=True) + eps)
    k_Q = r_QxG.sum(1)
    f = _iac_factor(k_Q, float(G), alpha, renorm, (k_Q > 0) & (k_Q < G))
    return jnp.where(adv > 0, adv * f[:, None], adv)


def exact_advantages(pi_QxK, r_QxK, alpha, *, renorm: str = "batch_mean", eps: float = 1e-6):
    """The G -> inf limit: A(y) = (r(y) - J) / (sqrt(J(1-J)) + eps), IAC factor (1 - J)^alpha renormalised."""
    J_Q = jnp.sum(pi_QxK * r_QxK, axis=1)
    adv = (r_QxK - J_Q[:, None]) / (jnp.sqrt(J_Q * (1.0 - J_Q)) + eps)[:, None]
    f = _iac_factor(J_Q, 1.0, alpha, "g_alpha" if renorm == "none" else renorm, (J_Q > 0) & (J_Q < 1))
    return jnp.where(adv > 0, adv * f[:, None], adv)


def _loss(w, prob, u_QxG, hp, *, group_size, num_train, renorm):
    logits_QxK = logits_fn(w, prob["phi_KxD"], prob["ctx_MxQ"])[:num_train]
    logp_QxK = jax.nn.log_softmax(logits_QxK)
    r_QxK = prob["rewarded_QxK"][:num_train].astype(jnp.float32)
    pi_QxK = jax.lax.stop_gradient(jnp.exp(logp_QxK))
    if group_size == 0:
        adv_QxK = exact_advantages(pi_QxK, r_QxK, hp["alpha"], renorm=renorm, eps=hp["eps"])
        pg = -jnp.sum(pi_QxK * adv_QxK * logp_QxK)
        counts_QxK = pi_QxK  # expected samples per label
    else:
        cdf_QxK = jnp.cumsum(pi_QxK, axis=1)  # inverse-CDF sampling from host-drawn uniforms
        o_QxG = jnp.minimum(jnp.sum(cdf_QxK[:, None, :] < u_QxG[..., None], -1), logits_QxK.shape[1] - 1)
        r_QxG = jnp.take_along_axis(r_QxK, o_QxG, axis=1)
        adv_QxG = group_advantages(r_QxG, hp["alpha"], renorm=renorm, eps=hp["eps"])
        pg = -jnp.sum(jnp.mean(adv_QxG * jnp.take_along_axis(logp_QxK, o_QxG, axis=1), axis=1))
        counts_QxK = jax.nn.one_hot(o_QxG, logits_QxK.shape[1]).sum(1)
    ref_logp_QxK = jax.nn.log_softmax(prob["ref_logits_QxK"][:num_train])
    kl = jnp.sum(jnp.exp(logp_QxK) * (logp_QxK - ref_logp_QxK))
    return pg + hp["kl"] * kl, counts_QxK


def _one_run(prob, u_TxQxG, hp, *, group_size, steps, num_train, renorm):
    grad_fn = jax.grad(functools.partial(_loss, group_size=group_size, num_train=num_train, renorm=renorm),
                       has_aux=True)

    def body(carry, u_QxG):
        w, counts = carry
        probs = jax.nn.softmax(logits_fn(w, prob["phi_KxD"], prob["ctx_MxQ"]))
        g, c = grad_fn(w, prob, u_QxG, hp)
        return (w - hp["lr"] * g, counts + c * prob["rewarded_QxK"][:num_train]), probs

    counts0 = jnp.zeros(prob["rewarded_QxK"][:num_train].shape, jnp.float32)
    (w, counts), probs = jax.lax.scan(body, (prob["w0_DxM"], counts0), u_TxQxG, length=steps)
    final = jax.nn.softmax(logits_fn(w, prob["phi_KxD"], prob["ctx_MxQ"]))
    return jnp.concatenate([probs, final[None]]), counts


@functools.partial(jax.jit, static_argnames=("group_size", "steps", "num_train", "renorm"))
def _run_batch(probs_R, u_R, hp_R, *, group_size, steps, num_train, renorm):
    run = functools.partial(_one_run, group_size=group_size, steps=steps, num_train=num_train, renorm=renorm)
    return jax.vmap(run)(probs_R, u_R, hp_R)


def _static_key(cfg: ToyConfig):
    return (cfg.group_size, cfg.steps, cfg.num_train, cfg.iac_renorm, cfg.num_labels, cfg.cluster_size,
            cfg.num_heldout)


def run_toy_many(cfgs, seeds=(0, 1, 2)) -> list[dict[str, np.ndarray]]:
    """`run_toy` for several configs; runs sharing shapes and static settings go in one vmapped call."""
    cfgs = list(cfgs)
    out: list = [None] * len(cfgs)
    groups: dict = {}
    for i, c in enumerate(cfgs):
        groups.setdefault(_static_key(c), []).append(i)
    for idx in groups.values():
        pairs = [(i, s) for i in idx for s in seeds]
        problems = [make_problem(cfgs[i], s) for i, s in pairs]
        stacked = {k: jnp.asarray(np.stack([p[k] for p in problems]),
                                  jnp.bool_ if problems[0][k].dtype == bool else jnp.float32) for k in problems[0]}
        c0 = cfgs[idx[0]]
        # uniforms drawn on the host per seed: runs with the same seed share random numbers, and no PRNG
        # is compiled (the toy's compile time is dominated by it otherwise)
        u = jnp.asarray(np.stack([np.random.default_rng(1000 + s).random((c0.steps, c0.num_train, c0.group_size))
                                  for _, s in pairs]), jnp.float32)
        hp = {name: jnp.asarray([getattr(cfgs[i], field) for i, _ in pairs], jnp.float32)
              for name, field in (("lr", "lr"), ("alpha", "iac_alpha"), ("kl", "kl_coef"), ("eps", "adv_eps"))}
        probs, counts = _run_batch(stacked, u, hp, group_size=c0.group_size, steps=c0.steps,
                                   num_train=c0.num_train, renorm=c0.iac_renorm)
        probs, counts = np.asarray(probs, np.float64), np.asarray(counts)
        ref = np.stack([p["ref_logits_QxK"] for p in problems])
        ref = np.exp(ref - ref.max(-1, keepdims=True))
        ref /= ref.sum(-1, keepdims=True)
        S = len(seeds)
        for j, i in enumerate(idx):
            sl = slice(j * S, (j + 1) * S)
            out[i] = {"probs_SxTxQxK": probs[sl], "rewarded_counts_SxQtxK": counts[sl],
                      "valid_SxQxK": np.stack([p["valid_QxK"] for p in problems[sl]]),
                      "rewarded_SxQxK": np.stack([p["rewarded_QxK"] for p in problems[sl]]),
                      "ref_probs_SxQxK": ref[sl], "num_train": cfgs[i].num_train}
    return out


def run_toy(cfg: ToyConfig, seeds=(0, 1, 2)) -> dict[str, np.ndarray]:
    """Trains the toy policy for each seed; returns the probabilities of every step and the problem.

    probs_SxTxQxK (T = steps + 1, step 0 = reference), valid/rewarded/ref_probs SxQxK,
    rewarded_counts_SxQtxK (rewarded samples each training label drew; expected ones for G = inf).
    """
    return run_toy_many([cfg], seeds)[0]


def toy_metrics(run: dict, *, ks=(1, 8, 32), threshold: float = 0.1) -> dict[str, dict[str, np.ndarray]]:
    """Over-sharpening metrics of the train and held-out queries at every step: {split: {name: [S, T]}}.

    acc = mass on valid labels (pass@1), pass@k = 1 - (1 - acc)^k exactly, tv / kl_* between the
    valid-restricted policy and reference, entropy_norm, coverage_rel (threshold x valid mass),
    and, for training queries, the final/reference probability ratio of rewarded-sampled valid
    labels versus never-rewarded valid labels.
    """
    P = run["probs_SxTxQxK"]
    S, T, Q, K = P.shape
    nt = run["num_train"]
    valid = np.broadcast_to(run["valid_SxQxK"][:, None], P.shape)
    ref = np.broadcast_to(run["ref_probs_SxQxK"][:, None], P.shape)
    with np.errstate(divide="ignore"):
        m = correct_mode_metrics(np.log(P).reshape(-1, K), valid.reshape(-1, K), np.log(ref).reshape(-1, K),
                                 threshold=threshold)
    m = {k: v.reshape(S, T, Q).astype(np.float64) for k, v in m.items()}
    out = {}
    for split, sl in (("train", slice(0, nt)), ("heldout", slice(nt, Q))):
        if sl.start == Q:
            continue
        d = {"acc": m["mass_correct"][..., sl].mean(-1)}
        for k in ks:
            d[f"pass@{k}"] = (1.0 - (1.0 - m["mass_correct"][..., sl]) ** k).mean(-1)
        for name in ("tv", "kl_policy_ref", "kl_ref_policy", "entropy_norm", "coverage_rel"):
            d[name] = np.nanmean(m[name][..., sl], -1)
        out[split] = d
    final_ratio = P[:, -1, :nt] / run["ref_probs_SxQxK"][:, :nt]
    got = run["rewarded_counts_SxQtxK"] > 0
    val = run["valid_SxQxK"][:, :nt]
    for name, sel in (("ratio_rewarded_valid", val & got), ("ratio_never_rewarded_valid", val & ~got)):
        out["train"][name] = np.array([final_ratio[s][sel[s]].mean() if sel[s].any() else np.nan for s in range(S)])
    out["train"]["frac_valid_never_rewarded"] = (val & ~got).sum((1, 2)) / val.sum((1, 2))
    return out
