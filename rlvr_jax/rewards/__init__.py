"""rewards: verifiers (math, exact match, numeric, format, task scorers), the verifier process pool.

Only the light interface is imported eagerly; the pool and factory load on first use.
"""
from __future__ import annotations

import importlib

from rlvr_jax.rewards.base import (BatchVerifier, Status, Verdict, Verifier, batched, compose, compose_batch,
                                   count_statuses, rewards_array)

_LAZY = {
    "VerifierPool": "rlvr_jax.rewards.pool", "extract_answer": "rlvr_jax.rewards.math",
    "make_reward_fn": "rlvr_jax.rewards.factory",
    "exact_match": "rlvr_jax.rewards.simple", "numeric_match": "rlvr_jax.rewards.simple",
    "format_reward": "rlvr_jax.rewards.simple",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlvr_jax.rewards' has no attribute {name!r}")


__all__ = ["BatchVerifier", "Status", "Verdict", "Verifier", "batched", "compose", "compose_batch",
           "count_statuses", "rewards_array", *_LAZY]
