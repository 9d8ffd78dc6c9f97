"""Figures for evaluation results: pass@k curves with CI bands, metrics over training. Agg backend, PNG."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _curve(res: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    c = res["curve"] if "curve" in res else res
    k, m = np.asarray(c["k"]), np.asarray(c["mean"], np.float64)
    lo = np.asarray(c["lo"], np.float64) if c.get("lo") is not None else None
    hi = np.asarray(c["hi"], np.float64) if c.get("hi") is not None else None
    return k, m, lo, hi


def plot_passk_curves(curves: Mapping[str, Mapping], path: str, *, title: str = "pass@k",
                      logx: bool = True) -> str:
    """One line per run/checkpoint (label -> evaluate_correctness result or {k, mean, lo, hi}), CI bands."""
    if not curves:
        raise ValueError("plot_passk_curves: nothing to plot")
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, res in curves.items():
        k, m, lo, hi = _curve(res)
        (line,) = ax.plot(k, m, label=label, lw=1.6)
        if lo is not None and hi is not None:
            ax.fill_between(k, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_metric_over_training(series: Mapping[str, tuple], path: str, *, ylabel: str, title: str = "",
                              xlabel: str = "step", ax=None) -> str | None:
    """label -> (steps, mean[, lo, hi[, style]]); one line each with an optional band and matplotlib
    style kwargs (e.g. {"color": "C1", "ls": "--"}). With `ax`, draws there only."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6, 4))
    for label, s in series.items():
        x, m = np.asarray(s[0]), np.asarray(s[1], np.float64)
        style = {"lw": 1.5, **(s[4] if len(s) >= 5 else {})}
        (line,) = ax.plot(x, m, label=label, **style)
        if len(s) >= 4 and s[2] is not None:
            ax.fill_between(x, s[2], s[3], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path) if own else None


def plot_metric_grid(panels: Mapping[str, Mapping[str, tuple]], path: str, *, xlabel: str = "step",
                     ncols: int = 3, ylabels: Sequence[str] | None = None) -> str:
    """Several `plot_metric_over_training` panels (title -> series) in one figure."""
    n = len(panels)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    for i, (title, series) in enumerate(panels.items()):
        ax = axes[i // ncols][i % ncols]
        plot_metric_over_training(series, path, ylabel=(ylabels[i] if ylabels else ""), title=title,
                                  xlabel=xlabel, ax=ax)
    for j in range(n, nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    return _save(fig, path)
