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
