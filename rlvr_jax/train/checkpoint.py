"""Checkpoints of the TrainState with orbax: keep-N, async saves, exact resume, corrupt-step fallback, SIGTERM.

A checkpoint step holds two items: `state` (every array of the TrainState, as a nested dict keyed by
its pytree path) and `extra` (JSON: data-iterator state, config, metrics, plus our `_ckpt` record of
each leaf's shape, dtype and a device-side fingerprint). Restore rebuilds the exact tree of the
abstract state it is given (nnx.Variable wrappers, None members, optax namedtuples) and checks the
fingerprints, so a truncated or garbled latest step is detected, moved aside and the previous one used.
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import types
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from rlvr_jax.jsonio import to_jsonable

_log = logging.getLogger(__name__)
_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used with the current state (structure, shapes) or an unreadable step."""


class CheckpointFallbackWarning(UserWarning):
    """The latest checkpoint was unreadable; an earlier one is used."""


class _Corrupt(Exception):
    pass


# ----------------------------------------------------------------------------------------- trees

def _key_str(k) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def flat_leaves(tree) -> dict[str, Any]:
    """{'policy/layers/0/mlp/up_proj/kernel/value': leaf, ...} in tree order (None members have no leaves)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out["/".join(_key_str(k) for k in path)] = leaf
    return out


def _nest(flat: dict[str, Any]) -> dict:
    root: dict = {}
    for name, leaf in flat.items():
        node = root
        *parents, last = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return root


def _unnest(nested: dict, names) -> list:
    out = []
    for name in names:
        node = nested
        for p in name.split("/"):
            node = node[p]
        out.append(node)
    return out


# ----------------------------------------------------------------------------------- fingerprint

def param_fingerprint(params) -> str:
    """sha256 of every parameter's bytes (bit-exact comparisons across runs and processes)."""
    import hashlib
    h = hashlib.sha256()
    for x in jax.tree.leaves(jax.device_get(params)):
        h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
    return h.hexdigest()


def _fp_one(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    if size == 8:
        u = jax.lax.bitcast_convert_type(x, jnp.uint32)
    else:
        u = jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]).astype(jnp.uint32)
    u = u.reshape(-1)
    idx = jax.lax.iota(jnp.uint32, u.shape[0])
    h = (u ^ (idx * jnp.uint32(0x85EBCA6B))) * jnp.uint32(0x9E3779B1)  # position-dependent, bijective per word
    h = h ^ (h >> 16)
    return jnp.sum(h, dtype=jnp.uint32)  # modular sum: exact in any reduction order, sharded or not


_fingerprints = jax.jit(lambda leaves: [_fp_one(x) for x in leaves])


def fingerprints(flat: dict[str, Any]) -> dict[str, int]:
    """A 32-bit order-independent hash of each leaf's bits, computed on device (works for sharded arrays)."""
    vals = jax.device_get(_fingerprints(list(flat.values())))
    return {k: int(v) for k, v in zip(flat, vals)}


def _spec(x) -> list:
    return [list(x.shape), str(np.dtype(x.dtype)) if not jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else str(x.dtype)]


# ------------------------------------------------------------------------------------ checkpointer

