"""scripts/sweep.py: the --quick run writes its files, and its numbers are consistent with each other."""
import json
import os

import numpy as np
import pytest


@pytest.fixture(scope="module")
def sweep(load_script):
    return load_script("sweep")


def test_seed_stats_is_a_t_interval(sweep):
    v = [0.2, 0.5, 0.3]
    s = sweep.seed_stats(v)
    sd = np.std(v, ddof=1)
    assert s["mean"] == pytest.approx(np.mean(v))
    assert s["hi"] - s["mean"] == pytest.approx(4.302652729911275 * sd / np.sqrt(3))  # t(0.975, 2)
    one = sweep.seed_stats([0.4])
    assert one["lo"] == one["hi"] == one["mean"] == 0.4


def test_matched_pass1_interpolates_the_first_crossing(sweep):
    def series(xs):
        return [{"mean": x} for x in xs]
    agg = {"a": {"metrics": {"p1": series([0.1, 0.2, 0.4]), "y": series([1.0, 0.8, 0.4])}},
           "b": {"metrics": {"p1": series([0.1, 0.3, 0.3]), "y": series([1.0, 0.9, 0.9])}}}
    out = sweep.at_matched_pass1(agg, "p1", ["y"])
    assert out["pass@1"] == 0.3  # the lowest final pass@1
    assert out["a"]["y"] == pytest.approx(0.6)  # halfway between 0.2 and 0.4
    assert out["b"]["y"] == pytest.approx(0.9)


def test_bad_method_and_bad_override_are_one_line_errors(sweep):
    from rlvr_jax.config import ConfigError
    with pytest.raises(ConfigError, match="--methods: unknown 'ppo'"):
        sweep.main(["--methods", "grpo,ppo", "--out", "/tmp/never"])
    with pytest.raises(ConfigError, match="unknown field config.algo.nope"):
        sweep.main(["--set", "algo.nope=1", "--out", "/tmp/never"])


@pytest.mark.slow
def test_quick_sweep_writes_table_plots_and_json(sweep, tmp_path):
    out = str(tmp_path / "sweep")
    summary = sweep.main(["--quick", "--no-progress", "--out", out])
    for name in ("table.md", "summary.json", "training.png", "passk_final.png", "tradeoff.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    with open(os.path.join(out, "summary.json")) as f:
        js = json.load(f)
    assert js["methods"] == ["grpo", "iac_dlc"] and js["seeds"] == [1]
    table = open(os.path.join(out, "table.md")).read()
    assert "| base policy |" in table and "| GRPO |" in table and "| IAC+DLC |" in table
    ks = js["ks"]
    for m in js["methods"]:
        runs = js["runs"][m]
        assert [e["step"] for e in runs[0]["evals"]] == [5, 10]
        assert len(runs[0]["train"]) == 10
        last = runs[0]["evals"][-1]
        # the aggregate of one seed is that seed's value; the curve ends at pass@n and agrees with pass@k
        assert js["aggregate"][m]["metrics"][f"eval/pass@{max(ks)}"][-1]["mean"] == pytest.approx(
            last["headline"][f"eval/pass@{max(ks)}"])
        curve = np.asarray(js["aggregate"][m]["final_curve"]["mean"])
        assert np.all(np.diff(curve) >= 0)
        assert curve[0] == pytest.approx(last["pass@k"]["1"]["mean"])
        # mass on correct answers is a probability; TV against the base policy is in [0, 1]
        assert 0 <= last["headline"]["eval/mass_correct"] <= 1 and 0 <= last["headline"]["eval/tv"] <= 1
    # every run starts from the same base policy: its step-0 row is the base evaluation
    assert js["aggregate"]["grpo"]["metrics"]["eval/pass@1"][0]["mean"] == pytest.approx(
        js["base"]["headline"]["eval/pass@1"])
    assert js["base"]["headline"]["eval/tv"] == pytest.approx(0.0, abs=1e-9)
    assert summary["aggregate"]["iac_dlc"]["samples_per_step"] == 128
    assert len(js["base_param_sha256"]) == 64 and "commit" in js["code"]
    # --from-json rebuilds the same table without training
    again = str(tmp_path / "again")
    sweep.main(["--from-json", os.path.join(out, "summary.json"), "--out", again])
    assert open(os.path.join(again, "table.md")).read() == table
    assert os.path.getsize(os.path.join(again, "training.png")) > 0
