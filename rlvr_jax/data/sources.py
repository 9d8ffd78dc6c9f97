"""Prompt sources: seeded, checkpointable streams of {"prompt", "answer", "id", "reference", ...} rows.

One shape for every source (embedded tasks, reasoning-gym, JSONL/Parquet/HF/tfds files): a grain
`MapDataset` (random access) shuffled with the seed and repeated with a fresh order each epoch.
`source.iterator()` is a grain iterator whose `get_state()`/`set_state()` make resume exact.
The trainer passes `row["reference"]` to the reward function of `rewards.factory.make_reward_fn`.
"""
from __future__ import annotations

import json
import os
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


def gym_specs(task: str, params_json: str = "") -> list[tuple[str, float, dict]]:
    """(name, weight, generator config) per reasoning-gym task of `data.task` ("name" or "a:0.7,b:0.3").

    data.task_params is a JSON object: the generator's fields for one task (e.g. {"min_terms": 2,
    "max_terms": 2, "max_digits": 1} for basic_arithmetic), or {task name: fields} for a mix.
    """
    specs = []
    for part in [p.strip() for p in str(task).split(",") if p.strip()]:
        name, _, w = part.partition(":")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise DataError(f"config.data.task: weight {w!r} of {name!r} is not a number") from None
        if weight <= 0:
            raise DataError(f"config.data.task: weight of {name!r} must be > 0, got {weight}")
        specs.append((name.strip(), weight))
    if not specs:
        raise DataError("config.data.task: names no reasoning-gym task")
    try:
        params = json.loads(params_json) if str(params_json).strip() else {}
    except json.JSONDecodeError as e:
        raise DataError(f"config.data.task_params: not a JSON object ({e.msg} at char {e.pos})") from None
    if not isinstance(params, dict):
        raise DataError(f"config.data.task_params: must be a JSON object, got {type(params).__name__}")
    names = [n for n, _ in specs]
    if len(specs) == 1:
        return [(names[0], specs[0][1], params)]
    unknown = set(params) - set(names)
    if unknown:
        raise DataError(f"config.data.task_params: keys {sorted(unknown)} are not tasks of the mix {names}")
    return [(n, w, dict(params.get(n, {}))) for n, w in specs]


def _gym_dataset(specs, seed: int, size: int):
    try:
        import reasoning_gym  # noqa: PLC0415
    except ImportError:
        raise DataError("data.source='reasoning_gym' needs reasoning-gym: pip install 'rlvr_jax[tasks]'") from None
    label = ",".join(n for n, _, _ in specs)
    try:
        if len(specs) == 1:
            name, _, conf = specs[0]
            return reasoning_gym.create_dataset(name, size=size, seed=seed, **conf)
        from reasoning_gym.composite import DatasetSpec  # noqa: PLC0415

        return reasoning_gym.create_dataset("composite", size=size, seed=seed,
                                            datasets=[DatasetSpec(n, w, c) for n, w, c in specs])
    except Exception as e:  # noqa: BLE001
        raise DataError(f"config.data.task: cannot create reasoning-gym dataset {label!r} "
                        f"(check data.task_params): {type(e).__name__}: {e}") from None


def _gym_rows(specs, seed: int, size: int, exclude: frozenset = frozenset()) -> grain.MapDataset:
    """Generated rows; questions in `exclude` (the held-out set) are dropped, so they never train."""
    ds = _gym_dataset(specs, seed, size)
    label = ",".join(n for n, _, _ in specs)
    keep = [i for i in range(size) if ds[i]["question"] not in exclude] if exclude else list(range(size))
    if not keep:
        raise DataError(f"config.data.eval_size: every one of the {size} generated {label!r} questions is in the "
                        f"held-out set; raise data.size, lower data.eval_size or widen data.task_params")

    def row(i: int) -> dict:
        entry = ds[int(i)]
        return {"question": entry["question"], "answer": str(entry["answer"]), "id": f"{label}:{seed}:{int(i)}",
                "reference": entry}

    return grain.MapDataset.source(keep).map(row)


def _heldout_split(n: int, seed: int, eval_size: int, where: str) -> tuple[list[int], list[int]]:
    """(train, held-out) row indices of a file of n rows: a seeded choice of eval_size rows held out."""
    if eval_size >= n:
        raise DataError(f"config.data.eval_size: {eval_size} held-out rows leave none of the {n} rows of {where} "
                        f"to train on; lower data.eval_size or give data.eval_files")
    perm = np.random.default_rng([seed, _EVAL_SEED_OFFSET]).permutation(n)
    return sorted(perm[eval_size:].tolist()), sorted(perm[:eval_size].tolist())


