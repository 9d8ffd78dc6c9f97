"""LoRA against full fine-tuning from the training metrics of two `rlvr-train` runs on the same config and seed
(the same prompts each step): reward, response length and entropy per step, and seconds per step by phase.

    python scripts/lora_vs_full.py runs/lora_vs_full/full runs/lora_vs_full/lora --out docs/figures/lora_vs_full

Writes <out>/curves.png and <out>/results.md (+ results.json). For held-out pass@k use scripts/compare_runs.py
(it needs runs that evaluated).
"""
from __future__ import annotations

import argparse
import os
import statistics

from rlvr_jax.eval.plots import plot_metric_grid
from rlvr_jax.jsonio import write_json
from rlvr_jax.train.metrics import read_metrics

PANELS = (("training reward (mean of the step's 32 rollouts)", "reward_mean"),
          ("response length (tokens)", "response_len_mean"), ("policy entropy (nats / token)", "entropy"))
PHASES = ("time/s_per_it", "time/sample", "time/verify", "time/update")


def run_rows(path: str) -> list[dict]:
    rows = [r for r in read_metrics(path) if "reward_mean" in r]
    if not rows:
        raise SystemExit(f"lora_vs_full: {path}/metrics.jsonl: no training steps")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs=2, help="the full fine-tuning run folder, then the LoRA one")
    ap.add_argument("--names", default="full fine-tuning,LoRA")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    names = a.names.split(",")
    data = {n: run_rows(p) for n, p in zip(names, a.runs)}
    os.makedirs(a.out, exist_ok=True)
    panels = {title: {n: ([r["step"] for r in rows], [r.get(key, float("nan")) for r in rows])
                      for n, rows in data.items()} for title, key in PANELS}
    png = plot_metric_grid(panels, os.path.join(a.out, "curves.png"))
    table = {}
    for n, rows in data.items():
        later = rows[1:] or rows  # step 1 includes compilation
        table[n] = {k: statistics.median(r[k] for r in later if k in r) for k in PHASES if any(k in r for r in later)}
        table[n]["reward_by_step"] = [round(r["reward_mean"], 4) for r in rows]
        table[n]["reward_mean"] = statistics.fmean(r["reward_mean"] for r in rows)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in PHASES:
        if all(k in table[n] for n in names):
            lines.append(f"| median {k} (s, steps 2+) | " + " | ".join(f"{table[n][k]:.1f}" for n in names) + " |")
    lines.append("| mean training reward | " + " | ".join(f"{table[n]['reward_mean']:.3f}" for n in names) + " |")
    steps = max(len(table[n]["reward_by_step"]) for n in names)
    for i in range(steps):
        cells = [f"{table[n]['reward_by_step'][i]:.3f}" if i < len(table[n]["reward_by_step"]) else "" for n in names]
        lines.append(f"| reward, step {i + 1} | " + " | ".join(cells) + " |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    write_json(os.path.join(a.out, "results.json"), {"runs": dict(zip(names, a.runs)), "table": table})
    print(md)
    print(f"wrote {png}, {a.out}/results.md")


if __name__ == "__main__":
    main()
