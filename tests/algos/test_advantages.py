"""Advantage estimators against closed forms and numpy/brute-force references."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import config as config_lib
from rlvr_jax.algos import advantages as A
from rlvr_jax.algos.groups import zero_std_groups

G = 8


def algo(**kw):
    cfg = config_lib.base_config().algo
    cfg.update(kw)
    return cfg


def binary_groups():
    """Row k has k successes out of G (k = 0..G), in a shuffled order."""
    rng = np.random.default_rng(0)
    rows = []
    for k in range(G + 1):
        r = np.array([1.0] * k + [0.0] * (G - k))
        rows.append(rng.permutation(r))
    return np.stack(rows).astype(np.float32)


def run(name, rewards, valid=None, **kw):
    cfg = algo(estimator=name, **kw)
    adv, stats = A.compute_advantages(jnp.asarray(rewards), None if valid is None else jnp.asarray(valid), cfg)
    return np.asarray(adv), {k: float(v) for k, v in stats.items()}


@pytest.mark.parametrize("ddof", [0, 1])
def test_grpo_binary_closed_form(ddof):
    r = binary_groups()
    adv, stats = run("grpo", r, std_ddof=ddof, adv_eps=0.0)
    for k in range(G + 1):
        row = adv[k]
        if k in (0, G):
            np.testing.assert_array_equal(row, 0.0)
            continue
        c = np.sqrt((G - 1) / G) if ddof else 1.0  # sample std is sqrt(G/(G-1)) x population std
        np.testing.assert_allclose(row[r[k] == 1], c * np.sqrt((G - k) / k), rtol=1e-6)
        np.testing.assert_allclose(row[r[k] == 0], -c * np.sqrt(k / (G - k)), rtol=1e-6)
    assert stats["frac_reward_zero_std"] == pytest.approx(2 / (G + 1))
    assert stats["reward_mean"] == pytest.approx(r.mean())


def test_grpo_eps_and_general_rewards():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(5, G)).astype(np.float32)
    eps = 0.1
    adv, _ = run("grpo", r, adv_eps=eps)
    ref = (r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + eps)
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-6)


def test_dr_grpo_and_rloo_closed_forms():
    r = binary_groups()
    adv_dr, _ = run("dr_grpo", r)
    adv_rloo, _ = run("rloo", r)
    for k in range(G + 1):
        np.testing.assert_allclose(adv_dr[k][r[k] == 1], 1 - k / G, rtol=1e-6)
        np.testing.assert_allclose(adv_dr[k][r[k] == 0], -k / G, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(adv_rloo[k][r[k] == 1], (G - k) / (G - 1), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(adv_rloo[k][r[k] == 0], -k / (G - 1), rtol=1e-6, atol=1e-7)


def test_rloo_is_leave_one_out_on_general_rewards():
    r = np.random.default_rng(2).uniform(size=(3, G)).astype(np.float32)
    adv, _ = run("rloo", r)
    ref = np.array([[r[b, i] - np.delete(r[b], i).mean() for i in range(G)] for b in range(3)])
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-6)


def test_reinforce_pp_batch_normalised():
    r = np.random.default_rng(3).uniform(size=(4, G)).astype(np.float32)
    eps = 1e-3
    adv, _ = run("reinforce_pp", r, adv_eps=eps)
    c = r - r.mean(1, keepdims=True)
    np.testing.assert_allclose(adv, c / (c.std() + eps), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adv.std(), 1.0, rtol=1e-2)


@pytest.mark.parametrize("adv_eps", [1e-6, 0.0])
def test_reinforce_pp_flat_groups_with_inexact_rewards_get_zero(adv_eps):
    """Every group flat at 0.7 (not exact in float32): r - mean(r) is rounding residue, and its batch std is
    as tiny, so dividing gave 0.057 (1.54 with adv_eps = 0). Flat groups are zeroed first, as in grpo."""
    r = np.full((4, G), 0.7, np.float32)
    adv, _ = run("reinforce_pp", r, adv_eps=adv_eps)
    np.testing.assert_array_equal(adv, 0.0)
    mixed = r.copy()
    mixed[0, :3] = 1.0  # one group with signal: the flat ones stay exactly 0, the mixed one is normalised
    adv, _ = run("reinforce_pp", mixed, adv_eps=adv_eps)
    np.testing.assert_array_equal(adv[1:], 0.0)
    c = mixed[0] - mixed[0].mean()
    np.testing.assert_allclose(adv[0], c / (np.sqrt((c * c).sum() / mixed.size) + adv_eps), rtol=1e-5)


def test_passk_brute_force():
    r = np.random.default_rng(4).integers(0, 3, size=(6, G)).astype(np.float32)
    r[0] = 0.0
    r[1] = [1, 0, 0, 0, 0, 0, 0, 0]
    adv, _ = run("passk", r)
    ref = np.array([[r[b].max() - np.delete(r[b], i).max() for i in range(G)] for b in range(len(r))])
    np.testing.assert_allclose(adv, ref)
    np.testing.assert_array_equal(adv[1], [1, 0, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp", "passk"])
def test_padded_groups_equal_unpadded(name):
    """A group with n < G valid rollouts gives what the estimator gives on those n alone; padding gets 0."""
    rng = np.random.default_rng(5)
    n_valid = [G, 5, 3, 1]
    r = rng.integers(0, 2, size=(len(n_valid), G)).astype(np.float32)
    r[1, :5] = [1, 0, 0, 1, 1]
    valid = np.zeros_like(r, bool)
    for b, n in enumerate(n_valid):
        valid[b, rng.permutation(G)[:n]] = True
    r_noisy = np.where(valid, r, 123.0)  # garbage in padded slots must not leak
    adv, _ = run(name, r_noisy, valid)
    assert np.all(adv[~valid] == 0)
    if name == "reinforce_pp":  # batch-level: compare with the whole valid set
        c = np.concatenate([r[b, valid[b]] - r[b, valid[b]].mean() for b in range(len(r))])
        np.testing.assert_allclose(np.concatenate([adv[b, valid[b]] for b in range(len(r))]),
                                   c / (c.std() + 1e-6), rtol=1e-5, atol=1e-6)
        return
    for b, n in enumerate(n_valid):
        sub = r[b, valid[b]]
        sub_adv, _ = run(name, np.pad(sub, (0, G - n))[None], np.arange(G)[None] < n)
        np.testing.assert_allclose(adv[b, valid[b]], sub_adv[0, :n], rtol=1e-6, atol=1e-7)
    assert np.all(adv[3] == 0)  # single valid rollout: no baseline, no signal


def test_zero_std_groups_and_stat():
    r = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [0.3, 0.3, 0.3, 0.3], [0, 1, 0, 0], [5, 0, 0, 0]], np.float32)
    valid = np.ones_like(r, bool)
    valid[4, 0] = False  # the only different reward is padding
    np.testing.assert_array_equal(np.asarray(zero_std_groups(jnp.asarray(r), jnp.asarray(valid))),
                                  [True, True, True, False, True])
    _, stats = run("grpo", r, valid)
    assert stats["frac_reward_zero_std"] == pytest.approx(4 / 5)


@pytest.mark.parametrize("name", ["grpo", "passk"])
def test_jit_and_vmap_over_extra_axis(name):
    """The pipeline (estimator + IAC) is jittable and vmappable: a vmapped batch equals a loop."""
    r = jnp.asarray(np.random.default_rng(6).integers(0, 2, size=(3, 4, G)).astype(np.float32))
    cfg = algo(estimator=name, iac=True, iac_renorm="batch_mean")
    stacked = jax.jit(jax.vmap(lambda x: A.compute_advantages(x, None, cfg)[0]))(r)
    for i in range(3):
        np.testing.assert_allclose(stacked[i], A.compute_advantages(r[i], None, cfg)[0], rtol=1e-6)


def test_registry_errors_and_extension():
    with pytest.raises(ValueError, match="config.algo.estimator"):
        A.get_estimator("nope")
    with pytest.raises(ValueError, match="already registered"):
        A.register_advantage("grpo")(lambda r, v, c: r)
    assert set(config_lib.SCHEMA["algo"]["estimator"].allowed()) == set(A.estimators())  # read from the registry
    A.register_advantage("test_only_zero")(lambda r, v, c: 0.0 * r)
    try:  # a late registration is a valid choice at once: the schema asks the registry
        cfg = config_lib.base_config()
        cfg.algo.estimator = "test_only_zero"
        config_lib.validate(cfg)
    finally:
        A._ESTIMATORS.pop("test_only_zero")


def test_all_subsets_grpo_sum_zero():
    """Every binary group pattern of size 4: GRPO advantages sum to zero and have unit population std."""
    pats = np.array(list(itertools.product([0.0, 1.0], repeat=4)), np.float32)
    adv, _ = run("grpo", pats, adv_eps=0.0)
    np.testing.assert_allclose(adv.sum(1), 0.0, atol=1e-5)
    nz = pats.std(1) > 0
    np.testing.assert_allclose(adv[nz].std(1), 1.0, rtol=1e-5)
