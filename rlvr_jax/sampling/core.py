"""`sample_core`: the pure sampler (prefill once per prompt, broadcast to G rows, decode loop).

Pure in (graphdef, state, arrays, key) and static in `SamplingConfig`, so it runs inside an outer
jit (the trainer's fused sample-verify-update step) as well as in `Sampler`'s own jit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding

from rlvr_jax.models.transformer import CACHE_AXES, CACHE_LEN_AXIS, cache_length, init_cache  # noqa: F401
from rlvr_jax.sampling.config import SamplingConfig
from rlvr_jax.sampling.decode_kernels import decode_matmul, pack_for_decode
from rlvr_jax.sampling.decode_loop import decode, record
from rlvr_jax.sampling.prefill import prefill
from rlvr_jax.sampling.next_token import row_keys, sample_step, step_keys
from rlvr_jax.sampling.state import DecodeState, Rollout, finalize


class Constrain:
    """The sharding constraints of one sampler call on `mesh` per the sampling `rules` (identity without a mesh).

    `constrain(x, logical_names)` constrains an activation or cache array; `constrain.params(model)` puts a
    module's parameters (merged inside the jit) in the sampling layout. The default rules
    (`parallel.rules_for("sample", mesh.sample_fsdp=False)`) drop the fsdp axis: parameters held in the train
    layout are gathered once per call, not in every decode step; with sample_fsdp they stay fsdp-sharded.
    """

    def __init__(self, mesh=None, rules=None):
        self.mesh, self.rules = mesh, rules
        if mesh is not None and rules is None:
            from rlvr_jax.parallel import SAMPLE_RULES
            self.rules = SAMPLE_RULES

    def __call__(self, x, names):
        if self.mesh is None:
            return x
        from rlvr_jax.parallel import logical_to_spec
        names = tuple(names) + (None,) * (x.ndim - len(names))
        spec = logical_to_spec(names, x.shape, self.mesh, self.rules)
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))

    def params(self, model):
        """A copy of `model` with every parameter constrained to its sampling layout (`model` is untouched)."""
        if self.mesh is None or model is None or self.mesh.size == 1:
            return model
        from rlvr_jax.parallel import state_shardings
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        placed = jax.tree.map(
            lambda v, s: v.replace(jax.lax.with_sharding_constraint(v.get_value(), s.get_value())),
            params, state_shardings(params, self.mesh, self.rules), is_leaf=lambda x: isinstance(x, nnx.Variable))
        return nnx.merge(graphdef, placed, rest)


def make_constrain(mesh=None, rules=None) -> Constrain:
    """The `Constrain` of a sampler call on `mesh` (identity if None) with the sampling `rules`."""
    return Constrain(mesh, rules)


def decode_models(policy, memory, cfg: SamplingConfig, mesh=None, into=(None, None)):
    """The (policy, memory) the sampler runs: packed for the CPU kernel when `cfg.matmul` resolves to it.

    Call on modules merged inside the jit (they are modified in place). `into`: per model, buffers to
    pack into (`decode_kernels.packed_shapes`) or None.
    """
    if decode_matmul(cfg.matmul, mesh, (policy, memory)) == "cpu_kernel":
        policy = pack_for_decode(policy, into[0])
        memory = None if memory is None else pack_for_decode(memory, into[1])
    return policy, memory


def cache_len(prompt_len: int, cfg: SamplingConfig) -> int:
    """Slots per row: the padded prompt plus max_new_tokens."""
    return prompt_len + cfg.max_new_tokens


def sample_with_cache(policy, prompts_BxP, prompt_mask_BxP, key, cfg: SamplingConfig, cache, memory=None,
                      memory_cache=None, constrain=None, limit_B=None):
    """The sampler on live NNX modules and given (reusable, donatable) caches of B*G rows.

    constrain: a `Constrain` (or any (array, names) -> array); its `params` places the models' parameters.
    limit_B: optional per-row caps on new tokens [B*G] (<= max_new_tokens; a per-request max length).
    Returns (Rollout, final policy cache, final memory cache).
    """
    constrain = Constrain() if constrain is None else constrain
    place = getattr(constrain, "params", None)
    if place is not None:
        policy, memory = place(policy), place(memory)
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
        limit_B=constrain(jnp.full((rows,), N, jnp.int32) if limit_B is None
                          else jnp.minimum(jnp.asarray(limit_B, jnp.int32), N), ("batch",)),
        tokens_BxN=constrain(jnp.full((rows, N), cfg.pad_id, jnp.int32), ("batch",)),
        logp_sampler_BxN=constrain(jnp.zeros((rows, N), jnp.float32), ("batch",)),
        logp_policy_BxN=constrain(jnp.zeros((rows, N), jnp.float32), ("batch",)),
        cache=cache, memory_cache=memory_cache)
    # Token 0 comes from the prefill logits; the loop then runs N - 1 decode steps.
    keys_B = row_keys(key, rows)
    token, lps, lpp = sample_step(step_keys(keys_B, 0), z_p, z_m, cfg)
    state = record(state.replace(next_position_B=state.next_position_B - 1), constrain(token, ("batch",)),
                   lps, lpp, cfg)
    state = decode(policy, memory, state, kv_mask_BxS, P, keys_B, cfg, constrain)
    rollout = finalize(prompts_rep, mask_rep, state.tokens_BxN, state.logp_sampler_BxN, state.logp_policy_BxN,
                       cfg.stop_token_ids, cfg.pad_id, state.limit_B)
    return rollout, state.cache, state.memory_cache


def sample_core(policy_graphdef, policy_state, prompts_BxP, prompt_mask_BxP, key, cfg: SamplingConfig,
                memory_graphdef=None, memory_state=None, *, mesh=None, rules=None) -> Rollout:
    """Pure sampler: left-padded prompts [B, P] -> Rollout of B * cfg.num_samples rows (prompt-major).

    Usable inside any jit; allocates its own caches. `mesh`/`rules` (optional) add sharding
    constraints: rows over the data axes, cache kv heads and the parameters per the sampling rules
    (`parallel.rules_for("sample", cfg.mesh.sample_fsdp)`).
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
