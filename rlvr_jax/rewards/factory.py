"""Reward functions from the `reward` config group.

`make_reward_fn(cfg)` -> RewardFn: (responses, references) -> list[Verdict] on the host (a process
pool for math / reasoning-gym, plain string checks otherwise), plus the optional format reward
weighted by `reward.format_weight`. `make_token_reward_fn(cfg)` is the pure jittable reward of an
embedded token task.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

from rlvr_jax.config import ConfigError
from rlvr_jax.rewards.base import BatchVerifier, Verdict, batched, compose_batch, count_statuses, rewards_array
from rlvr_jax.rewards.simple import exact_match, format_reward, numeric_match


class RewardFn:
    """Batch reward with its resources: call it, read `.metrics(verdicts)`, `close()` it at the end."""

    def __init__(self, verify: BatchVerifier, pool=None, name: str = ""):
        self._verify = verify
        self.pool = pool
        self.name = name

    def __call__(self, responses: Sequence[str], references: Sequence[Any]) -> list[Verdict]:
        if len(responses) != len(references):
            raise ValueError(f"reward fn: {len(responses)} responses but {len(references)} references")
        return self._verify(list(responses), list(references))

    rewards = staticmethod(rewards_array)  # verdicts -> float32 [N]
    metrics = staticmethod(count_statuses)  # verdicts -> {"reward/status_<name>": fraction}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def __enter__(self) -> "RewardFn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pool(r, kind: str):
    from rlvr_jax.rewards.pool import VerifierPool  # noqa: PLC0415

    pool = VerifierPool(r.workers, r.item_timeout_s, r.batch_timeout_s, fallback=r.fallback)
    return pool, (lambda responses, references: pool.verify_batch(responses, references, kind))


def make_reward_fn(cfg) -> RewardFn:
    """The host reward function for `cfg.reward` (and `cfg.data` when reward.verifier='task')."""
    r = cfg.reward
    pool = None
    if r.verifier == "math":
        pool, correctness = _pool(r, "math")
    elif r.verifier == "exact":
        correctness = batched(functools.partial(exact_match, fallback=r.fallback))
    elif r.verifier == "numeric":
        correctness = batched(functools.partial(numeric_match, rel_tol=r.numeric_tolerance, fallback=r.fallback))
    elif r.verifier == "task":
        source = cfg.data.source
        if source == "embedded":
            from rlvr_jax.data.tasks import get_task  # noqa: PLC0415

            task = get_task(cfg.data.task)
            correctness = batched(lambda response, query: task.verify_text(query, response))
        elif source == "reasoning_gym":
            pool, correctness = _pool(r, "reasoning_gym")
        else:
            raise ConfigError(f"config.reward.verifier: 'task' needs data.source 'embedded' or 'reasoning_gym' "
                              f"(got {source!r}); use 'math', 'exact' or 'numeric' for dataset files")
    else:
        raise ConfigError(f"config.reward.verifier: unknown verifier {r.verifier!r}")
    verify = correctness
    if r.format_weight > 0:
        verify = compose_batch([(correctness, 1.0), (batched(format_reward), float(r.format_weight))])
    return RewardFn(verify, pool=pool, name=r.verifier)


def make_token_reward_fn(cfg):
    """jit(vmap) reward of the embedded task `cfg.data.task`: (params_BxK, response_BxT, mask_BxT) -> rewards_B."""
    if cfg.data.source != "embedded":
        raise ConfigError(f"config.data.source: token rewards need 'embedded', got {cfg.data.source!r}")
    from rlvr_jax.data.tasks import get_task  # noqa: PLC0415

    return get_task(cfg.data.task).verify_batch
