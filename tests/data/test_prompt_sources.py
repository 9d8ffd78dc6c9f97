"""Prompt sources: seeded order, a fresh permutation each epoch, exact resume from the iterator state,
sharding, embedded-task and reasoning-gym sources."""
import json

import numpy as np
import pytest

from rlvr_jax.config import base_config
from rlvr_jax.data.schemas import DataError
from rlvr_jax.data.sources import make_source
from rlvr_jax.data.tasks import get_task
from rlvr_jax.rewards.base import Status

N = 13


@pytest.fixture()
def jsonl_cfg(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"problem": f"q{i}", "answer": str(i)}) for i in range(N)) + "\n")
    cfg = base_config()
    cfg.data.source, cfg.data.path, cfg.data.schema, cfg.data.template = "jsonl", str(path), "deepscaler", "none"
    cfg.data.eval_size = 0  # every row trains (the held-out slice is tested in test_heldout_slice_never_trains)
    return cfg


def _ids(rows):
    return [r["answer"] for r in rows]


def test_seeded_epochs_are_permutations(jsonl_cfg):
    rows, _ = make_source(jsonl_cfg).take(3 * N)
    e0, e1, e2 = _ids(rows[:N]), _ids(rows[N:2 * N]), _ids(rows[2 * N:])
    assert sorted(e0) == sorted(e1) == sorted(e2) == sorted(str(i) for i in range(N))
    assert e0 != e1 and e0 != [str(i) for i in range(N)]  # shuffled, and reshuffled each epoch
    again, _ = make_source(jsonl_cfg).take(3 * N)
    assert _ids(again) == _ids(rows)  # same seed, same order
    jsonl_cfg.train.seed = 1
    other, _ = make_source(jsonl_cfg).take(N)
    assert _ids(other) != e0


@pytest.mark.parametrize("first", [0, 5, N + 2])  # start, mid-epoch, second epoch
def test_resume_is_exact(jsonl_cfg, first):
    it = make_source(jsonl_cfg).iterator()
    for _ in range(first):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # the state survives a JSON checkpoint
    want = [next(it)["answer"] for _ in range(2 * N)]
    resumed = make_source(jsonl_cfg).iterator()  # a new process would rebuild the source from the config
    resumed.set_state(state)
    assert [next(resumed)["answer"] for _ in range(2 * N)] == want
    rows, after = make_source(jsonl_cfg).take(4, state)
    assert _ids(rows) == want[:4]
    assert _ids(make_source(jsonl_cfg).take(3, after)[0]) == want[4:7]


def test_shards_partition_the_rows(jsonl_cfg):
    shards = [make_source(jsonl_cfg, shard_index=i, shard_count=3) for i in range(3)]
    seen = [set(_ids(s.take(len(s))[0])) for s in shards]
    assert sum(len(s) for s in seen) == N and set.union(*seen) == {str(i) for i in range(N)}
    with pytest.raises(DataError, match="shard_index 3"):
        make_source(jsonl_cfg, shard_index=3, shard_count=3)


def test_embedded_source_rows_verify():
    cfg = base_config()
    cfg.data.source, cfg.data.task, cfg.data.size, cfg.data.eval_size = "embedded", "multiple", 50, 8
    src = make_source(cfg)
    assert len(src) == 50
    task = get_task("multiple")
    rows, _ = src.take(60)
    for r in rows:
        q = r["reference"]
        assert r["answers"] == task.answers(q) and task.verify_text(q, r["answer"]).status == Status.CORRECT
        assert task.tokenizer.decode(r["prompt_ids"]) == r["prompt"] == task.prompt_text(q)
        assert task.query_from_params(r["params"]) == q
    ev = make_source(cfg, eval=True)
    eval_rows, _ = ev.take(len(ev))
    assert len(eval_rows) == 8
    with pytest.raises(StopIteration):
        ev.take(9)  # one pass, no repeat
    assert {r["id"] for r in eval_rows}.isdisjoint({r["id"] for r in rows})


def test_reasoning_gym_source_and_scorer():
    pytest.importorskip("reasoning_gym")
    from rlvr_jax.rewards.gym import score_gym

    cfg = base_config()
    cfg.data.source, cfg.data.size, cfg.data.template = "reasoning_gym", 6, "none"
    for name in ("gsm_symbolic", "countdown", "basic_arithmetic"):
        cfg.data.task = name
        rows, _ = make_source(cfg).take(6)
        assert len({r["id"] for r in rows}) == 6
        for r in rows[:2]:
            assert r["prompt"] == r["reference"]["question"] and r["answer"] == str(r["reference"]["answer"])
            # the dataset's own scorer through our extraction (<answer> tags, \boxed{}, last line)
            for resp in (f"<answer>{r['answer']}</answer>", f"so \\boxed{{{r['answer']}}}", f"ok\n{r['answer']}"):
                v = score_gym(resp, r["reference"], 5.0)
                assert v == v.__class__(1.0, Status.CORRECT), (name, resp)
            assert score_gym("<answer>-987654</answer>", r["reference"], 5.0).status == Status.WRONG
    cfg.data.task = "no_such_dataset"
    with pytest.raises(DataError, match="config.data.task: cannot create reasoning-gym dataset 'no_such_dataset'"):
        make_source(cfg)


