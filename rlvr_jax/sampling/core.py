"""`sample_core`: the pure sampler (prefill once per prompt, broadcast to G rows, decode loop).

Pure in (graphdef, state, arrays, key) and static in `SamplingConfig`, so it runs inside an outer
jit (the trainer's fused sample-verify-update step) as well as in `Sampler`'s own jit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding

from rlvr_jax.models.decode_pack import decode_matmul, pack_for_decode
from rlvr_jax.models.transformer import CACHE_AXES, CACHE_LEN_AXIS, cache_length, init_cache  # noqa: F401
from rlvr_jax.sampling.config import SamplingConfig
from rlvr_jax.sampling.loop import decode, record
from rlvr_jax.sampling.prefill import prefill
from rlvr_jax.sampling.rules import sample_step
from rlvr_jax.sampling.state import DecodeState, Rollout, finalize


def make_constrain(mesh=None, rules=None):
    """A function (array, logical names) -> array with a sharding constraint on `mesh` (identity if None)."""
    if mesh is None:
        return lambda x, names: x
    from rlvr_jax.parallel import SAMPLE_RULES, logical_to_spec
    rules = rules or SAMPLE_RULES

    def constrain(x, names):
        names = tuple(names) + (None,) * (x.ndim - len(names))
        spec = logical_to_spec(names, x.shape, mesh, rules)
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
    return constrain


def decode_models(policy, memory, cfg: SamplingConfig, mesh=None, into=(None, None)):
    """The (policy, memory) the sampler runs: packed for the CPU kernel when `cfg.matmul` resolves to it.

    Call on modules merged inside the jit (they are modified in place). `into`: per model, buffers to
    pack into (`models.decode_pack.packed_shapes`) or None.
    """
    if decode_matmul(cfg.matmul, mesh, (policy, memory)) == "cpu_kernel":
        policy = pack_for_decode(policy, into[0])
        memory = None if memory is None else pack_for_decode(memory, into[1])
    return policy, memory


def cache_len(prompt_len: int, cfg: SamplingConfig) -> int:
    """Slots per row: the padded prompt plus max_new_tokens."""
    return prompt_len + cfg.max_new_tokens


def sample_with_cache(policy, prompts_BxP, prompt_mask_BxP, key, cfg: SamplingConfig, cache, memory=None,
                      memory_cache=None, constrain=lambda x, names: x):
    """The sampler on live NNX modules and given (reusable, donatable) caches of B*G rows.

    Returns (Rollout, final policy cache, final memory cache).
    """
    B, P = prompts_BxP.shape
    G = cfg.num_samples
    prompts_BxP = constrain(prompts_BxP.astype(jnp.int32), ("batch",))
    prompt_mask_BxP = constrain(prompt_mask_BxP.astype(bool), ("batch",))
    z_p, cache = prefill(policy, prompts_BxP, prompt_mask_BxP, cache, G, constrain)
    z_m = None
    if memory is not None:
        z_m, memory_cache = prefill(memory, prompts_BxP, prompt_mask_BxP, memory_cache, G, constrain)

    def rep(x):
        return constrain(jnp.repeat(x, G, axis=0) if G > 1 else x, ("batch",))

    prompts_rep, mask_rep = rep(prompts_BxP), rep(prompt_mask_BxP)
    z_p = rep(z_p)
    z_m = None if z_m is None else rep(z_m)
    rows, N = B * G, cfg.max_new_tokens
    S = cache_length(cache)
    kv_mask_BxS = constrain(jnp.concatenate([mask_rep, jnp.ones((rows, S - P), bool)], axis=1), ("batch",))
    state = DecodeState(
        step=jnp.zeros((), jnp.int32),
        last_token_B=jnp.zeros((rows,), jnp.int32),
        next_position_B=mask_rep.sum(-1).astype(jnp.int32),
        done_B=jnp.zeros((rows,), bool),
        tokens_BxN=constrain(jnp.full((rows, N), cfg.pad_id, jnp.int32), ("batch",)),
        logp_sampler_BxN=constrain(jnp.zeros((rows, N), jnp.float32), ("batch",)),
        logp_policy_BxN=constrain(jnp.zeros((rows, N), jnp.float32), ("batch",)),
        cache=cache, memory_cache=memory_cache)
    # Token 0 comes from the prefill logits; the loop then runs N - 1 decode steps.
    token, lps, lpp = sample_step(jax.random.fold_in(key, 0), z_p, z_m, cfg)
    state = record(state.replace(next_position_B=state.next_position_B - 1), constrain(token, ("batch",)),
                   lps, lpp, cfg)
    state = decode(policy, memory, state, kv_mask_BxS, P, key, cfg, constrain)
    rollout = finalize(prompts_rep, mask_rep, state.tokens_BxN, state.logp_sampler_BxN, state.logp_policy_BxN,
                       cfg.stop_token_ids, cfg.pad_id)
    return rollout, state.cache, state.memory_cache


def sample_core(policy_graphdef, policy_state, prompts_BxP, prompt_mask_BxP, key, cfg: SamplingConfig,
                memory_graphdef=None, memory_state=None, *, mesh=None, rules=None) -> Rollout:
    """Pure sampler: left-padded prompts [B, P] -> Rollout of B * cfg.num_samples rows (prompt-major).

    Usable inside any jit; allocates its own caches. `mesh`/`rules` (optional) add sharding
    constraints: rows over the data axes, cache kv heads per the sampling rules.
    """
    constrain = make_constrain(mesh, rules)
    policy = nnx.merge(policy_graphdef, policy_state)
    memory = None if memory_graphdef is None else nnx.merge(memory_graphdef, memory_state)
    policy, memory = decode_models(policy, memory, cfg, mesh)
    rows, S = prompts_BxP.shape[0] * cfg.num_samples, cache_len(prompts_BxP.shape[1], cfg)

    def new_cache(model):
        return [(constrain(k, _KV), constrain(v, _KV)) for k, v in init_cache(model.cfg, rows, S)]

    mem_cache = None if memory is None else new_cache(memory)
    rollout, _, _ = sample_with_cache(policy, prompts_BxP, prompt_mask_BxP, key, cfg, new_cache(policy), memory,
                                      mem_cache, constrain)
    return rollout


_KV = CACHE_AXES
