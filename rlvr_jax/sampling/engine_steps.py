"""The continuous-batching engine's device side: its state and three pure, jitted steps.

A fixed number S of decode slots, each with its own cache rows, RoPE position, cache write index and
token count. Requests (a prompt and its G samples) live in a small prefix store while their rows wait:

  * `prefill_store`: runs A prompts once and writes their K/V and last logits into store entries;
  * `admit`: copies a stored prompt's K/V into free slots (prefix sharing by copy: a prompt is
    prefilled once for its G rows), samples each row's token 0 from the stored logits;
  * `decode_chunk`: up to K decode steps of every slot in one `lax.while_loop`, leaving early once
    enough slots are free to refill, so the host is visited once per chunk, not per token.

Row r of a call draws token t with key fold_in(fold_in(key, r), t), as the static sampler does, so
both engines sample the same tokens. Shape letters: S slots, C cache length per slot (P + N),
Q store entries, A rows or prompts of one call, R rows of the call (+ 1 scratch row that inactive
slots write to), N max new tokens, P prompt bucket.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rlvr_jax.models.transformer import CACHE_AXES, init_cache, prompt_positions
from rlvr_jax.sampling.config import SamplingConfig
from rlvr_jax.sampling.decode_loop import is_stop
from rlvr_jax.sampling.next_token import row_keys, sample_step, step_keys


@struct.dataclass
class Store:
    """Prefilled prompts waiting for slots: per model the K/V [Q, K, P, D] and last logits [Q, V]."""

    caches: Any  # per model: per layer (k_QxKxPxD, v_QxKxPxD)
    logits: Any  # per model: float32 [Q, V]
    mask_QxP: jax.Array  # bool, real prompt tokens


@struct.dataclass
class Slots:
    """The decode slots and the call's output buffers (R + 1 rows; row R is scratch)."""

    caches: Any  # per model: per layer (k_SxKxCxD, v_SxKxCxD)
    kv_valid_SxC: jax.Array  # bool: prompt padding is False, the rest True (causality hides the future)
    last_token_S: jax.Array  # int32, fed to the models next
    position_S: jax.Array  # int32, RoPE position of last_token_S
    write_S: jax.Array  # int32, cache slot where last_token_S's K/V are written
    count_S: jax.Array  # int32, tokens sampled so far by the slot's row (index of the next one)
    row_S: jax.Array  # int32, the output row served (R when free)
    limit_S: jax.Array  # int32, the row's cap on new tokens
    active_S: jax.Array  # bool
    keys_S: jax.Array  # the rows' keys (`next_token.row_keys`)
    tokens_RxN: jax.Array
    logp_sampler_RxN: jax.Array
    logp_policy_RxN: jax.Array


# the per-slot fields of `Slots` (leading axis S), laid out over the batch axes by the engine and the planner
SLOT_FIELDS = ("kv_valid_SxC", "last_token_S", "position_S", "write_S", "count_S", "row_S", "limit_S", "active_S",
               "keys_S")


def new_store(model_cfgs, entries: int, prompt_len: int, vocab: int) -> Store:
    """An empty store of `entries` prompts of `prompt_len` tokens for each model config."""
    return Store(caches=[init_cache(c, entries, prompt_len) for c in model_cfgs],
                 logits=[jnp.zeros((entries, vocab), jnp.float32) for _ in model_cfgs],
                 mask_QxP=jnp.zeros((entries, prompt_len), bool))


def new_slots(model_cfgs, slots: int, cache_len: int, rows: int, cfg: SamplingConfig, key) -> Slots:
    """Free slots and empty output buffers for a call of `rows` rows."""
    N = cfg.max_new_tokens
    zi = jnp.zeros((slots,), jnp.int32)
    return Slots(caches=[init_cache(c, slots, cache_len) for c in model_cfgs],
                 kv_valid_SxC=jnp.zeros((slots, cache_len), bool), last_token_S=zi, position_S=zi, write_S=zi,
                 count_S=zi, row_S=jnp.full((slots,), rows, jnp.int32), limit_S=zi,
                 active_S=jnp.zeros((slots,), bool),
                 keys_S=row_keys(key, zi),
                 tokens_RxN=jnp.full((rows + 1, N), cfg.pad_id, jnp.int32),
                 logp_sampler_RxN=jnp.zeros((rows + 1, N), jnp.float32),
                 logp_policy_RxN=jnp.zeros((rows + 1, N), jnp.float32))


