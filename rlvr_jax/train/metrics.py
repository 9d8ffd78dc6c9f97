"""Metrics out of the loop: one JSON line per step, TensorBoard event files, optional W&B, a console line.

Only process 0 writes. Non-finite floats are written to JSON as the strings "nan", "inf", "-inf"
(strict JSON; `read_metrics` turns them back into floats). TensorBoard files go to `<log_dir>/tb`.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import time
from typing import Any, Iterable

import jax
import numpy as np

from rlvr_jax.config import ConfigError
from rlvr_jax.jsonio import NONFINITE, dumps, from_json_number, to_jsonable, write_json


# (label, metric name or alternatives tried in order)
DEFAULT_CONSOLE_KEYS: tuple = (
    ("reward", "reward_mean"),
    ("pass", ("correct_mean", "success_rate")),
    ("loss", "loss"),
    ("kl", "kl"),
    ("ent", "entropy"),
    ("len", "response_len_mean"),
    ("s/it", "time/s_per_it"),
    ("tok/s", "tokens_per_s"),
)


def _md(v) -> str:
    """A value for a TensorBoard markdown text entry: multi-line strings as an indented code block."""
    if isinstance(v, str) and "\n" in v:
        return "\n\n" + "\n".join("    " + line for line in v.splitlines())
    return str(v)


def purge_records(path: str, after: int) -> None:
    """Drops records of steps > `after` from a JSONL file (a resumed run writes them again)."""
    if not os.path.exists(path):
        return
    keep = [r for r in read_metrics(path, raw=True) if r.get("step", -1) <= after]
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in keep)


def _cfg_get(cfg, name: str, default):
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def flatten_metrics(metrics: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts flattened to 'a/b' keys; jax arrays fetched to host in one transfer."""
    metrics = jax.device_get(metrics)
    out = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_metrics(v, key + "/"))
        else:
            out[key] = v
    return out


def _scalar(v) -> float | None:
    """The value as a float when it is one number, else None."""
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, np.ndarray) and v.size == 1 and (np.issubdtype(v.dtype, np.number) or v.dtype == np.bool_):
        return float(v.reshape(()))
    return None


