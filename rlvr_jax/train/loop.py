"""The one RL loop behind `rlvr-train`: build, resume, iterate, evaluate, checkpoint, report.

What differs between task kinds sits behind a collector (`collect_tokens.TokenCollector`: whole
iterations on device for embedded token tasks; `collect_text.TextCollector`: decoding and the host
verifier pool for text data). Everything else is written once, here: resume (state, data iterator and
earlier evaluations), checkpoint cadence, SIGTERM save, metrics fetched one call late, evaluation at
the start, every `eval.every` steps and at the end, sample completions every `log.every` steps, and
the final save, summary, plots and export.
"""
from __future__ import annotations

import json
import os
import sys
import time

import jax
from tqdm import tqdm

from rlvr_jax import host_alloc, parallel
from rlvr_jax.config import int_list
from rlvr_jax.jsonio import dumps, write_json
from rlvr_jax.train.build import build
from rlvr_jax.train.checkpoint import Preemption, base_record, open_and_resume, param_fingerprint, without_base
from rlvr_jax.train.console import log, print_config, print_samples
from rlvr_jax.train.metrics import MetricsWriter, console_line, purge_records
from rlvr_jax.train.program import updates_per_run  # noqa: F401  (re-exported: the schedule length)
from rlvr_jax.train.state import policy_params


def make_collector(cfg, built, mesh):
    """The collector for this run's data: on-device token iterations or the host-verified text step."""
    if built.task is not None:
        from rlvr_jax.train.collect_tokens import TokenCollector
        return TokenCollector(cfg, built, mesh)
    from rlvr_jax.train.collect_text import TextCollector
    return TextCollector(cfg, built, mesh)


def run(cfg) -> dict:
    """Runs the configured job; returns a summary dict (also written to <log.dir>/summary.json)."""
    parallel.maybe_initialize(cfg)  # multi-process launch (TPU pod, JAX_COORDINATOR_ADDRESS): before any JAX call
    print_config(cfg)
    mesh = parallel.make_mesh(cfg.mesh)
    log("preflight: " + parallel.describe(mesh) + "; " + host_alloc.describe())
    t0 = time.time()
    os.makedirs(cfg.log.dir, exist_ok=True)
    collector = make_collector(cfg, build(cfg), mesh)
    try:
        return drive(cfg, collector, t0)
    finally:
        collector.close()


class EvalLog:
    """Every evaluation of a run in <log_dir>/evals.jsonl (step, results), read back on resume."""

    def __init__(self, log_dir: str, purge_after: int | None):
        self.path = os.path.join(log_dir, "evals.jsonl")
        self.by_step: dict[int, dict] = {}
        if purge_after is None:
            if os.path.exists(self.path) and jax.process_index() == 0:
                os.remove(self.path)  # a fresh run
            return
        purge_records(self.path, purge_after)
        if os.path.exists(self.path):
            with open(self.path) as f:
                for line in f:
                    rec = json.loads(line)
                    self.by_step[int(rec["step"])] = rec["results"]

    def add(self, step: int, results: dict):
        self.by_step[int(step)] = results
        if jax.process_index() == 0:
            with open(self.path, "a") as f:
                f.write(dumps({"step": int(step), "results": results}) + "\n")


