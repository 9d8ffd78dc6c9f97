"""Pass@k and sign-asymmetric advantage estimators, registered into the `advantages` registry.

The package `__init__` imports this module, so importing anything from `rlvr_jax.algos` registers them. Most of
them work on binary correctness: a rollout is correct when its reward is above `algo.success_threshold`
(`groups.successes`). A group with n valid rollouts, c of them correct, is scored as if it had only those n.
Padding gets 0. Where k is involved it is k = min(algo.pass_k, n), so a padded group with fewer than k valid
rollouts optimises pass@n.
"""
from __future__ import annotations

import jax.numpy as jnp

from rlvr_jax.algos.advantages import _zero_invalid, register_advantage
from rlvr_jax.algos.groups import group_count, group_std, successes, zero_std_groups

# the estimators that read algo.pass_k (the config checks pass_k <= rollout.group_size for them)
PASS_K_ESTIMATORS = ("pass_at_k", "pkpo")


def binom_ratio(a, b, m, m_max: int):
    """C(a, m) / C(b, m) elementwise, for b >= m >= 0 and m <= m_max (static), as prod_{j<m} (a - j) / (b - j).

    It is 0 where a < m (C(a, m) = 0, negative a included) and 1 where m = 0 <= a. For a <= b every factor is
    at most 1, so nothing overflows the way the factorials would.
    """
    out = jnp.ones(jnp.broadcast_shapes(jnp.shape(a), jnp.shape(b), jnp.shape(m)), jnp.float32)
    for j in range(m_max):
        use = j < m
        out = out * jnp.where(use, (a - j) / jnp.where(use, b - j, 1.0), 1.0)
    return jnp.where(a >= m, out, 0.0)


def _correct_counts(rewards_BxG, valid_BxG, algo):
    """-> (correct_BxG, n_Bx1, c_Bx1, k_Bx1): which valid rollouts are correct, the valid and correct counts, and
    k = min(algo.pass_k, n)."""
    correct_BxG = successes(rewards_BxG, algo.success_threshold) & valid_BxG
    n_Bx1 = group_count(valid_BxG)
    c_Bx1 = jnp.sum(correct_BxG, axis=-1, keepdims=True).astype(jnp.float32)
    return correct_BxG, n_Bx1, c_Bx1, jnp.minimum(float(algo.pass_k), n_Bx1)


@register_advantage("pass_at_k")
def pass_at_k(rewards_BxG, valid_BxG, algo):
    """Pass@k Training's analytic advantage (arXiv 2508.10751): GRPO on the k-subset rewards max(subset), averaged
    over the subsets that contain each rollout.

    With k = min(algo.pass_k, n), R = 1 - C(n-c, k)/C(n, k) and s = sqrt(R (1 - R)): a correct rollout gets
    (1 - R)/s and a wrong one (1 - R - C(n-c-1, k-1)/C(n-1, k-1))/s. When s = 0 (c = 0, or n - c < k so that
    every subset passes) the advantage is 0. At k = 1 this is grpo with std_ddof 0 and adv_eps 0.
    """
    correct_BxG, n_Bx1, c_Bx1, k_Bx1 = _correct_counts(rewards_BxG, valid_BxG, algo)
    fail_Bx1 = binom_ratio(n_Bx1 - c_Bx1, n_Bx1, k_Bx1, algo.pass_k)  # 1 - R: share of k-subsets with no success
    # the same share among the k-subsets that hold a given wrong rollout
    fail_wrong_Bx1 = binom_ratio(n_Bx1 - c_Bx1 - 1, n_Bx1 - 1, k_Bx1 - 1, algo.pass_k)
    s_Bx1 = jnp.sqrt(fail_Bx1 * (1.0 - fail_Bx1))
    ok_Bx1 = s_Bx1 > 0
    adv_BxG = jnp.where(correct_BxG, fail_Bx1, fail_Bx1 - fail_wrong_Bx1) / jnp.where(ok_Bx1, s_Bx1, 1.0)
    return _zero_invalid(jnp.where(ok_Bx1, adv_BxG, 0.0), valid_BxG)


def _signed_reinforce(rewards_BxG, valid_BxG, algo, correct_w, wrong_w):
    """REINFORCE without a baseline on binary correctness: a correct rollout gets correct_w, a wrong one wrong_w."""
    correct_BxG = successes(rewards_BxG, algo.success_threshold)
    return _zero_invalid(jnp.where(correct_BxG, correct_w, wrong_w), valid_BxG)


@register_advantage("w_reinforce")
def w_reinforce(rewards_BxG, valid_BxG, algo):
    """W-REINFORCE (arXiv 2506.01347), lambda * PSR + NSR: a correct rollout gets lambda = algo.positive_weight and a
    wrong one -1, with no baseline. Each rollout stands alone, so a group of one still gets a signal."""
    return _signed_reinforce(rewards_BxG, valid_BxG, algo, algo.positive_weight, -1.0)


@register_advantage("psr")
def psr(rewards_BxG, valid_BxG, algo):
    """Positive sample reinforcement (arXiv 2506.01347): a correct rollout gets +1 and a wrong one 0."""
    return _signed_reinforce(rewards_BxG, valid_BxG, algo, 1.0, 0.0)


