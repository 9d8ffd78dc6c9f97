"""Embedded token tasks: verify == membership in answers() over the whole answer space, jit == host."""
import itertools
import math
import re

import numpy as np
import pytest

from rlvr_jax.data.tasks import TASKS, TinyTokenizer, get_task
from rlvr_jax.data.tasks.base import EOS, PAD, parse_text
from rlvr_jax.data.tasks.countdown_small import evaluate
from rlvr_jax.rewards.base import Status

NAMES = sorted(TASKS)
T = 10  # response length used for the token tests (> max_answer_len, so tails after EOS are exercised)


@pytest.fixture(scope="module", params=NAMES)
def task(request):
    return get_task(request.param)


def test_tokenizer_roundtrip_and_specials():
    tok = TinyTokenizer()
    assert tok.vocab_size <= 64 and (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    text = "sum 17 in 0-19=12+5*3"
    ids = tok.encode(text, bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and len(ids) == len(text) + 2
    assert tok.decode(ids + tok.encode("99")) == text  # stops at EOS, skips BOS
    assert tok.decode([PAD, PAD] + tok.encode("7")) == "7"
    with pytest.raises(ValueError, match="'#'"):
        tok.encode("1#2")


def test_parse_text_grammar():
    assert parse_text("12+7", 2, 2) == ([12, 7], [0])
    assert parse_text("3*4-2", 3, 1) == ([3, 4, 2], [2, 1])
    for bad in ["", "+1", "1+", "1++2", "05", "1 +2", "123", "1+2+3", "a"]:
        assert parse_text(bad, 2, 2) is None, bad


def test_sampling_is_seeded_and_fits(task):
    a, b, c = task.sample(7, 64), task.sample(7, 64), task.sample(8, 64)
    np.testing.assert_array_equal(a.prompts_BxP, b.prompts_BxP)
    np.testing.assert_array_equal(a.params_BxK, b.params_BxK)
    assert not np.array_equal(a.params_BxK, c.params_BxK)
    assert task.prompt_len <= 16 and task.max_answer_len <= 8
    assert a.prompts_BxP.shape == (64, task.prompt_len) and a.prompts_BxP.dtype == np.int32
    assert a.params_BxK.shape == (64, task.num_params) and a.params_BxK.dtype == np.int32
    tok = task.tokenizer
    for row, text, q, p in zip(a.prompts_BxP, a.texts, a.queries, a.params_BxK):
        first = int(np.argmax(row != PAD))
        assert (row[:first] == PAD).all() and row[first] == tok.bos_id  # left-padded, BOS first
        assert tok.decode(row) == text
        assert task.query_from_params(p) == q
        assert all(len(ans) + 1 <= task.max_answer_len for ans in task.answers(q))


def test_verify_equals_membership_over_answer_space(task):
    counts = []
    for q in task.sample(123, 40).queries:
        answers, space = task.answers(q), task.answer_space(q)
        assert answers and len(set(answers)) == len(answers) and set(answers) <= set(space)
        good = set(answers)
        for cand in space:
            v = task.verify_text(q, cand)
            assert (v.status == Status.CORRECT) == (cand in good), (q, cand)
            assert v.reward == float(cand in good)
            assert v.status in (Status.CORRECT, Status.WRONG)  # candidates are well-formed
        counts.append(len(answers))
    assert task.verify_text(q, "x1").status == Status.UNPARSABLE
    assert task.verify_text(q, "").status == Status.UNPARSABLE


def test_easy_and_hard_queries_are_mixed(task):
    counts = [len(task.answers(q)) for q in task.sample(0, 300).queries]
    assert min(counts) == 1 and max(counts) >= 4, counts
    assert np.mean(counts) >= 2  # many correct answers per query on average


def test_independent_references():
    """answers() against brute force written without the task code."""
    sp = get_task("sum_pair")
    for q in sp.sample(1, 20).queries:
        brute = {f"{a}+{b}" for a in range(0, 20) for b in range(0, 20) if a + b == q.total}
        assert set(sp.answers(q)) == brute
    mu = get_task("multiple")
    for q in mu.sample(2, 20).queries:
        assert set(mu.answers(q)) == {str(x) for x in range(q.a, q.b + 1) if x % q.d == 0}
    # precedence evaluation against Python's own arithmetic on a fixed table (no eval of anything generated)
    assert evaluate([2, 3, 4], [0, 2]) == 2 + 3 * 4
    assert evaluate([2, 3, 4], [2, 1]) == 2 * 3 - 4
    assert evaluate([9, 8, 7], [1, 2]) == 9 - 8 * 7
    assert evaluate([5, 6], [1]) == -1
    cd = get_task("countdown_small")
    assert set(cd.answers(cd.query_from_params([2, 3, 4, 9]))) == {
        "".join(p[0] + "+" + p[1] + "+" + p[2]) for p in itertools.permutations("234")}
    for q in cd.sample(3, 15).queries:
        brute = set()
        for k in (2, 3):
            for perm in itertools.permutations(range(3), k):
                for ops in itertools.product("+-*", repeat=k - 1):
                    nums = [q.numbers[i] for i in perm]
                    text = str(nums[0]) + "".join(o + str(x) for o, x in zip(ops, nums[1:]))
                    if _sum_of_products(text) == q.target:
                        brute.add(text)
        assert set(cd.answers(q)) == brute
    assert cd.verify_text(cd.query_from_params([2, 3, 4, 9]), "3*3").status == Status.WRONG  # 3 used twice


def _sum_of_products(text):
    """Value of a +,-,* expression as a signed sum of products (a second, independent evaluator)."""
    total, sign, term = 0, 1, []
    for tok in re.findall(r"\d+|[+*-]", text) + ["+"]:
        if tok in "+-":
            total += sign * math.prod(term)
            sign, term = (1 if tok == "+" else -1), []
        elif tok != "*":
            term.append(int(tok))
    return total


def _random_responses(task, rng, queries, n_random):
    """Every answer-space string of each query (as tokens + EOS) plus random and corrupted sequences."""
    tok = task.tokenizer
    rows, masks, qidx = [], [], []
    for i, q in enumerate(queries):
        for cand in task.answer_space(q):
            ids = tok.encode(cand, eos=True)
            ids = ids + list(rng.integers(0, tok.vocab_size, T - len(ids)))  # junk after EOS must not matter
            rows.append(ids)
            masks.append([1] * len(tok.encode(cand, eos=True)) + [0] * (T - len(tok.encode(cand)) - 1))
            qidx.append(i)
    alphabet = np.array([*tok.digit_ids, *(tok.stoi[c] for c in "+-*"), EOS, EOS, tok.stoi[" "], PAD, 1,
                         tok.stoi["a"]])
    for _ in range(n_random):
        i = int(rng.integers(len(queries)))
        if rng.random() < 0.5:  # corrupt a correct answer
            ans = task.answers(queries[i])
            ids = tok.encode(ans[int(rng.integers(len(ans)))], eos=True)
            ids = ids + [PAD] * (T - len(ids))
            ids[int(rng.integers(T))] = int(rng.choice(alphabet))
        else:
            ids = list(rng.choice(alphabet, T))
        m = np.ones(T, int)
        if rng.random() < 0.3:
            m[int(rng.integers(T)):] = 0  # a mask that may cut before EOS
        rows.append(ids)
        masks.append(list(m))
        qidx.append(i)
    return np.asarray(rows, np.int32), np.asarray(masks, bool), np.asarray(qidx)


def test_jitted_verifier_equals_host(task):
    rng = np.random.default_rng(0)
    batch = task.sample(5, 12)
    tokens, masks, qidx = _random_responses(task, rng, batch.queries, 3000)
    got = np.asarray(task.verify_batch(batch.params_BxK[qidx], tokens, masks))
    want = np.array([task.verify_ids(batch.queries[i], t, m).reward for t, m, i in zip(tokens, masks, qidx)])
    assert got.dtype == np.float32 and got.shape == (len(tokens),)
    np.testing.assert_array_equal(got, want)
    assert 0 < want.mean() < 1  # both outcomes exercised
    # every correct answer's token form scores 1; the same without EOS scores 0 (one call, same shapes)
    ids_all, mask_all, params_all = [], [], []
    for q, p in zip(batch.queries[:4], batch.params_BxK[:4]):
        ids, mask = task.answer_tokens(q)
        assert ids.shape == (len(task.answers(q)), task.max_answer_len)
        assert [task.tokenizer.decode(r) for r in ids] == task.answers(q)
        assert all(r[m].tolist()[-1] == EOS for r, m in zip(ids, mask))
        ids_all.append(np.pad(ids, ((0, 0), (0, T - ids.shape[1]))))
        mask_all.append(np.pad(mask, ((0, 0), (0, T - ids.shape[1]))))
        params_all.append(np.repeat(p[None], len(ids), 0))
    ids, mask, params = (np.concatenate(x) for x in (ids_all, mask_all, params_all))
    n = len(ids)
    no_eos = np.where(ids == EOS, PAD, ids)
    pad = len(tokens) - 2 * n  # reuse the compiled shape
    r = np.asarray(task.verify_batch(np.concatenate([params, params, batch.params_BxK[qidx[:pad]]]),
                                     np.concatenate([ids, no_eos, tokens[:pad]]),
                                     np.concatenate([mask, mask, masks[:pad]])))
    assert (r[:n] == 1).all() and (r[n:2 * n] == 0).all()


def test_get_task_unknown_name():
    with pytest.raises(ValueError, match="unknown embedded task 'nope'"):
        get_task("nope")
    with pytest.raises(ValueError, match="prompt_len"):
        get_task("sum_pair", lo=10, hi=99)
