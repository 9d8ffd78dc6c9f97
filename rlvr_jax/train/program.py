"""The jitted train step, wired once: optimisers, a train state born sharded, batch shardings, jit.

`train_program(cfg, policy, memory, mesh, updates)` builds the `TrainProgram` every user of the train
step shares: the RL loops (the token loop fuses the raw `step` into its on-device iteration, the text
loop calls `jitted`), the benchmarks, and `rlvr-compile`, which lowers the very same `jitted` from
shapes (`abstract_state`, `abstract_batch`) without allocating anything.

The state is built from shapes first (`jax.eval_shape`), its shardings derived from the abstract
state, and then made by a function jitted with those `out_shardings`: optimiser moments and the
reference copy are born sharded instead of materialising on one device. The parameters are the ones
of the (already initialised) modules passed in, bit for bit.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
from flax import nnx
from jax.sharding import Mesh

from rlvr_jax import parallel
from rlvr_jax.config import int_list
from rlvr_jax.train.replay import replay_spec
from rlvr_jax.models import lora
from rlvr_jax.train.state import (TrainState, make_optimizers, params_of, policy_params, state_maker,
                                  train_state_shardings)
from rlvr_jax.train.step import batch_spec, make_train_step


def with_shardings(tree, shardings):
    """ShapeDtypeStructs of `tree` (arrays or ShapeDtypeStructs) carrying `shardings`."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def updates_per_run(cfg) -> int:
    """Optimiser steps of a whole run (the learning-rate schedule's length)."""
    return cfg.train.steps * cfg.algo.ppo_epochs * cfg.algo.mini_batches


def batch_rows(cfg) -> int:
    """Rows of one optimiser step's batch: a mini-batch of prompts_per_step * group_size rollouts."""
    return cfg.rollout.prompts_per_step * cfg.rollout.group_size // cfg.algo.mini_batches


@dataclasses.dataclass(frozen=True, eq=False)
class TrainProgram:
    """Everything about the train step that does not change during a run.

    step:    the pure `train_step(state, batch) -> (state, metrics)`, for fusion into a bigger jit.
    jitted:  `jax.jit(step, in_shardings=(state_shardings, batch_shardings),
             out_shardings=(state_shardings, None), donate_argnums=0)`: what the text loop runs and
             what `rlvr-compile` lowers (`jitted.lower(abstract_state, abstract_batch(P, N)).compile()`).
    abstract_state: the TrainState as ShapeDtypeStructs carrying `state_shardings`.
    batch_shardings: per batch key, for batches of `rows` rows (leading axis over the batch axes,
             replicated where they do not divide it).
    """

    policy_graphdef: Any
    memory_graphdef: Any
    policy_tx: Any
    memory_tx: Any
    mesh: Mesh
    rules: dict
    rows: int
    seed: int
    keep_reference: bool
    abstract_state: TrainState
    state_shardings: TrainState
    batch_shardings: dict
    step: Callable
    jitted: Callable
    _make_state: Callable = dataclasses.field(repr=False)
    use_lora: bool = False  # the policy carries LoRA adapters: `state.policy` is them, `state.base` the frozen rest
    lora_sampling: str = "on_the_fly"  # model.lora_sampling
    _merge: Callable | None = dataclasses.field(default=None, repr=False)  # jitted lora.merged_params
    _plain_graphdef: Any = None  # the policy's graphdef without adapters (merged sampling)

    def policy_params(self, state: TrainState):
        """The policy's whole params State (adapters joined with the frozen base under LoRA)."""
        return policy_params(state)

    def sampling_policy(self, state: TrainState):
        """(graphdef, params) the sampler and evaluators run: the policy as trained, or under
        model.lora_sampling='merged' the plain graph with the adapters folded into the kernels (one small
        jitted product per projection, so decode pays no adapter matmuls)."""
        if self.use_lora and self.lora_sampling == "merged":
            return self._plain_graphdef, self._merge(policy_params(state))
        return self.policy_graphdef, policy_params(state)

    def abstract_sampling_policy(self):
        """(graphdef, params as ShapeDtypeStructs in the train layout) of `sampling_policy(abstract_state)`:
        what the sampler runs, from shapes (`rlvr-compile` compiles its sampler for them). Under LoRA: the
        base joined with the adapters, or with model.lora_sampling='merged' the plain graph's merged kernels."""
        box = {}

        def params(state):
            box["graphdef"], p = self.sampling_policy(state)
            return p
        shapes = jax.eval_shape(params, self.abstract_state)
        return box["graphdef"], with_shardings(shapes, parallel.state_shardings(shapes, self.mesh, self.rules))

    def jit(self, *, donate: bool = True):
        """The step jitted with this program's shardings (`jitted` is `jit()`; donate=False keeps the
        input state alive, for benchmarks that time the same state repeatedly)."""
        return jax.jit(self.step, in_shardings=(self.state_shardings, self.batch_shardings),
                       out_shardings=(self.state_shardings, None), donate_argnums=0 if donate else ())

    def init_state(self, policy: nnx.Module, memory: nnx.Module | None = None) -> TrainState:
        """The initial TrainState of these (initialised) modules, placed per `state_shardings`.

        The parameters are copied onto their shardings, then one jitted function with `out_shardings`
        makes the rest (optimiser states, reference copy, RNG, counters) directly in place. Values are
        those of the modules (and of `seed`): the same as building the state eagerly and placing it.
        """
        sh = self.state_shardings
        p_sh = sh.policy if sh.base is None else lora.join(sh.base, sh.policy)
        pp = jax.device_put(params_of(policy)[1], p_sh)
        mp = jax.device_put(params_of(memory)[1], sh.memory) if memory is not None else None
        return self._make_state(pp, mp)

    def abstract_batch(self, prompt_len: int, response_len: int, rows: int | None = None) -> dict:
        """ShapeDtypeStructs (with `batch_shardings`) of one optimiser step's batch."""
        spec = batch_spec(self.rows if rows is None else rows, prompt_len, response_len)
        shardings = self.batch_shardings if rows is None else parallel.batch_shardings(spec, self.mesh, self.rules)
        return with_shardings(spec, shardings)

    def place_batch(self, batch: dict) -> dict:
        """The batch on `batch_shardings` (a no-op for arrays already placed so)."""
        return jax.device_put(batch, self.batch_shardings)

    def update(self, state: TrainState, batch: dict):
        """One optimiser step: `jitted(state, place_batch(batch))` (the state is donated)."""
        return self.jitted(state, self.place_batch(batch))


