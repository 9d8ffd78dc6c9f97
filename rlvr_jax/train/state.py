"""TrainState: everything one RL step reads and writes, as one pytree (policy, memory, optimisers, RNG)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from rlvr_jax.config import ConfigError
from rlvr_jax.models import lora
from rlvr_jax.train.replay import empty_replay


@struct.dataclass
class TrainState:
    """Policy/memory parameters and optimiser states; `ref` is None unless algo.kl_coef > 0 (and never with LoRA:
    the frozen base is the reference); `replay` is None unless memory.window > 1 (train/replay.py).

    With LoRA (model.lora_rank > 0) `policy` holds the adapters only (what gets gradients and optimiser moments)
    and `base` the frozen base weights, held once; `policy_params(state)` is the whole policy."""

    step: jax.Array
    policy: Any  # nnx.State of the policy's Params
    policy_opt: Any
    memory: Any  # nnx.State or None
    memory_opt: Any
    ref: Any  # nnx.State or None
    rng: jax.Array  # raw uint32 key data (checkpoint friendly)
    nonfinite: jax.Array  # updates skipped for a non-finite loss or gradient
    entropy_coef: Any = None  # float32 scalar: the adaptive entropy coefficient (None unless algo.entropy_target > 0)
    replay: Any = None  # dict of the memory's replayed batches (train/replay.py) or None
    base: Any = None  # nnx.State of the frozen base Params under LoRA adapters, or None (full fine-tuning)


def policy_params(state: TrainState):
    """The policy's whole params State: `state.policy`, joined with the frozen base under LoRA (no copies)."""
    return state.policy if state.base is None else lora.join(state.base, state.policy)


def trainable_split(params, use_lora: bool):
    """(trainable, frozen base or None) of a policy's params State."""
    return lora.split(params) if use_lora else (params, None)


def _schedule(optim, steps: int):
    lr = optim.learning_rate
    if optim.schedule == "constant":
        main = optax.constant_schedule(lr)
    elif optim.schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, max(1, steps - optim.warmup_steps))
    elif optim.schedule == "linear":
        main = optax.linear_schedule(lr, 0.0, max(1, steps - optim.warmup_steps))
    else:
        raise ConfigError(f"config.optim.schedule: unknown {optim.schedule!r}")
    if optim.warmup_steps:
        warm = optax.linear_schedule(0.0, lr, optim.warmup_steps)
        return optax.join_schedules([warm, main], [optim.warmup_steps])
    return main


def make_optimizers(cfg, updates_per_run: int):
    """(policy, memory) optax AdamW transforms with the configured schedule.

    Gradient clipping (`optim.grad_clip`) is not chained here: the train step scales the gradients by
    `clip_scale` of the global norm it computes anyway, which saves a second pass over every gradient.
    """
    o = cfg.optim
    policy_tx = optax.adamw(_schedule(o, updates_per_run), b1=o.b1, b2=o.b2, weight_decay=o.weight_decay)
    memory_tx = optax.adamw(cfg.memory.learning_rate, b1=o.b1, b2=o.b2)
    return policy_tx, memory_tx


def clip_scale(grad_norm, max_norm: float):
    """The factor optax.clip_by_global_norm applies: 1 below max_norm, max_norm / norm above (0: no clip)."""
    if max_norm <= 0:
        return jnp.ones((), jnp.float32)
    return jnp.where(grad_norm < max_norm, 1.0, max_norm / grad_norm).astype(jnp.float32)


def params_of(model: nnx.Module):
    """(graphdef, params State) of a model: the static structure and its trainable arrays."""
    graphdef, params = nnx.split(model, nnx.Param)
    return graphdef, params


def state_maker(policy_tx, memory_tx, *, seed: int, keep_reference: bool, entropy_coef: float | None = None,
                replay=None, use_lora: bool = False):
    """The pure `make(policy_params, memory_params or None) -> TrainState` (eager, jitted or eval_shaped).

    use_lora: the policy carries adapters; they become `policy` and the rest `base` (no reference copy: the
    base with zero adapters is the KL reference).

    entropy_coef: the adaptive entropy coefficient's start (algo.entropy_coef) when algo.entropy_target > 0.
    replay: `train.replay.replay_spec(...)` of the memory's replay (None: no replay, memory.window = 1)."""
    def make(pp, mp) -> TrainState:
        pp, base = trainable_split(pp, use_lora)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            policy=pp,
            policy_opt=policy_tx.init(pp),
            memory=mp,
            memory_opt=memory_tx.init(mp) if mp is not None else None,
            ref=jax.tree.map(jnp.copy, pp) if keep_reference and not use_lora else None,
            base=base,
            rng=jax.random.key_data(jax.random.key(seed)),
            nonfinite=jnp.zeros((), jnp.int32),
            entropy_coef=None if entropy_coef is None else jnp.asarray(entropy_coef, jnp.float32),
            replay=empty_replay(replay),
        )
    return make


def init_state(policy: nnx.Module, memory: nnx.Module | None, policy_tx, memory_tx, *, seed: int,
               keep_reference: bool, entropy_coef: float | None = None, replay=None,
               use_lora: bool = False) -> tuple[TrainState, Any, Any]:
    """(state, policy_graphdef, memory_graphdef) from live models, built eagerly on their devices
    (`train.program.TrainProgram.init_state` builds the same state on its shardings)."""
    pg, pp = params_of(policy)
    mg, mp = params_of(memory) if memory is not None else (None, None)
    make = state_maker(policy_tx, memory_tx, seed=seed, keep_reference=keep_reference, entropy_coef=entropy_coef,
                       replay=replay, use_lora=use_lora)
    return make(pp, mp), pg, mg


def merge(graphdef, params):
    """The live model from a graphdef and a params State (inside or outside jit)."""
    return nnx.merge(graphdef, params)


def train_state_shardings(state: TrainState, mesh, rules):
    """NamedShardings for a TrainState: params per the logical rules, optimiser moments like their params,
    everything else (step, counters, RNG, optimiser counts, the memory's replay) replicated."""
    from jax.sharding import NamedSharding, PartitionSpec

    from rlvr_jax.parallel.sharding import state_shardings

    replicated = NamedSharding(mesh, PartitionSpec())

    def like_params(params, tree):
        if params is None or tree is None:
            return jax.tree.map(lambda _: replicated, tree)
        pshard = state_shardings(params, mesh, rules)
        pdef = jax.tree.structure(params)

        def sub(node):
            if isinstance(node, nnx.State) and jax.tree.structure(node) == pdef:
                return pshard
            return jax.tree.map(lambda _: replicated, node)
        return jax.tree.map(sub, tree, is_leaf=lambda n: isinstance(n, nnx.State))

    return TrainState(
        step=replicated,
        policy=state_shardings(state.policy, mesh, rules),
        policy_opt=like_params(state.policy, state.policy_opt),
        memory=None if state.memory is None else state_shardings(state.memory, mesh, rules),
        memory_opt=like_params(state.memory, state.memory_opt),
        ref=None if state.ref is None else state_shardings(state.ref, mesh, rules),
        rng=replicated,
        nonfinite=replicated,
        entropy_coef=None if state.entropy_coef is None else replicated,
        replay=jax.tree.map(lambda _: replicated, state.replay),
        base=None if state.base is None else state_shardings(state.base, mesh, rules),
    )
