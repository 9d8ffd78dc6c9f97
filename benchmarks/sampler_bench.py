"""Sampler speed, side by side: rlvr_jax vs transformers' PyTorch `generate` vs tunix's sampler.

Same SmolLM2-135M shapes and random weights (one numpy draw saved as an HF safetensors folder,
loaded by each framework), same token-id prompts left-padded to 32, float32, sampling at T = 1
with no top-k/top-p, exactly 64 new tokens per row (EOS ignored). Each framework runs in its own
worker process (peers in their own venvs under benchmarks/.venvs/, created here); runs are
interleaved (ours, torch, tunix, repeat), warm-up (compile) is timed separately, and the table
holds medians. Also: the DLC overhead, ours with a 1/4-width memory network vs without.

    .venv/bin/python benchmarks/sampler_bench.py            # writes benchmarks/results/sampler.{md,json}
    .venv/bin/python benchmarks/sampler_bench.py --sizes 1,8 --reps 1 --peers torch   # quick look

Not a test: run by hand (it takes tens of minutes on a 2-core CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEER_PACKAGES = {
    "torch": ["torch==2.13.0", "transformers", "safetensors", "numpy"],
    "tunix": ["google-tunix", "jax==0.10.2", "safetensors", "numpy"],
}


def log(msg):
    print(f"[sampler_bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_venv(venvs: str, name: str) -> str:
    """benchmarks/.venvs/<name> with the peer's packages; created on first use. Returns its python."""
    path = os.path.join(venvs, name)
    py = os.path.join(path, "bin", "python")
    stamp = os.path.join(path, ".installed")
    if os.path.exists(stamp):
        return py
    log(f"creating venv {path} ({' '.join(PEER_PACKAGES[name])})")
    base = sys.executable if not hasattr(sys, "base_prefix") else os.path.join(sys.base_prefix, "bin", "python3")
    subprocess.run([base, "-m", "venv", path], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", *PEER_PACKAGES[name]], check=True)
    with open(stamp, "w") as f:
        f.write(" ".join(PEER_PACKAGES[name]))
    return py


class Worker:
    """A framework's worker process speaking the JSON-lines protocol of sampler_worker_common."""

    def __init__(self, name, argv, logdir, env=None):
        self.name = name
        self.err = open(os.path.join(logdir, f"{name}.log"), "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                     text=True, cwd=ROOT, env=env)
        t0 = time.perf_counter()
        self.info = self._read()
        self.info["load_seconds"] = time.perf_counter() - t0

    def _read(self):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {self.name} died; see {self.err.name}")
            if line.startswith("{"):
                return json.loads(line)

    def run(self, batch, variant="plain") -> float:
        self.proc.stdin.write(json.dumps({"batch": batch, "variant": variant}) + "\n")
        self.proc.stdin.flush()
        return self._read()["seconds"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.err.close()


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,8,32,64")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peers", default="torch,tunix")
    ap.add_argument("--dlc-sizes", default="32,64")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--venvs", default=os.path.join(HERE, ".venvs"))
    ap.add_argument("--no-floor", action="store_true", help="skip the matmul-floor worker")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "sampler"))
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    dlc_sizes = [int(x) for x in args.dlc_sizes.split(",") if x and int(x) in sizes]
    peers = [p for p in args.peers.split(",") if p]
    os.makedirs(args.venvs, exist_ok=True)
    logdir = os.path.join(args.venvs, "logs")
    os.makedirs(logdir, exist_ok=True)

    sys.path.insert(0, HERE)
    from sampler_weights import SMOLLM2_135M, write_random_hf
    weights = write_random_hf(os.path.join(args.venvs, "weights-smollm2-135m-random"))
    pys = {p: ensure_venv(args.venvs, p) for p in peers}

    load_start = loadavg()
    log(f"load average at start: {load_start}")
    workers = {"rlvr_jax": Worker("rlvr_jax", [sys.executable, os.path.join(HERE, "sampler_worker_ours.py"), weights],
                                  logdir)}
    if "torch" in peers:
        # PASSIVE: torch's OpenMP workers sleep instead of spinning at barriers; on a shared CPU the
        # default spinning made `generate` 5-10x slower than on an idle machine.
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        workers["transformers"] = Worker("transformers", [pys["torch"], os.path.join(HERE, "sampler_worker_torch.py"),
                                                          weights, str(args.threads)], logdir, env=env)
    if "tunix" in peers:
        workers["tunix"] = Worker("tunix", [pys["tunix"], os.path.join(HERE, "sampler_worker_tunix.py"), weights],
                                  logdir)
    if not args.no_floor:
        workers[FLOOR] = Worker(FLOOR, [sys.executable, os.path.join(HERE, "sampler_worker_floor.py")], logdir)
    for w in workers.values():
        log(f"{w.name} ready in {w.info['load_seconds']:.1f}s: {w.info}")

    jobs = [(name, "plain") for name in workers] + [("rlvr_jax", "dlc")]
    first, times = {}, {}
    for b in sizes:  # warm-up: compile + first run, reported separately
        for name, variant in jobs:
            if variant == "dlc" and b not in dlc_sizes:
                continue
            first[f"{name}/{variant}/{b}"] = workers[name].run(b, variant)
            log(f"warm-up {name}/{variant} batch {b}: {first[f'{name}/{variant}/{b}']:.1f}s")
    for rep in range(args.reps):  # interleaved timed runs
        for b in sizes:
            for name, variant in jobs:
                if variant == "dlc" and b not in dlc_sizes:
                    continue
                t = workers[name].run(b, variant)
                times.setdefault(f"{name}/{variant}/{b}", []).append(t)
                log(f"rep {rep} {name}/{variant} batch {b}: {t:.2f}s = {b * 64 / t:.1f} tok/s")
    for w in workers.values():
        w.close()
    load_end = loadavg()

    from sampler_worker_common import NEW_TOKENS
    rows = []
    for b in sizes:
        row = {"batch": b}
        for name in workers:
            med = statistics.median(times[f"{name}/plain/{b}"])
            row[name] = {"tok_s": b * NEW_TOKENS / med, "median_s": med, "runs_s": times[f"{name}/plain/{b}"],
                         "first_call_s": first[f"{name}/plain/{b}"],
                         "compile_s_est": first[f"{name}/plain/{b}"] - med}
        peer_best = max((row[n]["tok_s"] for n in workers if n not in ("rlvr_jax", FLOOR)), default=None)
        row["ratio_vs_best_peer"] = row["rlvr_jax"]["tok_s"] / peer_best if peer_best else None
        if FLOOR in workers and peer_best:
            row["floor_vs_best_peer"] = row[FLOOR]["tok_s"] / peer_best
        if b in dlc_sizes:
            med = statistics.median(times[f"rlvr_jax/dlc/{b}"])
            row["dlc"] = {"tok_s": b * NEW_TOKENS / med, "median_s": med, "runs_s": times[f"rlvr_jax/dlc/{b}"],
                          "overhead": med / row["rlvr_jax"]["median_s"]}
        rows.append(row)
    result = {"shape": SMOLLM2_135M, "new_tokens": NEW_TOKENS, "prompt_bucket": 32, "dtype": "float32",
              "sampling": "temperature 1, no top-k/top-p, EOS ignored", "reps": args.reps,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "loadavg_start": load_start,
              "loadavg_end": load_end, "workers": {n: w.info for n, w in workers.items()}, "rows": rows,
              "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:])}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(markdown(result, list(workers)))
    print(markdown(result, list(workers)))


FLOOR = "matmul_floor"


def markdown(res, names) -> str:
    floor = FLOOR in names
    head = ("| batch | " + " | ".join(f"{n} tok/s" for n in names) + " | ours / best peer | DLC overhead |"
            + (" floor / best peer |" if floor else ""))
    lines = [f"Sampler throughput, SmolLM2-135M shapes (random weights), {res['dtype']}, {res['new_tokens']} new "
             f"tokens, prompts left-padded to {res['prompt_bucket']}, {res['sampling']}; median of {res['reps']} "
             f"interleaved runs after warm-up ({res['machine']}; load average {res['loadavg_start']} at start, "
             f"{res['loadavg_end']} at end: the CPU was shared).", "",
             head, "|" + "---|" * (len(names) + 3 + floor)]
    for r in res["rows"]:
        cells = [f"{r[n]['tok_s']:.1f}" for n in names]
        ratio = f"{r['ratio_vs_best_peer']:.2f}x" if r.get("ratio_vs_best_peer") else "-"
        dlc = f"{r['dlc']['overhead']:.2f}x" if "dlc" in r else "-"
        fl = (f" {r['floor_vs_best_peer']:.2f}x |" if r.get("floor_vs_best_peer") else " - |") if floor else ""
        lines.append(f"| {r['batch']} | " + " | ".join(cells) + f" | {ratio} | {dlc} |" + fl)
    lines += ["", "First call (compile + run) seconds: " + "; ".join(
        f"batch {r['batch']}: " + ", ".join(f"{n} {r[n]['first_call_s']:.1f}" for n in names) for r in res["rows"]),
        "", f"DLC: memory network of width ratio 0.25 "
        f"({res['workers']['rlvr_jax'].get('memory_params', '?')} params), mu = 0.5, both models in one decode step.",
        "", f"Command: `{res['command']}`", ""]
    if floor:
        lines[-2:-2] = [f"{FLOOR}: only the matrix products of the same call (prefill + 63 decode steps, all 30 "
                        "layers' projections and the LM head) with numpy's BLAS, timed in the same interleaved rounds "
                        "(`benchmarks/sampler_worker_floor.py`): the floor of any program built on this CPU's BLAS. "
                        "rlvr_jax's sampler runs its own packed AVX2 kernels on a CPU (`rlvr_jax/kernels`), faster "
                        "than this BLAS at decode's row counts (`benchmarks/cpu_floor.py`).",
                        ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