def make_source(cfg, *, tokenizer: Any = None, split: str | None = None, plain_template: str = DEFAULT_PLAIN,
                shard_index: int = 0, shard_count: int = 1, eval: bool = False) -> PromptSource:  # noqa: A002
    """The prompt source of the `data` config group (`cfg` is the whole config or just `cfg.data`).

    eval=True: the held-out queries, one pass, no shuffle: for procedural sources data.eval_size queries
    from a disjoint seed stream (reasoning-gym questions among them are dropped from training), for
    files a seeded slice of data.eval_size rows that training never sees (see `holds_out`).
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
        specs = gym_specs(d.task, d.task_params)
        if eval:
            rows = _gym_rows(specs, seed + _EVAL_SEED_OFFSET, d.eval_size)
        else:
            exclude = frozenset(_gym_dataset(specs, seed + _EVAL_SEED_OFFSET, d.eval_size)[i]["question"]
                                for i in range(d.eval_size)) if holds_out(d) else frozenset()
            rows = _gym_rows(specs, seed, d.size, exclude)
        return PromptSource(rows.map(_templated(template)), seed=seed, shuffle=not eval,
                            num_epochs=1 if eval else None, name=f"reasoning_gym:{d.task}",
                            shard_index=shard_index, shard_count=shard_count)
    if kind in readers.FILE_KINDS:
        if not d.path:
            raise DataError(f"config.data.path: required when data.source={kind!r}")
        convert = make_converter(d.schema, d.prompt_key, d.answer_key)
        loaded = readers.load_rows(readers.read(kind, d.path, split or d.split), convert, d.on_bad_row)
        rows = loaded.rows
        if holds_out(d):  # a seeded slice of eval_size rows is the eval set and never trains
            train_idx, eval_idx = _heldout_split(len(rows), seed, d.eval_size, d.path)
            rows = [rows[i] for i in (eval_idx if eval else train_idx)]
        ds = grain.MapDataset.source(rows).map(_templated(template))
        return PromptSource(ds, seed=seed, shuffle=not eval, num_epochs=1 if eval else None,
                            name=f"{kind}:{d.path}", bad_rows=loaded.bad_rows, bad_reasons=loaded.bad_reasons,
                            first_bad=loaded.first_bad, shard_index=shard_index, shard_count=shard_count)
    raise DataError(f"config.data.source: {kind!r} is not one of {', '.join(readers.SOURCES)}")


def holds_out(d) -> bool:
    """Whether a text source keeps a held-out slice of data.eval_size rows out of training: when no
    eval files and no eval split are named (those are separate benchmarks and take nothing away)."""
    return d.source != "embedded" and d.eval_size > 0 and not d.eval_files and not d.eval_split


def _file_kind(path: str) -> str:
    if os.path.isdir(path):
        return "hf"
    ext = os.path.splitext(path)[1].lower()
    kinds = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
    if ext not in kinds:
        raise DataError(f"config.data.eval_files: {path!r}: cannot tell the format (use .jsonl, .parquet or an HF "
                        f"datasets folder)")
    return kinds[ext]


def make_eval_sets(cfg, *, tokenizer: Any = None, plain_template: str = DEFAULT_PLAIN) -> list[tuple[str, list[dict]]]:
    """The named held-out sets of a text run, each (name, rows) with rows templated like training's.

    data.eval_files (comma list; each named by its file stem, read with data.schema / prompt_key /
    answer_key), else data.eval_split of data.path, else the held-out slice "heldout" of data.eval_size
    rows (never trained on); [] when data.eval_size is 0 and nothing else is named.
    """
    d = cfg.data
    template = make_template(d.template, tokenizer=tokenizer, system_prompt=d.system_prompt,
                             plain_template=plain_template)
    convert = make_converter(d.schema, d.prompt_key, d.answer_key)
    out = []
    if d.eval_files:
        for path in [p.strip() for p in d.eval_files.split(",") if p.strip()]:
            if not os.path.exists(path):
                raise DataError(f"config.data.eval_files: {path!r} does not exist")
            name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
            if name in {n for n, _ in out}:
                raise DataError(f"config.data.eval_files: two files are named {name!r}; eval sets need distinct names")
            loaded = readers.load_rows(readers.read(_file_kind(path), path, "test"), convert, d.on_bad_row)
            out.append((name, [_templated(template)(r) for r in loaded.rows]))
        return out
    if d.eval_split:
        if d.source not in ("hf", "tfds"):
            raise DataError(f"config.data.eval_split: data.source={d.source!r} has no splits (hf and tfds do); "
                            f"name the eval file in data.eval_files instead")
        loaded = readers.load_rows(readers.read(d.source, d.path, d.eval_split), convert, d.on_bad_row)
        return [(d.eval_split, [_templated(template)(r) for r in loaded.rows])]
    if d.eval_size > 0:
        src = make_source(cfg, tokenizer=tokenizer, plain_template=plain_template, eval=True)
        rows, _ = src.take(len(src))
        return [("heldout", rows)]
    return []