def test_config_errors(tmp_path):
    cfg = base_config()
    cfg.data.source, cfg.data.path = "jsonl", ""
    with pytest.raises(DataError, match="config.data.path: required"):
        make_source(cfg)
    cfg.data.source = "csv"
    with pytest.raises(DataError, match="config.data.source: 'csv'"):
        make_source(cfg)
    cfg.data.source, cfg.data.task = "embedded", "nope"
    with pytest.raises(ValueError, match="data.task: unknown embedded task"):
        make_source(cfg)


def test_prompt_ids_are_left_padded_task_prompts():
    cfg = base_config()
    cfg.data.source, cfg.data.task, cfg.data.size = "embedded", "countdown_small", 10
    rows, _ = make_source(cfg).take(10)
    ids = np.stack([r["prompt_ids"] for r in rows])
    assert ids.shape == (10, get_task("countdown_small").prompt_len) and ids.dtype == np.int32


def test_heldout_slice_never_trains(jsonl_cfg):
    """With no eval files or split, a seeded slice of data.eval_size rows is the eval set and leaves training."""
    from rlvr_jax.data.sources import make_eval_sets
    jsonl_cfg.data.eval_size = 4
    (name, held), = make_eval_sets(jsonl_cfg)
    train, _ = make_source(jsonl_cfg).take(N - 4)
    assert name == "heldout" and len(held) == 4 and len(make_source(jsonl_cfg)) == N - 4
    assert {r["answer"] for r in held}.isdisjoint({r["answer"] for r in train})
    assert {r["answer"] for r in held} | {r["answer"] for r in train} == {str(i) for i in range(N)}
    again = make_eval_sets(jsonl_cfg)[0][1]
    assert [r["answer"] for r in again] == [r["answer"] for r in held]  # the same slice every time
    jsonl_cfg.data.eval_size = N
    with pytest.raises(DataError, match="config.data.eval_size: 13 held-out rows leave none"):
        make_source(jsonl_cfg)


def test_eval_files_are_named_sets_and_take_nothing_from_training(jsonl_cfg, tmp_path):
    from rlvr_jax.data.sources import make_eval_sets
    for name, n in (("gsm_mini", 3), ("aime_mini", 2)):
        (tmp_path / f"{name}.jsonl").write_text(
            "\n".join(json.dumps({"problem": f"{name} {i}", "answer": str(i)}) for i in range(n)) + "\n")
    jsonl_cfg.data.eval_size = 5  # ignored when eval files are named
    jsonl_cfg.data.eval_files = f"{tmp_path / 'gsm_mini.jsonl'}, {tmp_path / 'aime_mini.jsonl'}"
    sets = make_eval_sets(jsonl_cfg)
    assert [(n, len(r)) for n, r in sets] == [("gsm_mini", 3), ("aime_mini", 2)]
    assert sets[0][1][0]["prompt"] == "gsm_mini 0" and len(make_source(jsonl_cfg)) == N
    jsonl_cfg.data.eval_files = str(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="config.data.eval_files: .*missing.jsonl' does not exist"):
        make_eval_sets(jsonl_cfg)


def test_reasoning_gym_task_params_and_mix():
    pytest.importorskip("reasoning_gym")
    from rlvr_jax.data.sources import gym_specs
    cfg = base_config()
    cfg.data.source, cfg.data.size, cfg.data.eval_size, cfg.data.template = "reasoning_gym", 40, 8, "none"
    cfg.data.task = "basic_arithmetic"
    cfg.data.task_params = '{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}'
    rows, _ = make_source(cfg).take(20)
    for r in rows:  # two terms of one digit: "Calculate a op b." with |a|, |b| <= 9
        nums = [int(x) for x in __import__("re").findall(r"-?\d+", r["question"])]
        assert len(nums) == 2 and all(abs(x) <= 9 for x in nums), r["question"]
    held = {r["question"] for r in make_source(cfg, eval=True).take(8)[0]}
    src = make_source(cfg)
    assert held.isdisjoint({r["question"] for r in src.take(len(src))[0]})  # held-out questions never train
    cfg.data.task, cfg.data.task_params = "basic_arithmetic:3,chain_sum:1", '{"basic_arithmetic": {"max_terms": 2}}'
    rows, _ = make_source(cfg).take(40)
    kinds = [r["reference"]["metadata"]["source_dataset"] for r in rows]
    assert kinds.count("basic_arithmetic") > kinds.count("chain_sum") > 0
    assert gym_specs("a:0.7, b:0.3", '{"b": {"x": 1}}') == [("a", 0.7, {}), ("b", 0.3, {"x": 1})]
    for task, params, msg in (("a,b", '{"c": {}}', "keys \\['c'\\] are not tasks"), ("a", "[1]", "JSON object"),
                              ("a:-1", "", "must be > 0"), ("a", "{bad", "not a JSON object")):
        with pytest.raises(DataError, match=msg):
            gym_specs(task, params)
    cfg.data.task, cfg.data.task_params = "basic_arithmetic", '{"no_such_field": 1}'
    with pytest.raises(DataError, match="config.data.task: cannot create reasoning-gym dataset 'basic_arithmetic' "
                                        "\\(check data.task_params\\)"):
        make_source(cfg)
