"""The two pictures of scripts/cures.py: every cure's final pass@1 against its pass@k at large k (one panel per
task), and the DLC settings against plain temperature at their sampling entropy."""
from __future__ import annotations

import os



FAMILY_COLORS = {"baseline": "C3", "paper": "C0", "advantage": "C2", "token": "C4"}


def _final(summary, method, key):
    s = summary["aggregate"][method]["metrics"][key][-1]
    return s["mean"], (s["hi"] - s["lo"]) / 2


def tradeoff_figure(summaries: dict, methods, family: dict, label, path: str) -> str:
    """pass@1 (x) against pass@kmax (y) at the final step, mean and 95% half-width over seeds, per task."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t, s in summaries.items() if s]
    fig, axes = plt.subplots(1, len(tasks), figsize=(7.5 * len(tasks), 6.0), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        s = summaries[task]
        kmax = max(s["ks"])
        b = s["base"]["headline"]
        ax.plot([b["eval/pass@1"]], [b[f"eval/pass@{kmax}"]], "k*", ms=14, label="base policy")
        for m in methods:
            if m not in s["aggregate"]:
                continue
            (x, dx), (y, dy) = _final(s, m, "eval/pass@1"), _final(s, m, f"eval/pass@{kmax}")
            c = FAMILY_COLORS.get(family.get(m), "C7")
            ax.errorbar([x], [y], xerr=[dx], yerr=[dy], fmt="o", color=c, alpha=0.8, capsize=2, lw=0.8)
            ax.annotate(label(m), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for fam, c in FAMILY_COLORS.items():
            ax.plot([], [], "o", color=c, label=fam)
        ax.set_xlabel("pass@1 (final)")
        ax.set_ylabel(f"pass@{kmax} (final)")
        ax.set_title(f"{task}: 200 steps, mean and 95% interval over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def dlc_figure(rows, kmax: int, path: str, seeds: int = 3) -> str:
    """pass@kmax (final) against the mean sampling entropy: DLC settings and plain-temperature controls.

    rows: (label, is_temperature_control, sampling_entropy, pass@kmax mean, half-width).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    temp = sorted([r for r in rows if r[1]], key=lambda r: r[2])
    if temp:
        ax.errorbar([r[2] for r in temp], [r[3] for r in temp], yerr=[r[4] for r in temp], fmt="s-", color="C3",
                    capsize=3, label="GRPO at temperature T")
    dlc = [r for r in rows if not r[1]]
    ax.errorbar([r[2] for r in dlc], [r[3] for r in dlc], yerr=[r[4] for r in dlc], fmt="o", color="C2",
                capsize=3, alpha=0.8, label="DLC settings")
    for r in rows:
        ax.annotate(r[0], (r[2], r[3]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("sampling entropy (nats per response token, mean over training)")
    ax.set_ylabel(f"pass@{kmax} at the final step")
    ax.set_title(f"DLC against the temperature control (sum_pair, {seeds} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def dlc_rows(sources, train_means, label):
    """(label, is_temperature_control, sampling_entropy, pass@kmax, half-width) of every (summary, method)."""
    out = []
    for src, m in sources:
        kmax = max(src["ks"])
        ent = train_means(src, m)["sampling_entropy"]
        if ent is None:
            continue
        y, dy = _final(src, m, f"eval/pass@{kmax}")
        is_temp = m == "grpo" or m.startswith("grpo@rollout.temperature")
        out.append(("T=1" if m == "grpo" else label(m).replace("GRPO temperature=", "T=").replace("DLC ", ""),
                    is_temp, ent, y, dy))
    return out


def write_figures(out: str, summaries: dict, study, methods, family, label, train_means, more=None) -> list[str]:
    """Both figures under `out` (when their runs exist); returns the paths written."""
    paths = []
    if any(summaries.values()):
        paths.append(tradeoff_figure(summaries, methods, family, label, os.path.join(out, "cures_tradeoff.png")))
    main = summaries.get("sum_pair")
    if main and study:
        sources = [(main, m) for m in ("grpo", "dlc") if m in main["aggregate"]]
        sources += [(study, m) for m in study["methods"] if m in study["aggregate"]]
        rows = dlc_rows(sources, train_means, label)
        if rows:
            paths.append(dlc_figure(rows, max(main["ks"]), os.path.join(out, "dlc_vs_temperature.png")))
    if more:
        rows = dlc_rows([(more, m) for m in more["methods"] if m in more["aggregate"]], train_means, label)
        n = len(next(iter(more["runs"].values())))
        if rows:
            paths.append(dlc_figure(rows, max(more["ks"]), os.path.join(out, f"dlc_vs_temperature_{n}seeds.png"), n))
    return paths



