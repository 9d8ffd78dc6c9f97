#!/usr/bin/env python
"""The over-sharpening sweep in one command: every method from ONE warmed-up base policy.

    python scripts/sweep.py --out docs/figures/sweep                  # full: 8 methods x 3 seeds
    python scripts/sweep.py --quick --out /tmp/sweep_quick            # smoke: grpo + iac_dlc, 1 seed, 10 steps
    python scripts/sweep.py --methods grpo,dlc --set memory.mu=1.0 --out /tmp/abl   # an ablation

The base config is configs/sweep.py (`--config` to change it, `--set group.field=value` to override
a field for every method). The warm-up runs once; each (method, seed) run starts from a copy of the
same base parameters with the same optimiser, RL steps, prompts per step and group size, and is
evaluated every `eval.every` steps on the same held-out queries with the same sampling key:
pass@k (k up to eval.num_samples) with bootstrap CIs over queries, distinct correct answers and the
exact teacher-forced instruments (mass on correct answers, coverage, entropy over correct answers,
over-sharpening index TV against the base policy). Writes to --out: summary.json (every eval of every
run, per-query CIs, seed aggregates), table.md (final step, mean and 95% t-interval over seeds),
training.png (one panel per metric), passk_final.png and tradeoff.png (metrics against pass@1).
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rlvr_jax import jsonio, parallel  # noqa: E402
from rlvr_jax.config import SCHEMA, ConfigError, apply_variant, int_list, validate  # noqa: E402
from rlvr_jax.jsonio import to_jsonable  # noqa: E402
from rlvr_jax.sampling import SamplingConfig  # noqa: E402
from rlvr_jax.train import evaluate as evaluation  # noqa: E402
from rlvr_jax.train.build import build, build_memory  # noqa: E402
from rlvr_jax.train.iteration import make_iteration, make_multi_iteration, query_pool  # noqa: E402
from rlvr_jax.train.pretrain import pretrain  # noqa: E402
from rlvr_jax.train.checkpoint import param_fingerprint  # noqa: E402
from rlvr_jax.train.program import train_program  # noqa: E402

METHODS = ("grpo", "dr_grpo", "rloo", "reinforce_pp", "dapo", "iac", "dlc", "iac_dlc")
LABELS = {"grpo": "GRPO", "dr_grpo": "Dr.GRPO", "rloo": "RLOO", "reinforce_pp": "REINFORCE++", "dapo": "DAPO",
          "iac": "IAC", "dlc": "DLC", "iac_dlc": "IAC+DLC"}
STYLE = {"grpo": ("C3", "-"), "dr_grpo": ("C1", "--"), "rloo": ("C5", "--"), "reinforce_pp": ("C7", ":"),
         "dapo": ("C4", "-."), "iac": ("C0", "-"), "dlc": ("C2", "-"), "iac_dlc": ("C9", "-")}
# (headline key, table/panel title); pass@k rows are added for the configured ks
MODE_METRICS = (("eval/mass_correct", "P(correct)"), ("eval/coverage_rel", "coverage (# correct >= 1% of P(correct))"),
                ("eval/entropy_norm", "entropy over correct (norm.)"), ("eval/tv", "over-sharpening TV vs base"),
                ("eval/distinct_correct", "distinct correct in samples"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/figures/sweep", help="output folder (PNGs, table.md, summary.json)")
    p.add_argument("--config", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs",
                                                    "sweep.py"), help="base config file (get_config())")
    p.add_argument("--methods", default=",".join(METHODS), help="comma list of algo.variant names")
    p.add_argument("--seeds", type=int, default=3, help="RL seeds per method (all from the same base policy)")
    p.add_argument("--steps", type=int, default=None, help="RL steps (default: train.steps of the config)")
    p.add_argument("--eval-every", type=int, default=None, help="default: eval.every of the config")
    p.add_argument("--set", action="append", default=[], metavar="GROUP.FIELD=VALUE",
                   help="override a config field for every method (repeatable)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: grpo + iac_dlc, 1 seed, 10 steps, tiny warm-up/eval")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--from-json", default=None, metavar="SUMMARY_JSON",
                   help="no training: rebuild table.md, the plots and the aggregates of a finished sweep into --out")
    return p.parse_args(argv)


def load_config(path: str, sets, quick: bool):
    """The base config from a get_config() file, with --set overrides (and the --quick shrink)."""
    if not os.path.exists(path):
        raise ConfigError(f"--config: no such file {path}")
    spec = importlib.util.spec_from_file_location("sweep_config", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.get_config()
    if quick:
        cfg.train.pretrain_steps, cfg.train.steps, cfg.eval.every = 60, 10, 5
        cfg.data.eval_size, cfg.eval.num_samples, cfg.eval.ks = 8, 16, "1,4,16"
    for item in sets:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set {item!r}: expected GROUP.FIELD=VALUE")
        key, val = item.split("=", 1)
        group, field = key.split(".", 1)
        if group not in cfg or field not in cfg[group]:
            raise ConfigError(f"--set {item!r}: unknown field config.{key}")
        try:
            val = ast.literal_eval(val)
        except (ValueError, SyntaxError):
            pass  # a bare string
        cfg[group][field] = val
    return cfg


# Fields that act only under one method's variant (so the base config, shared by every method, does not set
# them); a --set of the field wins. DAPO's soft overlong penalty ramps over the last `overlong_buffer` tokens of
# max_new_tokens = 8; the longest valid answer "19+19"+EOS is 6 tokens, so a buffer of 2 only penalises
# over-long responses (the default 4 would penalise every two-digit answer and bias DAPO towards short ones).
METHOD_FIELDS = {"dapo": {"algo.overlong_buffer": 2}}


def method_config(base, method: str, seed: int):
    """The validated config of one run: the base with algo.variant expanded, the method's own fields
    (METHOD_FIELDS) and this seed."""
    cfg = base.copy_and_resolve_references()
    for name, value in METHOD_FIELDS.get(method, {}).items():
        group, key = name.split(".")
        if cfg[group][key] == SCHEMA[group][key].default:
            cfg[group][key] = value
    cfg.algo.variant = method
    cfg.train.seed = seed
    return validate(apply_variant(cfg))


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


def run_method(method, base_cfg, seeds, pg, base_params, policy_template, task, built, evaluator, pool, steps,
               every, bar):
    """All seeds of one method: one jitted iteration function, each seed from a copy of the base params."""
    runs = []
    fns = None
    for seed in seeds:
        cfg = method_config(base_cfg, method, seed)
        memory = build_memory(cfg, policy_template)
        policy = nnx.merge(pg, jax.tree.map(jnp.copy, base_params))
        updates = steps * cfg.algo.ppo_epochs * cfg.algo.mini_batches  # the schedule's length
        program = train_program(cfg, policy, memory, parallel.single_device_mesh(), updates)
        state = program.init_state(policy, memory)
        if fns is None:  # same structure for every seed: compile once per method
            scfg = SamplingConfig.from_config(cfg, stop_token_ids=built.stop_token_ids, pad_id=built.pad_id)
            it = make_iteration(task, cfg, program.policy_graphdef, program.memory_graphdef, program.step, scfg)
            K = cfg.train.iterations_per_call
            fns = {n: jax.jit(make_multi_iteration(it, n)) for n in sorted({K, 1})}
        t0 = time.time()
        evals, train = [], []
        step = 0
        while step < steps:
            target = min(steps, (step // every + 1) * every)
            while step < target:
                n = K if step + K <= target else 1
                state, met = fns[n](state, pool)
                met = jax.device_get(met)
                for i in range(n):
                    train.append({"step": step + i + 1, "correct_mean": float(met["correct_mean"][i]),
                                  "rounds": float(met["dynamic_rounds"][i]) if "dynamic_rounds" in met else 1.0})
                step += n
                bar.update(n)
            res = evaluator(pg, state.policy)
            evals.append({"step": step, "headline": evaluation.headline(res, evaluator.ks),
                          "pass@k": res["pass@k"], "modes": res.get("modes", {}),
                          "curve": res["curve"] if step == steps else None})
        runs.append({"seed": seed, "evals": evals, "train": train, "wall_s": time.time() - t0,
                     "nonfinite_updates": int(state.nonfinite),
                     "samples_per_step": float(np.mean([r["rounds"] for r in train])) * cfg.rollout.group_size
                     * cfg.rollout.prompts_per_step})
        bar.set_postfix_str(f"{method} seed {seed} done")
    return runs


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
        lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(_fmt(a["metrics"][k][-1]) for k in keys)
                     + f" | {a['samples_per_step']:.0f} |")
    kmax = f"eval/pass@{max(ks)}"
    lines += ["", f"At equal pass@1 = {matched['pass@1']:.3f} ({LABELS.get(matched['anchor'], 'given')} final "
              "pass@1; each method's seed-mean trajectory, interpolated where it first reaches it; "
              "n/a: never does):", "",
              f"| method | pass@{max(ks)} | coverage | entropy | TV vs base |", "|---|---|---|---|---|"]
    for m in agg:
        r = matched[m]
        vals = [r.get(k) for k in (kmax, "eval/coverage_rel", "eval/entropy_norm", "eval/tv")]
        lines.append(f"| {LABELS.get(m, m)} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


PROB_METRICS = {"eval/mass_correct", "eval/entropy_norm", "eval/tv"}  # and every pass@k: bands clipped to [0, 1]


def _band(ax, x, st, color, ls, label, clip):
    m = np.asarray([s["mean"] for s in st], np.float64)
    lo = np.asarray([s["lo"] for s in st], np.float64)
    hi = np.asarray([s["hi"] for s in st], np.float64)
    if clip:
        lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
    ax.plot(x, m, color=color, ls=ls, lw=1.6, label=label)
    ax.fill_between(x, lo, hi, color=color, alpha=0.08, lw=0)


def make_plots(agg, base_eval, ks, out) -> list[str]:
    """training.png (one panel per metric, one line per method, 95% seed band), passk_final.png, tradeoff.png."""
    from rlvr_jax.eval import plots
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
            color, ls = STYLE.get(m, (None, "-"))
            _band(ax, a["steps"], st, color, ls, LABELS.get(m, m), key.startswith("eval/pass@") or key in PROB_METRICS)
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
        color, ls = STYLE.get(m, (None, "-"))
        _band(ax, fc["k"], [{"mean": x, "lo": lo, "hi": hi} for x, lo, hi in zip(fc["mean"], fc["lo"], fc["hi"])],
              color, ls, LABELS.get(m, m), True)
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
            color, ls = STYLE.get(m, (None, "-"))
            ax.plot(x, y, marker="o", ms=3, color=color, ls=ls, label=LABELS.get(m, m))
        ax.set_xlabel(f"pass@{min(ks)} (seed mean, one point per eval)")
        ax.set_title(f"{title} against pass@{min(ks)}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    paths.append(plots._save(fig, os.path.join(out, "tradeoff.png")))
    return paths


def _rounded(x, digits: int = 5):
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: _rounded(v, digits) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v, digits) for v in x]
    return x


def write_json(summary: dict, path: str) -> str:
    """The summary through the one JSON writer (`jsonio`), floats rounded to 5 decimals."""
    return jsonio.write_json(path, _rounded(to_jsonable(summary)))


def code_version() -> dict:
    """The git commit and the library files that differ from it (results depend on the exact model code)."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    modified = [x for x in (git("status", "--porcelain", "rlvr_jax") or "").split("\n") if x]
    return {"commit": git("rev-parse", "HEAD"), "modified": modified}


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far (wall time on a shared machine depends on the load)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def report(summary: dict, out: str) -> dict:
    """Seed aggregates, the equal-pass@1 comparison, table.md, the PNGs and summary.json from the runs."""
    ks = summary["ks"]
    agg = aggregate(summary["base"], summary["runs"], ks)
    matched = at_matched_pass1(agg, f"eval/pass@{min(ks)}",
                               [f"eval/pass@{max(ks)}", "eval/coverage_rel", "eval/entropy_norm", "eval/tv"])
    summary.update(aggregate=agg, at_equal_pass1=matched)
    os.makedirs(out, exist_ok=True)
    table = table_md(agg, summary["base"], ks, matched, len(summary["seeds"]), summary["steps"])
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    summary["figures"] = [os.path.basename(p) for p in make_plots(agg, summary["base"], ks, out)]
    write_json(summary, os.path.join(out, "summary.json"))
    tqdm.write("\n" + table)
    return summary


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.from_json:
        with open(a.from_json) as f:
            return report(json.load(f), a.out)
    t_start, load_start = time.time(), os.getloadavg()
    base = load_config(a.config, a.set, a.quick)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    seeds_n, steps = a.seeds, a.steps
    if a.quick:
        methods = methods if a.methods != ",".join(METHODS) else ["grpo", "iac_dlc"]
        seeds_n = 1
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"--methods: unknown {bad[0]!r}; known: {', '.join(METHODS)}")
    steps = steps or base.train.steps
    every = a.eval_every or base.eval.every or steps
    base.train.steps = steps
    seeds = list(range(1, seeds_n + 1))  # the warm-up uses train.seed of the config (0)
    for m in methods:
        method_config(base, m, 1)  # every config error before any compute
    ks = int_list(base.eval.ks, "eval.ks")
    os.makedirs(a.out, exist_ok=True)

    warm_cfg = validate(apply_variant(base.copy_and_resolve_references()))
    built = build(warm_cfg)
    task = built.task
    if task is None:
        raise ConfigError("config.data.source: the sweep needs an embedded task (data.source='embedded')")
    policy, losses = pretrain(built.policy, task, warm_cfg, log=tqdm.write)
    pg, base_params = nnx.split(policy, nnx.Param)
    base_params = jax.tree.map(jnp.copy, base_params)
    base_sha = param_fingerprint(base_params)  # equal across sweeps <=> the same base policy
    pool = query_pool(task.sample(np.random.default_rng(warm_cfg.train.seed), warm_cfg.data.size))
    evaluator = evaluation.TaskEvaluator(task, warm_cfg, built.stop_token_ids, built.pad_id)
    evaluator.set_reference(pg, base_params)
    res0 = evaluator(pg, base_params)
    base_eval = {"headline": evaluation.headline(res0, ks), "pass@k": res0["pass@k"], "modes": res0.get("modes"),
                 "curve": res0["curve"]}
    tqdm.write("base policy: " + ", ".join(f"{k}={v:.3f}" for k, v in base_eval["headline"].items()))

    bar = tqdm(total=len(methods) * len(seeds) * steps, desc="sweep", unit="step", dynamic_ncols=True,
               disable=a.no_progress, file=sys.stdout)
    results, method_wall = {}, {}
    for m in methods:
        t0 = time.time()
        bar.set_postfix_str(m)
        results[m] = run_method(m, base, seeds, pg, base_params, policy, task, built, evaluator, pool, steps, every,
                                bar)
        method_wall[m] = time.time() - t0
        h = results[m][-1]["evals"][-1]["headline"]
        tqdm.write(f"{LABELS[m]:>12}: pass@1 {h[f'eval/pass@{min(ks)}']:.3f}  pass@{max(ks)} "
                   f"{h[f'eval/pass@{max(ks)}']:.3f}  coverage {h.get('eval/coverage_rel', float('nan')):.2f}  "
                   f"TV {h.get('eval/tv', float('nan')):.3f}  ({method_wall[m]:.0f} s, last seed)")
    bar.close()

    wall = time.time() - t_start
    summary = {"command": "python scripts/sweep.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "config": base.to_dict(), "methods": methods, "seeds": seeds, "steps": steps, "eval_every": every,
               "ks": list(ks), "warmup_loss": [losses[0], float(np.mean(losses[-10:]))] if losses else None,
               "base": base_eval, "base_param_sha256": base_sha, "code": code_version(), "runs": results,
               "wall_s": wall, "cpu_s": _cpu_seconds(),
               "method_wall_s": method_wall, "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__}}
    summary = report(json.loads(json.dumps(to_jsonable(summary))), a.out)
    tqdm.write(f"wrote {', '.join(summary['figures'])}, table.md and summary.json to {a.out} in {wall:.0f} s, "
               f"{summary['cpu_s']:.0f} CPU s (load average {load_start[0]:.1f} -> {os.getloadavg()[0]:.1f})")
    return summary


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:
        sys.exit(f"error: {e}")
