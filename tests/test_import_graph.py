"""The import graph of rlvr_jax: no circles between files or between packages, and every import
runs down the layer order of DESIGN.md (read statically from the source, so lazy imports count too).

Layers, top to bottom:  cli -> plan -> train -> active_fields -> config -> {eval, sampling, data} -> {rewards, models, algos} -> {kernels, parallel},
with `data -> rewards` (tasks return verdicts), `eval -> sampling`, `sampling -> kernels` (the one CPU
kernel seam), and `fields`, `jsonio`, `host_alloc` on the ground floor. `config` reads the
choice lists from the registries that own them, so nothing below it imports the schema; the lower
layers raise `fields.ConfigError` instead.
"""
from __future__ import annotations

import ast
import collections
import os

PKG_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "rlvr_jax")

# unit -> the units it may import (a unit is a sub-package or a top-level module of rlvr_jax)
GROUND = {"fields", "host_alloc", "jsonio"}
ALLOWED = {
    "cli": {"plan", "train", "active_fields", "config", "eval", "sampling", "data", "algos", "rewards", "models", "parallel"},
    "plan": {"train", "active_fields", "config", "eval", "sampling", "data", "algos", "rewards", "models", "parallel"},
    "train": {"active_fields", "config", "eval", "sampling", "data", "algos", "rewards", "models", "parallel"},
    "active_fields": {"config", "data"},
    "config": {"eval", "sampling", "data", "algos", "rewards", "models", "parallel"},
    "eval": {"sampling", "algos", "models", "parallel"},
    "sampling": {"algos", "models", "kernels", "parallel"},
    "data": {"algos", "rewards", "models"},
    "algos": set(),
    "rewards": set(),
    "models": {"algos", "parallel"},
    "kernels": set(),
    "parallel": set(),
    "fields": set(),
    "host_alloc": set(),
    "jsonio": set(),
}
for _unit in ALLOWED:
    if _unit not in GROUND:
        ALLOWED[_unit] |= GROUND


def _modules() -> dict[str, str]:
    out = {}
    for d, _, files in os.walk(PKG_DIR):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                rel = os.path.relpath(path, os.path.dirname(PKG_DIR))[:-3].replace(os.sep, ".")
                out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return out


def _edges(mods: dict[str, str]) -> dict[str, set[str]]:
    """module -> rlvr_jax modules it imports (`from a import b` names module a.b when b is one)."""
    edges = collections.defaultdict(set)
    for mod, path in mods.items():
        pkg = mod if path.endswith("__init__.py") else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                    base = up + ("." + base if base else "")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:  # `import rlvr_jax.a.b.c` of a name: its module
                    t = t.rpartition(".")[0]
                if t.startswith("rlvr_jax") and t != mod and t != "rlvr_jax":
                    edges[mod].add(t)
    return edges


def _unit(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "rlvr_jax"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of `graph`, or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


MODS = _modules()
EDGES = _edges(MODS)


def _package_init_reexports(mod: str, target: str) -> bool:
    """A package's __init__ importing its own submodules is how packages export names, not a circle."""
    return MODS[mod].endswith("__init__.py") and target.startswith(mod + ".")


def test_no_circle_between_files():
    graph = {m: {t for t in ts if not _package_init_reexports(m, t)} for m, ts in EDGES.items()}
    # a submodule importing its own package's __init__ closes a loop through that __init__
    for m, ts in EDGES.items():
        for t in ts:
            if _package_init_reexports(m, t):
                graph.setdefault(m, set()).add(t)
    cyc = _cycle(graph)
    assert cyc is None, "import circle between files: " + " -> ".join(cyc)


def test_no_circle_between_packages():
    graph = collections.defaultdict(set)
    for m, ts in EDGES.items():
        for t in ts:
            if _unit(m) != _unit(t):
                graph[_unit(m)].add(_unit(t))
    cyc = _cycle(graph)
    assert cyc is None, "import circle between packages: " + " -> ".join(cyc)


def test_every_import_runs_down_the_layers():
    bad = []
    for m, ts in sorted(EDGES.items()):
        for t in sorted(ts):
            a, b = _unit(m), _unit(t)
            if a == b or a == "rlvr_jax":
                continue
            if a not in ALLOWED:
                bad.append(f"{m}: unit {a!r} has no place in the layer order (add it to ALLOWED)")
            elif b not in ALLOWED[a]:
                bad.append(f"{m} imports {t}: {a} may not import {b}")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_the_checker_sees_a_circle_and_an_upward_import():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert "train" not in ALLOWED["models"] and "models" in ALLOWED["train"]


def test_layer_order_is_a_dag():
    """ALLOWED itself has no circle (so the order is a real order), and every unit of the package has a place."""
    assert _cycle({u: set(v) for u, v in ALLOWED.items()}) is None
    units = {_unit(m) for m in MODS} - {"rlvr_jax"}
    assert units <= set(ALLOWED), f"units without a layer: {sorted(units - set(ALLOWED))}"