def drive(cfg, c, t0: float | None = None) -> dict:
    """The loop over a collector `c` (see the module doc); -> summary dict (with the final `state`)."""
    t0 = time.time() if t0 is None else t0
    log_dir = cfg.log.dir
    ks = int_list(cfg.eval.ks, "eval.ks")
    state = c.initial_state()
    base_fp = param_fingerprint(policy_params(state))
    lora_base = base_record(state)  # None without LoRA
    frozen_fp = None if state.base is None else param_fingerprint(state.base)
    ckpt, start, state, extra = open_and_resume(cfg, log_dir, state, c.program.state_shardings, log)
    if extra.get("data_state") is not None:
        c.restore_data(extra["data_state"])
    # records logged after the checkpoint we resume from (a killed run) are dropped
    writer = MetricsWriter(log_dir, cfg.log, config_dict=cfg.to_dict(), purge_after=start if start else None)
    evals = EvalLog(log_dir, start if start else None)
    if start:
        purge_records(os.path.join(log_dir, "samples.jsonl"), start)
    can_eval = bool(c.eval_sets)

    def do_eval(step):
        t = time.time()
        res = c.evaluate(state)
        evals.add(step, res)
        writer.write(step, {**c.headline(res), "time/eval_s": time.time() - t})
        return res

    if can_eval and 0 not in evals.by_step:
        log(f"evaluating the {'base' if not start else 'resumed'} policy on {', '.join(c.eval_sets)} "
            f"x {cfg.eval.num_samples} samples")
        do_eval(start)
    writer.write(start, {"time/setup_s": time.time() - t0})

    step, pending, last_t = start, None, time.time()
    bar = tqdm(total=cfg.train.steps, initial=start, disable=not cfg.log.progress or jax.process_index() != 0,
               desc="RL", unit="it", dynamic_ncols=True, file=sys.stdout)

    def flush(p):
        s, n, fetch, t_start = p
        dt = (time.time() - t_start) / n
        for i, m in enumerate(fetch()):
            m = dict(m)
            m["time/s_per_it"] = dt
            m["tokens_per_s"] = m.pop("tokens", 0.0) / max(dt, 1e-9)
            writer.write(s + i + 1, m)
            if (s + i + 1) % cfg.log.every == 0:
                log(console_line(s + i + 1, m))

    def save(force=False):
        return ckpt.save(step, without_base(state), {"step": step, "data_state": c.data_state(), "lora_base": lora_base},
                         force=force)

    with Preemption() as pre:
        while step < cfg.train.steps:
            n = c.steps_per_call if step + c.steps_per_call <= cfg.train.steps else 1
            t_call = time.time()
            state, fetch = c.collect_and_update(state, step, n)
            if c.synchronous:  # the step's work is done (the host verified it): its metrics are ready
                flush((step, n, fetch, t_call))
            else:
                if pending is not None:  # fetch metrics one call late: dispatch stays ahead
                    flush(pending)
                pending = (step, n, fetch, t_call if pending is None else last_t)
            last_t = time.time()
            step += n
            bar.update(n)
            if cfg.log.samples and step % cfg.log.every == 0:
                samples = c.samples()
                writer.write_records("samples", step, samples, text_tag="samples")
                if cfg.log.print_samples:
                    print_samples(step, samples)
            if can_eval and cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.train.steps:
                if pending is not None:
                    flush(pending)
                    pending = None
                do_eval(step)
                last_t = time.time()
            if cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
                save()
            if pre.should_stop():
                log(f"SIGTERM: saving step {step} and exiting")
                if pending is not None:
                    flush(pending)
                save(force=True)
                ckpt.wait()
                ckpt.close()
                writer.close()
                bar.close()
                sys.exit(0)  # run() closes the collector (the verifier pool) on the way out
    if pending is not None:
        flush(pending)
    bar.close()
    save(force=True)
    after = do_eval(step) if can_eval else None
    ckpt.wait()
    ckpt.close()
    before = evals.by_step.get(0)
    summary = {"steps": step, "before": before, "after": after, "wall_s": time.time() - t0,
               "base_param_fingerprint": base_fp, "final_param_fingerprint": param_fingerprint(policy_params(state)),
               **c.summary_extra(state)}
    if frozen_fp is not None:  # LoRA: the frozen base before and after (bit-identical unless something is wrong)
        summary.update(lora_base_fingerprint=frozen_fp, lora_base_final_fingerprint=param_fingerprint(state.base))
    if jax.process_index() == 0:
        paths = report(cfg, c, evals.by_step, ks, step)
        write_json(os.path.join(log_dir, "summary.json"), summary)
        if before is not None and after is not None:
            log("\n" + c.table(before, after))
        if cfg.checkpoint.export:
            from rlvr_jax.train.export import export_policy
            for line in export_policy(c.program, state, os.path.join(log_dir, "export")):
                log(line)
        log(f"wrote {', '.join(paths)} and {os.path.join(log_dir, 'summary.json')} ({time.time() - t0:.0f} s)")
    writer.close()
    summary["state"] = state
    return summary


def report(cfg, c, evals: dict[int, dict], ks, last_step: int) -> list[str]:
    """The before/after pass@k plot and the pass@k-vs-step plot of every eval set; -> paths written."""
    if not evals or 0 not in evals or last_step not in evals:
        return []
    from rlvr_jax.eval.plots import plot_metric_grid, plot_passk_curves
    before, after = c.by_set(evals[0]), c.by_set(evals[last_step])
    curves = {}
    for name in after:
        tag = "" if len(after) == 1 else f"{name}: "
        curves[f"{tag}base policy"], curves[f"{tag}after {last_step} RL steps"] = before[name], after[name]
    out = [plot_passk_curves(curves, os.path.join(cfg.log.dir, "passk_before_after.png"),
                             title=f"pass@k before / after RL: {c.title}")]
    steps = sorted(evals)
    if len(steps) > 1:
        panels = {}
        for name in after:
            panel = {}
            for k in ks:
                pts = [(s, c.by_set(evals[s])[name]["pass@k"].get(str(k))) for s in steps]
                pts = [(s, p) for s, p in pts if p is not None]
                if pts:
                    panel[f"pass@{k}"] = ([s for s, _ in pts], [p["mean"] for _, p in pts],
                                          [p["lo"] for _, p in pts], [p["hi"] for _, p in pts])
            panels[name] = panel
        out.append(plot_metric_grid(panels, os.path.join(cfg.log.dir, "passk_over_steps.png")))
    return [p for p in out if p]
