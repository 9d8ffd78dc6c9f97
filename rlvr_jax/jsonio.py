"""The one JSON writer: strict JSON from numpy/JAX values, written atomically (never half a file).

Non-finite floats become the strings "nan", "inf", "-inf" (strict JSON, and lossless:
`from_json_number` reads them back), tuples become lists and keys become strings.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Mapping

import numpy as np

NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _float(v: float):
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def to_jsonable(x: Any) -> Any:
    """Python natives for JSON: arrays (numpy or JAX) to lists, scalars to bool/int/float, non-finite to strings."""
    if isinstance(x, Mapping) or (hasattr(x, "items") and not isinstance(x, np.ndarray)):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if x is None or isinstance(x, (str, bool)):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return _float(float(x))
    if isinstance(x, (np.ndarray, np.generic)) or type(x).__module__.startswith("jax"):
        a = np.asarray(x)
        return to_jsonable(a.item() if a.ndim == 0 else a.tolist())
    raise TypeError(f"to_jsonable: {type(x).__name__} is not JSON-serialisable ({x!r:.60})")


def from_json_number(v):
    """A number written by `to_jsonable` (including "nan"/"inf"/"-inf") back as a float; others unchanged."""
    if isinstance(v, str) and v in NONFINITE:
        return NONFINITE[v]
    return v


def dumps(x: Any, indent: int | None = None) -> str:
    return json.dumps(to_jsonable(x), indent=indent, allow_nan=False)


def write_json(path: str, x: Any, indent: int = 1) -> str:
    """Writes `x` to `path` through a temporary file in the same folder and a rename; returns path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    text = dumps(x, indent)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
