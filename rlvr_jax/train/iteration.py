"""One RL iteration for embedded token tasks, entirely on device: draw prompts, sample G responses
(with the DLC memory tilt when enabled), verify with the task's jittable verifier, compute advantages
(+ IAC), then PPO epochs x mini-batches of the train step. `lax.scan` fuses several iterations into
one call, so there is no host round trip between them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rlvr_jax import parallel
from rlvr_jax.algos.advantages import compute_advantages
from rlvr_jax.algos.unlikeliness import sequence_logp
from rlvr_jax.sampling import SamplingConfig, sample_core
from rlvr_jax.train.state import TrainState, policy_params
from rlvr_jax.train.step import batch_from_rollout


@struct.dataclass
class QueryPool:
    """Queries on device: left-padded prompts and the verifier's parameters."""

    prompts_QxP: jax.Array
    mask_QxP: jax.Array
    params_QxK: jax.Array


def query_pool(batch) -> QueryPool:
    """From a task's QueryBatch (host numpy)."""
    p = jnp.asarray(batch.prompts_QxP if hasattr(batch, "prompts_QxP") else batch.prompts_BxP, jnp.int32)
    return QueryPool(prompts_QxP=p, mask_QxP=p != 0, params_QxK=jnp.asarray(batch.params_BxK, jnp.int32))


def overlong_shaping(rewards_B, lengths_B, truncated_B, algo, max_new: int):
    """DAPO overlong handling: 'mask' drops truncated responses from the loss, 'soft' subtracts a
    penalty ramping linearly over the last `overlong_buffer` tokens (full penalty when truncated)."""
    valid_B = jnp.ones(rewards_B.shape, bool)
    if algo.overlong == "mask":
        valid_B = ~truncated_B
    elif algo.overlong == "soft":
        buf = max(1, min(algo.overlong_buffer, max_new))
        start = max_new - buf
        ramp = jnp.clip((lengths_B - start) / buf, 0.0, 1.0) * algo.overlong_penalty
        pen = jnp.where(truncated_B, algo.overlong_penalty, ramp)
        rewards_B = rewards_B - pen
    return rewards_B, valid_B


