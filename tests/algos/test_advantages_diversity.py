"""pass_at_k, w_reinforce / psr / nsr, qae and pkpo against closed forms and brute force over k-subsets."""
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import config as config_lib
from rlvr_jax.active_fields import inactive_fields
from rlvr_jax.algos import advantages as A
from rlvr_jax.algos import diversity_advantages as D

NEW = ["pass_at_k", "w_reinforce", "psr", "nsr", "qae", "pkpo"]
G = 8


def algo(**kw):
    cfg = config_lib.base_config().algo
    cfg.update(kw)
    return cfg


def run(name, rewards, valid=None, **kw):
    adv, _ = A.compute_advantages(jnp.asarray(rewards, jnp.float32), None if valid is None else jnp.asarray(valid),
                                  algo(estimator=name, **kw))
    return np.asarray(adv)


def binary_rows(n):
    """Row c has c successes among n rollouts (c = 0..n), shuffled."""
    rng = np.random.default_rng(n)
    return np.stack([rng.permutation([1.0] * c + [0.0] * (n - c)) for c in range(n + 1)]).astype(np.float32)


def subsets_holding(n, k, i):
    return [I for I in itertools.combinations(range(n), k) if i in I]


def brute_pass_at_k(f, k):
    """GRPO over all k-subsets (reward: any success; population std), averaged over the subsets holding each rollout."""
    subsets = list(itertools.combinations(range(len(f)), k))
    R = np.array([f[list(I)].max() for I in subsets])
    if R.std() == 0:
        return np.zeros(len(f))
    a = dict(zip(subsets, (R - R.mean()) / R.std()))
    return np.array([np.mean([a[I] for I in subsets_holding(len(f), k, i)]) for i in range(len(f))])


def brute_pkpo_reward(f, k):
    """Mean pass@k over the k-subsets holding each rollout."""
    return np.array([np.mean([f[list(I)].max() for I in subsets_holding(len(f), k, i)]) for i in range(len(f))])


def brute_pkpo_loo1(f, k):
    """Paper Eq. 33 times n/k: mean over the k-subsets I holding i of pass(I) - pass(I without i)."""
    return np.array([np.mean([f[list(I)].max() - f[[j for j in I if j != i]].max()
                              for I in subsets_holding(len(f), k, i)]) for i in range(len(f))])