def prefill_store(models, store: Store, prompts_AxP, mask_AxP, entry_A, constrain=lambda x, n: x) -> Store:
    """Runs A prompts through each model once; writes K/V, last logits and masks at store entries
    `entry_A` (an entry >= Q is dropped: padding of a short call). The prompts and their K/V are laid out over
    the batch axes, as the static sampler's are: unconstrained, every chip prefilled all A prompts."""
    A, P = prompts_AxP.shape
    prompts_AxP, mask_AxP = constrain(prompts_AxP, ("batch",)), constrain(mask_AxP, ("batch",))
    caches, logits = [], []
    for model, store_cache, store_logits in zip(models, store.caches, store.logits):
        small = [(constrain(k, CACHE_AXES), constrain(v, CACHE_AXES)) for k, v in init_cache(model.cfg, A, P)]
        h_AxPxD, small = model(prompts_AxP, prompt_positions(mask_AxP), kv_mask_BxS=mask_AxP, cache=small,
                               cache_index=0, return_hidden=True)
        z_AxV = model.project(h_AxPxD[:, -1:])[:, 0].astype(jnp.float32)
        caches.append([(ks.at[entry_A].set(k.astype(ks.dtype), mode="drop"),
                        vs.at[entry_A].set(v.astype(vs.dtype), mode="drop"))
                       for (k, v), (ks, vs) in zip(small, store_cache)])
        logits.append(store_logits.at[entry_A].set(z_AxV, mode="drop"))
    return Store(caches=caches, logits=logits, mask_QxP=store.mask_QxP.at[entry_A].set(mask_AxP, mode="drop"))


def _put(buf_RxN, row_A, col_A, x_A):
    return buf_RxN.at[row_A, col_A].set(x_A.astype(buf_RxN.dtype), mode="drop")


def admit(slots: Slots, store: Store, slot_A, entry_A, row_A, limit_A, key, cfg: SamplingConfig,
          constrain=lambda x, n: x) -> Slots:
    """Starts rows `row_A` in slots `slot_A` from store entries `entry_A` (a slot >= S is padding).

    Copies the prompt's K/V into slots [0, P) of the slot's cache, samples token 0 from the stored
    last logits with the row's key, and records it; a row whose token 0 ends it is never active.
    """
    S, C = slots.kv_valid_SxC.shape
    R = slots.tokens_RxN.shape[0] - 1
    P = store.mask_QxP.shape[1]
    real_A = slot_A < S
    row_A = jnp.where(real_A, row_A, R)
    Q = store.mask_QxP.shape[0]
    # the store entry each slot takes (Q: none), so the copy is a per-slot select along the slot axis the
    # batch axes shard; a scatter at slot_A would first gather every chip's slots (GiBs per chip at 2k)
    entry_S = constrain(jnp.full((S,), Q, jnp.int32).at[slot_A].set(entry_A, mode="drop"), ("batch",))
    take_S = (entry_S < Q)[:, None, None, None]
    from_S = jnp.minimum(entry_S, Q - 1)

    def fill(c_SxKxCxD, s_QxKxPxD):
        new = jnp.where(take_S, constrain(s_QxKxPxD[from_S], CACHE_AXES).astype(c_SxKxCxD.dtype),
                        c_SxKxCxD[:, :, :P])
        return jax.lax.dynamic_update_slice_in_dim(c_SxKxCxD, new, 0, axis=2)
    caches = [[(fill(kc, ks), fill(vc, vs)) for (kc, vc), (ks, vs) in zip(slot_cache, store_cache)]
              for slot_cache, store_cache in zip(slots.caches, store.caches)]
    mask_AxP = store.mask_QxP[entry_A]
    keys_A = row_keys(key, row_A)
    z_p = store.logits[0][entry_A]
    z_m = store.logits[1][entry_A] if len(store.logits) > 1 else None
    token_A, lps_A, lpp_A = sample_step(step_keys(keys_A, 0), z_p, z_m, cfg)
    zero_A = jnp.zeros_like(row_A)
    put = lambda buf, x: _put(buf, row_A, zero_A, x)  # noqa: E731
    active_A = ~is_stop(token_A, cfg) & (limit_A > 1)
    kv_A = jnp.concatenate([mask_AxP, jnp.ones((mask_AxP.shape[0], C - P), bool)], axis=1)

    def at(x, v):
        return x.at[slot_A].set(v, mode="drop")

    return slots.replace(
        caches=caches, kv_valid_SxC=constrain(at(slots.kv_valid_SxC, kv_A), ("batch",)),
        last_token_S=at(slots.last_token_S, token_A), position_S=at(slots.position_S, mask_AxP.sum(-1)),
        write_S=at(slots.write_S, jnp.full_like(row_A, P)), count_S=at(slots.count_S, jnp.ones_like(row_A)),
        row_S=at(slots.row_S, row_A), limit_S=at(slots.limit_S, limit_A),
        active_S=at(slots.active_S, active_A), keys_S=at(slots.keys_S, keys_A),
        tokens_RxN=put(slots.tokens_RxN, token_A), logp_sampler_RxN=put(slots.logp_sampler_RxN, lps_A),
        logp_policy_RxN=put(slots.logp_policy_RxN, lpp_A))