class Checkpointer:
    """Saves/restores a TrainState plus JSON `extra` under `directory/<step>`; keeps the newest `keep`."""

    def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
        directory = str(directory)
        self.directory = epath.Path(directory if "://" in directory else os.path.abspath(directory))
        opts = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        self._mgr = ocp.CheckpointManager(self.directory, options=opts, item_names=("state", "extra"))

    # -- save
    def save(self, step: int, state, extra: dict | None = None, *, force: bool = False) -> bool:
        """Starts saving `state` and `extra` as `step` (async unless configured otherwise); False if skipped
        (the step already exists). Safe to donate `state` once this returns (it is copied to host first)."""
        step = int(step)
        if step in self._mgr.all_steps():
            return False
        flat = flat_leaves(state)
        fps = fingerprints(flat)
        record = {"format": _FORMAT, "leaves": {k: _spec(v) + [fps[k]] for k, v in flat.items()}}
        extra_j = to_jsonable(dict(extra or {}))
        if "_ckpt" in extra_j:
            raise CheckpointError("checkpoint extra: the key '_ckpt' is reserved")
        extra_j["_ckpt"] = record
        return bool(self._mgr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_nest(flat)), extra=ocp.args.JsonSave(extra_j)), force=force))

    # -- query
    def latest_step(self) -> int | None:
        """Newest complete step on disk (orbax's temporary folders of unfinished saves are ignored)."""
        self._mgr.reload()
        return self._mgr.latest_step()

    def all_steps(self) -> list[int]:
        """Complete steps on disk, ascending."""
        self._mgr.reload()
        return sorted(self._mgr.all_steps())

    # -- restore
    def restore(self, abstract_state, step: int | None = None, shardings=None):
        """(step, state, extra) restored into the exact tree of `abstract_state` (ShapeDtypeStruct or array
        leaves; placement from `shardings`, else each leaf's own sharding, else device 0), or None when
        there is no checkpoint. With step=None an unreadable newest step is moved aside to
        `<step>.corrupt` with a warning and the previous one is tried."""
        self.wait()
        treedef = jax.tree.structure(abstract_state)
        flat_abs = _abstract_leaves(abstract_state, shardings)
        if step is not None:
            self._mgr.reload()
            if int(step) not in self._mgr.all_steps():
                raise CheckpointError(f"checkpoint: no step {step} in {self.directory} (have {self.all_steps()})")
            try:
                return self._restore_step(int(step), treedef, flat_abs)
            except _Corrupt as e:
                raise CheckpointError(f"checkpoint: step {step} in {self.directory} is unreadable: {e}") from None
        for s in reversed(self.all_steps()):
            try:
                return self._restore_step(s, treedef, flat_abs)
            except _Corrupt as e:
                moved = self._quarantine(s)
                msg = (f"checkpoint: step {s} in {self.directory} is unreadable ({e}); moved to {moved.name}, "
                       f"falling back to the previous checkpoint")
                _log.warning(msg)
                warnings.warn(msg, CheckpointFallbackWarning, stacklevel=2)
        return None

    def _restore_step(self, step: int, treedef, flat_abs: dict[str, jax.ShapeDtypeStruct]):
        try:
            extra = dict(self._mgr.restore(step, args=ocp.args.Composite(extra=ocp.args.JsonRestore()))["extra"])
            record = extra.pop("_ckpt")
            saved = {k: (tuple(v[0]), v[1], int(v[2])) for k, v in record["leaves"].items()}
        except Exception as e:  # noqa: BLE001 - any failure to read the JSON item means a broken step
            raise _Corrupt(f"extra: {_first_line(e)}") from None
        _check_compatible(step, saved, flat_abs)
        failure = None
        try:
            got = self._mgr.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_nest(flat_abs))))["state"]
            leaves = _unnest(got, flat_abs)
        except Exception as e:  # noqa: BLE001 - tensorstore/ocdbt/zarr errors all mean unreadable data
            failure = f"state: {_first_line(e)}"
        if failure is not None:
            _collect_quietly()
            raise _Corrupt(failure)
        fps = fingerprints(dict(zip(flat_abs, leaves)))
        bad = [k for k in flat_abs if fps[k] != saved[k][2]]
        if bad:
            raise _Corrupt(f"fingerprint mismatch in {len(bad)} array(s), first {bad[0]}")
        return step, jax.tree.unflatten(treedef, leaves), extra

    def _quarantine(self, step: int) -> epath.Path:
        src = self.directory / str(step)
        dst = self.directory / f"{step}.corrupt"
        n = 1
        while dst.exists():
            n += 1
            dst = self.directory / f"{step}.corrupt-{n}"
        if jax.process_index() == 0:
            src.rename(dst)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"rlvr_jax_ckpt_quarantine_{step}")
        self._mgr.reload()
        return dst

    # -- lifecycle
    def wait(self):
        """Blocks until pending async saves are committed."""
        self._mgr.wait_until_finished()

    def close(self):
        """Waits for pending saves and releases orbax's resources."""
        self._mgr.wait_until_finished()
        self._mgr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _collect_quietly():
    """After a failed read orbax leaves sibling read coroutines to die in the garbage collector, each
    printing an 'Exception ignored' traceback; collect them now, silently (our warning says it all)."""
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: None if isinstance(u.object, types.CoroutineType) else old(u)
    try:
        gc.collect()
    finally:
        sys.unraisablehook = old


def _first_line(e: Exception) -> str:
    msg = str(e).split(". See full TensorStore details")[0].strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"[:240]


def _abstract_leaves(abstract_state, shardings) -> dict[str, jax.ShapeDtypeStruct]:
    flat = flat_leaves(abstract_state)
    if shardings is None:
        shard_list = [getattr(x, "sharding", None) for x in flat.values()]
    elif isinstance(shardings, jax.sharding.Sharding):
        shard_list = [shardings] * len(flat)
    else:
        shard_list = jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
        if len(shard_list) != len(flat):
            raise CheckpointError(f"checkpoint restore: shardings has {len(shard_list)} leaves, "
                                  f"the abstract state {len(flat)}")
    if jax.process_count() == 1:
        default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    else:
        default = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(jax.devices()), ("all",)),
                                             jax.sharding.PartitionSpec())
    return {k: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s if s is not None else default)
            for (k, x), s in zip(flat.items(), shard_list)}