def test_binom_ratio_matches_math_comb():
    def comb(a, m):
        return math.comb(a, m) if a >= m >= 0 else 0
    rows = [(a, b, m) for b in range(8) for m in range(b + 1) for a in range(-1, b + 1)]
    a, b, m = (jnp.asarray(np.array(x, np.float32)) for x in zip(*rows))
    got = np.asarray(D.binom_ratio(a, b, m, 7))
    np.testing.assert_allclose(got, [comb(a, m) / comb(b, m) for a, b, m in rows], rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------ pass_at_k

def test_pass_at_k_hand_group():
    """n = 6, c = 2, k = 3: R = 1 - 4/20 = 0.8, s = 0.4; correct (0.2)/0.4, wrong (0.2 - 3/10)/0.4."""
    adv = run("pass_at_k", [[1, 0, 0, 0, 1, 0]], pass_k=3)
    np.testing.assert_allclose(adv[0], [0.5, -0.25, -0.25, -0.25, 0.5, -0.25], rtol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_pass_at_k_brute_force_subsets(k):
    r = binary_rows(6)
    adv = run("pass_at_k", r, pass_k=k)
    ref = np.stack([brute_pass_at_k(f, k) for f in r])
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-6)


def test_pass_at_k_at_k1_is_grpo_population_std():
    r = binary_rows(G)
    np.testing.assert_allclose(run("pass_at_k", r, pass_k=1), run("grpo", r, std_ddof=0, adv_eps=0.0),
                               rtol=1e-5, atol=1e-6)
    valid = np.arange(G)[None] < np.array([[8], [5], [3], [2], [1], [6], [4], [7], [8]])  # padded groups too
    np.testing.assert_allclose(run("pass_at_k", r, valid, pass_k=1),
                               run("grpo", r, valid, std_ddof=0, adv_eps=0.0), rtol=1e-5, atol=1e-6)


def test_pass_at_k_reads_success_threshold():
    """Correctness is reward > algo.success_threshold, as in groups.successes."""
    r = [[0.9, 0.6, 0.2, 0.1, 0.0, 0.3]]
    np.testing.assert_allclose(run("pass_at_k", r, pass_k=3, success_threshold=0.5),
                               run("pass_at_k", [[1, 1, 0, 0, 0, 0]], pass_k=3), rtol=1e-6)


# ------------------------------------------------------------------------------------------------ w_reinforce, psr, nsr

@pytest.mark.parametrize("name,correct,wrong", [("w_reinforce", 0.25, -1.0), ("psr", 1.0, 0.0), ("nsr", 0.0, -1.0)])
def test_signed_reinforce_closed_forms(name, correct, wrong):
    r = np.array([[0.9, 0.2, 0.5, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    adv = run(name, r, positive_weight=0.25)  # psr and nsr ignore it
    np.testing.assert_array_equal(adv, np.where(r > 0.5, correct, wrong))  # 0.5 is not above the threshold


def test_w_reinforce_default_lambda_and_single_rollout_groups():
    r = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32)
    valid = np.array([[True, False, False, False], [False, True, False, False]])
    np.testing.assert_allclose(run("w_reinforce", r, valid), [[0.1, 0, 0, 0], [0, 0.1, 0, 0]], rtol=1e-6)


# ------------------------------------------------------------------------------------------------ qae

def test_qae_hand_group():
    """K = 0.4 of 6 rewards: the ceil(2.4) = 3rd smallest, 0.7; divided by the population std (+ adv_eps = 0)."""
    r = np.array([[1, 0.7, 0, 0.2, 1, 1]], np.float32)
    adv = run("qae", r, adv_eps=0.0)
    np.testing.assert_allclose(adv, (r - 0.7) / r.std(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("K", [0.0, 0.1, 0.25, 0.4, 0.5, 0.75, 0.9, 1.0])
def test_qae_baseline_is_the_inverted_cdf_quantile(K):
    rng = np.random.default_rng(7)
    r = rng.integers(0, 5, size=(6, G)).astype(np.float32) / 4
    valid = np.arange(G)[None] < np.array([[8], [7], [5], [4], [3], [2]])
    adv = run("qae", r, valid, qae_quantile=K, adv_eps=0.0, std_ddof=1)
    for b in range(len(r)):
        x = r[b, valid[b]]
        if x.max() == x.min():
            np.testing.assert_array_equal(adv[b], 0.0)
            continue
        base = np.quantile(x, K, method="inverted_cdf")
        np.testing.assert_allclose(adv[b, valid[b]], (x - base) / x.std(ddof=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("K", [0.2, 0.4, 0.75])
def test_qae_binary_gate_zeroes_one_side(K):
    """Success rate p <= 1 - K: baseline 0, wrong rollouts get 0; p > 1 - K: baseline 1, correct ones get 0."""
    r = binary_rows(G)
    adv = run("qae", r, qae_quantile=K, adv_eps=0.0)
    for c in range(1, G):
        p, row, f = c / G, adv[c], r[c] == 1
        s = np.sqrt(p * (1 - p))
        if p <= 1 - K:
            np.testing.assert_array_equal(row[~f], 0.0)
            np.testing.assert_allclose(row[f], 1 / s, rtol=1e-5)
        else:
            np.testing.assert_array_equal(row[f], 0.0)
            np.testing.assert_allclose(row[~f], -1 / s, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ pkpo

@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_pkpo_brute_force_subsets(k):
    """n = 6: the transformed reward is the mean pass@k of the k-subsets holding the rollout, its group mean is the
    unbiased pass@k 1 - C(n-c, k)/C(n, k), and the advantage is Eq. 33 (times n/k), all by enumeration."""
    n = 6
    r = binary_rows(n)
    cfg = algo(estimator="pkpo", pass_k=k)
    t = np.asarray(D.pkpo_rewards(jnp.asarray(r), jnp.ones(r.shape, bool), cfg))
    np.testing.assert_allclose(t, np.stack([brute_pkpo_reward(f, k) for f in r]), rtol=1e-6, atol=1e-7)
    for c in range(n + 1):
        np.testing.assert_allclose(t[c].mean(), 1 - math.comb(n - c, k) / math.comb(n, k), rtol=1e-6, atol=1e-7)
    adv = run("pkpo", r, pass_k=k)
    np.testing.assert_allclose(adv, np.stack([brute_pkpo_loo1(f, k) for f in r]), rtol=1e-6, atol=1e-7)


def test_pkpo_hand_group_and_k_equal_n_is_passk():
    """n = 6, c = 2, k = 3: a correct rollout gets C(4, 2)/C(5, 2) = 0.6, a wrong one 0. At k = n it is the
    best-of-group passk estimator (a unique success gets 1)."""
    np.testing.assert_allclose(run("pkpo", [[1, 0, 0, 0, 1, 0]], pass_k=3)[0], [0.6, 0, 0, 0, 0.6, 0], rtol=1e-6)
    r = binary_rows(G)
    np.testing.assert_allclose(run("pkpo", r, pass_k=G), run("passk", r), atol=1e-7)


def test_pkpo_at_k1_is_leave_one_out_centering():
    r = binary_rows(G)
    np.testing.assert_allclose(run("pkpo", r, pass_k=1), run("rloo", r), rtol=1e-6, atol=1e-7)
    t = np.asarray(D.pkpo_rewards(jnp.asarray(r), jnp.ones(r.shape, bool), algo(pass_k=1)))
    np.testing.assert_array_equal(t, r)  # at k = 1 the transformed reward is the raw one


# ------------------------------------------------------------------------------------------------ all estimators

@pytest.mark.parametrize("name", NEW)
def test_padded_groups_equal_unpadded(name):
    """Padding gets 0 and garbage there never leaks; a group with n < G valid rollouts scores as those n alone
    (n = 2 < pass_k = 3 too: k is clamped to n)."""
    rng = np.random.default_rng(5)
    n_valid = [G, 5, 3, 2, 1]
    r = rng.integers(0, 2, size=(len(n_valid), G)).astype(np.float32)
    r[1, :5] = [1, 0, 0, 1, 1]
    r[3, :2] = [1, 0]
    valid = np.zeros_like(r, bool)
    for b, n in enumerate(n_valid):
        valid[b, rng.permutation(G)[:n]] = True
    r_sorted = np.stack([np.pad(np.sort(r[b, valid[b]]), (0, G - n)) for b, n in enumerate(n_valid)])
    r = np.where(valid, r, 123.0)
    adv = run(name, r, valid, pass_k=3)
    assert np.all(adv[~valid] == 0)
    for b, n in enumerate(n_valid):
        sub = run(name, r[b, valid[b]][None], pass_k=min(3, n))
        np.testing.assert_allclose(adv[b, valid[b]], sub[0], rtol=1e-6, atol=1e-7)
        # the same valid rewards in other slots, with other padding: the same advantages (as a multiset)
        moved = run(name, r_sorted[b][None], (np.arange(G) < n)[None], pass_k=3)
        np.testing.assert_allclose(np.sort(adv[b, valid[b]]), np.sort(moved[0, :n]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,all_correct,all_wrong", [
    ("pass_at_k", 0.0, 0.0), ("pkpo", 0.0, 0.0), ("qae", 0.0, 0.0),
    ("w_reinforce", 0.1, -1.0), ("psr", 1.0, 0.0), ("nsr", 0.0, -1.0),
])
def test_all_correct_and_all_wrong_groups(name, all_correct, all_wrong):
    r = np.stack([np.ones(G), np.zeros(G)]).astype(np.float32)
    np.testing.assert_allclose(run(name, r), [[all_correct] * G, [all_wrong] * G], rtol=1e-6)


def test_pkpo_at_k1_single_rollout_and_all_equal_groups_get_zero():
    r = np.array([[1, 1, 1, 1], [1, 0, 0, 0]], np.float32)
    valid = np.array([[True] * 4, [True, False, False, False]])
    np.testing.assert_array_equal(run("pkpo", r, valid, pass_k=1), 0.0)


@pytest.mark.parametrize("name", NEW)
def test_jit_matches_eager(name):
    r = jnp.asarray(np.random.default_rng(6).integers(0, 2, size=(5, G)).astype(np.float32))
    valid = jnp.asarray(np.arange(G)[None] < np.array([[8], [6], [3], [2], [1]]))
    cfg = algo(estimator=name, pass_k=3)
    jitted = jax.jit(lambda x, v: A.compute_advantages(x, v, cfg)[0])(r, valid)
    np.testing.assert_allclose(jitted, A.compute_advantages(r, valid, cfg)[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NEW)
def test_iac_composes(name):
    """With algo.iac, positive advantages are multiplied by (n - c)^alpha; the rest stay as they are."""
    r = binary_rows(G)
    plain = run(name, r, pass_k=3)
    iac = run(name, r, pass_k=3, iac=True)
    assert np.all(np.isfinite(iac))
    factor = (G - r.sum(1, keepdims=True))
    np.testing.assert_allclose(iac, np.where(plain > 0, plain * factor, plain), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------ config fields

def _cfg(**algo_fields):
    cfg = config_lib.base_config()
    cfg.algo.update(algo_fields)
    return cfg


@pytest.mark.parametrize("fields,msg", [
    (dict(pass_k=0), r"^config\.algo\.pass_k: 0 must be >= 1$"),
    (dict(estimator="pass_at_k", pass_k=9), r"^config\.algo\.pass_k: k=9 exceeds rollout\.group_size=8"),
    (dict(estimator="pkpo", pass_k=9), r"^config\.algo\.pass_k: k=9 exceeds rollout\.group_size=8"),
    (dict(positive_weight=-0.5), r"^config\.algo\.positive_weight: -0.5 must be >= 0$"),
    (dict(qae_quantile=1.5), r"^config\.algo\.qae_quantile: 1.5 must be in \[0, 1\]$"),
])
def test_new_fields_are_validated(fields, msg):
    with pytest.raises(config_lib.ConfigError, match=msg):
        config_lib.validate(_cfg(**fields))


def test_pass_k_may_exceed_group_size_where_no_estimator_reads_it():
    config_lib.validate(_cfg(estimator="grpo", pass_k=9))
    config_lib.validate(_cfg(estimator="pkpo", pass_k=8))


@pytest.mark.parametrize("estimator,active", [
    ("grpo", {"std_ddof", "adv_eps"}), ("pass_at_k", {"pass_k"}), ("pkpo", {"pass_k"}),
    ("w_reinforce", {"positive_weight"}), ("psr", set()), ("nsr", set()),
    ("qae", {"std_ddof", "adv_eps", "qae_quantile"}),
])
def test_estimator_fields_are_active_only_where_read(estimator, active):
    off = inactive_fields(config_lib.validate(_cfg(estimator=estimator)))
    fields = {"std_ddof", "adv_eps", "pass_k", "positive_weight", "qae_quantile"}
    assert {k for k in fields if f"algo.{k}" not in off} == active
