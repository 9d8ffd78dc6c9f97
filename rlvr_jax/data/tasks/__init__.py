"""Embedded token tasks with enumerable answer sets; `get_task(name)` builds one by name."""
from __future__ import annotations

from rlvr_jax.data.tasks.base import QueryBatch, Task
from rlvr_jax.data.tasks.countdown_small import CountdownSmall
from rlvr_jax.data.tasks.multiple import Multiple
from rlvr_jax.data.tasks.sum_pair import SumPair
from rlvr_jax.data.tasks.tokenizer import TinyTokenizer

TASKS = {"sum_pair": SumPair, "multiple": Multiple, "countdown_small": CountdownSmall}


def get_task(name: str, **kwargs) -> Task:
    """The embedded task called `name` (kwargs go to its constructor); ValueError listing known names."""
    if name not in TASKS:
        raise ValueError(f"data.task: unknown embedded task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name](**kwargs)


__all__ = ["TASKS", "get_task", "Task", "QueryBatch", "TinyTokenizer", "SumPair", "Multiple", "CountdownSmall"]
