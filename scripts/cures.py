#!/usr/bin/env python
"""Every cure for diversity collapse, side by side, in one command; then the DLC study.

    python scripts/cures.py                              # both tasks x every method x 3 seeds, then the DLC study
    python scripts/cures.py --part compare               # only the comparison (resumes what is already there)
    python scripts/cures.py --part report                # no training: the headline tables from finished runs
    python scripts/cures.py --quick --out /tmp/cures     # smoke: 2 methods, 1 seed, 10 steps, both tasks

Each task is one `scripts/sweep.py` run over every method of METHODS: one warmed-up base policy per task, and
every method gets the same RL steps, prompts per step, group size (so the same samples per update; DAPO's dynamic
sampling generates more, see its samples/step) and evaluation. The two tasks run as two processes at once.
Each method's runs are saved as they finish (`<out>/<task>/runs/<method>.json`), so a stopped command resumes.
The DLC study (DLC_STUDY) runs on sum_pair: mu, memory size, memory learning rate, replay window, what the memory
is trained on, the truncated importance correction, and plain-temperature controls at matched sampling entropy.
Writes <out>/headline.md (both tasks' final metrics, the equal-pass@1 table, the DLC study with its train-time
diagnostics) next to each sweep's table.md, summary.json and figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from cures_plots import write_figures  # noqa: E402
from sweep_report import at_matched_pass1, label  # noqa: E402

TASKS = {"sum_pair": "configs/sweep.py", "countdown_small": "configs/sweep_countdown.py"}
# Skywork-OR1's target (0.2) is for an LM's token entropy; these policies start near 1.0 and GRPO takes them to
# 0.2-0.4 in 200 steps, so the adaptive bonus aims at 0.6, where the collapse is under way
ADAPTIVE = "grpo@algo.entropy_target=0.6"  # the adaptive_entropy variant pins Skywork's 0.2
# (family, method specs): every method starts from the same base and differs only in what its spec sets
FAMILIES = (
    ("baseline", ("grpo", "dr_grpo", "rloo", "reinforce_pp", "dapo")),
    ("paper", ("iac", "dlc", "iac_dlc")),
    ("advantage", ("pass_at_k", "pkpo", "w_reinforce", "psr", "nsr", "qae", "unlikely")),
    ("token", ("clip_cov", "kl_cov", "high_entropy", ADAPTIVE, "gspo")),
)
METHODS = tuple(m for _, ms in FAMILIES for m in ms)
FAMILY = {m: f for f, ms in FAMILIES for m in ms}
# the DLC study, on sum_pair; the main comparison's dlc (mu 0.5, width 0.25, lr 1e-3, window 1, all rollouts)
# and grpo are its reference rows
DLC_STUDY = (
    "dlc@memory.mu=0.25", "dlc@memory.mu=1.0", "dlc@memory.mu=2.0",
    "dlc@memory.width_ratio=1.0@memory.num_layers=2",  # a memory as large as the policy
    "dlc@memory.learning_rate=0.0001", "dlc@memory.learning_rate=0.01",
    "dlc@memory.window=4", "dlc@memory.window=16",
    "dlc@memory.train_on=correct", "dlc@memory.train_on=incorrect",
    "dlc@algo.tis_cap=2.0",
    "grpo@rollout.temperature=1.25", "grpo@rollout.temperature=1.5", "grpo@rollout.temperature=2.0",
)
STUDY_TASK = "sum_pair"
# With one on-policy update per batch (the comparison's setting) the ratio r is 1 up to float error: the PPO clip
# never acts, Clip-Cov finds no clipped token to skip and KL-Cov's |log r| is ~0. Their papers update off-policy
# (several mini-batches per batch), so the token methods are also run with 4 updates per batch.
TOKEN_STUDY = ("grpo@algo.mini_batches=4", "clip_cov@algo.mini_batches=4", "kl_cov@algo.mini_batches=4",
               "gspo@algo.mini_batches=4")
# NSR and W-REINFORCE have no baseline: at these tasks' base success (~7%) nearly every sample is pushed down at
# full weight, and at the comparison's learning rate (1e-3) both collapse to no correct answer; are they step-size
# bound? The same two at a tenth of the learning rate.
STEP_STUDY = ("nsr@optim.learning_rate=0.0001", "w_reinforce@optim.learning_rate=0.0001")
EXTRA_STUDY = TOKEN_STUDY + STEP_STUDY
# Three seeds leave GRPO's pass@128 interval +-0.6 wide. DLC against the temperature controls at matched sampling
# entropy (DLC's 0.66 sits near T = 1.25's 0.64; DLC with the TIS correction, 0.70, between T = 1.25 and 1.5) with
# eight seeds each.
DLC_SEEDS = ("grpo", "dlc", "dlc@algo.tis_cap=2.0", "grpo@rollout.temperature=1.25", "grpo@rollout.temperature=1.5")
MORE_SEEDS = 8
# train-time diagnostics (means over steps, then seeds): sampling_entropy is every run's Monte-Carlo entropy of what
# was sampled (so DLC and plain-temperature runs compare on it); the rest are DLC's (algos/tilt_stats.py)
DIAG = ("sampling_entropy", "tilt_entropy", "memory_kl", "tilt_slope", "memory_lag_ce", "tis_frac_capped",
        "sampler_logp_gap")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "figures", "cures"))
    p.add_argument("--part", choices=("all", "compare", "dlc", "extra", "seeds", "report"), default="all")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2, help="sweeps run at once (one per task)")
    p.add_argument("--quick", action="store_true", help="smoke: grpo and iac only, 1 seed, the sweep's --quick")
    return p.parse_args(argv)


def sweep_cmd(task: str, methods, out: str, seeds: int, quick: bool) -> list[str]:
    cmd = [sys.executable, os.path.join(HERE, "sweep.py"), "--config", os.path.join(ROOT, TASKS[task]),
           "--methods", ",".join(methods), "--seeds", str(seeds), "--resume", "--no-progress", "--out", out]
    return cmd + (["--quick"] if quick else [])


def run_all(jobs, parallel: int, log_dir: str):
    """Runs (name, command) jobs, `parallel` at a time, each logging to log_dir/<name>.log; stops on a failure."""
    os.makedirs(log_dir, exist_ok=True)
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            name, cmd = pending.pop(0)
            log = open(os.path.join(log_dir, f"{name}.log"), "w")
            print(f"[cures] start {name}: {' '.join(cmd[1:])}", flush=True)
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log))
        time.sleep(2)
        for item in list(running):
            name, proc, log = item
            if proc.poll() is None:
                continue
            log.close()
            running.remove(item)
            if proc.returncode:
                for _, p, _ in running:
                    p.terminate()
                sys.exit(f"error: {name} failed (exit {proc.returncode}); see {log.name}")
            print(f"[cures] done {name}", flush=True)


def _load(out: str, task: str):
    path = os.path.join(out, task, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _final(agg, m, key):
    s = agg[m]["metrics"][key][-1]
    return s


def _cell(s, digits=3):
    if s is None or s.get("mean") is None:
        return "n/a"
    if s["lo"] == s["hi"]:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {(s['hi'] - s['lo']) / 2:.{digits}f}"


def headline(summaries: dict) -> str:
    """Both tasks' final pass@1, pass@kmax, coverage and TV per method (mean ± 95% t half-width over seeds)."""
    tasks = [t for t in TASKS if summaries.get(t)]
    kmax = {t: max(summaries[t]["ks"]) for t in tasks}
    heads = []
    for t in tasks:
        heads += [f"{t} pass@1", f"pass@{kmax[t]}", "coverage", "TV"]
    lines = ["| family | method | " + " | ".join(heads) + " |", "|---" * (len(heads) + 2) + "|"]
    row = ["", "base policy"]
    for t in tasks:
        b = summaries[t]["base"]["headline"]
        row += [f"{b['eval/pass@1']:.3f}", f"{b[f'eval/pass@{kmax[t]}']:.3f}", f"{b['eval/coverage_rel']:.2f}", "0"]
    lines.append("| " + " | ".join(row) + " |")
    methods = [m for m in METHODS if any(m in summaries[t]["aggregate"] for t in tasks)]
    for m in methods:
        row = [FAMILY[m], label(m)]
        for t in tasks:
            agg = summaries[t]["aggregate"]
            if m not in agg:
                row += ["n/a"] * 4
                continue
            row += [_cell(_final(agg, m, "eval/pass@1")), _cell(_final(agg, m, f"eval/pass@{kmax[t]}")),
                    _cell(_final(agg, m, "eval/coverage_rel"), 2), _cell(_final(agg, m, "eval/tv"))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def common_target(summary, factor: float = 1.5) -> float:
    """The lowest final pass@1 among the methods that learned (final pass@1 >= factor x the base's): every one of
    them reaches it, so all of them are compared at one pass@1."""
    base = summary["base"]["headline"]["eval/pass@1"]
    finals = [a["metrics"]["eval/pass@1"][-1]["mean"] for a in summary["aggregate"].values()]
    learned = [f for f in finals if f is not None and f >= factor * base]
    return min(learned) if learned else base


def matched_table(summary, common: bool = False) -> str:
    """Each method where its seed-mean pass@1 first reaches the anchor's final pass@1 (GRPO's; with common=True
    the `common_target`), as one markdown table."""
    kmax = max(summary["ks"])
    keys = (f"eval/pass@{kmax}", "eval/coverage_rel", "eval/entropy_norm", "eval/tv")
    if common:
        target = common_target(summary)
        mt = at_matched_pass1(summary["aggregate"], "eval/pass@1", list(keys), target=target)
        title = (f"At the common pass@1 = {target:.3f} (the lowest final pass@1 of the methods that learned, final "
                 f"pass@1 >= 1.5 x the base's; n/a: never reaches it):")
    else:
        mt = summary["at_equal_pass1"]
        title = f"At equal pass@1 = {mt['pass@1']:.3f} ({label(mt['anchor'])}'s final value; n/a: never reaches it):"
    lines = [title, "", f"| method | pass@{kmax} | coverage | entropy | TV |", "|---|---|---|---|---|"]
    for m in summary["methods"]:
        vals = [mt.get(m, {}).get(k) for k in keys]
        lines.append(f"| {label(m)} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def train_means(summary, method) -> dict:
    """Per diagnostic: mean over the training steps, then mean over seeds (None where the run does not log it)."""
    out = {}
    for k in DIAG:
        per_seed = [np.mean([r[k] for r in run["train"] if k in r]) for run in summary["runs"][method]
                    if any(k in r for r in run["train"])]
        out[k] = float(np.mean(per_seed)) if per_seed else None
    return out


def study_table(study, main, main_methods=("grpo", "dlc")) -> str:
    """The DLC study's runs next to the main comparison's grpo and dlc: final metrics and train-time diagnostics."""
    rows = []
    for src, methods in ((main, main_methods), (study, study["methods"] if study else ())):
        if src is None:
            continue
        for m in methods:
            if m in src["aggregate"]:
                rows.append((src, m))
    kmax = max(main["ks"])
    heads = ["pass@1", f"pass@{kmax}", "coverage", "TV", "sampling entropy", "KL(sampling||policy)",
             "KL(policy||memory)", "T_eff", "memory lag CE"]
    lines = ["| run | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for src, m in rows:
        agg = src["aggregate"]
        d = train_means(src, m)
        # the tilt's effective temperature: 1 / (mean slope of the tilted logits on the policy's); a plain
        # temperature run's is its rollout.temperature
        t_eff = None if not d["tilt_slope"] else 1.0 / d["tilt_slope"]
        if t_eff is None and "temperature=" in m:
            t_eff = float(m.split("temperature=")[1].split("@")[0])
        vals = [_cell(_final(agg, m, "eval/pass@1")), _cell(_final(agg, m, f"eval/pass@{kmax}")),
                _cell(_final(agg, m, "eval/coverage_rel"), 2), _cell(_final(agg, m, "eval/tv"))]
        # the mean of logp_policy - logp_sampler over the sampled tokens estimates -KL(sampling || policy)
        kl_sp = None if d["sampler_logp_gap"] is None else -d["sampler_logp_gap"]
        diag = (d["sampling_entropy"], kl_sp, d["memory_kl"], t_eff, d["memory_lag_ce"])
        vals += ["n/a" if v is None else f"{round(v, 3) + 0.0:.3f}" for v in diag]  # + 0.0: no "-0.000"
        lines.append(f"| {label(m)} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def token_table(extra, main) -> str:
    """The token-level methods at 1 and at 4 updates per batch: final metrics and how often their mechanism acts."""
    token = None if extra is None else dict(extra, methods=[m for m in extra["methods"] if m in TOKEN_STUDY])
    kmax = max(main["ks"])
    heads = ["updates/batch", "pass@1", f"pass@{kmax}", "coverage", "TV", "clipped tokens", "cov-selected tokens"]
    lines = ["| method | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    for src, methods, n in ((main, ("grpo", "clip_cov", "kl_cov", "gspo"), 1),
                            (token, token["methods"] if token else (), 4)):
        for m in methods if src else ():
            if m not in src["aggregate"]:
                continue
            agg = src["aggregate"][m]
            runs = src["runs"][m]

            def mean_of(keys):
                v = [sum(r.get(k, 0.0) for k in keys) for run in runs for r in run["train"]
                     if any(k in r for k in keys)]
                return "n/a" if not v else f"{np.mean(v):.4f}"
            vals = [str(n), _cell(agg["metrics"]["eval/pass@1"][-1]), _cell(agg["metrics"][f"eval/pass@{kmax}"][-1]),
                    _cell(agg["metrics"]["eval/coverage_rel"][-1], 2), _cell(agg["metrics"]["eval/tv"][-1]),
                    mean_of(("clip_frac_low", "clip_frac_high")), mean_of(("cov_frac",))]
            lines.append(f"| {label(m.split('@')[0])} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def step_table(extra, main) -> str:
    """NSR and W-REINFORCE at the comparison's learning rate and at a tenth of it."""
    kmax = max(main["ks"])
    lines = [f"| method | learning rate | pass@1 | pass@{kmax} | coverage | TV |", "|---|---|---|---|---|---|"]
    for src, methods in ((main, ("nsr", "w_reinforce")), (extra, [m for m in extra["methods"] if m in STEP_STUDY])):
        for m in methods:
            if m not in src["aggregate"]:
                continue
            agg = src["aggregate"][m]["metrics"]
            lr = m.split("learning_rate=")[1] if "learning_rate=" in m else "0.001"
            lines.append(f"| {label(m.split('@')[0])} | {lr} | {_cell(agg['eval/pass@1'][-1])} | "
                         f"{_cell(agg[f'eval/pass@{kmax}'][-1])} | {_cell(agg['eval/coverage_rel'][-1], 2)} | "
                         f"{_cell(agg['eval/tv'][-1])} |")
    return "\n".join(lines) + "\n"


def report(out: str) -> str:
    summaries = {t: _load(out, t) for t in TASKS}
    study = _load(out, "dlc_study")
    parts = ["# Every cure for diversity collapse (scripts/cures.py)", "",
             "Final step; mean ± 95% t half-width over seeds. coverage: correct answers holding >= 1% of "
             "P(correct); TV: total variation to the base policy among correct answers.", "", headline(summaries)]
    for t in TASKS:
        if summaries.get(t):
            parts += [f"## {t}", "", matched_table(summaries[t]), matched_table(summaries[t], common=True)]
    if summaries.get(STUDY_TASK):
        parts += ["## DLC study (" + STUDY_TASK + ")", "",
                  "Diagnostics are means over the training steps: the entropy of what was sampled (minus the mean "
                  "sampler log-prob per response token: the tilted distribution under DLC, the tempered one under "
                  "a temperature), KL(sampling || policy) per token (how far the tilt or the temperature moves "
                  "sampling off the policy, estimated on the sampled tokens), KL(policy || memory) per token on the "
                  "step's rollouts before the memory's update, "
                  "the tilt's effective temperature (1 / the slope of z - mu z_memory on z; plain temperature for "
                  "the temperature controls) and the memory's lag (its cross-entropy on the fresh rollouts minus "
                  "the policy's).", "", study_table(study, summaries[STUDY_TASK])]
        more = _load(out, "dlc_seeds")
        if more:
            n = len(next(iter(more["runs"].values())))
            parts += [f"## DLC against temperature, {n} seeds (" + STUDY_TASK + ")", "",
                      study_table(more, summaries[STUDY_TASK], main_methods=())]
        extra = _load(out, "extra_study")
        if extra:
            parts += ["## Token-level methods off-policy (" + STUDY_TASK + ")", "",
                      "The same methods with 4 optimiser updates per batch of rollouts (algo.mini_batches=4), where "
                      "the ratio leaves 1 and the clip and the covariance selections act; shares of response "
                      "tokens, means over the training steps.", "", token_table(extra, summaries[STUDY_TASK]),
                      "## NSR and W-REINFORCE at a tenth of the learning rate (" + STUDY_TASK + ")", "",
                      step_table(extra, summaries[STUDY_TASK])]
    figures = write_figures(out, summaries, study, METHODS, FAMILY, label, train_means, _load(out, "dlc_seeds"))
    if figures:
        parts += ["## Figures", ""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in figures]
    text = "\n".join(parts)
    with open(os.path.join(out, "headline.md"), "w") as f:
        f.write(text)
    return text


def run_study(name: str, study, out: str, seeds: int, a, logs: str) -> None:
    """A study on STUDY_TASK into out/name: its specs in a.jobs interleaved parts at once into the same folder,
    then one pass that reuses them all and writes the folder's summary and figures."""
    where = os.path.join(out, name)
    parts = [(f"{name}_{i}", sweep_cmd(STUDY_TASK, study[i::a.jobs], where, seeds, a.quick))
             for i in range(min(a.jobs, len(study)))]
    run_all(parts, a.jobs, logs)
    run_all([(name, sweep_cmd(STUDY_TASK, study, where, seeds, a.quick))], 1, logs)


def main(argv=None):
    a = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    methods = ("grpo", "iac") if a.quick else METHODS
    seeds = 1 if a.quick else a.seeds
    logs = os.path.join(a.out, "logs")
    t0 = time.time()
    if a.part in ("all", "compare"):
        run_all([(t, sweep_cmd(t, methods, os.path.join(a.out, t), seeds, a.quick)) for t in TASKS], a.jobs, logs)
    if a.part in ("all", "dlc"):
        study = ("dlc@memory.mu=1.0", "grpo@rollout.temperature=1.5") if a.quick else DLC_STUDY
        run_study("dlc_study", study, a.out, seeds, a, logs)
    if a.part in ("all", "extra"):
        run_study("extra_study", TOKEN_STUDY[:1] + STEP_STUDY[:1] if a.quick else EXTRA_STUDY, a.out, seeds, a, logs)
    if a.part in ("all", "seeds"):
        run_study("dlc_seeds", DLC_SEEDS[:2] if a.quick else DLC_SEEDS, a.out, seeds if a.quick else MORE_SEEDS, a,
                  logs)
    text = report(a.out)
    print(text)
    print(f"[cures] wrote {os.path.join(a.out, 'headline.md')} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
