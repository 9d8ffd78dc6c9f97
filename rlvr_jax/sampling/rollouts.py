"""`Rollouts`: the `rollout.engine` choice behind one call, for the text loop and its evaluation.

static: the lock-step `Sampler`; continuous: the `ContinuousEngine` with a slot count from
`rollout.slots` or the per-device `rollout.kv_budget_mb`; auto: per call, the engine when the call's rows
exceed its slots (some rows must wait for a free slot, which only the engine can give them) and the
static sampler otherwise (with every row in flight there is nothing to refill, and one lock-step batch
has no host visits). Both return the same `Rollout` for the same key; `on_group` sees each finished
group (as it finishes with the engine, after the call with the static sampler).
"""
from __future__ import annotations

import numpy as np

from rlvr_jax.sampling.config import ENGINES, SamplingConfig, bucket_length
from rlvr_jax.sampling.engine import ContinuousEngine, batch_shards, slots_for_budget
from rlvr_jax.sampling.sampler import Sampler
from rlvr_jax.sampling.state import Rollout


class Rollouts:
    """Sampler-compatible callable choosing the engine per call (see the module doc); `last` names it."""

    def __init__(self, engine: str = "auto", slots: int = 0, kv_budget_mb: float = 0.0, decode_chunk: int = 16,
                 mesh=None, rules=None):
        if engine not in ENGINES:
            raise ValueError(f"rollout.engine: {engine!r} must be one of {ENGINES}")
        if engine == "continuous" and not (slots or kv_budget_mb):
            raise ValueError("rollout.engine: 'continuous' needs rollout.slots or rollout.kv_budget_mb")
        self.engine, self.slots, self.kv_budget_mb = engine, int(slots), float(kv_budget_mb)
        self.mesh, self.rules = mesh, rules
        self.static = Sampler(mesh, rules)
        self.decode_chunk = int(decode_chunk)
        self._engines: dict[int, ContinuousEngine] = {}
        self.last = ""
        self._last_engine: ContinuousEngine | None = None

    @classmethod
    def from_config(cls, cfg, mesh=None, rules=None) -> "Rollouts":
        r = cfg.rollout
        return cls(r.engine, r.slots, r.kv_budget_mb, r.decode_chunk, mesh, rules)

    def slots_for(self, model_cfgs, prompt_len: int, cfg: SamplingConfig) -> int:
        """Decode slots of a call with prompts of `prompt_len` (0: no limit set), a multiple of the row shards."""
        if self.slots:
            return self.slots
        if not self.kv_budget_mb:
            return 0
        shards = batch_shards(self.mesh, self.rules)
        per_device = slots_for_budget(model_cfgs, self.kv_budget_mb * 2 ** 20, prompt_len + cfg.max_new_tokens,
                                      cfg.num_samples, prompt_len, shards)
        if per_device < 1:
            raise ValueError(f"rollout.kv_budget_mb: {self.kv_budget_mb:g} MB holds no slot of "
                             f"{prompt_len + cfg.max_new_tokens} tokens")
        return per_device * shards

    def choose(self, rows: int, slots: int) -> str:
        if self.engine == "auto":
            return "continuous" if slots and rows > slots else "static"
        return self.engine

    def __call__(self, policy, prompts_BxP, prompt_mask_BxP, key, cfg: SamplingConfig, memory=None, limits_B=None,
                 on_group=None) -> Rollout:
        prompts = np.asarray(prompts_BxP)
        mask = np.ones(prompts.shape, bool) if prompt_mask_BxP is None else np.asarray(prompt_mask_BxP, bool)
        P = bucket_length(int(mask.sum(axis=1).max()), cfg.prompt_buckets)
        rows = prompts.shape[0] * cfg.num_samples
        model_cfgs = [m.cfg for m in (policy, memory) if m is not None]
        slots = self.slots_for(model_cfgs, P, cfg)
        self.last = self.choose(rows, slots)
        if self.last == "continuous":
            eng = self._engines.get(slots)
            if eng is None:
                eng = self._engines[slots] = ContinuousEngine(slots, self.decode_chunk, self.mesh, self.rules)
            self._last_engine = eng
            return eng(policy, prompts, mask, key, cfg, memory, limits_B, on_group)
        ro = self.static(policy, prompts, mask, key, cfg, memory, limits_B)
        if on_group is not None:
            G = cfg.num_samples
            toks, resp = np.asarray(ro.tokens_BxN), np.asarray(ro.mask_BxN)
            for i in range(prompts.shape[0]):
                on_group(i, toks[i * G:(i + 1) * G], resp[i * G:(i + 1) * G])
        return ro

    @property
    def stats(self) -> dict:
        """The continuous engine's stats of the last call (empty after a static call)."""
        return dict(self._last_engine.stats) if self.last == "continuous" else {}

