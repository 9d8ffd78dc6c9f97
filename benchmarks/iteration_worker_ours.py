"""Iteration-benchmark worker: one rlvr_jax GRPO iteration as the text collector (`train/collect_text.py`)
runs it.

Tokenise the step's prompts, `Sampler` (G per prompt; matched: 64 new tokens, no stop tokens; real: up to
160, ended by the tokenizer's EOS), decode to text, verify (matched: `iteration_common.reward` on the host;
real: the run's math verifier in its process pool, `rewards.factory.make_reward_fn`), `compute_advantages`,
`batch_from_rollout`, one jitted update of the `TrainProgram` (state donated).
Runs in the main venv: python benchmarks/iteration_worker_ours.py WEIGHTS_FOLDER [SETTING_JSON] (the bench
starts it with `host_alloc.environ_with_tunables()`, the environment `rlvr-train` gives itself).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import iteration_common as C  # noqa: E402
from rlvr_jax import host_alloc, parallel  # noqa: E402
from rlvr_jax.algos.advantages import compute_advantages  # noqa: E402
from rlvr_jax.config import base_config, validate  # noqa: E402
from rlvr_jax.models import from_pretrained  # noqa: E402
from rlvr_jax.models.tokenizer import load_tokenizer  # noqa: E402
from rlvr_jax.sampling import SamplingConfig, Sampler  # noqa: E402
from rlvr_jax.models.tokenizer import decode_responses, tokenize_prompts  # noqa: E402
from rlvr_jax.rewards.factory import make_reward_fn  # noqa: E402
from rlvr_jax.train.program import train_program  # noqa: E402
from rlvr_jax.train.step import batch_from_rollout  # noqa: E402


def bench_config(setting=None):
    """The rlvr_jax config of the benchmark: GRPO, no KL (no reference), one optimiser step per iteration."""
    s = setting or C.MATCHED
    cfg = base_config()
    cfg.rollout.group_size, cfg.rollout.prompts_per_step = s["G"], s["prompts_per_step"]
    cfg.rollout.max_new_tokens, cfg.rollout.temperature = s["new_tokens"], s["temperature"]
    cfg.rollout.prompt_buckets = str(s["max_prompt_tokens"])
    cfg.optim.learning_rate, cfg.optim.grad_clip = s["learning_rate"], s["grad_clip"]
    cfg.algo.kl_coef, cfg.algo.ppo_epochs, cfg.algo.mini_batches = 0.0, 1, 1
    cfg.model.source, cfg.data.source = "hf", "jsonl"
    cfg.model.path, cfg.data.path = "unused", "unused"
    # matched: the worker scores with iteration_common.reward, as every peer does; real: math-verify in the pool
    cfg.reward.verifier = "math" if s["verifier"] == "math" else "exact"
    return validate(cfg)


def main(folder, setting_path=None):
    setting = C.load_setting(setting_path)
    cfg = bench_config(setting)
    tok = load_tokenizer(folder)
    policy = from_pretrained(folder, dtype="float32")
    mesh = parallel.make_mesh(cfg.mesh)
    program = train_program(cfg, policy, None, mesh, 1000)  # the text loop's jitted step, state born sharded
    state = program.init_state(policy)
    pg = program.policy_graphdef
    del policy
    stop = (tok.eos_token_id,) if setting["stop_at_eos"] else ()
    scfg = SamplingConfig.from_config(cfg, stop_token_ids=stop, pad_id=tok.pad_token_id)
    pool = make_reward_fn(cfg) if setting["verifier"] == "math" else None
    sampler = Sampler(mesh, parallel.rules_for("sample", cfg.mesh.sample_fsdp))
    train_step = program.update
    adv_fn = jax.jit(lambda r, v: compute_advantages(r, v, cfg.algo))
    G, n = setting["G"], setting["prompts_per_step"]
    gate = C.Gate()
    gate.ready(framework="rlvr_jax", jax=jax.__version__, devices=str(jax.devices()),
               host_tunables=host_alloc.active(), setting=setting["name"])
    while (step := gate.wait()) is not None:
        ph = {}
        t = time.perf_counter()
        rows = C.step_rows(step, setting)
        prompts, mask = tokenize_prompts(tok, [r["prompt"] for r in rows], chat=setting["chat"])
        key = jax.random.fold_in(jax.random.key(0), step)
        rollout = sampler(nnx.merge(pg, state.policy), prompts, mask, key, scfg)
        toks = np.asarray(rollout.tokens_BxN)  # waits for the sampler
        ph["sample"] = time.perf_counter() - t
        t = time.perf_counter()
        m = np.asarray(rollout.mask_BxN).astype(bool)
        texts = decode_responses(tok, toks, m)
        refs = [r["answer"] for r in rows for _ in range(G)]
        if pool is None:
            rewards = jnp.asarray([C.reward(s, ref) for s, ref in zip(texts, refs)], jnp.float32)
        else:
            rewards = jnp.asarray([v.reward for v in pool(texts, refs)], jnp.float32)
        ph["decode_verify"] = time.perf_counter() - t
        t = time.perf_counter()
        valid = jnp.ones_like(rewards, bool)
        adv, _ = adv_fn(rewards.reshape(n, G), valid.reshape(n, G))
        batch = batch_from_rollout(rollout, adv.reshape(-1), rewards > cfg.algo.success_threshold, valid)
        state, metrics = train_step(state, batch)
        loss = float(metrics["loss"])  # the loop fetches metrics every step
        ph["update"] = time.perf_counter() - t
        gate.extra = {"phases": ph, "reward_mean": float(jnp.mean(rewards)), "loss": loss,
                      "completion_tokens": int(m.sum()), "rows": int(m.shape[0])}
        gate.done()
    if pool is not None:
        pool.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
