"""Rollout engines side by side on a long-tailed workload: rlvr_jax's continuous-batching engine vs its
static sampler vs tunix's sampler.

SmolLM2-135M shapes, the same random weights for all (one numpy draw saved as an HF folder), float32,
temperature 1. Workload (`engine_workload.py`): R requests x G samples, each row's length drawn from a
log-normal with mean limit / 6 (sigma 1), capped at the limit, realised as a forced stop at that length,
so every engine produces the same useful tokens. Reported: useful (non-padding) tokens per second, the
ratios, and the KV cache bytes each engine holds at peak. Workers run in their own processes (tunix in its
own venv), interleaved (engine, static, tunix, repeat) after a warm-up round; the table holds medians.

    .venv/bin/python benchmarks/engine_bench.py            # writes benchmarks/results/engine.{md,json}

Not a test: run by hand on an otherwise idle machine (about 20 minutes on a 2-core CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from sampler_bench import Worker, ensure_venv, loadavg  # noqa: E402


def log(msg):
    print(f"[engine_bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class JobWorker(Worker):
    """A worker answering {"variant": v} with the whole workload's {"seconds", "tokens", "kv_bytes", ...}."""

    def job(self, variant: str) -> dict:
        self.proc.stdin.write(json.dumps({"variant": variant}) + "\n")
        self.proc.stdin.flush()
        return self._read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--limit", type=int, default=128)
    ap.add_argument("--slots", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--peers", default="tunix")
    ap.add_argument("--no-xla", action="store_true", help="skip the engine-with-XLA-matmuls variant")
    ap.add_argument("--venvs", default=os.path.join(HERE, ".venvs"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "engine"))
    a = ap.parse_args()
    from sampler_weights import SMOLLM2_135M, write_random_hf
    os.makedirs(a.venvs, exist_ok=True)
    logdir = os.path.join(a.venvs, "logs")
    os.makedirs(logdir, exist_ok=True)
    weights = write_random_hf(os.path.join(a.venvs, "weights-smollm2-135m-random"))
    size = ["--requests", str(a.requests), "--group", str(a.group), "--limit", str(a.limit)]
    load_start = loadavg()
    log(f"load average at start: {load_start}")
    workers = {"rlvr_jax": JobWorker("rlvr_jax", [sys.executable, os.path.join(HERE, "engine_worker_ours.py"),
                                                  weights, *size, "--slots", str(a.slots), "--chunk", str(a.chunk)],
                                     logdir)}
    if "tunix" in a.peers.split(","):
        workers["tunix"] = JobWorker("tunix", [ensure_venv(a.venvs, "tunix"),
                                               os.path.join(HERE, "engine_worker_tunix.py"), weights, *size], logdir)
    info = {n: w.info for n, w in workers.items()}
    jobs = [("continuous", "rlvr_jax", "continuous"), ("static", "rlvr_jax", "static")]
    jobs += [] if a.no_xla else [("continuous_xla", "rlvr_jax", "continuous_xla")]
    jobs += [("tunix", "tunix", "tunix")] if "tunix" in workers else []
    first, runs = {}, {}
    for name, w, v in jobs:
        first[name] = workers[w].job(v)
        log(f"warm-up {name}: {first[name]['seconds']:.1f}s")
    for rep in range(a.reps):
        for name, w, v in jobs:
            r = workers[w].job(v)
            runs.setdefault(name, []).append(r)
            log(f"rep {rep} {name}: {r['seconds']:.1f}s = {r['tokens'] / r['seconds']:.1f} useful tok/s")
    for w in workers.values():
        w.close()
    rows = {}
    for name in runs:
        med = statistics.median(r["seconds"] for r in runs[name])
        last = runs[name][-1]
        rows[name] = {"median_s": med, "runs_s": [r["seconds"] for r in runs[name]], "first_call_s":
                      first[name]["seconds"], "useful_tokens": last["tokens"], "useful_tok_s": last["tokens"] / med,
                      "kv_bytes": last["kv_bytes"], **{k: last[k] for k in ("decode_steps", "dispatches",
                                                                            "occupancy", "slots") if k in last}}
    res = {"shape": SMOLLM2_135M, "requests": a.requests, "group": a.group, "limit": a.limit, "slots": a.slots,
           "decode_chunk": a.chunk, "reps": a.reps, "useful_tokens": info["rlvr_jax"]["useful_tokens"],
           "max_length": info["rlvr_jax"]["max_length"], "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "loadavg_start": load_start, "loadavg_end": loadavg(), "workers": info, "rows": rows,
           "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:])}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    with open(a.out + ".md", "w") as f:
        f.write(markdown(res))
    print(markdown(res))


def markdown(res) -> str:
    rows = res["rows"]
    base = rows["static"]["useful_tok_s"]
    lines = [f"Rollout engines, SmolLM2-135M shapes (random weights), float32, temperature 1; {res['requests']} "
             f"requests x G = {res['group']} = {res['requests'] * res['group']} rows, prompts of 8-24 tokens "
             f"(bucket 32), response lengths log-normal with mean limit / 6 = {res['limit'] / 6:.1f} (sigma 1) "
             f"capped at {res['limit']}: {res['useful_tokens']} useful tokens, longest row {res['max_length']}. "
             f"Median of {res['reps']} interleaved runs after a warm-up ({res['machine']}; load average "
             f"{res['loadavg_start']} at start, {res['loadavg_end']} at end).", "",
             "| engine | useful tok/s | vs static | seconds | KV bytes held | decode steps | slot occupancy |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        label = {"continuous": f"rlvr_jax continuous ({res['slots']} slots, {res['decode_chunk']} steps/dispatch)",
                 "continuous_xla": "rlvr_jax continuous, XLA matmuls instead of the CPU kernels",
                 "static": "rlvr_jax static", "tunix": "tunix Sampler"}[name]
        lines.append(f"| {label} | {r['useful_tok_s']:.1f} | {r['useful_tok_s'] / base:.2f}x | {r['median_s']:.1f} | "
                     f"{r['kv_bytes'] / 2 ** 20:.0f} MiB | {r.get('decode_steps', '-')} | "
                     f"{r['occupancy']:.2f} |" if "occupancy" in r else
                     f"| {label} | {r['useful_tok_s']:.1f} | {r['useful_tok_s'] / base:.2f}x | {r['median_s']:.1f} | "
                     f"{r['kv_bytes'] / 2 ** 20:.0f} MiB | {res['max_length']} | - |")
    c = rows["continuous"]["useful_tok_s"]
    lines += ["", f"useful tok/s vs static: {c / base:.2f}x"]
    if "tunix" in rows:
        lines.append(f"useful tok/s vs tunix: {c / rows['tunix']['useful_tok_s']:.2f}x")
    lines += ["", "First call (compile + run) seconds: " + ", ".join(f"{n} {r['first_call_s']:.1f}"
                                                                     for n, r in rows.items()),
              "", "The static sampler and tunix decode every row in lock-step until the longest row ends (a forced "
              "stop cannot end a row's compute early); the engine refills a finished row's slot with a waiting row. "
              "KV bytes: the static sampler and tunix hold every row's cache of prompt + max length; the engine its "
              "slots' and its prompt store's.", "", f"Command: `{res['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
