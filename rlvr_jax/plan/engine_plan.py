"""The continuous engine in `rlvr-compile`: its slots for a config, its bytes per chip, its steps from shapes.

With the engine the sampling phase holds S decode slots of P + N and a store of Q prompts of P, not the
static sampler's B * G rows of P + N, so the plan counts (and compiles) the engine's own state and steps.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from rlvr_jax.config import ConfigError
from rlvr_jax.models.transformer import CACHE_AXES
from rlvr_jax.parallel import logical_to_spec
from rlvr_jax.plan.accounting import prompt_len
from rlvr_jax.plan.report import step_working


@dataclasses.dataclass(frozen=True)
class EngineShape:
    """The engine's sizes for one call of the config's rows (as `ContinuousEngine.__call__` sets them)."""

    slots: int  # S, over the mesh
    store: int  # Q prompts
    rows: int  # R = prompts_per_step * G
    prompt_len: int  # P, the largest bucket
    cache_len: int  # C = P + max_new_tokens
    chunk: int  # decode steps per dispatch

    @property
    def waves(self) -> int:
        """Worst-case rounds of decoding (every row running to max_new_tokens): ceil(R / S)."""
        return math.ceil(self.rows / self.slots)


def sampling_config(cfg, pc):
    """The run's SamplingConfig with the model's stop tokens (what the planner's sampler programs use)."""
    from rlvr_jax.sampling import SamplingConfig
    eos = pc.eos_token_id
    stop = tuple(eos) if isinstance(eos, (tuple, list)) else ((eos,) if eos is not None else (0,))
    return SamplingConfig.from_config(cfg, stop_token_ids=stop, pad_id=0)


def engine_shape(cfg, model_cfgs, mesh, rules) -> EngineShape | None:
    """The engine's sizes when the config's rollouts run it for prompts_per_step prompts of the largest
    bucket (rollout.engine='continuous', or 'auto' with slots below the rows); None: the static sampler."""
    from rlvr_jax.sampling.rollouts import Rollouts
    r = cfg.rollout
    if r.engine == "static":
        return None
    n, G, Pl = r.prompts_per_step, r.group_size, prompt_len(cfg)
    roll = Rollouts(r.engine, r.slots, r.kv_budget_mb, r.decode_chunk, mesh, rules)
    try:
        S = roll.slots_for(list(model_cfgs), Pl, sampling_config(cfg, model_cfgs[0]))
    except ValueError as e:
        raise ConfigError(f"config.{e}") from None
    if roll.choose(n * G, S) != "continuous":
        return None
    S = min(S, n * G)
    from rlvr_jax.sampling.engine import batch_shards, store_entries
    Q = store_entries(S, G, n, batch_shards(mesh, rules))
    return EngineShape(S, Q, n * G, Pl, Pl + r.max_new_tokens, r.decode_chunk)




def abstract_state(cfg, model_cfgs, eng: EngineShape, mesh, rules):
    """The engine's (slots, store) for `eng` as ShapeDtypeStructs in its layout (`place_state`)."""
    from rlvr_jax.sampling import engine_steps as es
    scfg = sampling_config(cfg, model_cfgs[0])
    slots, store = jax.eval_shape(lambda: (
        es.new_slots(model_cfgs, eng.slots, eng.cache_len, eng.rows, scfg, jax.random.key(0)),
        es.new_store(model_cfgs, eng.store, eng.prompt_len, model_cfgs[0].vocab_size)))
    return place_state(slots, store, mesh, rules)


def place_state(slots, store, mesh, rules):
    """Abstract (slots, store) laid out as the engine places them: slot and store caches per CACHE_AXES,
    per-slot fields and store entries over the batch axes, the output rows replicated (the engine leaves
    their layout to the compiler, which replicates them)."""
    from rlvr_jax.sampling import engine_steps as es

    def place(x, names=None):
        spec = P() if names is None else logical_to_spec(names + (None,) * (x.ndim - len(names)), x.shape, mesh, rules)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, spec))
    slots = slots.replace(caches=jax.tree.map(lambda x: place(x, CACHE_AXES), slots.caches),
                          **{f: place(getattr(slots, f), ("batch",)) for f in es.SLOT_FIELDS},
                          tokens_RxN=place(slots.tokens_RxN), logp_sampler_RxN=place(slots.logp_sampler_RxN),
                          logp_policy_RxN=place(slots.logp_policy_RxN))
    store = store.replace(caches=jax.tree.map(lambda x: place(x, CACHE_AXES), store.caches),
                          logits=[place(z, ("batch",)) for z in store.logits],
                          mask_QxP=place(store.mask_QxP, ("batch",)))
    return slots, store


def engine_bytes(cfg, model_cfgs, eng: EngineShape, mesh, rules) -> dict:
    """Per-chip bytes the engine holds through a call: KV of the slots and of the store, and everything
    resident (KV plus the slots' bookkeeping and output rows)."""
    slots, store = abstract_state(cfg, model_cfgs, eng, mesh, rules)

    def shard(tree):  # per-chip bytes; PRNG keys (extended dtypes) count their itemsize too
        return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))
    return {"slots_kv": shard(slots.caches), "store_kv": shard(store.caches),
            "kv": shard(slots.caches) + shard(store.caches), "resident": shard(slots) + shard(store)}


def engine_programs(cfg, program, model_cfgs, eng: EngineShape, rules) -> dict:
    """name -> thunk lowering one of the engine's own jitted steps from abstract inputs: `decode_chunk` of
    all S slots, `admit` of S rows (the first refill) and `prefill_store` of Q prompts. Parameters come in
    the train layout, as the loop hands them over (each step places them in the sampling layout); the policy's
    are `TrainProgram.sampling_policy`'s (under LoRA the base with adapters, or merged kernels)."""
    from rlvr_jax.sampling.engine import ContinuousEngine
    mesh, state = program.mesh, program.abstract_state
    pg, pstate = program.abstract_sampling_policy()  # what the loops sample with (LoRA: joined or merged)
    graphdefs = (pg,) + ((program.memory_graphdef,) if len(model_cfgs) > 1 else ())
    states = [pstate] + ([state.memory] if len(model_cfgs) > 1 else [])  # carry the train shardings
    scfg = sampling_config(cfg, model_cfgs[0])
    engine = ContinuousEngine(eng.slots, eng.chunk, mesh, rules)
    slots, store = abstract_state(cfg, model_cfgs, eng, mesh, rules)
    rep = NamedSharding(mesh, P())

    def arr(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=rep)
    key = jax.ShapeDtypeStruct((), jax.eval_shape(lambda: jax.random.key(0)).dtype, sharding=rep)
    S, Q, Pl = eng.slots, eng.store, eng.prompt_len
    return {
        "decode_chunk": lambda: engine._decode.lower(states, slots, arr((), jnp.int32), cfg=scfg,
                                                     graphdefs=graphdefs, steps=eng.chunk),
        "admit": lambda: engine._admit.lower(slots, store, *(arr((S,), jnp.int32) for _ in range(4)), key, cfg=scfg),
        "prefill_store": lambda: engine._prefill.lower(states, store, arr((Q, Pl), jnp.int32), arr((Q, Pl), jnp.bool_),
                                                       arr((Q,), jnp.int32), cfg=scfg, graphdefs=graphdefs),
    }


def working_bytes(smem: dict) -> int:
    """The most any engine step needs beyond the resident state: its temporaries plus outputs not aliased
    to donated inputs (a failed donation shows up here as a second copy of the slots)."""
    return max([step_working(m) for m in smem.values() if isinstance(m, dict)] or [0])