def make_iteration(task, cfg, policy_graphdef, memory_graphdef, train_step, scfg: SamplingConfig, *, mesh=None,
                   sampling_policy=None):
    """iteration(state, pool) -> (state, metrics) for an embedded token task.

    sampling_policy: state -> (graphdef, params) the rollouts run (`TrainProgram.sampling_policy`: LoRA adapters
    joined with their base or folded in); None: (policy_graphdef, the whole policy params) (`policy_params`: under
    LoRA `state.policy` is the adapters alone).

    mesh: the run's mesh; the sampler then constrains rows, caches and parameters per the sampling rules
    (`mesh.sample_fsdp`: keep the parameters fsdp-sharded while sampling, or gather them), as the text
    loop's `Sampler` and the planner's compiled sampler do. None: no constraints (one device).
    """
    algo = cfg.algo
    rules = None if mesh is None else parallel.rules_for("sample", cfg.mesh.sample_fsdp)
    G, n = cfg.rollout.group_size, cfg.rollout.prompts_per_step
    E, MB = algo.ppo_epochs, algo.mini_batches
    verify_BxN = jax.vmap(task.verify_tokens)
    use_memory = memory_graphdef is not None
    if sampling_policy is None:
        def sampling_policy(state):
            return policy_graphdef, policy_params(state)

    def one_round(state, pool, key):
        k_idx, k_sample = jax.random.split(key)
        idx = jax.random.randint(k_idx, (n,), 0, pool.prompts_QxP.shape[0])
        rollout = sample_core(*sampling_policy(state), pool.prompts_QxP[idx], pool.mask_QxP[idx], k_sample,
                              scfg, memory_graphdef if use_memory else None, state.memory if use_memory else None,
                              mesh=mesh, rules=rules)
        params = jnp.repeat(pool.params_QxK[idx], G, axis=0)
        correct_B = verify_BxN(params, rollout.tokens_BxN, rollout.mask_BxN.astype(bool))
        rewards_B, valid_B = overlong_shaping(correct_B, rollout.lengths_B, rollout.truncated_B, algo,
                                              scfg.max_new_tokens)
        return rollout, rewards_B, valid_B, correct_B

    def dynamic_round(state, pool, key):
        """DAPO dynamic sampling: keep groups with reward variance, draw up to max_extra_rounds more
        rounds to fill the batch; groups still missing are filled with zero-variance ones (advantage 0)."""
        r0 = one_round(state, pool, jax.random.fold_in(key, 0))

        def has_var(rewards_B, valid_B):
            r = rewards_B.reshape(n, G)
            v = valid_B.reshape(n, G)
            hi = jnp.max(jnp.where(v, r, -jnp.inf), -1)
            lo = jnp.min(jnp.where(v, r, jnp.inf), -1)
            return hi > lo

        def take(buf, new, new_keep, filled):
            """Moves the kept groups of `new` into the free slots of `buf` (static shapes)."""
            slot = filled + jnp.cumsum(new_keep) - 1
            ok = new_keep & (slot < n)
            slot = jnp.where(ok, slot, n)  # out of range -> dropped

            def put(b, x):
                bg = b.reshape(n, G, *b.shape[1:])
                xg = x.reshape(n, G, *x.shape[1:])
                bg = bg.at[slot].set(xg, mode="drop")
                return bg.reshape(b.shape)
            return jax.tree.map(put, buf, new), jnp.minimum(filled + jnp.sum(new_keep), n)

        keep0 = has_var(r0[1], r0[2])
        # Fill order: groups with variance first; the buffer starts as round 0 reordered that way.
        order = jnp.argsort(~keep0, stable=True)

        def reorder(x):
            return x.reshape(n, G, *x.shape[1:])[order].reshape(x.shape)
        buf = jax.tree.map(reorder, r0)
        filled = jnp.sum(keep0)

        def cond(c):
            _, filled, i = c
            return (filled < n) & (i <= algo.max_extra_rounds)

        def body(c):
            buf, filled, i = c
            r = one_round(state, pool, jax.random.fold_in(key, i))
            buf, filled = take(buf, r, has_var(r[1], r[2]), filled)
            return buf, filled, i + 1

        buf, filled, rounds = jax.lax.while_loop(cond, body, (buf, filled, jnp.ones((), jnp.int32)))
        stats = dict(frac_reward_zero_std_first_round=1.0 - jnp.mean(keep0.astype(jnp.float32)),
                     dynamic_rounds=rounds.astype(jnp.float32), dynamic_filled=filled.astype(jnp.float32) / n)
        return buf, stats

    def iteration(state: TrainState, pool: QueryPool):
        key = jax.random.wrap_key_data(state.rng)
        key, k_round, k_perm = jax.random.split(key, 3)
        if algo.dynamic_sampling:
            (rollout, rewards_B, valid_B, correct_B), extra = dynamic_round(state, pool, k_round)
        else:
            rollout, rewards_B, valid_B, correct_B = one_round(state, pool, k_round)
            extra = {}
        seq_logp_nxG = sequence_logp(rollout.logp_policy_BxN, rollout.mask_BxN).reshape(n, G)
        adv_nxG, adv_stats = compute_advantages(rewards_B.reshape(n, G), valid_B.reshape(n, G), algo, seq_logp_nxG)
        success_B = rewards_B > algo.success_threshold
        batch = batch_from_rollout(rollout, adv_nxG.reshape(-1), success_B, valid_B)

        # PPO epochs x mini-batches; mini-batches are made of whole groups, reshuffled each epoch.
        def epoch_batches(k):
            perm = jax.random.permutation(k, n)
            rows = (perm[:, None] * G + jnp.arange(G)[None, :]).reshape(MB, -1)
            return rows
        rows_ExMBxR = jax.vmap(epoch_batches)(jax.random.split(k_perm, E)).reshape(E * MB, -1)

        def update(st, rows):
            mb = jax.tree.map(lambda x: x[rows], batch)
            return train_step(st, mb)
        state, train_metrics = jax.lax.scan(update, state, rows_ExMBxR)
        train_metrics = jax.tree.map(jnp.mean, train_metrics)

        lengths = rollout.lengths_B.astype(jnp.float32)
        metrics = dict(train_metrics)
        metrics.update(adv_stats)
        metrics.update(extra)
        metrics.update(
            correct_mean=jnp.mean(correct_B), reward_std=jnp.std(rewards_B),
            response_len_mean=jnp.mean(lengths), response_len_max=jnp.max(lengths),
            response_clip_ratio=jnp.mean(rollout.truncated_B.astype(jnp.float32)),
            sampler_logp_gap=jnp.sum((rollout.logp_policy_BxN - rollout.logp_sampler_BxN) * rollout.mask_BxN)
            / jnp.maximum(jnp.sum(rollout.mask_BxN), 1),
        )
        return state.replace(rng=jax.random.key_data(key)), metrics

    return iteration


def make_multi_iteration(iteration, num: int):
    """`num` iterations fused with lax.scan: (state, pool) -> (state, metrics stacked [num])."""
    def run(state, pool):
        return jax.lax.scan(lambda s, _: iteration(s, pool), state, None, length=num)
    return run
