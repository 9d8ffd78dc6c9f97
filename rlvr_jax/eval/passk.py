"""Sample-based correctness metrics: unbiased pass@k, avg@k, maj@k, bootstrap CIs, k-curves.

Inputs are host arrays: `correct_QxN` (bool, N samples per query) and, for maj@k, the
extracted answers `answers_QxN` (any hashable; None = nothing extracted).
pass@k = 1 - C(n-c, k)/C(n, k) is evaluated as a product in log space,
log C(n-c,k)/C(n,k) = sum_{j<k} log1p(-c/(n-j)), whose terms are all <= 0: the cumulative
sum over k is exactly monotone in floating point, so the curve is monotone for any n.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

_QUERY_CHUNK = 256  # rows of the [Q, n] float64 curve computed at once


def _counts(correct_QxN) -> tuple[np.ndarray, int]:
    c = np.asarray(correct_QxN)
    if c.ndim != 2:
        raise ValueError(f"correct_QxN: expected a [queries, samples] array, got shape {c.shape}")
    if c.shape[1] == 0:
        raise ValueError("correct_QxN: needs at least one sample per query")
    return c.astype(bool).sum(axis=1).astype(np.int64), int(c.shape[1])


def pass_at_k(n: int, c, k: int) -> np.ndarray:
    """Unbiased pass@k of one query (or a vector of correct counts `c`) with n samples."""
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k={k} must be in [1, n={n}]")
    c = np.asarray(c, dtype=np.float64)
    j = np.arange(k, dtype=np.float64)
    frac = np.minimum(c[..., None] / (n - j), 1.0)  # c/(n-j) >= 1 means a correct sample is certain
    with np.errstate(divide="ignore"):
        log_ratio = np.log1p(-frac).sum(axis=-1)
    return -np.expm1(log_ratio)


def pass_at_k_curve(n: int, c_Q) -> np.ndarray:
    """pass@k for k = 1..n of every query: [Q, n] (column k-1), exactly monotone in k."""
    c_Q = np.asarray(c_Q, dtype=np.float64).reshape(-1)
    out = np.empty((c_Q.shape[0], n), np.float64)
    denom = n - np.arange(n, dtype=np.float64)
    for s in range(0, c_Q.shape[0], _QUERY_CHUNK):
        frac = np.minimum(c_Q[s:s + _QUERY_CHUNK, None] / denom[None, :], 1.0)
        with np.errstate(divide="ignore"):
            out[s:s + _QUERY_CHUNK] = -np.expm1(np.cumsum(np.log1p(-frac), axis=1))
    return out


def majority_correct(answers_QxN: Sequence[Sequence[Any]], correct_QxN, k: int, *, seed: int = 0,
                     num_subsets: int = 32) -> np.ndarray:
    """maj@k per query: is the most frequent extracted answer among k samples correct? -> [Q] float.

    With k == n the vote is over all samples; with k < n it is averaged over `num_subsets`
    seeded random k-subsets. Ties go to the answer seen first in sample order; None never votes.
    """
    correct = np.asarray(correct_QxN, bool)
    Q, n = correct.shape
    if not 1 <= k <= n:
        raise ValueError(f"maj@k: k={k} must be in [1, n={n}]")
    if len(answers_QxN) != Q or any(len(row) != n for row in answers_QxN):
        raise ValueError(f"answers_QxN: expected {Q} rows of {n} answers, the shape of correct_QxN")
    rng = np.random.default_rng(seed)
    out = np.zeros(Q, np.float64)
    for q in range(Q):
        ids, first, right = np.full(n, -1, np.int64), {}, []
        for i, a in enumerate(answers_QxN[q]):
            if a is None:
                continue
            if a not in first:
                first[a] = len(first)
                right.append(bool(correct[q, i]))
            ids[i] = first[a]
        if not first:
            continue
        right = np.asarray(right, np.float64)
        if k == n:
            subsets = ids[None, :]
        else:
            subsets = np.stack([ids[np.sort(rng.choice(n, k, replace=False))] for _ in range(num_subsets)])
        votes = [np.bincount(row[row >= 0], minlength=len(first)) for row in subsets]
        out[q] = np.mean([right[np.argmax(v)] if v.sum() else 0.0 for v in votes])  # argmax: first max
    return out


def distinct_correct(answers_QxN: Sequence[Sequence[Any]], correct_QxN) -> np.ndarray:
    """Number of distinct extracted answers among each query's correct samples: [Q] int (diversity)."""
    correct = np.asarray(correct_QxN, bool)
    if len(answers_QxN) != correct.shape[0]:
        raise ValueError(f"answers_QxN: {len(answers_QxN)} rows but correct_QxN has {correct.shape[0]}")
    return np.array([len({a for a, c in zip(row, crow) if c and a is not None})
                     for row, crow in zip(answers_QxN, correct)], np.int64)