def decode_step(models, slots: Slots, cfg: SamplingConfig, constrain=lambda x, n: x) -> Slots:
    """One token for every active slot (free slots compute too, write only to the scratch row)."""
    R = slots.tokens_RxN.shape[0] - 1
    C = slots.kv_valid_SxC.shape[1]
    tok_Sx1, pos_Sx1 = slots.last_token_S[:, None], slots.position_S[:, None]
    write_S = jnp.minimum(slots.write_S, C - 1)
    zs, caches = [], []
    for model, cache in zip(models, slots.caches):
        z, cache = model(tok_Sx1, pos_Sx1, kv_mask_BxS=slots.kv_valid_SxC, cache=cache, cache_index=write_S)
        zs.append(z[:, 0])
        caches.append(cache)
    token_S, lps_S, lpp_S = sample_step(step_keys(slots.keys_S, slots.count_S), zs[0],
                                        zs[1] if len(zs) > 1 else None, cfg)
    token_S = constrain(token_S, ("batch",))
    act = slots.active_S
    row_S = jnp.where(act, slots.row_S, R)
    col_S = jnp.minimum(slots.count_S, cfg.max_new_tokens - 1)
    put = lambda buf, x: _put(buf, row_S, col_S, x)  # noqa: E731
    count_S = slots.count_S + act
    ends = is_stop(token_S, cfg) | (count_S >= slots.limit_S) | (slots.write_S + 1 >= C)
    return slots.replace(
        caches=caches, last_token_S=jnp.where(act, token_S, slots.last_token_S),
        position_S=slots.position_S + act, write_S=slots.write_S + act, count_S=count_S,
        active_S=act & ~ends, tokens_RxN=put(slots.tokens_RxN, token_S),
        logp_sampler_RxN=put(slots.logp_sampler_RxN, lps_S), logp_policy_RxN=put(slots.logp_policy_RxN, lpp_S))


def decode_chunk(models, slots: Slots, free_to_leave, steps: int, cfg: SamplingConfig,
                 constrain=lambda x, n: x) -> tuple[Slots, jax.Array]:
    """Up to `steps` decode steps; leaves early when no slot is active or >= `free_to_leave` are free.

    Returns (slots, number of steps run).
    """
    S = slots.active_S.shape[0]

    def cond(c):
        k, s = c
        free = S - jnp.sum(s.active_S)
        return (k < steps) & (free < S) & (free < free_to_leave)

    def body(c):
        k, s = c
        return k + 1, decode_step(models, s, cfg, constrain)

    k, slots = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), slots))
    return slots, k
