"""Embedded token tasks: procedurally generated queries whose correct answers can all be listed.

A task answers arithmetic-looking strings `NUM (OP NUM)*` over the TinyTokenizer; each task gives
a seeded generator, a host verifier (`verify_text`), the same verifier as a pure jittable function
over token ids (`verify_tokens`), `answers(q)` (every correct answer) and `answer_space(q)` (every
well-formed candidate), so verify == membership can be checked exhaustively.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.data.tasks.tokenizer import BOS, EOS, PAD, TinyTokenizer
from rlvr_jax.rewards.base import UNPARSABLE, Verdict, from_bool

OPS = "+-*"  # op code = index in this string


@dataclasses.dataclass
class QueryBatch:
    """n sampled queries: prompts int32 [B, P] (BOS + text, left-padded with PAD), params int32 [B, K]."""

    prompts_BxP: np.ndarray
    params_BxK: np.ndarray
    texts: list[str]
    queries: list[Any]


def parse_text(text: str, max_numbers: int, max_digits: int) -> tuple[list[int], list[int]] | None:
    """Host parser of `NUM (OP NUM)*` with canonical numbers (no leading zeros) -> (nums, op codes) or None."""
    nums, ops, cur = [], [], ""
    for ch in text + "\0":
        if ch.isdigit() and ch.isascii():
            if cur == "0" or len(cur) >= max_digits:
                return None
            cur += ch
        elif ch in OPS or ch == "\0":
            if not cur:
                return None
            nums.append(int(cur))
            cur = ""
            if ch != "\0":
                ops.append(OPS.index(ch))
                if len(nums) >= max_numbers:
                    return None
        else:
            return None
    return nums, ops


def parse_tokens(tokens_T: jax.Array, mask_T: jax.Array, tok: TinyTokenizer, max_numbers: int, max_digits: int):
    """Jittable twin of `parse_text` on token ids up to the first EOS (masked positions read as PAD).

    Returns (nums_N int32, ops_N int32, n int32, ok bool); ok is False for anything malformed,
    including a response with no EOS.
    """
    tokens_T = jnp.where(mask_T.astype(bool), tokens_T.astype(jnp.int32), PAD)
    digit0 = int(tok.digit_ids[0])
    op_ids = jnp.array([tok.stoi[c] for c in OPS], jnp.int32)
    N = max_numbers

    def step(state, x):
        done, ok, n, cur, cur_len, lead0, nums, ops = state
        live = ~done
        d = x - digit0
        is_digit = (d >= 0) & (d <= 9)
        op_match = x == op_ids
        is_op = jnp.any(op_match)
        op_code = jnp.argmax(op_match).astype(jnp.int32)
        is_eos = x == EOS
        ends_number = is_op | is_eos
        # digit: extend the current number (no leading zero, at most max_digits)
        bad_digit = is_digit & ((cur_len > 0) & lead0 | (cur_len >= max_digits))
        new_cur = jnp.where(is_digit, cur * 10 + d, cur)
        new_lead0 = jnp.where(is_digit & (cur_len == 0), d == 0, lead0)
        new_len = jnp.where(is_digit, cur_len + 1, cur_len)
        # op / EOS: close the current number
        bad_close = ends_number & (cur_len == 0)
        slot = jnp.minimum(n, N - 1)
        nums = jnp.where(live & ends_number, nums.at[slot].set(cur), nums)
        ops = jnp.where(live & is_op, ops.at[slot].set(op_code), ops)
        bad_count = is_op & (n + 1 >= N)
        n = jnp.where(live & ends_number, n + 1, n)
        new_len = jnp.where(ends_number, 0, new_len)
        new_cur = jnp.where(ends_number, 0, new_cur)
        bad_tok = ~(is_digit | is_op | is_eos)
        bad = bad_digit | bad_close | bad_count | bad_tok
        ok = ok & ~(live & bad)
        cur = jnp.where(live, new_cur, cur)
        cur_len = jnp.where(live, new_len, cur_len)
        lead0 = jnp.where(live, new_lead0, lead0)
        done = done | is_eos
        return (done, ok, n, cur, cur_len, lead0, nums, ops), None

    i0 = jnp.int32(0)
    init = (jnp.bool_(False), jnp.bool_(True), i0, i0, i0, jnp.bool_(False),
            jnp.zeros((N,), jnp.int32), jnp.zeros((N,), jnp.int32))
    (done, ok, n, _, _, _, nums, ops), _ = jax.lax.scan(step, init, tokens_T)
    return nums, ops, n, ok & done


class Task:
    """Base class: subclasses set the constants and implement the query-specific methods below."""

    name = "task"
    num_params = 0  # K
    max_numbers = 1  # numbers in an answer
    max_digits = 2  # digits per number
    prompt_len = 16
    max_answer_len = 8  # tokens of the longest correct answer, EOS included

    def __init__(self):
        self.tokenizer = TinyTokenizer()

    # ---------------------------------------------------------------- per task
    def sample_query(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def prompt_text(self, q) -> str:
        raise NotImplementedError

    def params(self, q) -> tuple[int, ...]:
        raise NotImplementedError

    def query_from_params(self, params_K: Sequence[int]) -> Any:
        raise NotImplementedError

    def answers(self, q) -> list[str]:
        """Every correct answer string of query q (sorted, no duplicates)."""
        raise NotImplementedError

    def answer_space(self, q) -> list[str]:
        """Every well-formed candidate answer of query q (a superset of `answers(q)`)."""
        raise NotImplementedError

    def check(self, q, nums: list[int], ops: list[int]) -> bool:
        """Host: is the parsed answer correct for q?"""
        raise NotImplementedError

    def check_jax(self, params_K, nums_N, ops_N, n) -> jax.Array:
        """Jittable twin of `check` on the parsed arrays (only the first n numbers are meaningful)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared
    def sample(self, seed_or_rng, n: int) -> QueryBatch:
        """n queries from a seed (int) or a numpy Generator; deterministic for a given seed."""
        rng = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(seed_or_rng)
        queries = [self.sample_query(rng) for _ in range(n)]
        texts = [self.prompt_text(q) for q in queries]
        prompts = self.tokenizer.pad_left([self.tokenizer.encode(t, bos=True) for t in texts], self.prompt_len)
        params = np.asarray([self.params(q) for q in queries], np.int32).reshape(n, self.num_params)
        return QueryBatch(prompts_BxP=prompts, params_BxK=params, texts=texts, queries=queries)

    def verify_text(self, q, answer_text: str) -> Verdict:
        """Host verifier: unparsable if not `NUM (OP NUM)*`, else correct/wrong."""
        parsed = parse_text(answer_text.strip(), self.max_numbers, self.max_digits) \
            if isinstance(answer_text, str) else None
        if parsed is None:
            return UNPARSABLE
        return from_bool(self.check(q, *parsed))

    def tokens_to_text(self, ids: Sequence[int], mask: Sequence[bool] | None = None) -> str | None:
        """Host reading of a response: text before the first EOS (masked = PAD); None if malformed."""
        ids = [int(i) for i in ids]
        if mask is not None:
            ids = [i if m else PAD for i, m in zip(ids, mask)]
        if EOS not in ids:
            return None
        body = ids[:ids.index(EOS)]
        if any(i < 3 or i >= self.tokenizer.vocab_size for i in body):
            return None
        return self.tokenizer.decode(body)

    def verify_ids(self, q, ids: Sequence[int], mask: Sequence[bool] | None = None) -> Verdict:
        """Host verifier on token ids (the reference the jitted `verify_tokens` is tested against)."""
        text = self.tokens_to_text(ids, mask)
        if text is None or text != text.strip():
            return UNPARSABLE
        return self.verify_text(q, text)

    def verify_tokens(self, params_K: jax.Array, response_T: jax.Array, mask_T: jax.Array) -> jax.Array:
        """Pure JAX reward (float32 0/1) of one response; vmap over the batch, jit freely."""
        nums, ops, n, ok = parse_tokens(response_T, mask_T, self.tokenizer, self.max_numbers, self.max_digits)
        return (ok & self.check_jax(params_K.astype(jnp.int32), nums, ops, n)).astype(jnp.float32)

    @functools.cached_property
    def verify_batch(self):
        """jit(vmap(verify_tokens)): (params_BxK, response_BxT, mask_BxT) -> rewards_B float32."""
        return jax.jit(jax.vmap(self.verify_tokens))

    def answer_tokens(self, q) -> tuple[np.ndarray, np.ndarray]:
        """Every correct answer + EOS as int32 [n_answers, max_answer_len] (PAD after) and its bool mask."""
        seqs = [self.tokenizer.encode(a, eos=True) for a in self.answers(q)]
        return self.tokenizer.pad_right(seqs, self.max_answer_len)

    def check_prompt_len(self, worst_case_text: str) -> None:
        """ValueError if the longest prompt this task can produce does not fit prompt_len."""
        if len(worst_case_text) + 1 > self.prompt_len:
            raise ValueError(f"task {self.name}: prompt {worst_case_text!r} needs {len(worst_case_text) + 1} "
                             f"tokens > prompt_len={self.prompt_len}; narrow the task's ranges")


def answer_fits(task: Task, answers: Sequence[str]) -> None:
    """ValueError if a correct answer (+EOS) is longer than task.max_answer_len."""
    for a in answers:
        if len(a) + 1 > task.max_answer_len:
            raise ValueError(f"task {task.name}: answer {a!r} exceeds max_answer_len={task.max_answer_len}")


__all__ = ["QueryBatch", "Task", "parse_text", "parse_tokens", "OPS", "BOS", "EOS", "PAD"]