@register_advantage("nsr")
def nsr(rewards_BxG, valid_BxG, algo):
    """Negative sample reinforcement (arXiv 2506.01347): a correct rollout gets 0 and a wrong one -1."""
    return _signed_reinforce(rewards_BxG, valid_BxG, algo, 0.0, -1.0)


@register_advantage("qae")
def qae(rewards_BxG, valid_BxG, algo):
    """Quantile advantage estimation (arXiv 2509.22611, Eq. 3): (r - b_K) / (group std + algo.adv_eps), where b_K
    is the K = algo.qae_quantile quantile of the group's valid rewards.

    b_K = inf{x : F(x) >= K} (paper Eq. 3, F the empirical CDF) is the ceil(K n)-th smallest valid reward, and the
    smallest one when K = 0. There is no interpolation; the authors' code calls torch.quantile, which interpolates
    linearly. Std (algo.std_ddof) and flat groups (exactly 0) are handled as in grpo, and the paper standardises
    in the same way. For binary rewards with success rate p, b_K = 0 when p <= 1 - K: wrong rollouts get 0 and
    correct ones are pushed up. Otherwise b_K = 1: correct rollouts get 0 and wrong ones are pushed down.
    """
    G = rewards_BxG.shape[-1]
    n_Bx1 = group_count(valid_BxG)
    rank_Bx1 = jnp.maximum(jnp.ceil(algo.qae_quantile * n_Bx1 - 1e-4), 1.0)  # 1-based; slack for float rounding of K n
    sorted_BxG = jnp.sort(jnp.where(valid_BxG, rewards_BxG, jnp.inf), axis=-1)  # padding sorts last
    base_Bx1 = jnp.take_along_axis(sorted_BxG, jnp.clip(rank_Bx1.astype(jnp.int32) - 1, 0, G - 1), axis=-1)
    std_Bx1 = group_std(rewards_BxG, valid_BxG, algo.std_ddof)
    flat_Bx1 = zero_std_groups(rewards_BxG, valid_BxG)[:, None]  # also every group with n <= 1
    centered_BxG = jnp.where(valid_BxG & ~flat_Bx1, rewards_BxG - base_Bx1, 0.0)
    return _zero_invalid(centered_BxG / jnp.where(flat_Bx1, 1.0, std_Bx1 + algo.adv_eps), valid_BxG)


def pkpo_rewards(rewards_BxG, valid_BxG, algo):
    """PKPO's transformed reward (arXiv 2505.15201, Eq. 8 times n/k): the mean pass@k over the k-subsets that hold
    the rollout, with k = min(algo.pass_k, n).

    A correct rollout gets 1 and a wrong one rho(n-1, c, k-1) = 1 - C(n-1-c, k-1)/C(n-1, k-1). The group mean is
    the unbiased pass@k estimate rho(n, c, k) = 1 - C(n-c, k)/C(n, k).
    """
    correct_BxG, n_Bx1, c_Bx1, k_Bx1 = _correct_counts(rewards_BxG, valid_BxG, algo)
    wrong_Bx1 = 1.0 - binom_ratio(n_Bx1 - 1 - c_Bx1, n_Bx1 - 1, k_Bx1 - 1, algo.pass_k)
    return _zero_invalid(jnp.where(correct_BxG, 1.0, wrong_Bx1), valid_BxG)


@register_advantage("pkpo")
def pkpo(rewards_BxG, valid_BxG, algo):
    """PKPO (arXiv 2505.15201) on binary correctness with k = min(algo.pass_k, n), using the paper's s^(loo-1)
    baseline (Eq. 33, the estimator its LLM runs use).

    Rollout i gets the mean, over the k-subsets I that hold i, of pass(I) - pass(I without i). This is the paper's
    s^(loo-1)_i times n/k. At that scale k = 1 gives the raw reward, and whatever n is, a loss that averages over
    rollouts follows grad pass@k / k. A correct rollout gets C(n-c, k-1)/C(n-1, k-1), the chance that the other
    k-1 are all wrong, and a wrong one gets 0. Eq. 33 has no baseline at k = 1, so there, as in the paper's k = 1
    runs, the leave-one-out mean is subtracted (Eq. 26): r_i - mean of the others, as in rloo (0 when n = 1).
    """
    correct_BxG, n_Bx1, c_Bx1, k_Bx1 = _correct_counts(rewards_BxG, valid_BxG, algo)
    lone_Bx1 = binom_ratio(n_Bx1 - c_Bx1, n_Bx1 - 1, k_Bx1 - 1, algo.pass_k)  # the other k-1 all wrong
    f_BxG = correct_BxG.astype(jnp.float32)
    loo_BxG = jnp.where(n_Bx1 > 1, f_BxG - (c_Bx1 - f_BxG) / jnp.maximum(n_Bx1 - 1.0, 1.0), 0.0)
    adv_BxG = jnp.where(k_Bx1 > 1, jnp.where(correct_BxG, lone_Bx1, 0.0), loo_BxG)
    return _zero_invalid(adv_BxG, valid_BxG)
