"""Exact match, numeric tolerance, format reward, composition, status metrics and the reward factory."""
import jax
import numpy as np
import pytest

from rlvr_jax.config import ConfigError, base_config, validate
from rlvr_jax.rewards.base import Status, Verdict, compose, compose_batch, count_statuses, rewards_array
from rlvr_jax.rewards.factory import make_reward_fn
from rlvr_jax.rewards.simple import exact_match, format_reward, numeric_match, parse_number

C, W, U, E = Status.CORRECT, Status.WRONG, Status.UNPARSABLE, Status.ERROR


@pytest.mark.parametrize("text,want", [
    ("42", 42.0), ("-3.5", -3.5), ("1,234", 1234.0), ("1e3", 1000.0), ("45%", 0.45), ("45\\%", 0.45),
    ("\\$7", 7.0), ("3/4", 0.75), ("\\frac{3}{4}", 0.75), ("-\\dfrac{1}{2}", -0.5), ("\\text{12}", 12.0),
    ("x", None), ("1/0", None), ("2^{10}", None), ("9" * 100, None), ("__import__('os')", None),
])
def test_parse_number(text, want):
    got = parse_number(text)
    assert got == pytest.approx(want) if want is not None else got is None


def test_exact_match():
    assert exact_match("so \\boxed{ Paris }", "Paris").status == C
    assert exact_match("\\boxed{paris}", "Paris").status == W
    assert exact_match("the answer: 12", "12").status == C  # last-number fallback
    assert exact_match("the answer is Paris", "Paris", fallback="last_line").status == W  # whole line
    assert exact_match("Paris", "Paris", fallback="last_line").status == C
    assert exact_match("no number", "12").status == U


def test_numeric_tolerance():
    assert numeric_match("\\boxed{0.3333333}", "1/3", rel_tol=1e-6).status == C
    assert numeric_match("\\boxed{0.3333}", "1/3", rel_tol=1e-6).status == W
    assert numeric_match("\\boxed{0.3333}", "1/3", rel_tol=1e-3).status == C
    assert numeric_match("\\boxed{1,000}", 1000).status == C
    assert numeric_match("\\boxed{abc}", "1").status == U
    assert numeric_match("\\boxed{1}", "one").status == E  # a non-numeric reference is a data problem
    assert numeric_match("\\boxed{0}", "0").status == C


def test_format_reward():
    assert format_reward("work... \\boxed{3}").reward == 1.0
    assert format_reward("\\boxed{3} and \\boxed{4}").reward == 0.0
    assert format_reward("no box 3").reward == 0.0
    assert format_reward("\\boxed{}").reward == 0.0
    assert format_reward("\\boxed{3").reward == 0.0


def test_compose_and_metrics():
    fn = compose([(exact_match, 1.0), (format_reward, 0.25)])
    assert fn("\\boxed{7}", "7") == Verdict(1.25, C)
    assert fn("\\boxed{8}", "7") == Verdict(0.25, W)
    assert fn("7", "7") == Verdict(1.0, C)  # fallback found it; no format credit
    batch = compose_batch([(lambda rs, refs: [exact_match(r, g) for r, g in zip(rs, refs)], 2.0)])
    assert [v.reward for v in batch(["\\boxed{1}", "\\boxed{2}"], ["1", "1"])] == [2.0, 0.0]
    vs = [Verdict(1, C), Verdict(0, W), Verdict(0, W), Verdict(0, Status.TIMEOUT)]
    m = count_statuses(vs)
    assert m == {"reward/status_correct": 0.25, "reward/status_wrong": 0.5, "reward/status_unparsable": 0.0,
                 "reward/status_timeout": 0.25, "reward/status_error": 0.0}
    np.testing.assert_array_equal(rewards_array(vs), np.array([1, 0, 0, 0], np.float32))
    assert count_statuses([])["reward/status_correct"] == 0.0


def _cfg(**reward):
    cfg = base_config()
    for k, v in reward.items():
        cfg.reward[k] = v
    return cfg


