"""Tables and figures of a sweep (`scripts/sweep.py`): seed statistics, per-method aggregates, the
equal-pass@1 comparison, table.md and the PNGs. Imported by scripts/sweep.py and scripts/cures.py.
"""
from __future__ import annotations

import os

import numpy as np

LABELS = {"grpo": "GRPO", "dr_grpo": "Dr.GRPO", "rloo": "RLOO", "reinforce_pp": "REINFORCE++", "dapo": "DAPO",
          "iac": "IAC", "dlc": "DLC", "iac_dlc": "IAC+DLC", "pass_at_k": "Pass@k-Training", "pkpo": "PKPO",
          "w_reinforce": "W-REINFORCE", "psr": "PSR", "nsr": "NSR", "qae": "QAE", "unlikely": "Unlikeliness",
          "clip_cov": "Clip-Cov", "kl_cov": "KL-Cov", "high_entropy": "80/20 high-entropy",
          "adaptive_entropy": "Adaptive entropy", "gspo": "GSPO",
          "grpo@algo.entropy_target=0.6": "Adaptive entropy (target 0.6)"}
STYLE = {"grpo": ("C3", "-"), "dr_grpo": ("C1", "--"), "rloo": ("C5", "--"), "reinforce_pp": ("C7", ":"),
         "dapo": ("C4", "-."), "iac": ("C0", "-"), "dlc": ("C2", "-"), "iac_dlc": ("C9", "-"),
         "pass_at_k": ("C6", "-"), "pkpo": ("C6", "--"), "w_reinforce": ("C8", "-"), "psr": ("C8", ":"),
         "nsr": ("C8", "--"), "qae": ("C1", "-"), "unlikely": ("C5", "-"), "clip_cov": ("C4", "--"),
         "kl_cov": ("C4", ":"), "high_entropy": ("C7", "-"), "adaptive_entropy": ("C7", "--"), "gspo": ("C9", "--"),
         "grpo@algo.entropy_target=0.6": ("C7", "--")}
# (headline key, table/panel title); pass@k rows are added for the configured ks
MODE_METRICS = (("eval/mass_correct", "P(correct)"), ("eval/coverage_rel", "coverage (# correct >= 1% of P(correct))"),
                ("eval/entropy_norm", "entropy over correct (norm.)"), ("eval/tv", "over-sharpening TV vs base"),
                ("eval/distinct_correct", "distinct correct in samples"))


def label(method: str) -> str:
    """Display name of a method spec: the variant's label, then its overrides (`dlc@memory.mu=1.0` -> DLC mu=1.0)."""
    if method in LABELS:
        return LABELS[method]
    variant, *sets = method.split("@")
    return " ".join([LABELS.get(variant, variant)] + [s.split(".", 1)[-1] for s in sets])


def style(method: str):
    return STYLE.get(method, (None, "-"))


