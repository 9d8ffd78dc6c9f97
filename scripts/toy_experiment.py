#!/usr/bin/env python
"""The paper's toy over-sharpening experiment in one command (pure JAX; about a minute on a laptop CPU).

    python scripts/toy_experiment.py                      # full size, writes docs/figures/toy/
    python scripts/toy_experiment.py --tiny --out /tmp/t  # seconds (the test runs this)

A softmax policy over labels with fixed embeddings and parameters shared across queries
(rlvr_jax/eval/toy.py) is trained with GRPO and with IAC, sweeping the group size G
(inf = the exact expected update), the embedding overlap and the KL coefficient. Writes
PNG figures and summary.json to --out and prints a table of final metrics.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rlvr_jax.eval import plots, toy  # noqa: E402
from rlvr_jax.jsonio import to_jsonable  # noqa: E402

FINAL_METRICS = (("train", "acc"), ("train", "pass@32"), ("train", "tv"), ("train", "kl_ref_policy"),
                 ("train", "entropy_norm"), ("train", "coverage_rel"), ("heldout", "acc"), ("heldout", "pass@32"),
                 ("heldout", "tv"), ("train", "ratio_never_rewarded_valid"), ("train", "frac_valid_never_rewarded"))


def _floats(text):
    return [float(x) for x in text.split(",") if x.strip()]


def _groups(text):
    out = []
    for x in text.split(","):
        x = x.strip().lower()
        if x:
            out.append(0 if x in ("inf", "0") else int(x))
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/figures/toy", help="output folder for PNGs and summary.json")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--group-sizes", default="2,4,8,32,inf", help="comma list; inf = exact expectation")
    p.add_argument("--overlaps", default="0,0.5,0.9")
    p.add_argument("--kl", default="0,0.5", help="KL-to-reference coefficients (comma list)")
    p.add_argument("--iac-alpha", type=float, default=1.0)
    p.add_argument("--num-labels", type=int, default=32)
    p.add_argument("--num-valid", type=int, default=4)
    p.add_argument("--tiny", action="store_true", help="a seconds-long run for tests")
    a = p.parse_args(argv)
    if a.tiny:
        a.steps, a.seeds, a.group_sizes, a.overlaps, a.kl = 12, 2, "2,inf", "0,0.5", "0"
        a.num_labels = 16
    return a


def _label(G):
    return "inf" if G == 0 else str(G)


def main(argv=None) -> dict:
    a = parse_args(argv)
    t0 = time.time()
    Gs, overlaps, kls = _groups(a.group_sizes), _floats(a.overlaps), _floats(a.kl)
    base = toy.ToyConfig(num_labels=a.num_labels, num_valid=a.num_valid, steps=a.steps, lr=a.lr)
    seeds = list(range(a.seeds))
    methods = {"grpo": 0.0, "iac": a.iac_alpha}
    keys = [(kl, ov, G, m) for kl in kls for ov in overlaps for G in Gs for m in methods]
    cfgs = [base.replace(kl_coef=kl, overlap=ov, group_size=G, iac_alpha=methods[m]) for kl, ov, G, m in keys]
    finite = [G for G in Gs if G]
    Gm = 8 if 8 in finite else (finite[len(finite) // 2] if finite else 0)  # the G of the per-step figures
    one_keys = [(ov, G) for ov in overlaps for G in sorted({Gm, 0}, reverse=True)]
    one_cfgs = [base.replace(rewarded="one", overlap=ov, group_size=G) for ov, G in one_keys]
    spread_keys = [(kl, G) for kl in kls for G in sorted({Gm, 0}, reverse=True)]  # unequal valid labels
    spread_cfgs = [base.replace(valid_spread=1.0, overlap=0.0, kl_coef=kl, group_size=G) for kl, G in spread_keys]
    runs = toy.run_toy_many(cfgs + one_cfgs + spread_cfgs, seeds)
    n1, n2 = len(cfgs), len(cfgs) + len(one_cfgs)
    runs, one_runs, spread_runs = runs[:n1], runs[n1:n2], runs[n2:]
    spread_rows = []
    for (kl, G), run in zip(spread_keys, spread_runs):
        met = toy.toy_metrics(run)["train"]
        spread_rows.append({"kl": kl, "G": _label(G), "overlap": 0.0, "valid_spread": 1.0,
                            "train/acc": float(met["acc"][:, -1].mean()), "train/tv": float(met["tv"][:, -1].mean()),
                            "train/entropy_norm": float(met["entropy_norm"][:, -1].mean())})
    mets = [toy.toy_metrics(r) for r in runs]
    steps = np.arange(a.steps + 1)
    os.makedirs(a.out, exist_ok=True)
    figs = []

    rows = []
    for (kl, ov, G, m), met in zip(keys, mets):
        row = {"kl": kl, "overlap": ov, "G": _label(G), "method": m}
        for split, name in FINAL_METRICS:
            v = met[split][name]
            v = v[:, -1] if v.ndim == 2 else v
            v = v[~np.isnan(v)]  # e.g. no never-rewarded label with G = inf
            row[f"{split}/{name}"] = ({"mean": float(v.mean()), "std": float(v.std())} if v.size
                                      else {"mean": None, "std": None})
        row["reference"] = {f"{s}/{n}": float(np.nanmean(met[s][n][:, 0])) for s, n in FINAL_METRICS
                            if met[s][n].ndim == 2}
        rows.append(row)
    idx = {k: i for i, k in enumerate(keys)}

    # 1. each valid label of one training query over training (GRPO, no KL), against the ideal
    show_G = [g for g in (2, 8, 0) if g in Gs] or Gs[:3]
    show_ov = sorted({overlaps[0], overlaps[-1]})
    fig, axes = plt.subplots(len(show_ov), len(show_G), figsize=(4.2 * len(show_G), 3.2 * len(show_ov)),
                             squeeze=False)
    for r, ov in enumerate(show_ov):
        for c, G in enumerate(show_G):
            run = runs[idx[(kls[0], ov, G, "grpo")]]
            ax = axes[r][c]
            v = np.flatnonzero(run["valid_SxQxK"][0, 0])
            p = run["probs_SxTxQxK"][0, :, 0]
            ref = run["ref_probs_SxQxK"][0, 0, v]
            ideal = p[:, v].sum(1, keepdims=True) * ref / ref.sum()
            for j, y in enumerate(v):
                (line,) = ax.plot(steps, p[:, y], lw=1.6, label=f"valid label {y}")
                ax.plot(steps, ideal[:, j], ls="--", lw=1, color=line.get_color())
            ax.set_title(f"G={_label(G)}, overlap={ov}", fontsize=10)
            ax.set_ylim(0, 1)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel("probability (dashed: ref-preserving ideal)")
    axes[0][0].legend(fontsize=7)
    figs.append(plots._save(fig, os.path.join(a.out, "toy_valid_labels.png")))

    # 2. over-sharpening index (TV to the ideal) at the end, against G
    fig, axes = plt.subplots(1, len(kls), figsize=(5 * len(kls), 3.6), squeeze=False)
    for c, kl in enumerate(kls):
        ax = axes[0][c]
        for ov in overlaps:
            for m, style in (("grpo", "-o"), ("iac", "--x")):
                tv = [mets[idx[(kl, ov, G, m)]]["train"]["tv"][:, -1] for G in Gs]
                ax.errorbar(range(len(Gs)), [t.mean() for t in tv], yerr=[t.std() for t in tv], fmt=style,
                            capsize=3, label=f"{m}, overlap {ov}", color=f"C{overlaps.index(ov)}")
        ax.set_xticks(range(len(Gs)), [_label(G) for G in Gs])
        ax.set_xlabel("group size G")
        ax.set_ylabel("TV(policy | valid, ref | valid)")
        ax.set_title(f"final over-sharpening index, KL coef {kl}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figs.append(plots._save(fig, os.path.join(a.out, "toy_index_vs_group.png")))

    # 3. over training at a middle G: train accuracy, train index, held-out pass@32 (GRPO vs IAC)
    kl0 = kls[0]
    panels = {}
    for split, name, title in (("train", "acc", "train accuracy (pass@1)"), ("train", "tv", "train TV to ideal"),
                               ("heldout", "pass@32", "held-out pass@32"), ("heldout", "acc", "held-out pass@1")):
        panels[f"{title}, G={_label(Gm)}"] = {
            f"{m}, ov {ov}": (steps, mets[idx[(kl0, ov, Gm, m)]][split][name].mean(0), None, None,
                              {"color": f"C{i}", "ls": "-" if m == "grpo" else "--"})
            for i, ov in enumerate(overlaps) for m in methods}
    figs.append(plots.plot_metric_grid(panels, os.path.join(a.out, "toy_training.png"), ncols=2))

    # 4. equal-pass@1 comparison: held-out pass@32 and train TV against train accuracy
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ov in overlaps:
        for m, ls in (("grpo", "-"), ("iac", "--")):
            met = mets[idx[(kl0, ov, Gm, m)]]
            x = met["train"]["acc"].mean(0)
            axes[0].plot(x, met["heldout"]["pass@32"].mean(0), ls, color=f"C{overlaps.index(ov)}",
                         label=f"{m}, overlap {ov}")
            axes[1].plot(x, met["train"]["tv"].mean(0), ls, color=f"C{overlaps.index(ov)}")
    for ax, yl in zip(axes, ("held-out pass@32", "train TV to ideal")):
        ax.set_xlabel("train accuracy (pass@1)")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"at equal pass@1, G={_label(Gm)}, KL {kl0}", fontsize=10)
    figs.append(plots._save(fig, os.path.join(a.out, "toy_equal_pass1.png")))

    # 5. rewarding only one valid label: the other valid labels and held-out queries
    one_rows, series_other, series_ho = [], {}, {}
    for (ov, G), run in zip(one_keys, one_runs):
        P, nt = run["probs_SxTxQxK"], run["num_train"]
        other = run["valid_SxQxK"][:, :nt] & ~run["rewarded_SxQxK"][:, :nt]
        mass = (P[:, :, :nt] * other[:, None]).sum(-1)  # S x T x Qt
        ratio = (mass / mass[:, :1]).mean(-1)
        met = toy.toy_metrics(run)
        series_other[f"G={_label(G)}, ov {ov}"] = (steps, ratio.mean(0))
        series_ho[f"G={_label(G)}, ov {ov}"] = (steps, met["heldout"]["pass@32"].mean(0))
        one_rows.append({"overlap": ov, "G": _label(G), "other_valid_mass_ratio": float(ratio[:, -1].mean()),
                         "rewarded_label_prob": float((P[:, -1, :nt] * run["rewarded_SxQxK"][:, :nt]).sum(-1).mean()),
                         "heldout/pass@32": float(met["heldout"]["pass@32"][:, -1].mean()),
                         "heldout/pass@32_ref": float(met["heldout"]["pass@32"][:, 0].mean())})
    figs.append(plots.plot_metric_grid(
        {"unrewarded valid labels: mass / reference mass": series_other, "held-out pass@32": series_ho},
        os.path.join(a.out, "toy_one_label.png"), ncols=2))

    runtime = time.time() - t0
    summary = {"command": "python scripts/toy_experiment.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "config": {**vars(a), "toy_defaults": {k: getattr(base, k) for k in base.__dataclass_fields__}},
               "rows": rows, "one_label": one_rows, "unequal_valid_labels": spread_rows,
               "figures": [os.path.basename(f) for f in figs], "runtime_s": runtime}
    with open(os.path.join(a.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(to_jsonable(summary), f, indent=1)
    print_table(rows, one_rows, spread_rows)
    print(f"\nwrote {len(figs)} figures and summary.json to {a.out} in {runtime:.1f}s")
    return summary


def print_table(rows, one_rows, spread_rows=()):
    hdr = (f"{'kl':>4} {'ov':>4} {'G':>4} {'method':6} | {'acc':>5} {'p@32':>5} {'TV':>5} {'Hnorm':>5} {'cov':>4} "
           f"| {'ho acc':>6} {'ho p@32':>13} {'ho TV':>5}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        g = lambda k: r[k]["mean"]  # noqa: E731
        print(f"{r['kl']:>4g} {r['overlap']:>4g} {r['G']:>4} {r['method']:6} | {g('train/acc'):5.3f} "
              f"{g('train/pass@32'):5.3f} {g('train/tv'):5.3f} {g('train/entropy_norm'):5.2f} "
              f"{g('train/coverage_rel'):4.2f} | {g('heldout/acc'):6.3f} "
              f"{r['reference']['heldout/pass@32']:5.3f}->{g('heldout/pass@32'):5.3f} {g('heldout/tv'):5.3f}")
    print("\nrewarding one valid label only (GRPO, no KL):")
    for r in one_rows:
        print(f"  overlap {r['overlap']:g} G={r['G']:>3}: other valid labels keep {r['other_valid_mass_ratio']:.3f} "
              f"of their reference mass; rewarded label p={r['rewarded_label_prob']:.3f}; held-out pass@32 "
              f"{r['heldout/pass@32_ref']:.3f}->{r['heldout/pass@32']:.3f}")
    if spread_rows:
        print("\nvalid labels with unequal reference probabilities (valid_spread 1, overlap 0, GRPO):")
    for r in spread_rows:
        print(f"  kl {r['kl']:g} G={r['G']:>3}: acc {r['train/acc']:.3f}  TV to ideal {r['train/tv']:.3f}  "
              f"normalised entropy {r['train/entropy_norm']:.2f}")


if __name__ == "__main__":
    main()
