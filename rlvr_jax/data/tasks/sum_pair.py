"""sum_pair: give two numbers in [lo, hi] that sum to N ("a+b"; both orders count).

N is uniform over [2lo, 2hi], so queries near the middle have up to hi-lo+1 correct answers and
queries at the ends only one: easy and hard queries are mixed by design.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from rlvr_jax.data.tasks.base import Task, answer_fits


@dataclasses.dataclass(frozen=True)
class SumPairQuery:
    total: int
    lo: int
    hi: int


class SumPair(Task):
    name = "sum_pair"
    num_params = 3
    max_numbers = 2
    max_digits = 2

    def __init__(self, lo: int = 0, hi: int = 19):
        super().__init__()
        if not 0 <= lo <= hi <= 99:
            raise ValueError(f"task sum_pair: need 0 <= lo <= hi <= 99, got lo={lo} hi={hi}")
        self.lo, self.hi = lo, hi
        self.check_prompt_len(self.prompt_text(SumPairQuery(2 * hi, lo, hi)))
        answer_fits(self, [f"{hi}+{hi}"])

    def sample_query(self, rng: np.random.Generator) -> SumPairQuery:
        return SumPairQuery(int(rng.integers(2 * self.lo, 2 * self.hi + 1)), self.lo, self.hi)

    def prompt_text(self, q: SumPairQuery) -> str:
        return f"sum {q.total} in {q.lo}-{q.hi}="

    def params(self, q: SumPairQuery) -> tuple[int, ...]:
        return (q.total, q.lo, q.hi)

    def query_from_params(self, params_K) -> SumPairQuery:
        return SumPairQuery(*(int(x) for x in params_K))

    def answers(self, q: SumPairQuery) -> list[str]:
        return sorted(f"{a}+{q.total - a}" for a in range(q.lo, q.hi + 1) if q.lo <= q.total - a <= q.hi)

    def answer_space(self, q: SumPairQuery) -> list[str]:
        return sorted(f"{a}+{b}" for a in range(q.lo, q.hi + 1) for b in range(q.lo, q.hi + 1))

    def check(self, q: SumPairQuery, nums, ops) -> bool:
        return (len(nums) == 2 and ops == [0] and all(q.lo <= x <= q.hi for x in nums)
                and nums[0] + nums[1] == q.total)

    def check_jax(self, params_K, nums_N, ops_N, n):
        total, lo, hi = params_K[0], params_K[1], params_K[2]
        a, b = nums_N[0], nums_N[1]
        in_range = (a >= lo) & (a <= hi) & (b >= lo) & (b <= hi)
        return (n == 2) & (ops_N[0] == 0) & in_range & (a + b == total)
