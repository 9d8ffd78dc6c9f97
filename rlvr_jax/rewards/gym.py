"""reasoning-gym scorers as verifiers (worker side: some scorers run sympy's parse_expr).

The reference is the reasoning-gym entry dict (question, answer, metadata); the dataset is named by
`entry["metadata"]["source_dataset"]`. Run through `VerifierPool.verify_batch(..., kind="reasoning_gym")`.
"""
from __future__ import annotations

import functools
import re
from typing import Any

from rlvr_jax.rewards.base import ERROR, TIMEOUT, UNPARSABLE, Status, Verdict
from rlvr_jax.rewards.math import ItemTimeout, extract_answer, time_limit

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_gym_answer(text: str) -> str | None:
    """The answer of a reasoning-gym response: last <answer>...</answer>, else last \\boxed{}, else last line."""
    if not isinstance(text, str):
        return None
    last = None
    for last in _ANSWER_TAG.finditer(text):
        pass
    if last is not None:
        return last.group(1).strip() or None
    return extract_answer(text, "last_line")


@functools.lru_cache(maxsize=64)
def _dataset(name: str):
    import reasoning_gym  # noqa: PLC0415

    return reasoning_gym.create_dataset(name, size=1, seed=0)


def score_gym(response: str, entry: Any, budget_s: float) -> Verdict:
    """The reasoning-gym dataset's own `score_answer`; status correct iff the score is 1."""
    try:
        name = entry["metadata"]["source_dataset"]
    except (TypeError, KeyError):
        return ERROR
    try:
        with time_limit(budget_s):
            answer = extract_gym_answer(response)
            if answer is None:
                return UNPARSABLE
            score = float(_dataset(name).score_answer(answer, entry))
    except ItemTimeout:
        return TIMEOUT
    except Exception:  # noqa: BLE001
        return ERROR
    return Verdict(score, Status.CORRECT if score >= 1.0 - 1e-9 else Status.WRONG)
