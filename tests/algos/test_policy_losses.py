"""The registered per-token policy losses against their papers' closed forms and numpy ports of their
reference code (verl's clip_cov / kl_cov, GSPO's sequence ratio), and the high-entropy token selection."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import config as config_lib
from rlvr_jax.algos.losses import clipped_pg_loss
from rlvr_jax.algos.objective import policy_objective
from rlvr_jax.algos.policy_losses import POLICY_LOSSES, get_policy_loss, top_entropy_mask

B, T = 12, 7


def algo(**kw):
    a = config_lib.base_config().algo
    a.update(kw)
    return a


def inputs(seed=0, spread=0.6):
    rng = np.random.default_rng(seed)
    logp_old = rng.normal(-1.5, 0.8, size=(B, T)).astype(np.float32)
    logp_new = (logp_old + rng.normal(0, spread, size=(B, T))).astype(np.float32)
    adv = rng.normal(0, 1.5, size=(B,)).astype(np.float32)
    mask = np.arange(T)[None] < rng.integers(2, T + 1, size=(B, 1))
    return logp_new, logp_old, adv, mask


def np_cov(adv_BxT, lp, mask):
    return (adv_BxT - adv_BxT[mask].mean()) * (lp - lp[mask].mean())


def test_registry_names_its_choices():
    assert POLICY_LOSSES == ("ppo_clip", "clip_cov", "kl_cov", "gspo")
    with pytest.raises(ValueError, match="config.algo.policy_loss"):
        get_policy_loss("nope")


def test_ppo_clip_through_the_seam_is_the_clipped_surrogate_with_tis():
    """The objective with policy_loss=ppo_clip gives exactly what clipped_pg_loss(tis) aggregated gives."""
    logp_new, logp_old, adv, mask = inputs()
    sampler = logp_old + 0.3
    a = algo(tis_cap=1.2, dual_clip=3.0, loss_agg="token_mean")
    loss, m = policy_objective(jnp.asarray(logp_new), logp_old, sampler, None, None, adv, mask, a)
    ref, aux = clipped_pg_loss(logp_new, logp_old, adv, eps_low=0.2, eps_high=0.2, dual_clip=3.0,
                               logp_sampler_BxT=sampler, tis_cap=1.2)
    assert float(loss) == float(jnp.sum(jnp.where(mask, ref, 0)) / mask.sum())
    assert float(m["tis_frac_capped"]) == pytest.approx(float(aux["tis_capped"][mask].mean()))


def np_clip_cov(logp_new, logp_old, adv, mask, ratio, lb, ub, eps=0.2):
    """verl's compute_policy_loss_clip_cov when the band holds no more tokens than it may select."""
    A = np.broadcast_to(adv[:, None], logp_new.shape)
    r = np.exp(logp_new - logp_old)
    l1, l2 = -A * r, -A * np.clip(r, 1 - eps, 1 + eps)
    clipped = (l2 > l1) & mask
    cov = np_cov(A, logp_new, mask)
    band = (cov > lb) & (cov < ub) & mask & ~clipped
    n_sel = max(int(ratio * mask.sum()), 1)
    return np.maximum(l1, l2) * ~band, band, n_sel


def test_clip_cov_matches_verl_when_the_whole_band_is_selected():
    logp_new, logp_old, adv, mask = inputs()
    ref_loss, band, n_sel = np_clip_cov(logp_new, logp_old, adv, mask, 0.5, 0.2, 5.0)
    assert 0 < band.sum() <= n_sel  # every band token is selected: no randomness left
    loss, aux = get_policy_loss("clip_cov")(jnp.asarray(logp_new), logp_old, adv, mask, None,
                                            algo(clip_cov_ratio=0.5, clip_cov_lb=0.2), jax.random.key(0))
    np.testing.assert_allclose(np.where(mask, loss, 0), np.where(mask, ref_loss, 0), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(aux["selected"]), band)


def test_clip_cov_selects_a_random_share_of_the_band():
    """With more band tokens than it may select: exactly floor(ratio * n) of them, a different draw per key."""
    logp_new, logp_old, adv, mask = inputs()
    _, band, _ = np_clip_cov(logp_new, logp_old, adv, mask, 0.05, -10.0, 10.0)
    k = max(int(0.05 * mask.sum()), 1)
    assert band.sum() > 2 * k
    a = algo(clip_cov_ratio=0.05, clip_cov_lb=-10.0, clip_cov_ub=10.0)
    sels = [np.asarray(get_policy_loss("clip_cov")(jnp.asarray(logp_new), logp_old, adv, mask, None, a,
                                                   jax.random.key(s))[1]["selected"]) for s in range(3)]
    for sel in sels:
        assert sel.sum() == k and not (sel & ~band).any()
    assert not all((s == sels[0]).all() for s in sels[1:])


