"""multiple: give a multiple of d in [a, b].

The interval is drawn to hold exactly m multiples with m uniform in 1..max_count, so some queries
have a single correct answer and others several.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from rlvr_jax.data.tasks.base import Task, answer_fits


@dataclasses.dataclass(frozen=True)
class MultipleQuery:
    d: int
    a: int
    b: int


class Multiple(Task):
    name = "multiple"
    num_params = 3
    max_numbers = 1
    max_digits = 3

    def __init__(self, max_value: int = 99, min_d: int = 2, max_d: int = 9, max_count: int = 6):
        super().__init__()
        if not (1 <= min_d <= max_d and max_d * max_count <= max_value <= 999 and max_count >= 1):
            raise ValueError(f"task multiple: need 1 <= min_d <= max_d, max_d*max_count <= max_value <= 999 "
                             f"(got min_d={min_d} max_d={max_d} max_count={max_count} max_value={max_value})")
        self.max_value, self.min_d, self.max_d, self.max_count = max_value, min_d, max_d, max_count
        self.check_prompt_len(self.prompt_text(MultipleQuery(max_d, max_value, max_value)))
        answer_fits(self, [str(max_value)])

    def sample_query(self, rng: np.random.Generator) -> MultipleQuery:
        d = int(rng.integers(self.min_d, self.max_d + 1))
        m = int(rng.integers(1, self.max_count + 1))
        k0 = int(rng.integers(1, self.max_value // d - m + 2))  # multiples k0*d .. (k0+m-1)*d
        a = int(rng.integers((k0 - 1) * d + 1, k0 * d + 1))
        b = int(rng.integers((k0 + m - 1) * d, min((k0 + m) * d - 1, self.max_value) + 1))
        return MultipleQuery(d, a, b)

    def prompt_text(self, q: MultipleQuery) -> str:
        return f"mul {q.d} in {q.a}-{q.b}="

    def params(self, q: MultipleQuery) -> tuple[int, ...]:
        return (q.d, q.a, q.b)

    def query_from_params(self, params_K) -> MultipleQuery:
        return MultipleQuery(*(int(x) for x in params_K))

    def answers(self, q: MultipleQuery) -> list[str]:
        first = -(-q.a // q.d) * q.d
        return sorted(str(x) for x in range(first, q.b + 1, q.d))

    def answer_space(self, q: MultipleQuery) -> list[str]:
        return sorted(str(x) for x in range(0, self.max_value + 1))

    def check(self, q: MultipleQuery, nums, ops) -> bool:
        return len(nums) == 1 and q.a <= nums[0] <= q.b and nums[0] % q.d == 0

    def check_jax(self, params_K, nums_N, ops_N, n):
        d, a, b = params_K[0], params_K[1], params_K[2]
        x = nums_N[0]
        return (n == 1) & (x >= a) & (x <= b) & (jnp.mod(x, jnp.maximum(d, 1)) == 0)
