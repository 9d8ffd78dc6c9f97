"""pass@k against brute-force subset enumeration; stability at n = 4096; maj@k and bootstrap."""
import math
from fractions import Fraction

import numpy as np
import pytest

from rlvr_jax.eval import passk


def _popcount(x):
    x = x.copy()
    out = np.zeros_like(x)
    while x.any():
        out += x & 1
        x >>= 1
    return out


def test_pass_at_k_equals_subset_enumeration_all_n_up_to_20():
    """Every k-subset of n samples (c correct) is enumerated; pass@k = fraction containing a correct one."""
    for n in range(1, 21):
        masks = np.arange(1 << n, dtype=np.int64)
        size = _popcount(masks)
        totals = np.bincount(size, minlength=n + 1)
        curve = passk.pass_at_k_curve(n, np.arange(n + 1))
        for c in range(n + 1):
            hit = (masks & ((1 << c) - 1)) != 0  # samples 0..c-1 are the correct ones
            hits = np.bincount(size[hit], minlength=n + 1)
            ref = hits[1:] / totals[1:]  # k = 1..n
            np.testing.assert_allclose(curve[c], ref, rtol=0, atol=1e-13, err_msg=f"n={n} c={c}")
            for k in (1, n // 2 + 1, n):
                assert abs(passk.pass_at_k(n, c, k) - ref[k - 1]) < 1e-13


def test_pass_at_k_exact_rational_large_n():
    n = 4096
    for c, k in [(1, 1), (1, 4096), (3, 1000), (100, 37), (4000, 64), (7, 4090)]:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert abs(float(passk.pass_at_k(n, c, k)) - float(exact)) < 1e-12


def test_curve_finite_monotone_n4096():
    n = 4096
    c = np.array([0, 1, 2, 5, 17, 100, 2048, 4095, 4096])
    curve = passk.pass_at_k_curve(n, c)
    assert curve.shape == (len(c), n)
    assert np.isfinite(curve).all()
    assert (np.diff(curve, axis=1) >= 0).all()
    assert (curve >= 0).all() and (curve <= 1).all()
    assert (curve[0] == 0).all() and (curve[1:, -1] == 1).all()
    np.testing.assert_allclose(curve[:, 0], c / n, atol=1e-14)  # pass@1 = c/n


def test_majority_vote_ties_and_none():
    answers = [["a", "b", "b", "a"], [None, None, "x", "y"], [None, None, None, None], ["q", "r", "r", "r"]]
    correct = np.array([[1, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], bool)
    got = passk.majority_correct(answers, correct, 4)
    # row 0: a/b tie -> 'a' (seen first) correct; row 1: x/y tie -> 'x' wrong; row 2: no answer; row 3: 'r'
    np.testing.assert_array_equal(got, [1.0, 0.0, 0.0, 0.0])
    sub = passk.majority_correct(answers, correct, 1, num_subsets=2000, seed=3)
    assert abs(sub[0] - 0.5) < 0.05 and abs(sub[3] - 0.25) < 0.05  # maj@1 = accuracy
    with pytest.raises(ValueError, match="answers_QxN"):
        passk.majority_correct(answers[:2], correct, 2)


def test_bootstrap_ci_covers_and_is_seeded():
    rng = np.random.default_rng(0)
    vals = rng.random(400)
    m, lo, hi = passk.bootstrap_ci(vals, seed=1)
    assert lo < m < hi and abs(m - vals.mean()) < 1e-12
    se = vals.std() / np.sqrt(len(vals))
    assert abs((hi - lo) - 2 * 1.96 * se) < 0.3 * 2 * 1.96 * se
    assert passk.bootstrap_ci(vals, seed=1) == (m, lo, hi)


def test_evaluate_correctness_and_benchmarks():
    rng = np.random.default_rng(0)
    a = rng.random((30, 16)) < 0.3
    b = rng.random((20, 8)) < 0.6
    res = passk.evaluate_correctness(a, ks=(1, 4, 16), seed=0)
    assert res["num_queries"] == 30 and len(res["curve"]["mean"]) == 16
    assert abs(res["pass@k"]["1"]["mean"] - a.mean()) < 1e-12
    p = [res["pass@k"][k]["mean"] for k in ("1", "4", "16")]
    assert p == sorted(p)
    with pytest.raises(ValueError, match="eval.ks"):
        passk.evaluate_correctness(a, ks=(32,))
    both = passk.evaluate_benchmarks({"a": a, "b": b}, ks=(1, 4, 16))
    assert both["pooled"]["ks"] == [1, 4] and both["pooled"]["num_queries"] == 50
    pooled1 = (a.mean(1).sum() + b.mean(1).sum()) / 50
    assert abs(both["pooled"]["pass@k"]["1"]["mean"] - pooled1) < 1e-12


def test_distinct_correct_and_maj_in_results():
    answers = [["a", "b", "a", None], ["x", "x", "y", "z"]]
    correct = np.array([[1, 1, 1, 0], [0, 0, 1, 1]], bool)
    np.testing.assert_array_equal(passk.distinct_correct(answers, correct), [2, 2])
    res = passk.evaluate_correctness(correct, ks=(1, 4), answers_QxN=answers, num_boot=50)
    assert res["distinct_correct"]["mean"] == 2.0
    assert res["maj@k"]["4"]["mean"] == 0.5  # row 0 votes 'a' (right), row 1 votes 'x' (wrong)
