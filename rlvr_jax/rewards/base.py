"""The verifier interface: (response text, reference) -> Verdict(reward, status).

Every verifier reports *why* it gave its reward, so a broken verifier shows up in the logs as a
spike of `unparsable`/`timeout`/`error` instead of a quiet stream of zero rewards.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, Sequence

import numpy as np


class Status(str, enum.Enum):
    """Why a verifier gave its reward."""

    CORRECT = "correct"
    WRONG = "wrong"
    UNPARSABLE = "unparsable"  # no answer could be extracted / parsed from the response
    TIMEOUT = "timeout"  # the item ran out of its wall-clock budget
    ERROR = "error"  # the verifier itself failed (bad reference, crashed worker, ...)


@dataclasses.dataclass(frozen=True)
class Verdict:
    reward: float
    status: Status


Verifier = Callable[[str, Any], Verdict]  # one item
BatchVerifier = Callable[[Sequence[str], Sequence[Any]], list]  # many items -> list[Verdict]

CORRECT = Verdict(1.0, Status.CORRECT)
WRONG = Verdict(0.0, Status.WRONG)
UNPARSABLE = Verdict(0.0, Status.UNPARSABLE)
TIMEOUT = Verdict(0.0, Status.TIMEOUT)
ERROR = Verdict(0.0, Status.ERROR)


def from_bool(ok: bool) -> Verdict:
    """1/correct or 0/wrong."""
    return CORRECT if ok else WRONG


def count_statuses(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """Fraction of each status as `reward/status_<name>` metrics (every status present, 0 when absent)."""
    n = max(len(verdicts), 1)
    out = {f"reward/status_{s.value}": 0.0 for s in Status}
    for v in verdicts:
        out[f"reward/status_{Status(v.status).value}"] += 1.0 / n
    return out


def rewards_array(verdicts: Sequence[Verdict]) -> np.ndarray:
    """The rewards of a list of verdicts as float32 [N]."""
    return np.asarray([v.reward for v in verdicts], np.float32).reshape(len(verdicts))


def compose(verifiers_with_weights: Sequence[tuple[Verifier, float]]) -> Verifier:
    """Weighted sum of single-item verifiers; the status is the first (primary) verifier's."""
    pairs = list(verifiers_with_weights)
    if not pairs:
        raise ValueError("compose: needs at least one (verifier, weight) pair")

    def composed(response: str, reference: Any) -> Verdict:
        verdicts = [(fn(response, reference), w) for fn, w in pairs]
        return Verdict(float(sum(w * v.reward for v, w in verdicts)), verdicts[0][0].status)

    return composed


def compose_batch(verifiers_with_weights: Sequence[tuple[BatchVerifier, float]]) -> BatchVerifier:
    """Weighted sum of batch verifiers; the status of each item is the first verifier's."""
    pairs = list(verifiers_with_weights)
    if not pairs:
        raise ValueError("compose_batch: needs at least one (verifier, weight) pair")

    def composed(responses: Sequence[str], references: Sequence[Any]) -> list[Verdict]:
        per = [(fn(responses, references), w) for fn, w in pairs]
        out = []
        for i in range(len(responses)):
            out.append(Verdict(float(sum(w * vs[i].reward for vs, w in per)), per[0][0][i].status))
        return out

    return composed


def batched(fn: Verifier) -> BatchVerifier:
    """Lifts a single-item verifier to a batch verifier (host loop)."""

    def run(responses: Sequence[str], references: Sequence[Any]) -> list[Verdict]:
        if len(responses) != len(references):
            raise ValueError(f"verifier: {len(responses)} responses but {len(references)} references")
        return [fn(r, ref) for r, ref in zip(responses, references)]

    return run
