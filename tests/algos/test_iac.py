"""IAC calibration against the paper's formula: positives x (G - k)^alpha, negatives unchanged."""
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import config as config_lib
from rlvr_jax.algos.advantages import compute_advantages

G = 8


def algo(**kw):
    cfg = config_lib.base_config().algo
    cfg.update(dict(iac=True, adv_eps=0.0))
    cfg.update(kw)
    return cfg


def run(rewards, valid=None, **kw):
    cfg = algo(**kw)
    adv, stats = compute_advantages(jnp.asarray(rewards, jnp.float32), None if valid is None else jnp.asarray(valid),
                                    cfg)
    return np.asarray(adv), {k: float(v) for k, v in stats.items()}


def reference(adv, r, valid, alpha, renorm, thr):
    """numpy IAC written from the formula."""
    n = valid.sum(1).astype(np.float64)
    k = ((r > thr) & valid).sum(1).astype(np.float64)
    f = (n - k) ** alpha  # numpy: 0.0 ** 0 == 1
    active = ((adv > 0) & valid).any(1)
    if renorm == "g_alpha":
        f = f / n ** alpha
    elif renorm == "batch_mean" and active.any() and f[active].mean() > 0:
        f = f / f[active].mean()
    out = np.where(adv > 0, adv * f[:, None], adv)
    stats = dict(iac_factor_mean=f[active].mean() if active.any() else 0.0,
                 iac_factor_max=f[active].max() if active.any() else 0.0)
    return out, stats


def test_grpo_binary_paper_formula():
    """k of G correct: success advantage sqrt((G-k)/k) * (G-k); failures unchanged; k = 0, G give 0."""
    r = np.array([[1.0] * k + [0.0] * (G - k) for k in range(G + 1)], np.float32)
    adv, stats = run(r)
    for k in range(1, G):
        np.testing.assert_allclose(adv[k, :k], (G - k) * np.sqrt((G - k) / k), rtol=1e-6)
        np.testing.assert_allclose(adv[k, k:], -np.sqrt(k / (G - k)), rtol=1e-6)
    np.testing.assert_array_equal(adv[0], 0.0)  # all wrong
    np.testing.assert_array_equal(adv[G], 0.0)  # all correct
    assert stats["iac_factor_max"] == G - 1
    assert stats["iac_factor_mean"] == pytest.approx(np.mean([G - k for k in range(1, G)]))


def test_all_correct_and_all_wrong_with_graded_rewards():
    """Non-binary rewards: an all-above-threshold group has factor 0 (alpha>0), 1 (alpha=0);
    an all-below-threshold group has factor G^alpha."""
    all_correct = [0.6, 0.9, 0.7, 0.8, 0.55, 0.95, 0.6, 0.65]
    all_wrong = [0.1, 0.4, 0.0, 0.2, 0.3, 0.05, 0.45, 0.1]
    r = np.array([all_correct, all_wrong], np.float32)
    base, _ = run(r, iac=False)
    assert (base > 0).any(axis=1).all()
    for alpha in (0.0, 0.5, 1.0, 2.0):
        adv, _ = run(r, iac_alpha=alpha)
        f_correct = 1.0 if alpha == 0 else 0.0
        np.testing.assert_allclose(adv[0], np.where(base[0] > 0, base[0] * f_correct, base[0]), rtol=1e-6)
        np.testing.assert_allclose(adv[1], np.where(base[1] > 0, base[1] * G ** alpha, base[1]), rtol=1e-6)


@pytest.mark.parametrize("renorm", ["none", "g_alpha", "batch_mean"])
@pytest.mark.parametrize("estimator", ["grpo", "rloo", "dr_grpo"])
def test_matches_reference_each_renorm(renorm, estimator):
    rng = np.random.default_rng(0)
    r = rng.uniform(size=(6, G)).astype(np.float32)
    r[0] = rng.integers(0, 2, size=G)
    r[1] = 1.0  # all correct
    valid = np.ones_like(r, bool)
    valid[2, 5:] = False  # a padded group: n = 5
    thr, alpha = 0.3, 1.5
    base, _ = run(r, valid, iac=False, estimator=estimator)
    adv, stats = run(r, valid, iac_renorm=renorm, success_threshold=thr, iac_alpha=alpha, estimator=estimator)
    ref, ref_stats = reference(base, r, valid, alpha, renorm, thr)
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-6)
    for key, v in ref_stats.items():
        assert stats[key] == pytest.approx(v, rel=1e-5)
    if renorm == "g_alpha":
        assert stats["iac_factor_max"] <= 1.0


def test_threshold_sets_k():
    """The same graded rewards with two thresholds give different k and hence different factors."""
    r = np.array([[0.2, 0.4, 0.6, 0.8, 0.9, 0.1, 0.3, 0.7]], np.float32)
    valid = np.ones_like(r, bool)
    base, _ = run(r, iac=False)
    for thr in (0.25, 0.5, 0.75):
        adv, _ = run(r, success_threshold=thr)
        k = (r > thr).sum()
        np.testing.assert_allclose(adv, reference(base, r, valid, 1.0, "none", thr)[0], rtol=1e-6)
        np.testing.assert_allclose(adv[base > 0], base[base > 0] * (G - k), rtol=1e-6)


def test_negatives_never_change():
    r = np.random.default_rng(1).uniform(size=(5, G)).astype(np.float32)
    base, _ = run(r, iac=False)
    for renorm in ("none", "g_alpha", "batch_mean"):
        adv, _ = run(r, iac_renorm=renorm)
        np.testing.assert_array_equal(adv[base <= 0], base[base <= 0])
