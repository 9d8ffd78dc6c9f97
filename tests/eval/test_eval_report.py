"""Reports: strict JSON and pass@k plots from (nested) evaluation results."""
import json

import numpy as np

from rlvr_jax.eval import passk, plots, report


def test_write_report_nested_and_single(tmp_path):
    rng = np.random.default_rng(0)
    base = passk.evaluate_benchmarks({"a": rng.random((12, 16)) < 0.2, "b": rng.random((8, 16)) < 0.5},
                                     ks=(1, 4, 16), num_boot=100)
    tuned = passk.evaluate_benchmarks({"a": rng.random((12, 16)) < 0.4, "b": rng.random((8, 16)) < 0.6},
                                      ks=(1, 4, 16), num_boot=100)
    paths = report.write_report({"base": base, "step_100": tuned}, str(tmp_path), name="sweep")
    data = json.loads(open(paths["json"]).read())
    assert set(data) == {"base", "step_100"} and set(data["base"]) == {"a", "b", "pooled"}
    assert (tmp_path / "sweep_passk.png").stat().st_size > 5_000
    table = report.format_table({"base": base})
    assert "base/pooled" in table and "pass@16" in table
    single = report.evaluate_correctness(np.zeros((3, 4), bool), ks=(1, 4), seed=0)
    p2 = report.write_report(single, str(tmp_path / "one"))
    assert json.loads(open(p2["json"]).read())["pass@k"]["4"]["mean"] == 0.0


def test_jsonable_handles_numpy_and_nan():
    out = report.to_jsonable({"a": np.float32(0.5), "b": np.array([1, 2]), "c": float("nan"), "d": np.bool_(True)})
    assert json.dumps(out, allow_nan=False) == '{"a": 0.5, "b": [1, 2], "c": "nan", "d": true}'


def test_metric_plots(tmp_path):
    x = np.arange(10)
    p = plots.plot_metric_over_training({"run": (x, x / 10, x / 12, x / 8), "other": (x, x / 20)},
                                        str(tmp_path / "m.png"), ylabel="pass@1")
    assert (tmp_path / "m.png").stat().st_size > 5_000 and p.endswith("m.png")
    g = plots.plot_metric_grid({"A": {"r": (x, x)}, "B": {"r": (x, -x, None, None, {"ls": "--"})}},
                               str(tmp_path / "g.png"))
    assert (tmp_path / "g.png").exists() and g.endswith("g.png")
