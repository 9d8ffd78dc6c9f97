"""`ContinuousEngine`: continuous-batching rollouts behind the static sampler's `Rollout` contract.

The host schedules, the device computes (`engine_steps`): requests' prompts are prefilled into a
small store, their G rows are admitted into free decode slots as earlier rows finish, and each
dispatch runs up to `decode_chunk` decode steps of every slot. KV memory is the slots' (S rows of
P + N) plus the store's (Q prompts of P), not the static sampler's B * G rows of P + N. Groups whose
rows have all finished are handed to `on_group` while the rest decode, so host verification overlaps.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rlvr_jax.models.transformer import CACHE_AXES
from rlvr_jax.sampling import engine_steps as es
from rlvr_jax.sampling.config import SamplingConfig
from rlvr_jax.sampling.core import decode_models, make_constrain
from rlvr_jax.sampling.sampler import pad_to_bucket, row_limits
from rlvr_jax.sampling.state import Rollout, finalize


def kv_bytes(model_cfg, rows: int, length: int) -> int:
    """Bytes of a KV cache of `rows` rows of `length` slots (K and V, every layer)."""
    item = jnp.dtype(model_cfg.jnp_dtype).itemsize
    return 2 * model_cfg.num_layers * rows * model_cfg.num_kv_heads * length * model_cfg.head_dim_ * item


def batch_shards(mesh, rules) -> int:
    """How many ways the rows (slots, store entries) are split over the mesh (1 without one)."""
    if mesh is None:
        return 1
    from rlvr_jax.parallel import SAMPLE_RULES
    from rlvr_jax.parallel import batch_shards as shards
    return shards(mesh, rules or SAMPLE_RULES)


def store_entries(slots: int, group_size: int, prompts: int, shards: int = 1) -> int:
    """Q: prompts the store holds, ceil(S / G) + 1 (so a refill never waits for a prefill) but no more than
    the call has, rounded up to a multiple of the row shards (the store is split over them like the slots)."""
    q = min(prompts, math.ceil(slots / group_size) + 1)
    return math.ceil(q / shards) * shards


def slots_for_budget(model_cfgs, budget_bytes: int, cache_len: int, group_size: int, prompt_len: int,
                     shards: int = 1) -> int:
    """The most slots per device whose caches and share of the store fit in `budget_bytes` per device."""
    per_slot = sum(kv_bytes(c, 1, cache_len) for c in model_cfgs)
    per_prompt = sum(kv_bytes(c, 1, prompt_len) for c in model_cfgs)
    s = int(budget_bytes // (per_slot + per_prompt / group_size))
    while s > 0 and (s * per_slot + store_entries(s * shards, group_size, 1 << 30, shards) // shards * per_prompt
                     > budget_bytes):
        s -= 1
    return s


class ContinuousEngine:
    """Continuous-batching group sampler with `slots` decode slots (see the module doc).

    `stats` describes the last call: decode steps and dispatches, slot occupancy (tokens decoded for rows
    over slot-steps; token 0 comes from the prefill), KV bytes held, and the decode step at which each group
    finished.
    """

    def __init__(self, slots: int, decode_chunk: int = 16, mesh=None, rules=None):
        if slots < 1 or decode_chunk < 1:
            raise ValueError(f"ContinuousEngine: slots ({slots}) and decode_chunk ({decode_chunk}) must be >= 1")
        self.slots, self.decode_chunk = int(slots), int(decode_chunk)
        self.mesh, self.rules = mesh, rules
        self.num_compiles = 0
        self.stats: dict = {}
        self._packed_graphdefs: dict = {}
        st = ("cfg", "graphdefs")
        self._pack = jax.jit(self._pack_impl, static_argnames=st)
        self._new = jax.jit(self._new_impl, static_argnames=("cfg", "model_cfgs", "slots", "cache_len", "rows",
                                                             "entries", "prompt_len"))
        self._prefill = jax.jit(self._prefill_impl, static_argnames=st, donate_argnames=("store",))
        self._admit = jax.jit(self._admit_impl, static_argnames=("cfg",), donate_argnames=("slots",))
        self._decode = jax.jit(self._decode_impl, static_argnames=st + ("steps",), donate_argnames=("slots",))

    # -- jitted pieces --
    def _models(self, graphdefs, states):
        place = make_constrain(self.mesh, self.rules).params
        return [place(nnx.merge(g, s)) for g, s in zip(graphdefs, states)]

    def _pack_impl(self, states, *, cfg, graphdefs):
        models = [nnx.merge(g, s) for g, s in zip(graphdefs, states)]
        packed = decode_models(models[0], models[1] if len(models) > 1 else None, cfg, self.mesh)
        return [nnx.state(m) for m in packed if m is not None]

    def _new_impl(self, key, *, cfg, model_cfgs, slots, cache_len, rows, entries, prompt_len):
        self.num_compiles += 1
        c = make_constrain(self.mesh, self.rules)
        s = es.new_slots(model_cfgs, slots, cache_len, rows, cfg, key)
        s = s.replace(caches=[[(c(k, CACHE_AXES), c(v, CACHE_AXES)) for k, v in m] for m in s.caches],
                      **{f: c(getattr(s, f), ("batch",)) for f in es.SLOT_FIELDS})
        st = es.new_store(model_cfgs, entries, prompt_len, model_cfgs[0].vocab_size)
        st = st.replace(caches=[[(c(k, CACHE_AXES), c(v, CACHE_AXES)) for k, v in m] for m in st.caches],
                        logits=[c(z, ("batch",)) for z in st.logits], mask_QxP=c(st.mask_QxP, ("batch",)))
        return s, st

    def _prefill_impl(self, states, store, prompts_AxP, mask_AxP, entry_A, *, cfg, graphdefs):
        self.num_compiles += 1
        return es.prefill_store(self._models(graphdefs, states), store, prompts_AxP, mask_AxP, entry_A,
                                make_constrain(self.mesh, self.rules))

    def _admit_impl(self, slots, store, slot_A, entry_A, row_A, limit_A, key, *, cfg):
        self.num_compiles += 1
        return es.admit(slots, store, slot_A, entry_A, row_A, limit_A, key, cfg, make_constrain(self.mesh, self.rules))

    def _decode_impl(self, states, slots, free_to_leave, *, cfg, graphdefs, steps):
        self.num_compiles += 1
        c = make_constrain(self.mesh, self.rules)
        return es.decode_chunk(self._models(graphdefs, states), slots, free_to_leave, steps, cfg, c)

    # -- the host schedule --
    def _prepare(self, policy, memory, cfg):
        """(graphdefs, states) of the models the steps run: packed once per call for the CPU kernels."""
        models = [policy] + ([memory] if memory is not None else [])
        graphdefs = tuple(nnx.graphdef(m) for m in models)
        states = [nnx.state(m) for m in models]
        packed_gd = self._packed_graphdefs.get((graphdefs, cfg))
        if packed_gd is None:
            def pack_copy():  # on fresh copies: decode_models switches the classes of the modules it gets
                copies = [nnx.merge(g, s) for g, s in zip(graphdefs, states)]
                return decode_models(copies[0], copies[1] if len(copies) > 1 else None, cfg, self.mesh)
            packed_gd = tuple(nnx.graphdef(m) for m in nnx.eval_shape(pack_copy) if m is not None)
            self._packed_graphdefs[(graphdefs, cfg)] = packed_gd
        if packed_gd == graphdefs:
            return graphdefs, states
        return packed_gd, self._pack(states, cfg=cfg, graphdefs=graphdefs)

    def __call__(self, policy, prompts_BxP, prompt_mask_BxP, key, cfg: SamplingConfig, memory=None, limits_B=None,
                 on_group=None) -> Rollout:
        """Samples cfg.num_samples responses per prompt, like `Sampler.__call__` (same keys, same tokens).

        on_group(i, tokens_GxN, mask_GxN): called on the host with prompt i's responses (numpy) as soon
        as its G rows have all finished, while later groups still decode.
        """
        prompts, mask = pad_to_bucket(prompts_BxP, prompt_mask_BxP, cfg.prompt_buckets, cfg.pad_id)
        if memory is not None and memory.cfg.vocab_size != policy.cfg.vocab_size:
            raise ValueError(f"memory: vocab_size {memory.cfg.vocab_size} differs from the policy's "
                             f"{policy.cfg.vocab_size}; DLC needs a shared tokenizer")
        B, P = prompts.shape
        G, N = cfg.num_samples, cfg.max_new_tokens
        R, C = B * G, P + N
        S = min(self.slots, R)
        Q = store_entries(S, G, B, batch_shards(self.mesh, self.rules))
        limits = row_limits(limits_B, R, N)
        model_cfgs = tuple(m.cfg for m in (policy, memory) if m is not None)
        graphdefs, states = self._prepare(policy, memory, cfg)
        slots, store = self._new(key, cfg=cfg, model_cfgs=model_cfgs, slots=S, cache_len=C, rows=R, entries=Q,
                                 prompt_len=P)

        entry_of: dict[int, int] = {}
        free_entries = list(range(Q))
        to_admit = np.full(B, G)
        left = np.full(B, G)
        slot_row = np.full(S, -1)
        next_prefill = next_row = 0
        steps = dispatches = 0
        finished_at: list[int] = []
        while left.any():
            while True:  # prefill into free store entries, admit rows into free slots, until neither moves
                progressed = False
                if free_entries and next_prefill < B:
                    todo = list(range(next_prefill, min(B, next_prefill + len(free_entries))))
                    A = Q if len(todo) == Q else 1  # two programs: the first fill, then one prompt per refill
                    for j in range(0, len(todo), A):
                        part = todo[j:j + A]
                        ent = [free_entries.pop(0) for _ in part]
                        entry_of.update(zip(part, ent))
                        pad = A - len(part)
                        store = self._prefill(states, store, _pad(prompts[part], pad), _pad(mask[part], pad, True),
                                              np.asarray(ent + [Q] * pad, np.int32), cfg=cfg, graphdefs=graphdefs)
                    next_prefill = todo[-1] + 1
                    progressed = True
                free_slots = np.flatnonzero(slot_row < 0)
                adm = []
                while len(adm) < len(free_slots) and next_row < R and (next_row // G) in entry_of:
                    i = next_row // G
                    adm.append((free_slots[len(adm)], entry_of[i], next_row))
                    to_admit[i] -= 1
                    if to_admit[i] == 0:
                        free_entries.append(entry_of.pop(i))
                    next_row += 1
                if adm:
                    A = S  # one program: the copy of a padded row is dropped
                    s_, e_, r_ = (np.asarray([a[k] for a in adm] + [fill] * (A - len(adm)), np.int32)
                                  for k, fill in ((0, S), (1, 0), (2, R)))
                    slots = self._admit(slots, store, s_, e_, r_, limits[np.minimum(r_, R - 1)], key, cfg=cfg)
                    slot_row[s_[:len(adm)]] = r_[:len(adm)]
                    progressed = True
                if not progressed:
                    break
            pending = R - next_row
            slots, k = self._decode(states, slots, np.int32(1 if pending else S + 1), cfg=cfg, graphdefs=graphdefs,
                                    steps=self.decode_chunk)
            active = np.asarray(slots.active_S)
            k = int(k)
            steps += k
            dispatches += 1
            done_slots = np.flatnonzero((slot_row >= 0) & ~active)
            groups = []
            for s in done_slots:
                i = int(slot_row[s]) // G
                left[i] -= 1
                if left[i] == 0:
                    groups.append(i)
                slot_row[s] = -1
            for i in groups:
                finished_at.append(steps)
                if on_group is not None:
                    toks = np.asarray(slots.tokens_RxN[i * G:(i + 1) * G])
                    on_group(i, toks, _response_mask(toks, limits[i * G:(i + 1) * G], cfg))
        rollout = finalize(jnp.repeat(jnp.asarray(prompts), G, 0), jnp.repeat(jnp.asarray(mask), G, 0),
                           slots.tokens_RxN[:R], slots.logp_sampler_RxN[:R], slots.logp_policy_RxN[:R],
                           cfg.stop_token_ids, cfg.pad_id, jnp.asarray(limits))
        useful = int(np.asarray(rollout.lengths_B).sum())
        self.stats = {"decode_steps": steps, "dispatches": dispatches, "slots": S, "store_entries": Q,
                      "useful_tokens": useful, "occupancy": (useful - R) / max(1, S * steps),
                      "kv_bytes": sum(kv_bytes(c, S, C) + kv_bytes(c, Q, P) for c in model_cfgs),
                      "group_finished_at_step": finished_at}
        return rollout




def _pad(x, n: int, true_first: bool = False):
    """Appends n rows; padded prompt rows get one real token so their prefill is well defined."""
    if n == 0:
        return x
    extra = np.zeros((n,) + x.shape[1:], x.dtype)
    if true_first:
        extra[:, -1] = True
    return np.concatenate([x, extra])


def _response_mask(tokens_GxN, limits_G, cfg: SamplingConfig):
    """Host copy of `finalize`'s mask: through the first stop token and within the row's limit."""
    stop = np.isin(tokens_GxN, np.asarray(cfg.stop_token_ids, np.int32)) if cfg.stop_token_ids else \
        np.zeros(tokens_GxN.shape, bool)
    before = np.cumsum(stop, axis=1) - stop
    return (before == 0) & (np.arange(tokens_GxN.shape[1])[None] < np.asarray(limits_G)[:, None])
