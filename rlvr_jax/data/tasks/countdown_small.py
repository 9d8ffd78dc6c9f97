"""countdown_small: reach a target with some of the given digits, each used at most once, and + - *.

Answers are `x op y [op z]` (2 or 3 of the given digits, standard precedence, no parentheses), so
every candidate can be enumerated; commutative rewrites make several correct answers for most
targets, while targets reachable one way only are hard. The target is drawn uniformly among the
distinct reachable values in [0, max_target].
"""
from __future__ import annotations

import dataclasses
import functools
import itertools

import jax.numpy as jnp
import numpy as np

from rlvr_jax.data.tasks.base import OPS, Task, answer_fits


def evaluate(nums: list[int], ops: list[int]) -> int:
    """Value of nums[0] ops[0] nums[1] ... with * before + and - (host reference)."""
    acc, term = 0, nums[0]
    for op, x in zip(ops, nums[1:]):
        if OPS[op] == "*":
            term *= x
        else:
            acc += term
            term = x if OPS[op] == "+" else -x
    return acc + term


@functools.lru_cache(maxsize=4096)
def _expressions(numbers: tuple[int, ...]) -> tuple[tuple[str, int], ...]:
    """Every (expression, value) using 2..len(numbers) of the numbers (by position), deduplicated."""
    out = {}
    for k in range(2, len(numbers) + 1):
        for idx in itertools.permutations(range(len(numbers)), k):
            nums = [numbers[i] for i in idx]
            for ops in itertools.product(range(len(OPS)), repeat=k - 1):
                text = str(nums[0]) + "".join(OPS[o] + str(x) for o, x in zip(ops, nums[1:]))
                out[text] = evaluate(nums, list(ops))
    return tuple(sorted(out.items()))


@dataclasses.dataclass(frozen=True)
class CountdownQuery:
    numbers: tuple[int, ...]
    target: int


class CountdownSmall(Task):
    name = "countdown_small"
    max_digits = 1

    def __init__(self, count: int = 3, max_digit: int = 9, max_target: int = 99):
        super().__init__()
        if not (2 <= count <= 3 and 1 <= max_digit <= 9 and 0 <= max_target <= 999):
            raise ValueError(f"task countdown_small: need 2 <= count <= 3, 1 <= max_digit <= 9, "
                             f"0 <= max_target <= 999 (got {count}, {max_digit}, {max_target})")
        self.count, self.max_digit, self.max_target = count, max_digit, max_target
        self.num_params = count + 1
        self.max_numbers = count
        self.check_prompt_len(self.prompt_text(CountdownQuery((max_digit,) * count, max_target)))
        answer_fits(self, ["9+" * (count - 1) + "9"])

    def sample_query(self, rng: np.random.Generator) -> CountdownQuery:
        while True:
            numbers = tuple(int(x) for x in rng.integers(1, self.max_digit + 1, size=self.count))
            values = sorted({v for _, v in _expressions(numbers) if 0 <= v <= self.max_target})
            if values:
                return CountdownQuery(numbers, int(values[rng.integers(len(values))]))

    def prompt_text(self, q: CountdownQuery) -> str:
        return " ".join(map(str, q.numbers)) + f" to {q.target}="

    def params(self, q: CountdownQuery) -> tuple[int, ...]:
        return (*q.numbers, q.target)

    def query_from_params(self, params_K) -> CountdownQuery:
        p = [int(x) for x in params_K]
        return CountdownQuery(tuple(p[:-1]), p[-1])

    def answers(self, q: CountdownQuery) -> list[str]:
        return [t for t, v in _expressions(q.numbers) if v == q.target]

    def answer_space(self, q: CountdownQuery) -> list[str]:
        return [t for t, _ in _expressions(q.numbers)]

    def check(self, q: CountdownQuery, nums, ops) -> bool:
        if len(nums) < 2 or any(x < 1 or x > 9 for x in nums):
            return False
        avail = list(q.numbers)
        for x in nums:  # each given number at most once
            if x not in avail:
                return False
            avail.remove(x)
        return evaluate(nums, ops) == q.target

    def check_jax(self, params_K, nums_N, ops_N, n):
        numbers, target = params_K[:-1], params_K[-1]
        live = jnp.arange(nums_N.shape[0]) < n
        digits = jnp.arange(10)
        used = jnp.sum((nums_N[:, None] == digits[None, :]) & live[:, None], axis=0)
        avail = jnp.sum(numbers[:, None] == digits[None, :], axis=0)
        in_range = jnp.all(~live | ((nums_N >= 1) & (nums_N <= 9)))
        acc, term = jnp.int32(0), nums_N[0]
        for i in range(1, nums_N.shape[0]):  # precedence evaluation, unrolled (N <= 3)
            op, x, on = ops_N[i - 1], nums_N[i], i < n
            is_mul = op == 2
            new_acc = jnp.where(is_mul, acc, acc + term)
            new_term = jnp.where(is_mul, term * x, jnp.where(op == 0, x, -x))
            acc, term = jnp.where(on, new_acc, acc), jnp.where(on, new_term, term)
        return (n >= 2) & in_range & jnp.all(used <= avail) & (acc + term == target)