def _check_compatible(step: int, saved: dict, flat_abs: dict):
    missing = [k for k in flat_abs if k not in saved]
    unexpected = [k for k in saved if k not in flat_abs]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint step {step}: its state does not match the current one (missing {len(missing)} "
            f"arrays, e.g. {missing[:2]}; unexpected {len(unexpected)}, e.g. {unexpected[:2]}); "
            f"did the config (model, memory, algo.kl_coef, optim) change? Use a fresh checkpoint.dir")
    for k, x in flat_abs.items():
        shape, dtype, _ = saved[k]
        if shape != tuple(x.shape) or dtype != _spec(x)[1]:
            raise CheckpointError(f"checkpoint step {step}: {k} is {dtype}{list(shape)} in the checkpoint but "
                                  f"{_spec(x)[1]}{list(x.shape)} in the current state")


# ------------------------------------------------------------------------------------- preemption

class Preemption:
    """`with Preemption() as p:` catches SIGTERM (TPU/GCE preemption) into `p.requested`; the loop checks
    it each iteration, saves and exits 0. The previous handlers come back on exit."""

    def __init__(self, signals=(signal.SIGTERM,)):
        self.signals = tuple(signals)
        self.requested = False
        self.signum: int | None = None
        self._old: dict = {}

    def _handler(self, signum, frame):
        self.requested = True
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            warnings.warn("Preemption: not in the main thread; SIGTERM will not be caught", stacklevel=2)
            return self
        for s in self.signals:
            self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
        self._old.clear()
        return False

    def should_stop(self) -> bool:
        """`requested` on this host or any other (a collective when there are several processes)."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils
        flags = multihost_utils.process_allgather(np.array([self.requested], np.int32))
        return bool(np.any(flags))


def _base(state):
    """`state.base` of a TrainState; None for any other pytree (Checkpointer and open_and_resume take any)."""
    return getattr(state, "base", None)


def base_record(state) -> dict | None:
    """Per-leaf fingerprints of a LoRA run's frozen base (`TrainState.base`), or None. The base is not written
    into checkpoints (it is rebuilt from model.*, unchanged); this record, kept in each step's `extra`, proves
    on resume that it is the same one."""
    return None if _base(state) is None else fingerprints(flat_leaves(state.base))


def without_base(state):
    """The part of a TrainState a checkpoint holds: everything but the frozen LoRA base."""
    return state if _base(state) is None else state.replace(base=None)


def restore_with_base(ckpt, state, shardings, step: int | None = None, where: str = ""):
    """ckpt.restore of a TrainState like `state` onto `shardings`, with `state.base` (the frozen LoRA base,
    not in checkpoints) put back after checking it is the base the checkpoint was trained on."""
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            without_base(state), without_base(shardings))
    got = ckpt.restore(abstract, step)
    if got is None or _base(state) is None:
        return got
    step, restored, extra = got
    want, have = extra.get("lora_base"), base_record(state)
    if want is not None and want != have:
        bad = sorted(k for k in have if want.get(k) != have[k])
        raise CheckpointError(f"checkpoint {where or ckpt.directory} step {step}: its LoRA adapters were trained on "
                              f"another base model ({len(bad)} of {len(have)} base weights differ, e.g. {bad[:1]}); "
                              f"load the run's model.* (source, path, dtype)")
    return step, restored.replace(base=state.base), extra


def open_and_resume(cfg, log_dir: str, state, shardings, log=print):
    """(Checkpointer, start step, state, extra) for a run: the configured checkpoint folder, and the
    latest complete checkpoint restored onto `shardings` when checkpoint.resume is on."""
    import os
    ckpt_dir = os.path.abspath(cfg.checkpoint.dir or os.path.join(log_dir, "ckpt"))
    ckpt = Checkpointer(ckpt_dir, keep=cfg.checkpoint.keep, async_save=cfg.checkpoint.async_save)
    if cfg.checkpoint.resume:
        got = restore_with_base(ckpt, state, shardings)
        if got is not None:
            step, state, extra = got
            log(f"resumed from {ckpt_dir} at step {step}")
            return ckpt, step, state, extra
    return ckpt, 0, state, {}
