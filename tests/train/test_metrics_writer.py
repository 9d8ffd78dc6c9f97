"""MetricsWriter: JSONL and TensorBoard contents read back, switches, process-0 guard, W&B, console, Timer."""
import json
import math
import os
import sys
import time
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rlvr_jax.config import ConfigError, base_config
from rlvr_jax.train import metrics as M
from rlvr_jax.train.metrics import MetricsWriter, Timer, console_line, read_event_scalars, read_metrics


def _log_cfg(**kw):
    cfg = base_config().log
    for k, v in kw.items():
        cfg[k] = v
    return cfg


STEP_METRICS = [
    {"reward_mean": jnp.float32(0.5), "loss": np.float64(-0.125), "kl": 0.0, "count": np.int32(3),
     "flag": True, "eval": {"pass@1": 0.25, "pass@4": jnp.array(0.75)}},
    {"reward_mean": 0.625, "loss": float("nan"), "kl": float("inf"), "count": 4, "flag": False,
     "eval": {"pass@1": 0.5, "pass@4": 1.0}, "lengths": np.array([3.0, -math.inf, 5.0]), "note": "hi"},
]


def test_jsonl_and_tensorboard_contents(tmp_path):
    cfg = _log_cfg()
    with MetricsWriter(str(tmp_path), cfg, config_dict=base_config().to_dict()) as w:
        for i, m in enumerate(STEP_METRICS):
            w.write(i + 1, m)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    raw = [json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}")) for line in lines]
    assert [r["step"] for r in raw] == [1, 2]
    assert raw[0]["reward_mean"] == 0.5 and raw[0]["loss"] == -0.125 and raw[0]["count"] == 3
    assert raw[0]["flag"] is True and raw[0]["eval/pass@4"] == 0.75
    assert raw[1]["loss"] == "nan" and raw[1]["kl"] == "inf" and raw[1]["lengths"] == [3.0, "-inf", 5.0]
    assert raw[1]["note"] == "hi"
    recs = read_metrics(str(tmp_path))  # folder or file, non-finite back to floats
    assert math.isnan(recs[1]["loss"]) and recs[1]["kl"] == math.inf and recs[1]["lengths"][1] == -math.inf
    assert [r["step"] for r in read_metrics(str(tmp_path / "metrics.jsonl"))] == [1, 2]
    assert json.loads((tmp_path / "config.json").read_text())["log"]["dir"] == "runs/default"

    events = read_event_scalars(str(tmp_path / "tb"))
    assert events["reward_mean"] == [(1, 0.5), (2, 0.625)]
    assert events["loss"][0] == (1, -0.125) and math.isnan(events["loss"][1][1])
    assert events["eval/pass_4"] == [(1, 0.75), (2, 1.0)]  # TensorBoard tags allow [A-Za-z0-9_./-] only
    assert events["flag"] == [(1, 1.0), (2, 0.0)]
    assert "note" not in events and "lengths" not in events  # not scalars


def test_flags_switch_writers_off(tmp_path):
    with MetricsWriter(str(tmp_path / "a"), _log_cfg(tensorboard=False)) as w:
        w.write(1, {"x": 1.0})
    assert os.listdir(tmp_path / "a") == ["metrics.jsonl"]
    with MetricsWriter(str(tmp_path / "b"), _log_cfg(jsonl=False)) as w:
        w.write(1, {"x": 1.0})
    assert os.listdir(tmp_path / "b") == ["tb"] and read_event_scalars(str(tmp_path / "b"))["x"] == [(1, 1.0)]


def test_only_process_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    with MetricsWriter(str(tmp_path / "run"), _log_cfg(wandb=True), config_dict={"a": 1}) as w:
        w.write(1, {"x": 1.0})
        w.flush()
    assert not (tmp_path / "run").exists()


def test_purge_after_drops_steps_of_the_interrupted_run(tmp_path):
    with MetricsWriter(str(tmp_path), _log_cfg(tensorboard=False)) as w:
        for s in range(1, 6):
            w.write(s, {"x": float(s)})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "x": ')  # torn line of a killed run
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [1, 2, 3, 4, 5]
    with MetricsWriter(str(tmp_path), _log_cfg(tensorboard=False), purge_after=3) as w:
        w.write(4, {"x": 40.0})
    assert [(r["step"], r["x"]) for r in read_metrics(str(tmp_path))] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_wandb_missing_names_the_field(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ConfigError, match=r"log\.wandb"):
        MetricsWriter(str(tmp_path), _log_cfg(wandb=True))


def test_wandb_receives_scalars(tmp_path, monkeypatch):
    calls = []

    class Run:
        def log(self, d, step):
            calls.append(("log", step, d))

        def finish(self):
            calls.append(("finish",))

    fake = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw)) or Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    with MetricsWriter(str(tmp_path), _log_cfg(wandb=True, tensorboard=False), config_dict={"a": 1}) as w:
        w.write(3, {"x": jnp.float32(2.0), "note": "s"})
    assert calls[0][0] == "init" and calls[0][1]["config"] == {"a": 1}
    assert calls[1] == ("log", 3, {"x": 2.0}) and calls[2] == ("finish",)


def test_console_line_and_number_format():
    m = {"reward_mean": 0.53125, "correct_mean": 0.5, "success_rate": 0.1, "loss": -0.0001234, "kl": 0.0,
         "entropy": jnp.float32(1.25), "response_len_mean": 12.0, "time/s_per_it": 3.14159,
         "tokens_per_s": 12345.6, "unlisted": 9.0}
    line = console_line(12, m)
    assert line == ("step 12  reward 0.5312  pass 0.5  loss -1.23e-04  kl 0  ent 1.25  len 12  s/it 3.142  "
                    "tok/s 12346")
    assert console_line(3, {"success_rate": 0.25, "loss": float("nan")}) == "step 3  pass 0.25  loss nan"
    assert console_line(1, {"a": 2.5e7, "b": {"c": 1}}, keys=["a", ("c", "b/c")]) == "step 1  a 2.50e+07  c 1"
    assert M.fmt_number("inf") == "inf" and M.fmt_number(None) == "-" and M.fmt_number(-1500.4) == "-1500"


def test_timer_accumulates_phases():
    t = Timer()
    with t("sample"):
        time.sleep(0.02)
    with t("sample"):
        time.sleep(0.01)
    with pytest.raises(RuntimeError):
        with t("update"):
            raise RuntimeError("still recorded")
    got = t.metrics()
    assert set(got) == {"time/sample", "time/update"} and 0.03 <= got["time/sample"] < 1.0
    assert t.metrics() == {}


def test_read_metrics_reports_bad_line(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        read_metrics(str(p))


def test_plain_dict_log_cfg(tmp_path):
    with MetricsWriter(str(tmp_path), {"tensorboard": False, "jsonl": True}) as w:
        w.write(0, ml_collections.ConfigDict({"a": 1.0}).to_dict())
    assert read_metrics(str(tmp_path))[0]["a"] == 1.0