def test_clip_cov_cuts_the_gradient_of_its_tokens_only():
    logp_new, logp_old, adv, mask = inputs()
    a = algo(clip_cov_ratio=0.5, clip_cov_lb=0.2)
    fn = get_policy_loss("clip_cov")
    g = jax.grad(lambda lp: jnp.sum(jnp.where(mask, fn(lp, logp_old, adv, mask, None, a, jax.random.key(0))[0], 0)))(
        jnp.asarray(logp_new))
    sel = np.asarray(fn(jnp.asarray(logp_new), logp_old, adv, mask, None, a, jax.random.key(0))[1]["selected"])
    assert sel.any() and (np.asarray(g)[sel] == 0).all()


def test_kl_cov_matches_verl():
    logp_new, logp_old, adv, mask = inputs()
    ratio, coef = 0.1, 0.3
    A = np.broadcast_to(adv[:, None], logp_new.shape)
    lr = logp_new - logp_old
    cov = np.where(mask, np_cov(A, logp_new, mask), -np.inf)
    k = max(int(mask.sum() * ratio), 1)
    top = np.zeros(mask.shape, bool)
    top.reshape(-1)[np.argsort(-cov.reshape(-1), kind="stable")[:k]] = True
    ref = -A * np.exp(lr) + np.where(top, coef * np.abs(lr), 0)
    loss, aux = get_policy_loss("kl_cov")(jnp.asarray(logp_new), logp_old, adv, mask, None,
                                          algo(kl_cov_ratio=ratio, kl_cov_coef=coef), None)
    np.testing.assert_array_equal(np.asarray(aux["selected"]), top)
    np.testing.assert_allclose(np.where(mask, loss, 0), np.where(mask, ref, 0), rtol=1e-5, atol=1e-6)


def test_gspo_sequence_ratio_and_its_gradient():
    """Value: the clipped surrogate of s_i = exp(mean_t log r_t); gradient: -A_i s_i d log p_t (unclipped)."""
    logp_new, logp_old, adv, mask = inputs(spread=0.05)
    a = algo(clip_eps_low=0.2, clip_eps_high=0.2)
    fn = get_policy_loss("gspo")
    s = np.exp(np.where(mask, logp_new - logp_old, 0).sum(-1) / mask.sum(-1))
    A = adv[:, None]
    ref = np.maximum(-A * s[:, None], -A * np.clip(s, 0.8, 1.2)[:, None])
    loss, aux = fn(jnp.asarray(logp_new), logp_old, adv, mask, None, a, None)
    np.testing.assert_allclose(np.where(mask, loss, 0), np.where(mask, np.broadcast_to(ref, mask.shape), 0),
                               rtol=1e-5)
    g = np.asarray(jax.grad(lambda lp: jnp.sum(jnp.where(mask, fn(lp, logp_old, adv, mask, None, a, None)[0], 0)))(
        jnp.asarray(logp_new)))
    inside = (s > 0.8) & (s < 1.2)
    assert inside.sum() >= B // 2
    expect = np.where(mask, -A * s[:, None], 0)
    np.testing.assert_allclose(g[inside], expect[inside], rtol=1e-5)


def test_gspo_on_policy_gradient_equals_grpo():
    """At logp_new = logp_old every ratio is 1: GSPO's gradient is the token-level surrogate's."""
    _, logp_old, adv, mask = inputs()
    a = algo()
    f = lambda name: jax.grad(lambda lp: policy_objective(lp, logp_old, None, None, None, adv, mask,  # noqa: E731
                                                          algo(policy_loss=name))[0])(jnp.asarray(logp_old))
    np.testing.assert_allclose(np.asarray(f("gspo")), np.asarray(f("ppo_clip")), rtol=1e-6, atol=1e-8)
    assert a.policy_loss == "ppo_clip"


def test_top_entropy_mask_keeps_the_top_share():
    rng = np.random.default_rng(3)
    ent = rng.uniform(0, 3, size=(B, T)).astype(np.float32)
    _, _, _, mask = inputs()
    keep = np.asarray(top_entropy_mask(ent, mask, 0.2))
    thresh = np.quantile(ent[mask], 0.8)
    np.testing.assert_array_equal(keep, mask & (ent >= thresh))
    assert abs(keep.sum() - 0.2 * mask.sum()) <= 1
    np.testing.assert_array_equal(np.asarray(top_entropy_mask(ent, mask, 1.0)), mask)


def test_high_entropy_objective_trains_only_kept_tokens():
    logp_new, logp_old, adv, mask = inputs()
    ent = np.random.default_rng(4).uniform(0, 3, size=(B, T)).astype(np.float32)
    a = algo(entropy_top_frac=0.2)
    g = np.asarray(jax.grad(lambda lp: policy_objective(lp, logp_old, None, None, ent, adv, mask, a)[0])(
        jnp.asarray(logp_new)))
    keep = np.asarray(top_entropy_mask(ent, mask, 0.2))
    assert (g[~keep] == 0).all() and (g[keep] != 0).mean() > 0.5
