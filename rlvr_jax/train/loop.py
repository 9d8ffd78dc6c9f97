"""The RL loop behind `rlvr-train`: build, (warm up), resume, iterate, evaluate, checkpoint, report.

Embedded token tasks run whole iterations on device (`iteration.py`); text tasks sample on device,
verify on the host process pool, and update on device (`text_loop.py`). Both share the train step,
the checkpointing (exact resume, SIGTERM-safe) and the metrics writers.
"""
from __future__ import annotations

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from rlvr_jax import host_alloc, parallel
from rlvr_jax.config import int_list
from rlvr_jax.sampling import SamplingConfig
from rlvr_jax.train import evaluate as evaluation
from rlvr_jax.train.build import build
from rlvr_jax.train.checkpoint import Preemption, open_and_resume
from rlvr_jax.train.iteration import make_iteration, make_multi_iteration, query_pool
from rlvr_jax.train.metrics import MetricsWriter, console_line
from rlvr_jax.train.pretrain import pretrain
from rlvr_jax.train.state import init_state, make_optimizers, train_state_shardings
from rlvr_jax.train.step import make_train_step


def log(msg: str):
    """Console output from process 0 only."""
    if jax.process_index() == 0:
        tqdm.write(msg)


def print_config(cfg):
    log("resolved config:")
    for group, sub in cfg.items():
        log(f"  {group}: " + ", ".join(f"{k}={v!r}" for k, v in sub.items()))


def param_fingerprint(params) -> str:
    """sha256 of every parameter's bytes (bit-exact comparisons across runs and processes)."""
    import hashlib
    h = hashlib.sha256()
    for x in jax.tree.leaves(jax.device_get(params)):
        h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
    return h.hexdigest()


def updates_per_run(cfg) -> int:
    return cfg.train.steps * cfg.algo.ppo_epochs * cfg.algo.mini_batches


def run(cfg) -> dict:
    """Runs the configured job; returns a summary dict (also written to <log.dir>/summary.json)."""
    parallel.maybe_initialize(cfg)  # multi-process launch (TPU pod, JAX_COORDINATOR_ADDRESS): before any JAX call
    print_config(cfg)
    mesh = parallel.make_mesh(cfg.mesh)
    log("preflight: " + parallel.describe(mesh) + "; " + host_alloc.describe())
    built = build(cfg)
    if built.task is None:
        from rlvr_jax.train.text_loop import run_text
        return run_text(cfg, built, mesh)
    return run_token_task(cfg, built, mesh)


def _fmt_table(before: dict, after: dict, ks) -> str:
    rows = [f"{'metric':<22}{'before':>10}{'after':>10}"]
    for k in ks:
        rows.append(f"{'pass@' + str(k):<22}{before['pass@k'][str(k)]['mean']:>10.3f}"
                    f"{after['pass@k'][str(k)]['mean']:>10.3f}")
    for name in ("distinct_correct_mean",):
        rows.append(f"{'distinct correct':<22}{before[name]:>10.2f}{after[name]:>10.2f}")
    for name, label in (("mass_correct", "P(correct)"), ("coverage_rel", "coverage (rel 1%)"),
                        ("entropy_norm", "entropy over correct"), ("tv", "over-sharpening TV")):
        b = before.get("modes", {}).get(name, {}).get("mean")
        a = after.get("modes", {}).get(name, {}).get("mean")
        if a is not None:
            rows.append(f"{label:<22}{(b if b is not None else float('nan')):>10.3f}{a:>10.3f}")
    return "\n".join(rows)