def test_factory_host_verifiers():
    with make_reward_fn(_cfg(verifier="exact")) as fn:
        assert [v.status for v in fn(["\\boxed{a}", "\\boxed{b}"], ["a", "a"])] == [C, W]
    with make_reward_fn(_cfg(verifier="numeric", numeric_tolerance=1e-2)) as fn:
        assert [v.status for v in fn(["\\boxed{3.14}", "\\boxed{3.2}"], ["3.1416", "3.1416"])] == [C, W]
    with make_reward_fn(_cfg(verifier="numeric", numeric_tolerance=1e-6)) as fn:  # the field changes behaviour
        assert fn(["\\boxed{3.14}"], ["3.1416"])[0].status == W
    with make_reward_fn(_cfg(verifier="exact", fallback="none")) as fn:
        assert fn(["it is 5"], ["5"])[0].status == U
    with make_reward_fn(_cfg(verifier="exact", format_weight=0.5)) as fn:
        vs = fn(["\\boxed{5}", "\\boxed{4}", "5"], ["5", "5", "5"])
        assert [v.reward for v in vs] == [1.5, 0.5, 1.0] and [v.status for v in vs] == [C, W, C]
        assert fn.metrics(vs)["reward/status_correct"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 responses but 1 references"):
        make_reward_fn(_cfg(verifier="exact"))(["a", "b"], ["a"])


def test_factory_task_verifier_and_token_reward():
    cfg = _cfg(verifier="task")
    cfg.data.source, cfg.data.task = "embedded", "sum_pair"
    from rlvr_jax.data.tasks import get_task

    task = get_task("sum_pair")
    batch = task.sample(0, 4)
    q = batch.queries[0]
    good = task.answers(q)[0]
    with make_reward_fn(cfg, task) as fn:
        assert [v.status for v in fn([good, "1+", "99+99"], [q, q, q])] == [C, U, W]
    reward_fn = task.verify_batch
    ids, mask = task.answer_tokens(q)
    r = reward_fn(np.repeat(batch.params_BxK[:1], len(ids), 0), ids, mask)
    assert isinstance(r, jax.Array) and (np.asarray(r) == 1).all()
    cfg.data.source, cfg.data.path = "jsonl", "rows.jsonl"
    with pytest.raises(ConfigError, match="config.reward.verifier: 'task' needs"):
        make_reward_fn(cfg, task)
    with pytest.raises(ConfigError, match="config.reward.verifier: 'task' needs"):
        validate(cfg)  # refused at start-up, before any model is built


def test_answer_verifiers_compare_a_task_entry_by_its_answer():
    """A reasoning-gym row's reference is its whole entry (the task scorer reads it); math / exact / numeric
    compare against entry['answer']. Before, math-verify parsed the entry's repr and \\boxed{1} scored correct
    on every question."""
    from rlvr_jax.data.sources import make_source
    from rlvr_jax.rewards.factory import answer_of

    cfg = _cfg(workers=1)
    cfg.data.source, cfg.data.task, cfg.data.template = "reasoning_gym", "basic_arithmetic", "none"
    cfg.data.task_params = '{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}'
    rows, _ = make_source(cfg).take(6)
    entries = [r["reference"] for r in rows]
    assert all(isinstance(e, dict) for e in entries) and answer_of(entries[0]) == entries[0]["answer"]
    assert answer_of("7") == "7"
    for verifier in ("math", "exact", "numeric"):
        cfg.reward.verifier = verifier
        with make_reward_fn(cfg) as fn:
            right = fn([f"so \\boxed{{{e['answer']}}}" for e in entries], entries)
            assert [v.status for v in right] == [C] * len(entries), verifier
            wrong = [e for e in entries if e["answer"] != "1"]
            assert [v.status for v in fn(["\\boxed{1}"] * len(wrong), wrong)] == [W] * len(wrong), verifier
            idx = [e for e in entries if e["answer"] != str(e["metadata"]["source_index"])]
            got = fn([f"\\boxed{{{e['metadata']['source_index']}}}" for e in idx], idx)
            assert [v.status for v in got] == [W] * len(idx), verifier