def bootstrap_ci(values_QxK, *, seed: int = 0, num_boot: int = 1000, level: float = 0.95):
    """Mean over queries with a percentile bootstrap interval (queries resampled): (mean, lo, hi) each [K]."""
    v = np.asarray(values_QxK, np.float64)
    squeeze = v.ndim == 1
    v = v.reshape(v.shape[0], -1)
    Q = v.shape[0]
    if Q == 0:
        raise ValueError("bootstrap_ci: no queries")
    mean = np.nanmean(v, axis=0)
    if num_boot <= 0 or Q == 1:
        lo, hi = mean.copy(), mean.copy()
    else:
        rng = np.random.default_rng(seed)
        w_BxQ = rng.multinomial(Q, np.full(Q, 1.0 / Q), size=num_boot).astype(np.float64)
        ok = ~np.isnan(v)
        means = (w_BxQ @ np.where(ok, v, 0.0)) / np.maximum(w_BxQ @ ok.astype(np.float64), 1e-300)
        alpha = (1.0 - level) / 2
        lo, hi = np.quantile(means, alpha, axis=0), np.quantile(means, 1 - alpha, axis=0)
    if squeeze:
        return float(mean[0]), float(lo[0]), float(hi[0])
    return mean, lo, hi


def _stat(vals_Q, seed, num_boot, level) -> dict:
    m, lo, hi = bootstrap_ci(vals_Q, seed=seed, num_boot=num_boot, level=level)
    return {"mean": m, "lo": lo, "hi": hi}


def evaluate_correctness(correct_QxN, ks: Sequence[int] = (1,), seed: int = 0, *, answers_QxN=None,
                         num_boot: int = 1000, level: float = 0.95, curve: bool = True) -> dict:
    """pass@k, avg@k (and maj@k when answers are given) with bootstrap CIs, plus the k = 1..n curve.

    avg@k is the expected accuracy of one of k samples, estimated unbiasedly by c/n (the same
    for every k <= n). Returns a JSON-ready dict.
    """
    c_Q, n = _counts(correct_QxN)
    ks = sorted({int(k) for k in ks})
    for k in ks:
        if not 1 <= k <= n:
            raise ValueError(f"eval.ks: k={k} must be in [1, num_samples={n}]")
    curve_QxN = pass_at_k_curve(n, c_Q)
    acc_Q = c_Q / n
    res: dict = {"num_queries": int(c_Q.shape[0]), "num_samples": n, "ks": ks, "level": level,
                 "pass@k": {}, "avg@k": {}}
    for k in ks:
        res["pass@k"][str(k)] = _stat(curve_QxN[:, k - 1], seed, num_boot, level)
        res["avg@k"][str(k)] = _stat(acc_Q, seed, num_boot, level)
    if answers_QxN is not None:
        res["maj@k"] = {str(k): _stat(majority_correct(answers_QxN, correct_QxN, k, seed=seed), seed,
                                      num_boot, level) for k in ks}
        res["distinct_correct"] = _stat(distinct_correct(answers_QxN, correct_QxN), seed, num_boot, level)
    res["frac_solved_any"] = float(np.mean(c_Q > 0))
    if curve:
        m, lo, hi = bootstrap_ci(curve_QxN, seed=seed, num_boot=num_boot, level=level)
        res["curve"] = {"k": list(range(1, n + 1)), "mean": m.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}
    return res


def evaluate_benchmarks(correct_by_name: dict[str, Any], ks: Sequence[int] = (1,), seed: int = 0, *,
                        answers_by_name: dict[str, Any] | None = None, **kw) -> dict:
    """Per-benchmark results plus a `pooled` entry over all queries (each query's pass@k uses its own n).

    Each entry reports the ks its sample count allows; the pooled one the ks and curve up to
    the smallest n among the benchmarks.
    """
    if not correct_by_name:
        raise ValueError("evaluate_benchmarks: no benchmarks given")
    if "pooled" in correct_by_name:
        raise ValueError("evaluate_benchmarks: 'pooled' is reserved; rename that benchmark")
    answers_by_name = answers_by_name or {}
    out = {}
    for name, c in correct_by_name.items():  # each benchmark reports the ks its own n allows
        n = _counts(c)[1]
        ks_n = [k for k in ks if k <= n] or [n]
        out[name] = evaluate_correctness(c, ks_n, seed, answers_QxN=answers_by_name.get(name), **kw)
    n_min = min(r["num_samples"] for r in out.values())
    pooled_ks = [k for k in sorted(set(ks)) if k <= n_min]
    level, num_boot = kw.get("level", 0.95), kw.get("num_boot", 1000)
    counts = [_counts(c) for c in correct_by_name.values()]  # (c_Q, n) per benchmark
    curves = np.concatenate([pass_at_k_curve(n, c_Q)[:, :n_min] for c_Q, n in counts])
    accs = np.concatenate([c_Q / n for c_Q, n in counts])
    pooled: dict = {"num_queries": int(curves.shape[0]), "num_samples": n_min, "ks": pooled_ks, "level": level,
                    "pass@k": {str(k): _stat(curves[:, k - 1], seed, num_boot, level) for k in pooled_ks},
                    "avg@k": {str(k): _stat(accs, seed, num_boot, level) for k in pooled_ks}}
    if kw.get("curve", True):
        m, lo, hi = bootstrap_ci(curves, seed=seed, num_boot=num_boot, level=level)
        pooled["curve"] = {"k": list(range(1, n_min + 1)), "mean": m.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}
    out["pooled"] = pooled
    return out