def run_token_task(cfg, built, mesh) -> dict:
    task = built.task
    log_dir = cfg.log.dir
    os.makedirs(log_dir, exist_ok=True)
    t0 = time.time()

    policy, _ = pretrain(built.policy, task, cfg, log=log)
    ptx, mtx = make_optimizers(cfg, updates_per_run(cfg))
    state, pg, mg = init_state(policy, built.memory, ptx, mtx, seed=cfg.train.seed,
                               keep_reference=cfg.algo.kl_coef > 0)
    rules = parallel.TRAIN_RULES
    shardings = train_state_shardings(state, mesh, rules)
    state = jax.device_put(state, shardings)
    base_params = jax.tree.map(jnp.copy, state.policy)

    ckpt, start, state, _ = open_and_resume(cfg, log_dir, state, shardings, log)
    # records logged after the checkpoint we resume from (a killed run) are dropped
    writer = MetricsWriter(log_dir, cfg.log, config_dict=cfg.to_dict(), purge_after=start if start else None)

    pool_batch = task.sample(np.random.default_rng(cfg.train.seed), cfg.data.size)
    pool = query_pool(pool_batch)
    scfg = SamplingConfig.from_config(cfg, stop_token_ids=built.stop_token_ids, pad_id=built.pad_id)
    train_step = make_train_step(pg, mg, cfg, ptx, mtx, parallel.batch_shards(mesh, rules))
    K = cfg.train.iterations_per_call
    iteration = make_iteration(task, cfg, pg, mg, train_step, scfg)
    run_k = jax.jit(make_multi_iteration(iteration, K), donate_argnums=0,
                    out_shardings=(shardings, None))
    run_1 = jax.jit(make_multi_iteration(iteration, 1), donate_argnums=0, out_shardings=(shardings, None))

    ks = int_list(cfg.eval.ks, "eval.ks")
    evaluator = evaluation.TaskEvaluator(task, cfg, built.stop_token_ids, built.pad_id)
    evaluator.set_reference(pg, base_params)
    evals = {}

    def do_eval(step):
        res = evaluator(pg, state.policy)
        evals[step] = res
        writer.write(step, evaluation.headline(res, ks))
        return res

    log(f"evaluating the base policy on {evaluator.prompts.shape[0]} held-out queries x {cfg.eval.num_samples}")
    before = evals.get(0) or do_eval(start)
    writer.write(start, {"time/setup_s": time.time() - t0})

    step = start
    pending = None
    bar = tqdm(total=cfg.train.steps, initial=start, disable=not cfg.log.progress or jax.process_index() != 0,
               desc="RL", unit="it", dynamic_ncols=True, file=sys.stdout)
    last_t = time.time()
    rows = cfg.rollout.prompts_per_step * cfg.rollout.group_size

    def flush(p):
        s, n_it, met, t_start = p
        met = jax.device_get(met)
        dt = (time.time() - t_start) / n_it
        for i in range(n_it):
            m = {k: float(np.asarray(v)[i]) for k, v in met.items()}
            m["time/s_per_it"] = dt
            m["tokens_per_s"] = m["response_len_mean"] * rows / max(dt, 1e-9)
            writer.write(s + i + 1, m)
            if (s + i + 1) % cfg.log.every == 0:
                log(console_line(s + i + 1, m))

    with Preemption() as pre:
        while step < cfg.train.steps:
            n_it = K if step + K <= cfg.train.steps else 1
            fn = run_k if n_it == K else run_1
            t_call = time.time()
            state, met = fn(state, pool)
            if pending is not None:  # fetch metrics one call late: dispatch stays ahead
                flush(pending)
            pending = (step, n_it, met, t_call if pending is None else last_t)
            last_t = time.time()
            step += n_it
            bar.update(n_it)
            if cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.train.steps:
                flush(pending)
                pending = None
                do_eval(step)
            if cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
                ckpt.save(step, state, {"step": step})
            if pre.should_stop():
                log(f"SIGTERM: saving step {step} and exiting")
                if pending is not None:
                    flush(pending)
                ckpt.save(step, state, {"step": step}, force=True)
                ckpt.wait()
                ckpt.close()
                writer.close()
                bar.close()
                sys.exit(0)
    if pending is not None:
        flush(pending)
    bar.close()
    ckpt.save(step, state, {"step": step}, force=True)
    after = do_eval(step)
    ckpt.wait()
    ckpt.close()

    table = _fmt_table(before, after, ks)
    log("\n" + table)
    from rlvr_jax.eval.plots import plot_passk_curves
    png = os.path.join(log_dir, "passk_before_after.png")
    if jax.process_index() == 0:  # one writer on multi-host
        png = plot_passk_curves({"base policy": before, f"after {step} RL steps": after}, png,
                                title=f"{cfg.data.task}: pass@k before / after RL "
                                      f"({cfg.algo.variant or cfg.algo.estimator})")
    summary = {"steps": step, "before": before, "after": after, "wall_s": time.time() - t0,
               "nonfinite_updates": int(state.nonfinite), "final_param_fingerprint": param_fingerprint(state.policy)}
    if jax.process_index() == 0:
        from rlvr_jax.eval.report import to_jsonable
        with open(os.path.join(log_dir, "summary.json"), "w") as f:
            json.dump(to_jsonable(summary), f, indent=1)
    if cfg.checkpoint.export and jax.process_index() == 0:
        from flax import nnx
        from rlvr_jax.models import save_pretrained
        policy = nnx.merge(pg, jax.device_get(state.policy))
        save_pretrained(policy, os.path.join(log_dir, "export"))
        log(f"exported the policy to {os.path.join(log_dir, 'export')}")
    log(f"wrote {png} and {os.path.join(log_dir, 'summary.json')} ({time.time() - t0:.0f} s)")
    writer.close()
    summary["state"] = state
    return summary
