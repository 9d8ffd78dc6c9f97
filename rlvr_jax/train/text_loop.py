"""The RL loop for text tasks (reasoning-gym, JSONL/Parquet/HF/tfds math data) with a real tokenizer.

Per step: draw prompts (checkpointable grain iterator), sample G responses on device, decode,
verify in the host process pool (time-limited, statuses counted), advantages (+ IAC) on device,
then PPO epochs x mini-batches of the shared train step. DAPO dynamic sampling draws extra
rounds of prompts until the batch holds prompts_per_step groups with reward variance (or the
round cap is hit).
"""
from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from rlvr_jax import parallel
from rlvr_jax.algos.advantages import compute_advantages
from rlvr_jax.algos.groups import zero_std_groups
from rlvr_jax.data.sources import make_source
from rlvr_jax.rewards.factory import make_reward_fn
from rlvr_jax.sampling import SamplingConfig, Sampler
from rlvr_jax.train.checkpoint import Preemption, open_and_resume
from rlvr_jax.train.iteration import overlong_shaping
from rlvr_jax.train.metrics import MetricsWriter, Timer, console_line
from rlvr_jax.train.state import init_state, make_optimizers, train_state_shardings
from rlvr_jax.train.step import batch_from_rollout, make_train_step


def _encode(tok, rows, chat: bool):
    ids = [list(tok(r["prompt"], add_special_tokens=not chat)["input_ids"]) for r in rows]
    T = max(len(x) for x in ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    toks = np.full((len(ids), T), pad, np.int32)
    mask = np.zeros((len(ids), T), bool)
    for i, x in enumerate(ids):
        toks[i, T - len(x):] = x
        mask[i, T - len(x):] = True
    return toks, mask


def _decode(tok, rollout) -> list[str]:
    toks = np.asarray(rollout.tokens_BxN)
    mask = np.asarray(rollout.mask_BxN).astype(bool)
    return [tok.decode(t[m].tolist(), skip_special_tokens=True) for t, m in zip(toks, mask)]


def run_text(cfg, built, mesh) -> dict:
    from rlvr_jax.train.loop import log, updates_per_run
    tok = built.tokenizer
    if tok is None:
        raise ValueError("config.model.source: text tasks need a tokenizer (use model.source=hf or gguf)")
    G, n = cfg.rollout.group_size, cfg.rollout.prompts_per_step
    chat = cfg.data.template == "chat"
    log_dir = cfg.log.dir
    os.makedirs(log_dir, exist_ok=True)
    source = make_source(cfg, tokenizer=tok, plain_template=cfg.data.plain_template,
                         shard_index=jax.process_index(), shard_count=jax.process_count())
    it = source.iterator()

    ptx, mtx = make_optimizers(cfg, updates_per_run(cfg))
    state, pg, mg = init_state(built.policy, built.memory, ptx, mtx, seed=cfg.train.seed,
                               keep_reference=cfg.algo.kl_coef > 0)
    shardings = train_state_shardings(state, mesh, parallel.TRAIN_RULES)
    state = jax.device_put(state, shardings)
    ckpt, step, state, extra = open_and_resume(cfg, log_dir, state, shardings, log)
    if extra.get("data_state") is not None:
        it.set_state(extra["data_state"])
    writer = MetricsWriter(log_dir, cfg.log, config_dict=cfg.to_dict(), purge_after=step if step else None)

    scfg = SamplingConfig.from_config(cfg, stop_token_ids=built.stop_token_ids, pad_id=built.pad_id)
    sampler = Sampler(mesh, parallel.rules_for("sample", cfg.mesh.sample_fsdp))
    train_step = jax.jit(make_train_step(pg, mg, cfg, ptx, mtx, parallel.batch_shards(mesh, parallel.TRAIN_RULES)),
                         donate_argnums=0, out_shardings=(shardings, None))
    adv_fn = jax.jit(lambda r, v: compute_advantages(r, v, cfg.algo))
    reward_fn = make_reward_fn(cfg)
    E, MB = cfg.algo.ppo_epochs, cfg.algo.mini_batches
    bar = tqdm(total=cfg.train.steps, initial=step, disable=not cfg.log.progress or jax.process_index() != 0,
               desc="RL", unit="it", dynamic_ncols=True, file=sys.stdout)
    t_run = time.time()
    try:
        with Preemption() as pre:
            while step < cfg.train.steps:
                timer = Timer()
                key = jax.random.fold_in(jax.random.key(cfg.train.seed), step)
                kept, metrics, rounds = [], {}, 0
                while len(kept) < n and rounds <= (cfg.algo.max_extra_rounds if cfg.algo.dynamic_sampling else 0):
                    rows = [next(it) for _ in range(n)]
                    prompts, mask = _encode(tok, rows, chat)
                    with timer("sample"):
                        policy = nnx.merge(pg, state.policy)
                        memory = nnx.merge(mg, state.memory) if mg is not None else None
                        rollout = sampler(policy, prompts, mask, jax.random.fold_in(key, rounds), scfg, memory)
                        texts = _decode(tok, rollout)
                    with timer("verify"):
                        verdicts = reward_fn(texts, [r["reference"] for r in rows for _ in range(G)])
                    rewards = jnp.asarray(reward_fn.rewards(verdicts))
                    rewards, valid = overlong_shaping(rewards, rollout.lengths_B, rollout.truncated_B, cfg.algo,
                                                      scfg.max_new_tokens)
                    if rounds == 0:
                        metrics.update(reward_fn.metrics(verdicts))
                        metrics["correct_mean"] = float(np.mean([v.reward for v in verdicts]))
                        metrics["response_len_mean"] = float(jnp.mean(rollout.lengths_B))
                        metrics["response_len_max"] = float(jnp.max(rollout.lengths_B))
                        metrics["response_clip_ratio"] = float(jnp.mean(rollout.truncated_B))
                    zero = np.asarray(zero_std_groups(rewards.reshape(n, G), valid.reshape(n, G)))
                    keep_groups = range(n) if not cfg.algo.dynamic_sampling else np.flatnonzero(~zero)
                    for g in keep_groups:
                        if len(kept) < n:
                            kept.append((rollout, rewards, valid, g))
                    rounds += 1
                if len(kept) < n:  # cap reached: fill with zero-variance groups (advantage 0)
                    kept += [kept[-1] if kept else (rollout, rewards, valid, 0)] * (n - len(kept))
                batch_parts = []
                for ro, rw, vd, g in kept:
                    sl = slice(g * G, (g + 1) * G)
                    batch_parts.append((jax.tree.map(lambda x: x[sl], ro), rw[sl], vd[sl]))
                P = max(p[0].prompt_tokens_BxP.shape[1] for p in batch_parts)

                def lpad(x, P=P):
                    return jnp.pad(x, ((0, 0), (P - x.shape[1], 0)))
                ro = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[p[0].replace(
                    prompt_tokens_BxP=lpad(p[0].prompt_tokens_BxP), prompt_mask_BxP=lpad(p[0].prompt_mask_BxP))
                    for p in batch_parts])
                rewards = jnp.concatenate([p[1] for p in batch_parts])
                valid = jnp.concatenate([p[2] for p in batch_parts])
                adv, adv_stats = adv_fn(rewards.reshape(n, G), valid.reshape(n, G))
                batch = batch_from_rollout(ro, adv.reshape(-1), rewards > cfg.algo.success_threshold, valid)
                with timer("update"):
                    for e in range(E):
                        perm = np.random.default_rng([cfg.train.seed, step, e]).permutation(n)
                        for mb_groups in np.array_split(perm, MB):
                            idx = (mb_groups[:, None] * G + np.arange(G)[None]).reshape(-1)
                            state, tm = train_step(state, jax.tree.map(lambda x: x[idx], batch))
                metrics.update({k: float(v) for k, v in adv_stats.items()})
                metrics.update({k: float(v) for k, v in tm.items()})
                metrics.update(timer.metrics())
                metrics["dynamic_rounds"] = rounds
                metrics.update(source.metrics())
                step += 1
                writer.write(step, metrics)
                if step % cfg.log.every == 0:
                    tqdm.write(console_line(step, metrics))
                bar.update(1)
                extra = {"step": step, "data_state": it.get_state()}
                if cfg.checkpoint.every and step % cfg.checkpoint.every == 0:
                    ckpt.save(step, state, extra)
                if pre.should_stop():
                    ckpt.save(step, state, extra, force=True)
                    ckpt.wait()
                    log(f"SIGTERM: saved step {step}, exiting")
                    sys.exit(0)
        ckpt.save(step, state, {"step": step, "data_state": it.get_state()}, force=True)
        ckpt.wait()
    finally:
        reward_fn.close()
        writer.close()
        bar.close()
    if cfg.checkpoint.export and jax.process_index() == 0:
        from rlvr_jax.models import save_pretrained
        save_pretrained(nnx.merge(pg, jax.device_get(state.policy)), os.path.join(log_dir, "export"))
    log(f"done: {step} steps in {time.time() - t_run:.0f} s")
    return {"steps": step, "state": state}
