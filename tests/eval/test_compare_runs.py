"""scripts/compare_runs.py: one base curve and each run's final curve, refusal of runs from different bases."""
import json
import math
import os

import pytest


@pytest.fixture
def mod(load_script):
    return load_script("compare_runs")


def _res(p1, n=4):
    st = lambda m: {"mean": m, "lo": max(0.0, m - 0.1), "hi": min(1.0, m + 0.1)}  # noqa: E731
    return {"heldout": {"num_queries": 8, "num_samples": n, "ks": [1, 4], "pass@k": {"1": st(p1), "4": st(min(1, 3 * p1))},
                        "avg@k": {"1": st(p1)}, "curve": {"k": [1, 2, 3, 4], "mean": [p1] * 4, "lo": [p1] * 4,
                                                          "hi": [p1] * 4},
                        "response_len_mean": 100.0 - 50 * p1, "truncated_frac": 0.5 - p1 / 2}}


def _run(root, name, finals, fingerprint="abc", seed=0, lora_base=None):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"train": {"seed": seed}}, f)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"wall_s": 600.0, "base_param_fingerprint": fingerprint,
                   **({"lora_base_fingerprint": lora_base} if lora_base else {})}, f)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for s in range(1, 11):
            f.write(json.dumps({"step": s, "reward_mean": s / 10, "response_len_mean": 100 - s, "entropy": 2.0,
                                "response_clip_ratio": 0.1}) + "\n")
        f.write(json.dumps({"step": 10, "reward_mean": "NaN"}) + "\n")  # a resumed step: the last record wins
    with open(os.path.join(d, "evals.jsonl"), "w") as f:
        for step, p1 in [(0, 0.1)] + finals:
            f.write(json.dumps({"step": step, "results": _res(p1)}) + "\n")
    return d


def test_report_holds_base_and_each_final(tmp_path, mod):
    a = _run(tmp_path, "grpo", [(5, 0.2), (10, 0.3)])
    b = _run(tmp_path, "iac", [(10, 0.4)], seed=1)
    out = tmp_path / "out"
    mod.main([a, b, "--out", str(out)])
    md = (out / "results.md").read_text()
    assert "| pass@1 | 0.100 [0.000, 0.200] | 0.300 [0.200, 0.400] | 0.400 [0.300, 0.500] |" in md
    assert "| seed | | 0 | 1 |" in md and "| wall time (min) | | 10.0 | 10.0 |" in md
    res = json.loads((out / "results.json").read_text())
    assert res["last_step"] == {"grpo": 10, "iac": 10}
    assert res["final"]["grpo"]["pass@k"]["1"]["mean"] == 0.3
    assert (out / "passk.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0
    x, y = mod._series(mod.load_run(a), "reward_mean", smooth=False)
    assert list(x) == list(range(1, 11)) and math.isnan(y[-1])  # the step-10 rewrite replaced the first record


def test_runs_from_different_bases_are_refused(tmp_path, mod):
    a = _run(tmp_path, "a", [(10, 0.3)], fingerprint="one")
    b = _run(tmp_path, "b", [(10, 0.3)], fingerprint="two")
    with pytest.raises(SystemExit, match="different base policies"):
        mod.main([a, b, "--out", str(tmp_path / "out")])


def test_a_lora_run_starts_from_its_frozen_base(tmp_path, mod):
    """Under LoRA base_param_fingerprint is the adapters'; the run started from its frozen base."""
    full = _run(tmp_path, "full", [(10, 0.3)], fingerprint="base")
    lora = _run(tmp_path, "lora", [(10, 0.4)], fingerprint="adapters", lora_base="base")
    mod.main([full, lora, "--out", str(tmp_path / "out")])
    other = _run(tmp_path, "other", [(10, 0.4)], fingerprint="adapters", lora_base="another")
    with pytest.raises(SystemExit, match="different base policies"):
        mod.main([full, other, "--out", str(tmp_path / "out2")])


def test_missing_files_name_the_path(tmp_path, mod):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="empty/config.json: missing"):
        mod.main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
