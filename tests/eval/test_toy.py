"""The toy experiment against closed forms, and the one-command script at a tiny size.

Tabular case (overlap 0): logits theta_q are free per query and label. The G = inf update of the
GRPO surrogate sum_y pi_y A_y log pi_y is d theta_y = lr * pi_y * A_y with
A_y = (r_y - J) / (sqrt(J (1 - J)) + eps), so for two valid labels a, b
    d(theta_a - theta_b) = lr * (1 - J) * (pi_a - pi_b) / (sqrt(J (1 - J)) + eps)     (exact, one step):
exact policy gradient does NOT preserve ratios among valid labels unless they are equal; the more
probable one gains (rich get richer). Two consequences tested below:
  * valid labels with equal reference probability stay exactly equal at G = inf, while a finite
    group breaks the tie and the policy collapses onto some of them (sampling bias);
  * with a KL term beta, a G = inf fixed point satisfies log(pi_y / ref_y) = A_y / beta + const,
    i.e. pi restricted to valid labels equals ref restricted to valid labels (Corollary 2.1).
    (With std-normalised advantages the valid-vs-wrong log-odds gap must equal 1/(beta sigma);
    for small beta no such point exists and J -> 1 forever, so the test uses beta = 2.)
A finite GRPO group moves only sampled logits (the advantages sum to 0), so every unsampled label,
valid or not, is scaled by one common factor. With IAC (positives times f) E_pi[A] != 0 and the
one-step factor becomes (1 - J)(f (1 - J) + J) / sigma.
"""
import json
import os
import runpy
import sys

import numpy as np
import pytest

from rlvr_jax.eval import toy

SMALL = dict(num_labels=8, num_valid=3, cluster_size=2, num_train=3, num_heldout=2, overlap=0.0)


def test_exact_step_closed_form():
    cfgs = [toy.ToyConfig(**SMALL, valid_spread=1.0, group_size=0, steps=1, lr=0.3, iac_alpha=a) for a in (0.0, 1.0)]
    for cfg, run in zip(cfgs, toy.run_toy_many(cfgs, seeds=(0, 1))):
        P = run["probs_SxTxQxK"]
        for s in range(2):
            p0, p1 = P[s, 0], P[s, 1]
            valid = run["valid_SxQxK"][s]
            J = (p0 * valid).sum(1)
            f = np.ones(3) if cfg.iac_alpha == 0 else (1 - J[:3]) / (1 - J[:3]).mean()
            for q in range(3):
                v = np.flatnonzero(valid[q])
                for a in v:
                    for b in v:
                        got = np.log(p1[q, a] / p1[q, b]) - np.log(p0[q, a] / p0[q, b])
                        # IAC scales only the positive advantages, so E_pi[A] != 0 and the valid labels'
                        # common factor is (1 - J)(f (1 - J) + J) / sigma, which is (1 - J) / sigma when f = 1
                        c = (1 - J[q]) * (f[q] * (1 - J[q]) + J[q]) / (np.sqrt(J[q] * (1 - J[q])) + 1e-6)
                        want = 0.3 * c * (p0[q, a] - p0[q, b])
                        assert abs(got - want) < 1e-5, (cfg.iac_alpha, s, q, a, b, got, want)
            np.testing.assert_allclose(p1[3:], p0[3:], atol=1e-6)  # held-out queries untouched when tabular


@pytest.fixture(scope="module")
def long_runs():
    sym = toy.ToyConfig(**SMALL, valid_spread=0.0, steps=400, lr=0.5)
    kl = toy.ToyConfig(**SMALL, valid_spread=1.0, steps=400, lr=2.0, kl_coef=2.0, group_size=0,
                        bonus_high=1.0)
    exact_sym, exact_kl = toy.run_toy_many([sym.replace(group_size=0), kl], seeds=(0, 1))  # one compile
    finite_sym = toy.run_toy(sym.replace(group_size=4), seeds=(0, 1))
    return exact_sym, exact_kl, finite_sym


def _valid_probs(run, q=slice(0, 3)):
    v = run["valid_SxQxK"][:, None, q]
    P = run["probs_SxTxQxK"][:, :, q]
    return np.where(v, P, np.nan)


