"""Side-by-side report of `rlvr-train` text runs that start from one base policy: held-out pass@k of the
base and of each run's final policy (one plot, bootstrap bands), training curves (reward, held-out
pass@1, response length, entropy, truncation) and a markdown table with seeds and wall times.

    python scripts/compare_runs.py runs/smollm2_gym/grpo runs/smollm2_gym/iac --out docs/figures/smollm2_gym

Each RUN is a log.dir holding config.json, metrics.jsonl, evals.jsonl and summary.json. Runs whose base
policies differ (summary.json's base_param_fingerprint) are refused: their "before" would not be one curve.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from rlvr_jax.eval.plots import plot_metric_grid, plot_passk_curves
from rlvr_jax.jsonio import write_json
from rlvr_jax.train.metrics import read_metrics

CURVES = (  # panel title, metrics.jsonl key (per training step), smoothed
    ("reward (mean of the step's rollouts)", "reward_mean", True),
    ("response length (tokens)", "response_len_mean", True),
    ("policy entropy (nats / token)", "entropy", True),
    ("truncated at the cap (fraction)", "response_clip_ratio", True),
)


def _jsonl(path: str) -> list[dict]:
    """The records of a run's JSON-lines file, read as the trainer's own reader does (non-finite numbers back to
    floats, a torn last line skipped); one line naming the file otherwise."""
    try:
        return read_metrics(path)
    except FileNotFoundError:
        raise SystemExit(f"compare_runs: {path}: missing (is this an rlvr-train log.dir?)") from None
    except ValueError as e:
        raise SystemExit(f"compare_runs: {e}") from None


def load_run(path: str) -> dict:
    """A run's config, per-step metrics (last record wins: a resumed run repeats steps), evals, summary."""
    def read(name):
        try:
            with open(os.path.join(path, name)) as f:
                return json.load(f)
        except FileNotFoundError:
            raise SystemExit(f"compare_runs: {os.path.join(path, name)}: missing (did the run finish?)") from None
    cfg, summary = read("config.json"), read("summary.json")
    steps: dict[int, dict] = {}
    for rec in _jsonl(os.path.join(path, "metrics.jsonl")):
        steps.setdefault(int(rec["step"]), {}).update(rec)
    evals = {int(r["step"]): r["results"] for r in _jsonl(os.path.join(path, "evals.jsonl"))}
    if 0 not in evals:
        raise SystemExit(f"compare_runs: {path}/evals.jsonl: no evaluation of the base policy (step 0)")
    return {"path": path, "label": os.path.basename(os.path.normpath(path)), "cfg": cfg, "summary": summary,
            "steps": steps, "evals": evals}


def _series(run: dict, key: str, smooth: bool, window: int = 5):
    pts = [(s, r[key]) for s, r in sorted(run["steps"].items()) if s > 0 and key in r]
    if not pts:
        return None
    x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts], np.float64)
    if smooth and len(y) >= window:
        y = np.convolve(y, np.ones(window) / window, mode="valid")
        x = x[window - 1:]
    return x, y


def _ci(st: dict) -> str:
    return f"{st['mean']:.3f} [{st['lo']:.3f}, {st['hi']:.3f}]"


def start_fingerprint(summary: dict) -> str | None:
    """The policy a run started from: under LoRA its frozen base (the adapters start at B = 0, so the starting
    policy is the base; `base_param_fingerprint` there is the adapters'), else the trained parameters' start."""
    return summary.get("lora_base_fingerprint") or summary.get("base_param_fingerprint")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="log.dir of each run (the folder name labels it)")
    ap.add_argument("--out", required=True, help="folder for passk.png, curves.png, results.md, results.json")
    ap.add_argument("--set", default="", help="eval set to report (default: the first one)")
    args = ap.parse_args(argv)
    runs = [load_run(p) for p in args.runs]
    bases = {start_fingerprint(r["summary"]) for r in runs}
    if len(bases) != 1:
        raise SystemExit("compare_runs: the runs start from different base policies (summary.json "
                         "base_param_fingerprint differs); compare runs of one base only")
    first = runs[0]["evals"][0]
    name = args.set or next(iter(first))
    for r in runs:
        for s, res in r["evals"].items():
            if name not in res or "pass@k" not in res[name]:
                raise SystemExit(f"compare_runs: {r['path']}/evals.jsonl step {s}: no eval set {name!r} "
                                 f"(sets: {', '.join(res)})")
    base = first[name]
    ks = [int(k) for k in base["pass@k"]]
    finals = {r["label"]: r["evals"][max(r["evals"])][name] for r in runs}
    last_steps = {r["label"]: max(r["evals"]) for r in runs}
    os.makedirs(args.out, exist_ok=True)

    curves = {"base policy": base}
    curves.update({f"{lab} after {last_steps[lab]} steps": res for lab, res in finals.items()})
    passk_png = plot_passk_curves(curves, os.path.join(args.out, "passk.png"),
                                  title=f"held-out pass@k: {name}, {base['num_queries']} q x {base['num_samples']} "
                                        f"samples, 95% CI")
    panels = {}
    panels[f"held-out pass@1 ({name})"] = {
        r["label"]: ([s for s in sorted(r["evals"])], [r["evals"][s][name]["pass@k"]["1"]["mean"] for s in sorted(r["evals"])],
                     [r["evals"][s][name]["pass@k"]["1"]["lo"] for s in sorted(r["evals"])],
                     [r["evals"][s][name]["pass@k"]["1"]["hi"] for s in sorted(r["evals"])])
        for r in runs if "1" in base["pass@k"]}
    for title, key, smooth in CURVES:
        series = {}
        for r in runs:
            s = _series(r, key, smooth)
            if s is not None:
                series[r["label"]] = s
        if series:
            panels[title + (" (5-step mean)" if smooth else "")] = series
    curves_png = plot_metric_grid(panels, os.path.join(args.out, "curves.png"), ncols=3)

    labels = list(finals)
    lines = [f"Held-out set `{name}`: {base['num_queries']} questions x {base['num_samples']} samples, unbiased "
             f"pass@k, 95% bootstrap intervals.", "",
             "| | base policy | " + " | ".join(f"{lab} (step {last_steps[lab]})" for lab in labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for k in ks:
        lines.append(f"| pass@{k} | {_ci(base['pass@k'][str(k)])} | "
                     + " | ".join(_ci(finals[lab]["pass@k"][str(k)]) for lab in labels) + " |")
    for key, label, fmt in (("response_len_mean", "response length", ".1f"), ("truncated_frac", "truncated", ".3f")):
        if key in base:
            lines.append(f"| {label} | {base[key]:{fmt}} | " + " | ".join(f"{finals[lab][key]:{fmt}}" for lab in labels) + " |")
    lines.append("| seed | | " + " | ".join(str(r["cfg"]["train"]["seed"]) for r in runs) + " |")
    lines.append("| wall time (min) | | " + " | ".join(f"{r['summary']['wall_s'] / 60:.1f}" for r in runs) + " |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    write_json(os.path.join(args.out, "results.json"),
               {"set": name, "base": base, "final": finals, "last_step": last_steps,
                "seeds": {r["label"]: r["cfg"]["train"]["seed"] for r in runs},
                "wall_s": {r["label"]: r["summary"]["wall_s"] for r in runs},
                "runs": {r["label"]: r["path"] for r in runs}})
    print(md)
    print(f"wrote {passk_png}, {curves_png}, {os.path.join(args.out, 'results.md')}")


if __name__ == "__main__":
    sys.exit(main())
