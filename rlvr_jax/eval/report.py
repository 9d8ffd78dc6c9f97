"""Evaluation reports for `rlvr-eval`: results dicts to JSON and pass@k plots."""
from __future__ import annotations

import os
from typing import Mapping

from rlvr_jax.eval.passk import evaluate_correctness  # noqa: F401  (re-exported for the CLI)
from rlvr_jax.eval.plots import plot_passk_curves
from rlvr_jax.jsonio import to_jsonable, write_json  # noqa: F401  (to_jsonable re-exported)


def _leaves(results: Mapping, prefix: str = "") -> dict[str, Mapping]:
    """Every evaluate_correctness result inside a nested dict, keyed 'outer/inner'."""
    if "pass@k" in results and "num_samples" in results:
        return {prefix or "results": results}
    out = {}
    for k, v in results.items():
        if isinstance(v, Mapping):
            out.update(_leaves(v, f"{prefix}/{k}" if prefix else str(k)))
    return out


def write_report(results: Mapping, out_dir: str, *, name: str = "eval", plot: bool = True) -> dict[str, str]:
    """Writes `<name>.json` and, for every result with a curve, one pass@k plot with all of them.

    `results` is one evaluate_correctness dict or a nesting of them (e.g. {checkpoint: {benchmark:
    result}}, where per-benchmark results plus 'pooled' come from evaluate_benchmarks). Returns
    {"json": path, "passk_plot": path} (no plot entry when nothing has a curve).
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, f"{name}.json")}
    write_json(paths["json"], results)
    curves = {k: v for k, v in _leaves(results).items() if "curve" in v}
    if plot and curves:
        level = next(iter(curves.values())).get("level", 0.95)
        paths["passk_plot"] = plot_passk_curves(curves, os.path.join(out_dir, f"{name}_passk.png"),
                                                title=f"{name}: pass@k ({level:.0%} CI)")
    return paths


def format_table(results: Mapping, ks=None) -> str:
    """A plain-text table of pass@k (mean [lo, hi]) for every result in a nesting of results."""
    rows = []
    for label, r in _leaves(results).items():
        use = [str(k) for k in (ks or r["ks"]) if str(k) in r["pass@k"]]
        cells = [f"pass@{k} {r['pass@k'][k]['mean']:.3f} [{r['pass@k'][k]['lo']:.3f},{r['pass@k'][k]['hi']:.3f}]"
                 for k in use]
        rows.append(f"{label:24s} n={r['num_samples']:<5d} Q={r['num_queries']:<5d} " + "  ".join(cells))
    return "\n".join(rows)
