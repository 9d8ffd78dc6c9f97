"""Logical names -> PartitionSpecs/NamedShardings for a mesh, and placing model state on it.

An axis that does not divide a dimension (e.g. 3 kv heads over tensor=2) is dropped for that
dimension (replicated), so any shape runs on any mesh; `explain` lists where that happened.
"""
from __future__ import annotations

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def _axis_size(mesh: Mesh, axes) -> int:
    if axes is None:
        return 1
    axes = (axes,) if isinstance(axes, str) else axes
    n = 1
    for a in axes:
        n *= mesh.shape[a]
    return n


def logical_to_spec(names, shape, mesh: Mesh, rules: dict) -> P:
    """PartitionSpec for an array with logical axis `names`; never uses a mesh axis twice."""
    if names is None:
        return P()
    used: set[str] = set()
    spec = []
    for name, dim in zip(names, shape):
        axes = rules.get(name) if name is not None else None
        if axes is not None:
            tup = (axes,) if isinstance(axes, str) else tuple(axes)
            tup = tuple(a for a in tup if a not in used and mesh.shape[a] > 1)
            if not tup or dim % _axis_size(mesh, tup):
                tup = ()
            used.update(tup)
            axes = None if not tup else (tup[0] if len(tup) == 1 else tup)
        spec.append(axes)
    return P(*spec)


def logical_names(var) -> tuple | None:
    """A Variable's logical axis names (flax stores `sharding_names` as `out_sharding`); None if it has none."""
    meta = var.get_metadata() if hasattr(var, "get_metadata") else {}
    return meta.get("out_sharding") or meta.get("sharding_names")


def state_shardings(state, mesh: Mesh, rules: dict):
    """NamedShardings for an nnx.State (same tree structure), from each Variable's logical names."""
    def one(var):
        return var.replace(NamedSharding(mesh, logical_to_spec(logical_names(var), var.shape, mesh, rules)))
    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_state(state, mesh: Mesh, rules: dict):
    """Places an nnx.State on the mesh per the rules (a copy; the input is untouched)."""
    shardings = state_shardings(state, mesh, rules)
    return jax.tree.map(lambda v, s: v.replace(jax.device_put(v.get_value(), s.get_value())), state, shardings,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_model(model: nnx.Module, mesh: Mesh, rules: dict) -> nnx.Module:
    """The model with every parameter placed on the mesh (in place)."""
    state = nnx.state(model)
    nnx.update(model, shard_state(state, mesh, rules))
    return model


def batch_sharding(mesh: Mesh, rules: dict, ndim: int) -> NamedSharding:
    """Leading axis over the batch axes (if they divide it, caller's responsibility), rest replicated."""
    axes = rules.get("batch")
    axes = tuple(a for a in ((axes,) if isinstance(axes, str) else axes) if mesh.shape[a] > 1) or None
    if axes is not None and len(axes) == 1:
        axes = axes[0]
    return NamedSharding(mesh, P(axes, *([None] * (ndim - 1))))


def batch_shards(mesh: Mesh | None, rules: dict) -> int:
    """How many devices the leading (batch) axis is split over under `rules` (1 without a mesh)."""
    if mesh is None:
        return 1
    axes = rules.get("batch")
    axes = (axes,) if isinstance(axes, str) else (axes or ())
    n = 1
    for a in axes:
        n *= mesh.shape.get(a, 1)
    return n


def batch_shardings(x, mesh: Mesh, rules: dict):
    """NamedShardings for a batch tree (arrays or ShapeDtypeStructs): each leading axis over the batch
    axes, replicated where they do not divide it (and for scalars)."""
    def one(a):
        s = batch_sharding(mesh, rules, a.ndim)
        n = _axis_size(mesh, s.spec[0]) if s.spec and s.spec[0] is not None else 1
        if a.ndim == 0 or a.shape[0] % n:
            s = NamedSharding(mesh, P())
        return s
    return jax.tree.map(one, x)


def shard_batch(x, mesh: Mesh, rules: dict):
    """device_put a host batch with its leading axis over the data axes (replicated if not divisible)."""
    return jax.tree.map(jax.device_put, x, batch_shardings(x, mesh, rules))


def explain(state, mesh: Mesh, rules: dict) -> list[str]:
    """Lines 'path: shape -> spec' for every parameter, to print or test."""
    out = []
    for path, var in nnx.to_flat_state(state):
        spec = logical_to_spec(logical_names(var), var.shape, mesh, rules)
        out.append(f"{'/'.join(map(str, path))}: {tuple(var.shape)} {logical_names(var)} -> {spec}")
    return out