def seed_stats(values) -> dict:
    """Mean and 95% t-interval over seeds (lo = hi = mean with one seed)."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if v.size == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    m = float(v.mean())
    if v.size < 2:
        return {"mean": m, "lo": m, "hi": m, "n": int(v.size)}
    from scipy.stats import t
    half = float(t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return {"mean": m, "lo": m - half, "hi": m + half, "n": int(v.size)}


def aggregate(base_eval, results, ks):
    """Per method and eval step: seed mean and 95% interval of every headline metric (base = step 0)."""
    keys = [f"eval/pass@{k}" for k in ks] + [k for k, _ in MODE_METRICS]
    agg = {}
    for method, runs in results.items():
        steps = [0] + [e["step"] for e in runs[0]["evals"]]
        per = {}
        for key in keys:
            series = [seed_stats([base_eval["headline"].get(key)] * len(runs))]
            for j in range(len(steps) - 1):
                series.append(seed_stats([r["evals"][j]["headline"].get(key) for r in runs]))
            per[key] = series
        n = runs[0]["evals"][-1]["curve"]["k"]
        curves = np.asarray([r["evals"][-1]["curve"]["mean"] for r in runs])
        cs = [seed_stats(curves[:, i]) for i in range(curves.shape[1])]
        agg[method] = {"steps": steps, "metrics": per,
                       "final_curve": {"k": n, "mean": [c["mean"] for c in cs], "lo": [c["lo"] for c in cs],
                                       "hi": [c["hi"] for c in cs]},
                       "samples_per_step": float(np.mean([r["samples_per_step"] for r in runs]))}
    return agg


def at_matched_pass1(agg, key_x, keys, target=None):
    """Each method's metrics where its seed-mean pass@1 trajectory first reaches `target` (default: GRPO's
    final pass@1, else the lowest final one), linearly interpolated between evals; None if it never does."""
    anchor = None
    if target is None:
        anchor = "grpo" if "grpo" in agg else min(agg, key=lambda m: agg[m]["metrics"][key_x][-1]["mean"])
        target = agg[anchor]["metrics"][key_x][-1]["mean"]
    out = {"pass@1": target, "anchor": anchor}
    for method, a in agg.items():
        x = [s["mean"] for s in a["metrics"][key_x]]
        row = {}
        for key in keys:
            y = [s["mean"] for s in a["metrics"][key]]
            val = None
            for i in range(1, len(x)):
                if x[i] >= target and None not in (y[i], y[i - 1]):
                    w = 1.0 if x[i] == x[i - 1] else (target - x[i - 1]) / (x[i] - x[i - 1])
                    w = min(max(w, 0.0), 1.0)
                    val = y[i - 1] + w * (y[i] - y[i - 1])
                    break
            row[key] = val
        out[method] = row
    return out


def _fmt(s, digits=3):
    if s is None or s["mean"] is None:
        return "n/a"
    if s["lo"] == s["hi"]:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} [{s['lo']:.{digits}f}, {s['hi']:.{digits}f}]"


def table_md(agg, base_eval, ks, matched, n_seeds, steps) -> str:
    """Markdown: the base policy row, then each method at the final step (mean [95% CI over seeds])."""
    show_k = [k for k in ks if k in (1, 4, 16, 64, 128)] or list(ks)
    keys = [f"eval/pass@{k}" for k in show_k] + [k for k, _ in MODE_METRICS]
    heads = [f"pass@{k}" for k in show_k] + ["P(correct)", "coverage", "entropy", "TV vs base", "distinct"]
    lines = [f"Final step ({steps} RL steps), mean [95% t-interval over {n_seeds} seeds]:", "",
             "| method | " + " | ".join(heads) + " | samples/step |", "|---" * (len(heads) + 2) + "|"]
    bh = base_eval["headline"]
    lines.append("| base policy | " + " | ".join("n/a" if bh.get(k) is None else f"{bh[k]:.3f}" for k in keys)
                 + " | - |")
    for m, a in agg.items():
        lines.append(f"| {label(m)} | " + " | ".join(_fmt(a["metrics"][k][-1]) for k in keys)
                     + f" | {a['samples_per_step']:.0f} |")
    kmax = f"eval/pass@{max(ks)}"
    lines += ["", f"At equal pass@1 = {matched['pass@1']:.3f} ({label(matched['anchor']) if matched['anchor'] else 'given'} final "
              "pass@1; each method's seed-mean trajectory, interpolated where it first reaches it; "
              "n/a: never does):", "",
              f"| method | pass@{max(ks)} | coverage | entropy | TV vs base |", "|---|---|---|---|---|"]
    for m in agg:
        r = matched[m]
        vals = [r.get(k) for k in (kmax, "eval/coverage_rel", "eval/entropy_norm", "eval/tv")]
        lines.append(f"| {label(m)} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


PROB_METRICS = {"eval/mass_correct", "eval/entropy_norm", "eval/tv"}  # and every pass@k: bands clipped to [0, 1]


def _band(ax, x, st, color, ls, name, clip):
    m = np.asarray([s["mean"] for s in st], np.float64)
    lo = np.asarray([s["lo"] for s in st], np.float64)
    hi = np.asarray([s["hi"] for s in st], np.float64)
    if clip:
        lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
    ax.plot(x, m, color=color, ls=ls, lw=1.6, label=name)
    ax.fill_between(x, lo, hi, color=color, alpha=0.08, lw=0)


def make_plots(agg, base_eval, ks, out) -> list[str]:
    """training.png (one panel per metric, one line per method, 95% seed band), passk_final.png, tradeoff.png."""
    from rlvr_jax.eval import plots  # lazily: matplotlib only when plotting
    import matplotlib.pyplot as plt
    show_k = sorted({1, max(ks)} | ({8} if 8 in ks else set()))
    panels = [(f"eval/pass@{k}", f"pass@{k}") for k in show_k] + list(MODE_METRICS)
    ncols = 4
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    for i, (key, title) in enumerate(panels):
        ax = axes[i // ncols][i % ncols]
        for m, a in agg.items():
            st = a["metrics"][key]
            if any(s["mean"] is None for s in st):
                continue
            color, ls = style(m)
            _band(ax, a["steps"], st, color, ls, label(m), key.startswith("eval/pass@") or key in PROB_METRICS)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    for j in range(len(panels), nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("seed mean, band: 95% t-interval over seeds (step 0: the shared base policy)", fontsize=10)
    paths = [plots._save(fig, os.path.join(out, "training.png"))]

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    c = base_eval["curve"]
    ax.plot(c["k"], c["mean"], color="k", lw=2, label="base policy")
    for m, a in agg.items():
        fc = a["final_curve"]
        color, ls = style(m)
        _band(ax, fc["k"], [{"mean": x, "lo": lo, "hi": hi} for x, lo, hi in zip(fc["mean"], fc["lo"], fc["hi"])],
              color, ls, label(m), True)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("pass@k at the final step (band: 95% CI over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    paths.append(plots._save(fig, os.path.join(out, "passk_final.png")))

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (key, title) in zip(axes, [(f"eval/pass@{max(ks)}", f"pass@{max(ks)}"),
                                       ("eval/coverage_rel", "coverage"), ("eval/tv", "TV vs base")]):
        for m, a in agg.items():
            x = [s["mean"] for s in a["metrics"][f"eval/pass@{min(ks)}"]]
            y = [s["mean"] for s in a["metrics"][key]]
            color, ls = style(m)
            ax.plot(x, y, marker="o", ms=3, color=color, ls=ls, label=label(m))
        ax.set_xlabel(f"pass@{min(ks)} (seed mean, one point per eval)")
        ax.set_title(f"{title} against pass@{min(ks)}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    paths.append(plots._save(fig, os.path.join(out, "tradeoff.png")))
    return paths
