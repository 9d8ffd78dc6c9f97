"""data: embedded token tasks (enumerable answer sets), dataset readers, prompt templates, prompt sources.

Names are imported lazily so `import rlvr_jax.data` stays cheap (no grain/JAX until needed).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "get_task": "rlvr_jax.data.tasks", "TASKS": "rlvr_jax.data.tasks", "Task": "rlvr_jax.data.tasks",
    "QueryBatch": "rlvr_jax.data.tasks", "TinyTokenizer": "rlvr_jax.data.tasks",
    "make_source": "rlvr_jax.data.sources", "PromptSource": "rlvr_jax.data.sources",
    "make_template": "rlvr_jax.data.templates", "make_converter": "rlvr_jax.data.schemas",
    "DataError": "rlvr_jax.data.schemas", "BadRow": "rlvr_jax.data.schemas",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rlvr_jax.data' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