class MetricsWriter:
    """Per-step metrics to `<log_dir>/metrics.jsonl` (log.jsonl), TensorBoard (log.tensorboard) and W&B
    (log.wandb); a no-op on processes other than 0. `purge_after=s` (on resume) drops records of steps
    > s left by an interrupted run, so the logs read like one uninterrupted run."""

    def __init__(self, log_dir: str, log_cfg=None, *, config_dict: dict | None = None,
                 purge_after: int | None = None):
        self.log_dir = str(log_dir)
        self.active = jax.process_index() == 0
        self._jsonl = self._tb = self._wandb = None
        if not self.active:
            return
        use_wandb = bool(_cfg_get(log_cfg, "wandb", False))
        if use_wandb:
            try:
                import wandb
            except ImportError:
                raise ConfigError("config.log.wandb=True but the wandb package is not installed "
                                  "(pip install wandb, or set log.wandb=False)") from None
        os.makedirs(self.log_dir, exist_ok=True)
        if config_dict is not None:
            write_json(os.path.join(self.log_dir, "config.json"), config_dict)
        if _cfg_get(log_cfg, "jsonl", True):
            path = os.path.join(self.log_dir, "metrics.jsonl")
            if purge_after is not None:
                purge_records(path, purge_after)
            self._jsonl = open(path, "a")
        if _cfg_get(log_cfg, "tensorboard", True):
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(self.log_dir, "tb"),
                                     purge_step=None if purge_after is None else purge_after + 1)
        if use_wandb:
            self._wandb = wandb.init(dir=self.log_dir, config=config_dict,
                                     name=os.path.basename(os.path.normpath(self.log_dir)))

    def write(self, step: int, metrics: dict):
        """Records `metrics` (nested dicts, jax/numpy values) for `step` in every enabled sink."""
        if not self.active:
            return
        flat = flatten_metrics(metrics)
        step = int(step)
        if self._jsonl is not None:
            rec = {"step": step, "wall_time": round(time.time(), 3)}
            rec.update({k: to_jsonable(v) for k, v in flat.items()})
            self._jsonl.write(json.dumps(rec, allow_nan=False) + "\n")
            self._jsonl.flush()
        scalars = {k: s for k, s in ((k, _scalar(v)) for k, v in flat.items()) if s is not None}
        if self._tb is not None:
            for k, s in scalars.items():
                self._tb.add_scalar(k, s, step)
            for k, v in flat.items():
                if k not in scalars and isinstance(v, np.ndarray) and v.size > 1 and np.issubdtype(v.dtype, np.number):
                    self._tb.add_histogram(k, v.reshape(-1), step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def write_records(self, name: str, step: int, records: list[dict], *, text_tag: str = ""):
        """Appends `records` (JSON-able dicts, each tagged with `step`) to <log_dir>/<name>.jsonl, and with
        `text_tag` also as one TensorBoard text entry (markdown) per record."""
        if not self.active or not records:
            return
        with open(os.path.join(self.log_dir, f"{name}.jsonl"), "a", encoding="utf-8") as f:
            for r in records:
                f.write(dumps({"step": int(step), **r}) + "\n")
        if text_tag and self._tb is not None:
            for i, r in enumerate(records):
                body = "\n\n".join(f"**{k}**: {_md(v)}" for k, v in r.items())
                self._tb.add_text(f"{text_tag}/{i}", body, int(step))

    def flush(self):
        """Pushes buffered TensorBoard events to disk (the JSONL file is flushed on every write)."""
        if self._tb is not None:
            self._tb.flush()

    def close(self):
        """Flushes and closes every sink (idempotent)."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------ console

def fmt_number(x) -> str:
    """Compact: integers as is, 4 significant digits, scientific only below 1e-3 or at/above 1e6."""
    if x is None:
        return "-"
    if isinstance(x, str):
        x = NONFINITE.get(x, x)
        if isinstance(x, str):
            return x
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    if abs(x) >= 1e6 or abs(x) < 1e-3:
        return f"{x:.2e}"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    return f"{x:.4g}"


def console_line(step: int, metrics: dict, keys: Iterable = DEFAULT_CONSOLE_KEYS) -> str:
    """'step 12  reward 0.531  pass 0.5  loss -0.0123 ...' with the given (label, name[s]) keys; a plain
    string key is its own label; keys absent from `metrics` are left out."""
    flat = flatten_metrics(metrics)
    parts = [f"step {int(step)}"]
    for key in keys:
        label, names = (key, (key,)) if isinstance(key, str) else key
        names = (names,) if isinstance(names, str) else tuple(names)
        for n in names:
            if n in flat:
                v = _scalar(flat[n])
                parts.append(f"{label} {fmt_number(v if v is not None else flat[n])}")
                break
    return "  ".join(parts)


class Timer:
    """Seconds per phase: `with timer("sample"): ...` adds to `time/sample`; `timer.metrics()` returns and
    resets them. JAX dispatch is asynchronous: block on the phase's outputs inside the block to time it."""

    def __init__(self):
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            key = f"time/{phase}"
            self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - t0

    def metrics(self, reset: bool = True) -> dict[str, float]:
        out = dict(self.times)
        if reset:
            self.times.clear()
        return out


# ------------------------------------------------------------------------------------ reading

def _from_json(v):
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return from_json_number(v)


def read_metrics(path: str, *, raw: bool = False) -> list[dict]:
    """Records of a metrics.jsonl (or of `<path>/metrics.jsonl` for a run folder), "nan"/"inf" strings
    back to floats unless raw. A torn last line (killed mid-write) is skipped."""
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    with open(path) as f:
        lines = f.read().split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if all(not rest.strip() for rest in lines[i + 1:]):
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON line") from None
        out.append(rec if raw else {k: _from_json(v) for k, v in rec.items()})
    return out


def read_event_scalars(path: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from the TensorBoard event files under `path` (a file or a folder),
    parsed with tensorboardX's protos, no TensorBoard needed."""
    from tensorboardX.proto import event_pb2

    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, f) for root, _, fs in os.walk(path) for f in fs if "tfevents" in f)
    out: dict[str, list] = {}
    for fn in files:
        with open(fn, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            if pos + 12 + n + 4 > len(data):
                break  # torn record at the end
            ev = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in ev.summary.value:
                if v.HasField("simple_value"):
                    out.setdefault(v.tag, []).append((int(ev.step), float(v.simple_value)))
    return out