def train_program(cfg, policy: nnx.Module, memory: nnx.Module | None, mesh: Mesh, updates: int, *,
                  rows: int | None = None, rules: dict | None = None, prompt_len: int = 0) -> TrainProgram:
    """The TrainProgram of `cfg` for these modules (live or abstract, e.g. `models.abstract(...)`) on `mesh`.

    updates: optimiser steps of the whole run (the learning-rate schedule's length).
    rows: batch rows of one step (default `batch_rows(cfg)`); rules: logical-axis rules (train rules).
    prompt_len: prompt width of the memory's replay when memory.window > 1 (a token task's `prompt_len`;
    0: the largest prompt bucket, which holds every text prompt).
    Nothing is allocated: the state is `jax.eval_shape`d; `init_state` makes a real one.
    """
    rules = parallel.TRAIN_RULES if rules is None else rules
    rows = batch_rows(cfg) if rows is None else rows
    seed, keep_reference = cfg.train.seed, cfg.algo.kl_coef > 0
    ptx, mtx = make_optimizers(cfg, updates)
    pg, pp = params_of(policy)
    mg, mp = params_of(memory) if memory is not None else (None, None)
    replay = None
    if memory is not None and cfg.memory.window > 1:
        P = prompt_len or max(int_list(cfg.rollout.prompt_buckets, "rollout.prompt_buckets"))
        replay = replay_spec(cfg.memory.window, rows, P, cfg.rollout.max_new_tokens)
    use_lora = lora.has_lora(policy)
    make = state_maker(ptx, mtx, seed=seed, keep_reference=keep_reference, replay=replay, use_lora=use_lora,
                       entropy_coef=cfg.algo.entropy_coef if cfg.algo.entropy_target > 0 else None)
    shapes = jax.eval_shape(make, pp, mp)
    st_sh = train_state_shardings(shapes, mesh, rules)
    b_sh = parallel.batch_shardings(batch_spec(rows, 1, 1), mesh, rules)
    step = make_train_step(pg, mg, cfg, ptx, mtx, parallel.batch_shards(mesh, rules))
    program = TrainProgram(
        policy_graphdef=pg, memory_graphdef=mg, policy_tx=ptx, memory_tx=mtx, mesh=mesh, rules=rules, rows=rows,
        seed=seed, keep_reference=keep_reference, abstract_state=with_shardings(shapes, st_sh), state_shardings=st_sh,
        batch_shardings=b_sh, step=step, jitted=None, _make_state=jax.jit(make, out_shardings=st_sh),
        use_lora=use_lora, lora_sampling=cfg.model.lora_sampling,
        _merge=jax.jit(lambda p: lora.merged_params(pg, p)) if use_lora else None,
        _plain_graphdef=lora.base_graphdef(pg, pp) if use_lora else None)
    return dataclasses.replace(program, jitted=program.jit())  # the one wiring: see TrainProgram.jit
