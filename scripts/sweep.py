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
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rlvr_jax import jsonio, parallel  # noqa: E402
from rlvr_jax.config import SCHEMA, VARIANTS, ConfigError, apply_variant, int_list, validate  # noqa: E402
from rlvr_jax.jsonio import to_jsonable  # noqa: E402
from rlvr_jax.sampling import SamplingConfig  # noqa: E402
from rlvr_jax.train import evaluate as evaluation  # noqa: E402
from rlvr_jax.train.build import build, build_memory  # noqa: E402
from rlvr_jax.train.iteration import make_iteration, make_multi_iteration, query_pool  # noqa: E402
from rlvr_jax.train.pretrain import pretrain  # noqa: E402
from rlvr_jax.train.checkpoint import param_fingerprint  # noqa: E402
from rlvr_jax.train.program import train_program  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweep_report import (LABELS, MODE_METRICS, STYLE, aggregate, at_matched_pass1, label, make_plots,  # noqa: E402,F401
                          seed_stats, table_md)

# training metrics kept per step in summary.json (those a run logs): success, entropies, the DLC tilt's diagnostics
TRAIN_KEYS = ("correct_mean", "entropy", "sampling_entropy", "tilt_entropy", "memory_kl", "tilt_slope",
              "memory_lag_ce", "memory_loss", "entropy_coef", "tis_weight_mean", "tis_frac_capped",
              "sampler_logp_gap", "clip_frac_high", "clip_frac_low", "cov_frac", "entropy_kept_frac")
# the default method list: the GRPO family and the paper's two cures (scripts/cures.py runs every cure)
METHODS = ("grpo", "dr_grpo", "rloo", "reinforce_pp", "dapo", "iac", "dlc", "iac_dlc")


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
    p.add_argument("--resume", action="store_true",
                   help="reuse --out/runs/<method>.json of methods already run from the same base policy, seeds and "
                        "steps (each method's runs are written there as soon as its seeds finish)")
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
    apply_sets(cfg, sets, "--set")
    return cfg


def apply_sets(cfg, items, where: str):
    """Sets GROUP.FIELD=VALUE items on cfg (VALUE read as a Python literal, else a bare string)."""
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"{where} {item!r}: expected GROUP.FIELD=VALUE")
        key, val = item.split("=", 1)
        group, field = key.split(".", 1)
        if group not in cfg or field not in cfg[group]:
            raise ConfigError(f"{where} {item!r}: unknown field config.{key}")
        try:
            val = ast.literal_eval(val)
        except (ValueError, SyntaxError):
            pass  # a bare string
        cfg[group][field] = val
    return cfg


def parse_method(spec: str):
    """A method spec `variant[@group.field=value...]` -> (variant, [overrides]); the variant is an algo.variant
    name, and the overrides act on this method only (e.g. `grpo@rollout.temperature=1.5`, `dlc@memory.mu=1.0`)."""
    variant, *sets = spec.split("@")
    if variant not in VARIANTS:
        raise ConfigError(f"--methods: unknown {variant!r}; known variants: {', '.join(VARIANTS)}")
    return variant, sets


# Fields that act only under one method's variant (so the base config, shared by every method, does not set
# them); a --set of the field wins. DAPO's soft overlong penalty ramps over the last `overlong_buffer` tokens of
# max_new_tokens = 8; the longest valid answer "19+19"+EOS is 6 tokens, so a buffer of 2 only penalises
# over-long responses (the default 4 would penalise every two-digit answer and bias DAPO towards short ones).
METHOD_FIELDS = {"dapo": {"algo.overlong_buffer": 2}}


def method_config(base, method: str, seed: int):
    """The validated config of one run: the base with the method's variant expanded, the variant's own fields
    (METHOD_FIELDS), the spec's overrides and this seed."""
    variant, sets = parse_method(method)
    cfg = base.copy_and_resolve_references()
    for name, value in METHOD_FIELDS.get(variant, {}).items():
        group, key = name.split(".")
        if cfg[group][key] == SCHEMA[group][key].default:
            cfg[group][key] = value
    apply_sets(cfg, sets, f"--methods {method}:")
    cfg.algo.variant = variant
    cfg.train.seed = seed
    return validate(apply_variant(cfg))


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
        program = train_program(cfg, policy, memory, parallel.single_device_mesh(), updates,
                                prompt_len=task.prompt_len)  # the memory.window replay's prompt width
        state = program.init_state(policy, memory)
        if fns is None:  # same structure for every seed: compile once per method
            scfg = SamplingConfig.from_config(cfg, stop_token_ids=built.stop_token_ids, pad_id=built.pad_id)
            it = make_iteration(task, cfg, program.policy_graphdef, program.memory_graphdef, program.step, scfg,
                                sampling_policy=program.sampling_policy)
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
                    row = {"step": step + i + 1, "rounds": float(met["dynamic_rounds"][i]) if "dynamic_rounds" in met
                           else 1.0}
                    row.update({k: float(met[k][i]) for k in TRAIN_KEYS if k in met})
                    train.append(row)
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


def _load_runs(path: str, base_sha: str, seeds, steps: int, every: int):
    """A method's saved runs if they were made from this base policy with these seeds, steps and eval period."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        done = json.load(f)
    same = (done.get("base_param_sha256") == base_sha and done.get("seeds") == list(seeds)
            and done.get("steps") == steps and done.get("eval_every") == every)
    return done if same else None


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
    runs_dir = os.path.join(a.out, "runs")
    for m in methods:
        path = os.path.join(runs_dir, re.sub(r"[^A-Za-z0-9_.=-]+", "_", m) + ".json")
        done = _load_runs(path, base_sha, seeds, steps, every) if a.resume else None
        if done is not None:
            results[m], method_wall[m] = done["runs"], done["wall_s"]
            bar.update(len(seeds) * steps)
            tqdm.write(f"{label(m):>12}: reused {path}")
            continue
        t0 = time.time()
        bar.set_postfix_str(m)
        results[m] = run_method(m, base, seeds, pg, base_params, policy, task, built, evaluator, pool, steps, every,
                                bar)
        method_wall[m] = time.time() - t0
        write_json({"method": m, "base_param_sha256": base_sha, "seeds": seeds, "steps": steps, "eval_every": every,
                    "wall_s": method_wall[m], "code": code_version(), "runs": results[m]}, path)
        h = results[m][-1]["evals"][-1]["headline"]
        tqdm.write(f"{label(m):>12}: pass@1 {h[f'eval/pass@{min(ks)}']:.3f}  pass@{max(ks)} "
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