def test_equal_valid_labels_stay_equal_at_g_inf_and_split_at_finite_g(long_runs):
    exact_sym, _, finite_sym = long_runs
    pv = _valid_probs(exact_sym)
    spread = np.nanmax(pv, -1) / np.nanmin(pv, -1) - 1
    assert spread.max() < 1e-4
    assert toy.toy_metrics(exact_sym)["train"]["acc"][:, -1].min() > 0.9  # it did learn
    m = toy.toy_metrics(finite_sym)
    assert m["train"]["tv"][:, -1].mean() > 0.2  # finite G collapses onto some valid labels
    assert m["train"]["entropy_norm"][:, -1].mean() < 0.8


def test_kl_fixed_point_keeps_reference_ratios(long_runs):
    _, exact_kl, _ = long_runs
    m = toy.toy_metrics(exact_kl)
    assert m["train"]["tv"][:, 0].max() < 1e-6  # trivially at the start
    assert m["train"]["tv"][:, -1].max() < 1e-3
    assert np.abs(np.diff(m["train"]["acc"][:, -3:], axis=1)).max() < 1e-5  # converged
    # log(pi_v / ref_v) - log(pi_w / ref_w) = (A_v - A_w) / beta = 1 / (beta (sigma + eps)) at the fixed point
    P, ref = exact_kl["probs_SxTxQxK"][:, -1, :3], exact_kl["ref_probs_SxQxK"][:, :3]
    valid = exact_kl["valid_SxQxK"][:, :3]
    J = (P * valid).sum(-1)
    lr_ = np.log(P / ref)
    gap = np.array([[lr_[s, q][valid[s, q]].mean() - lr_[s, q][~valid[s, q]].mean() for q in range(3)]
                    for s in range(2)])
    np.testing.assert_allclose(gap, 1.0 / (2.0 * (np.sqrt(J * (1 - J)) + 1e-6)), rtol=1e-3)


def test_finite_group_scales_unsampled_labels_by_one_factor(long_runs):
    _, _, finite_sym = long_runs
    P = finite_sym["probs_SxTxQxK"]
    G, K = 4, SMALL["num_labels"]
    for s in range(2):
        for t in range(5):
            for q in range(3):
                d = np.log(P[s, t + 1, q]) - np.log(P[s, t, q])
                same_KxK = np.abs(d[:, None] - d[None, :]) < 2e-5  # equal up to float32 rounding
                assert same_KxK.sum(1).max() >= K - G, (s, t, q, d)  # >= K - G labels share one factor
                assert len({tuple(r) for r in same_KxK}) <= G + 1, (s, t, q, d)


def test_config_errors():
    with pytest.raises(ValueError, match="toy.overlap"):
        toy.ToyConfig(overlap=1.0)
    with pytest.raises(ValueError, match="toy.group_size"):
        toy.ToyConfig(group_size=1)
    with pytest.raises(ValueError, match="toy.cluster_size"):
        toy.ToyConfig(num_labels=30, cluster_size=4)


def test_script_tiny_writes_figures(tmp_path, capsys):
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "toy_experiment.py")
    argv = sys.argv
    try:
        sys.argv = [script, "--tiny", "--out", str(tmp_path)]
        runpy.run_path(script, run_name="__main__")
    finally:
        sys.argv = argv
    summary = json.loads((tmp_path / "summary.json").read_text())
    for f in summary["figures"]:
        assert (tmp_path / f).stat().st_size > 10_000
    assert len(summary["figures"]) == 5
    rows = {(r["overlap"], r["G"], r["method"]): r for r in summary["rows"]}
    # with G = 2 a mixed group always has k = 1 success, so IAC's (G - k)^alpha = 1: identical to GRPO
    assert rows[(0.0, "2", "grpo")]["train/tv"] == rows[(0.0, "2", "iac")]["train/tv"]
    assert rows[(0.0, "inf", "grpo")]["train/tv"]["mean"] < 1e-6  # symmetric valid labels stay equal
    assert "ho p@32" in capsys.readouterr().out
