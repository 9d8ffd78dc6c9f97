"""Prompt sources: seeded, checkpointable streams of {"prompt", "answer", "id", "reference", ...} rows.

One shape for every source (embedded tasks, reasoning-gym, JSONL/Parquet/HF/tfds files): a grain
`MapDataset` (random access) shuffled with the seed and repeated with a fresh order each epoch.
`source.iterator()` is a grain iterator whose `get_state()`/`set_state()` make resume exact.
The trainer passes `row["reference"]` to the reward function of `rewards.factory.make_reward_fn`.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import grain
import numpy as np

from rlvr_jax.data import readers
from rlvr_jax.data.schemas import DataError, make_converter
from rlvr_jax.data.templates import DEFAULT_PLAIN, make_template

_EVAL_SEED_OFFSET = 1_000_003  # procedural eval queries come from a disjoint seed stream
REASONING_GYM_TASKS = ("gsm_symbolic", "countdown", "basic_arithmetic")  # tested; any reasoning-gym name works


class PromptSource:
    """A seeded, shuffled, repeating, checkpointable prompt stream over a random-access dataset."""

    def __init__(self, dataset: grain.MapDataset, *, seed: int, shuffle: bool = True, num_epochs: int | None = None,
                 name: str = "", bad_rows: int = 0, bad_reasons: dict | None = None, first_bad: Sequence[str] = (),
                 shard_index: int = 0, shard_count: int = 1):
        if not 0 <= shard_index < shard_count:
            raise DataError(f"prompt source: shard_index {shard_index} not in [0, {shard_count})")
        if shard_count > 1:
            dataset = dataset[shard_index::shard_count]
        self.size = len(dataset)
        if self.size == 0:
            raise DataError(f"prompt source {name!r}: no rows (after sharding {shard_index}/{shard_count})")
        if shuffle:
            dataset = dataset.shuffle(seed=seed)
        self.dataset = dataset.repeat(num_epochs)  # reseeded each epoch
        self.name = name
        self.bad_rows = bad_rows
        self.bad_reasons = dict(bad_reasons or {})
        self.first_bad = list(first_bad)

    def __len__(self) -> int:
        """Distinct rows in one epoch (of this shard)."""
        return self.size

    def iterator(self) -> grain.DatasetIterator:
        """A fresh iterator; `get_state()` -> small JSON-able dict, `set_state(state)` resumes exactly."""
        return iter(self.dataset.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=16)))

    def __iter__(self):
        return self.iterator()

    def take(self, n: int, state: dict | None = None) -> tuple[list[dict], dict]:
        """n rows from `state` (None: the start) and the state after them."""
        it = self.iterator()
        if state is not None:
            it.set_state(state)
        rows = [next(it) for _ in range(n)]
        return rows, it.get_state()

    def metrics(self) -> dict[str, float]:
        """Data-quality counters for the logs."""
        return {"data/bad_rows": float(self.bad_rows), "data/rows": float(self.size)}


# ----------------------------------------------------------------------------- row builders


def _templated(template: Callable[[str], str]) -> Callable[[dict], dict]:
    def apply(row: dict) -> dict:
        out = dict(row)
        out["prompt"] = template(row["question"])
        out.setdefault("reference", row["answer"])
        return out

    return apply


def _task_rows(task, seed: int, size: int) -> grain.MapDataset:
    def row(i: int) -> dict:
        batch = task.sample(np.random.default_rng([seed, int(i)]), 1)
        q = batch.queries[0]
        return {"question": batch.texts[0], "answer": task.answers(q)[0], "answers": task.answers(q),
                "id": f"{task.name}:{seed}:{int(i)}", "reference": q, "params": batch.params_BxK[0],
                "prompt_ids": batch.prompts_BxP[0]}

    return grain.MapDataset.range(size).map(row)


def _gym_rows(name: str, seed: int, size: int) -> grain.MapDataset:
    try:
        import reasoning_gym  # noqa: PLC0415
    except ImportError:
        raise DataError("data.source='reasoning_gym' needs reasoning-gym: pip install 'rlvr_jax[tasks]'") from None
    try:
        ds = reasoning_gym.create_dataset(name, size=size, seed=seed)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"config.data.task: cannot create reasoning-gym dataset {name!r} ({e})") from None

    def row(i: int) -> dict:
        entry = ds[int(i)]
        return {"question": entry["question"], "answer": str(entry["answer"]), "id": f"{name}:{seed}:{int(i)}",
                "reference": entry}

    return grain.MapDataset.range(size).map(row)


def make_source(cfg, *, tokenizer: Any = None, split: str | None = None, plain_template: str = DEFAULT_PLAIN,
                shard_index: int = 0, shard_count: int = 1, eval: bool = False) -> PromptSource:  # noqa: A002
    """The prompt source of the `data` config group (`cfg` is the whole config or just `cfg.data`).

    eval=True: the held-out procedural queries (data.eval_size, a disjoint seed stream, one pass,
    no shuffle); for file sources it reads `split` in file order, one pass.
    """
    d = cfg.data if hasattr(cfg, "data") else cfg
    seed = int(cfg.train.seed) if hasattr(cfg, "train") else 0
    kind = d.source
    if kind == "embedded":
        from rlvr_jax.data.tasks import get_task  # noqa: PLC0415

        task = get_task(d.task)
        size = d.eval_size if eval else d.size
        rows = _task_rows(task, seed + (_EVAL_SEED_OFFSET if eval else 0), size)
        # embedded prompts are the task's own token ids; the text is the question itself
        return PromptSource(rows.map(_templated(lambda q: q)), seed=seed, shuffle=not eval,
                            num_epochs=1 if eval else None, name=f"embedded:{d.task}",
                            shard_index=shard_index, shard_count=shard_count)
    template = make_template(d.template, tokenizer=tokenizer, system_prompt=d.system_prompt,
                             plain_template=plain_template)
    if kind == "reasoning_gym":
        size = d.eval_size if eval else d.size
        rows = _gym_rows(d.task, seed + (_EVAL_SEED_OFFSET if eval else 0), size)
        return PromptSource(rows.map(_templated(template)), seed=seed, shuffle=not eval,
                            num_epochs=1 if eval else None, name=f"reasoning_gym:{d.task}",
                            shard_index=shard_index, shard_count=shard_count)
    if kind in ("jsonl", "parquet", "hf", "tfds"):
        if not d.path:
            raise DataError(f"config.data.path: required when data.source={kind!r}")
        convert = make_converter(d.schema, d.prompt_key, d.answer_key)
        loaded = readers.load_rows(readers.read(kind, d.path, split or d.split), convert, d.on_bad_row)
        ds = grain.MapDataset.source(loaded.rows).map(_templated(template))
        return PromptSource(ds, seed=seed, shuffle=not eval, num_epochs=1 if eval else None,
                            name=f"{kind}:{d.path}", bad_rows=loaded.bad_rows, bad_reasons=loaded.bad_reasons,
                            first_bad=loaded.first_bad, shard_index=shard_index, shard_count=shard_count)
    raise DataError(f"config.data.source: {kind!r} is not one of embedded, reasoning_gym, jsonl, parquet, hf, tfds")
