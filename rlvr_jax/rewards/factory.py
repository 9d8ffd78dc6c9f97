"""Reward functions from the `reward` config group.

`make_reward_fn(cfg, task=None)` -> RewardFn: (responses, references) -> list[Verdict] on the host (a
process pool for math / reasoning-gym, plain string checks otherwise), plus the optional format reward
weighted by `reward.format_weight`. An embedded task's verifier comes in as `task` (built by the
trainer), so rewards/ never imports data/.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

from rlvr_jax.fields import ConfigError
from rlvr_jax.rewards.base import BatchVerifier, Verdict, batched, compose_batch, count_statuses, rewards_array
from rlvr_jax.rewards.simple import exact_match, format_reward, numeric_match

VERIFIERS = ("task", "math", "exact", "numeric")  # reward.verifier
TASK_SOURCES = ("embedded", "reasoning_gym")  # data.source values that bring their own verifier


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


def answer_of(reference: Any) -> Any:
    """What a math / exact / numeric verifier compares against: a task entry (a reasoning-gym row, a mapping
    with an 'answer' field) gives its answer; any other reference is itself. Without this the verifier would
    parse the entry's repr, whose numbers (sizes, indices) then count as correct answers."""
    if isinstance(reference, Mapping) and "answer" in reference:
        return reference["answer"]
    return reference


def _pool(r, kind: str):
    from rlvr_jax.rewards.pool import VerifierPool  # noqa: PLC0415

    pool = VerifierPool(r.workers, r.item_timeout_s, r.batch_timeout_s, fallback=r.fallback,
                        address_space_mb=r.worker_address_space_mb)
    return pool, (lambda responses, references: pool.verify_batch(responses, references, kind))


def make_reward_fn(cfg, task=None) -> RewardFn:
    """The host reward function for `cfg.reward` (and `cfg.data.source` when reward.verifier='task').

    task: the embedded task (data.source='embedded'), whose `verify_text(query, response)` scores.
    """
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
            if task is None:
                raise ValueError("make_reward_fn: reward.verifier='task' on embedded data needs the task")
            correctness = batched(lambda response, query: task.verify_text(query, response))
        elif source == "reasoning_gym":
            pool, correctness = _pool(r, "reasoning_gym")
        else:
            raise ConfigError(f"config.reward.verifier: 'task' needs data.source in {TASK_SOURCES} "
                              f"(got {source!r}); use 'math', 'exact' or 'numeric' for dataset files")
    else:
        raise ConfigError(f"config.reward.verifier: {r.verifier!r} is not one of {', '.join(VERIFIERS)}")
    verify = correctness
    if r.verifier != "task":  # the task scorer reads the whole entry; the others compare to its answer
        verify = lambda responses, references: correctness(responses, [answer_of(x) for x in references])  # noqa: E731
    if r.format_weight > 0:
        verify = compose_batch([(verify, 1.0), (batched(format_reward), float(r.format_weight))])
    return RewardFn(verify, pool=pool, name=r.verifier)
