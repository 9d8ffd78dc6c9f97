"""scripts/cures.py and the sweep's method specs: every listed method is a real variant spec, saved runs are
reused only from the same base, and the headline tables read a sweep's summary correctly."""
import json

import pytest


@pytest.fixture(scope="module")
def sweep(load_script):
    return load_script("sweep")


@pytest.fixture(scope="module")
def cures(load_script):
    return load_script("cures")


def test_every_method_and_study_run_is_a_valid_config(sweep, cures):
    base = sweep.load_config(sweep.parse_args([]).config, [], quick=True)
    for spec in cures.METHODS + cures.DLC_STUDY + cures.EXTRA_STUDY + cures.DLC_SEEDS:
        cfg = sweep.method_config(base, spec, 1)  # raises a ConfigError for an unknown variant or field
        for item in spec.split("@")[1:]:
            key, val = item.split("=")
            group, field = key.split(".")
            assert str(cfg[group][field]) == val, spec
    assert len(set(cures.METHODS)) == len(cures.METHODS)


def test_method_spec_errors_name_the_spec(sweep):
    from rlvr_jax.config import ConfigError
    base = sweep.load_config(sweep.parse_args([]).config, [], quick=True)
    with pytest.raises(ConfigError, match="unknown 'ppo'"):
        sweep.method_config(base, "ppo@memory.mu=1", 1)
    with pytest.raises(ConfigError, match=r"--methods dlc@memory.nope=1: 'memory.nope=1': unknown field"):
        sweep.method_config(base, "dlc@memory.nope=1", 1)
    with pytest.raises(ConfigError, match="expected GROUP.FIELD=VALUE"):
        sweep.method_config(base, "dlc@mu", 1)


def test_saved_runs_are_reused_only_from_the_same_base_seeds_and_steps(sweep, tmp_path):
    path = str(tmp_path / "grpo.json")
    sweep.write_json({"method": "grpo", "base_param_sha256": "a" * 64, "seeds": [1, 2], "steps": 10,
                      "eval_every": 5, "wall_s": 1.0, "runs": [{"seed": 1}]}, path)
    assert sweep._load_runs(path, "a" * 64, [1, 2], 10, 5)["runs"] == [{"seed": 1}]
    for args in (("b" * 64, [1, 2], 10, 5), ("a" * 64, [1], 10, 5), ("a" * 64, [1, 2], 20, 5),
                 ("a" * 64, [1, 2], 10, 2)):
        assert sweep._load_runs(path, *args) is None
    assert sweep._load_runs(str(tmp_path / "none.json"), "a" * 64, [1, 2], 10, 5) is None


def _summary(methods, pass1, kmax=8):
    def st(x):
        return {"mean": x, "lo": x - 0.1, "hi": x + 0.1, "n": 3}
    agg = {m: {"metrics": {"eval/pass@1": [st(0.1), st(p)], f"eval/pass@{kmax}": [st(0.9), st(0.5 + p)],
                           "eval/coverage_rel": [st(4.0), st(2.0)], "eval/tv": [st(0.0), st(0.3)],
                           "eval/entropy_norm": [st(0.9), st(0.4)]}}
           for m, p in zip(methods, pass1)}
    runs = {m: [{"train": [{"step": 1, "tilt_entropy": 1.0, "memory_kl": 0.2}, {"step": 2, "tilt_entropy": 3.0}]},
                {"train": [{"step": 1, "tilt_entropy": 2.0}]}] for m in methods}
    base = {"headline": {"eval/pass@1": 0.1, f"eval/pass@{kmax}": 0.9, "eval/coverage_rel": 4.0}}
    return {"ks": [1, kmax], "methods": list(methods), "aggregate": agg, "runs": runs, "base": base,
            "at_equal_pass1": {"pass@1": 0.2, "anchor": "grpo", **{m: {} for m in methods}}}


def test_headline_rows_are_the_final_step_with_the_seed_half_width(cures):
    text = cures.headline({"sum_pair": _summary(["grpo", "iac"], [0.2, 0.3]),
                           "countdown_small": _summary(["grpo"], [0.25])})
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| ")}
    assert "| baseline | GRPO | 0.200 ± 0.100 | 0.700 ± 0.100 | 2.00 ± 0.10 | 0.300 ± 0.100 | 0.250 ± 0.100" \
        in rows["GRPO"]
    assert rows["IAC"].endswith("| n/a | n/a | n/a | n/a |")  # not run on countdown_small
    assert rows["base policy"].startswith("|  | base policy | 0.100 | 0.900 | 4.00 | 0 |")


def test_train_diagnostics_average_steps_then_seeds(cures):
    d = cures.train_means(_summary(["dlc"], [0.2]), "dlc")
    assert d["tilt_entropy"] == pytest.approx((2.0 + 2.0) / 2)  # seed 1: mean(1, 3) = 2; seed 2: 2
    assert d["memory_kl"] == pytest.approx(0.2) and d["tilt_slope"] is None


def test_report_writes_headline_md(cures, tmp_path):
    for task in cures.TASKS:
        (tmp_path / task).mkdir()
        (tmp_path / task / "summary.json").write_text(json.dumps(_summary(["grpo", "dlc"], [0.2, 0.1])))
    text = cures.report(str(tmp_path))
    assert (tmp_path / "headline.md").read_text() == text
    assert "## DLC study (sum_pair)" in text and "| DLC |" in text
    (tmp_path / "extra_study").mkdir()
    extra = _summary(["gspo@algo.mini_batches=4", "nsr@optim.learning_rate=0.0001"], [0.3, 0.05])
    (tmp_path / "extra_study" / "summary.json").write_text(json.dumps(extra))
    text = cures.report(str(tmp_path))
    assert "## Token-level methods off-policy" in text and "| GSPO | 4 |" in text
    assert "| NSR | 0.0001 | 0.050 ± 0.100 |" in text
    (tmp_path / "dlc_seeds").mkdir()
    (tmp_path / "dlc_seeds" / "summary.json").write_text(json.dumps(_summary(["grpo@rollout.temperature=1.5"], [0.2])))
    text = cures.report(str(tmp_path))
    assert "## DLC against temperature, 2 seeds (sum_pair)" in text and "| GRPO temperature=1.5 |" in text


def test_common_target_is_the_lowest_final_pass1_of_the_methods_that_learned(cures):
    s = _summary(["grpo", "iac", "nsr"], [0.2, 0.3, 0.0])  # base pass@1 0.1: nsr did not learn (0 < 0.15)
    assert cures.common_target(s) == pytest.approx(0.2)
    text = cures.matched_table(s, common=True)
    assert text.startswith("At the common pass@1 = 0.200")
