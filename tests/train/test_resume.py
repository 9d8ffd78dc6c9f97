"""Resume is exact: an interrupted run (in process, kill -9, SIGTERM) resumed to the end gives
bit-identical parameters to an uninterrupted run."""
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rlvr_jax.config import validate
from rlvr_jax.train import loop
from rlvr_jax.train.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cfg(log_dir, **overrides):
    sys.path.insert(0, os.path.join(ROOT, "configs"))
    import tiny_test
    cfg = tiny_test.get_config()
    cfg.log.dir = str(log_dir)
    for k, v in overrides.items():
        g, f = k.split(".")
        cfg[g][f] = v
    return validate(cfg)


def _params(state):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.policy))]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("full")
    out = loop.run(_cfg(d))
    return d, out


def test_in_process_resume_is_bit_identical(uninterrupted, tmp_path):
    full_dir, full = uninterrupted
    assert full["steps"] == 4
    ck = sorted(os.listdir(full_dir / "ckpt"))
    assert "2" in ck and "4" in ck
    # restart from the step-2 checkpoint of a copy of the run
    shutil.copytree(full_dir / "ckpt" / "2", tmp_path / "ckpt" / "2")
    resumed = loop.run(_cfg(tmp_path))
    for a, b in zip(_params(full["state"]), _params(resumed["state"])):
        np.testing.assert_array_equal(a, b)
    assert int(resumed["state"].step) == int(full["state"].step)


def test_resume_with_memory_window_is_bit_identical(tmp_path):
    """memory.window = 2: the memory's replay is in the checkpoint, so a resumed run ends where an
    uninterrupted one does (policy, memory and replay bit for bit); the tilt diagnostics reach metrics.jsonl."""
    mem = {"memory.enabled": True, "memory.width_ratio": 0.5, "memory.num_layers": 1, "memory.window": 2}
    full = loop.run(_cfg(tmp_path / "full", **mem))
    assert full["state"].replay is not None and bool(np.all(np.asarray(full["state"].replay["valid_B"])))
    import json
    rows = [json.loads(line) for line in open(tmp_path / "full" / "metrics.jsonl")]
    tilt = {"memory_kl", "tilt_slope", "tilt_temperature", "tilt_entropy", "memory_lag_ce", "sampling_entropy"}
    assert rows and all(tilt <= set(r) for r in rows if "loss" in r)  # the token path's step metrics
    shutil.copytree(tmp_path / "full" / "ckpt" / "2", tmp_path / "cut" / "ckpt" / "2")
    resumed = loop.run(_cfg(tmp_path / "cut", **mem))
    a, b = jax.device_get((full["state"].policy, full["state"].memory, full["state"].replay)), \
        jax.device_get((resumed["state"].policy, resumed["state"].memory, resumed["state"].replay))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _spawn(log_dir, steps=8):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    cmd = [sys.executable, "-m", "rlvr_jax.cli", "train", "--config", os.path.join(ROOT, "configs/tiny_test.py"),
           f"--config.log.dir={log_dir}", f"--config.train.steps={steps}"]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_step(log_dir, step, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.isdir(os.path.join(log_dir, "ckpt", str(step))):
            return
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode()[-3000:])
        time.sleep(0.02)
    raise AssertionError("timed out waiting for a checkpoint")


@pytest.mark.slow
def test_kill9_and_sigterm_then_resume_is_bit_identical(tmp_path):
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    ref = _spawn(ref_dir)
    assert ref.wait() == 0, ref.stdout.read().decode()[-3000:]
    # kill -9 right after the first checkpoint: the run dies between checkpoints
    p = _spawn(cut_dir)
    _wait_for_step(cut_dir, 2, p)
    p.kill()
    p.wait()
    # resume, then SIGTERM: it must save and exit 0
    p = _spawn(cut_dir)
    _wait_for_step(cut_dir, 4, p)
    p.send_signal(signal.SIGTERM)
    out = p.communicate()[0].decode()
    assert p.returncode == 0, out[-3000:]
    # resume to the end
    p = _spawn(cut_dir)
    assert p.wait() == 0, p.stdout.read().decode()[-3000:]

    def final_step(d):
        return Checkpointer(str(d / "ckpt"), async_save=False).latest_step()
    assert final_step(ref_dir) == final_step(cut_dir) == 8
    a = open(ref_dir / "summary.json").read()
    b = open(cut_dir / "summary.json").read()
    import json
    pa, pb = json.loads(a)["final_param_fingerprint"], json.loads(b)["final_param_fingerprint"]
    assert pa == pb


def test_rlvr_eval_on_checkpoints(uninterrupted, tmp_path):
    """rlvr-eval: the initial policy and a checkpoint, JSON + pass@k plot written."""
    import json

    from rlvr_jax import cli
    full_dir, _ = uninterrupted
    cli.eval_main(["rlvr-eval", "--config", os.path.join(ROOT, "configs/tiny_test.py"),
                   f"--config.log.dir={full_dir}", "--checkpoint", str(full_dir / "ckpt"), "--out", str(tmp_path)])
    res = json.load(open(tmp_path / "eval.json"))
    assert "initial" in res and any(k.startswith("ckpt@4") for k in res)
    for r in res.values():
        assert 0.0 <= r["heldout"]["pass@k"]["1"]["mean"] <= r["heldout"]["pass@k"]["4"]["mean"] <= 1.0
    # "initial" is the policy the trainer started from (after its warm-up), not an untrained model
    trainer = json.load(open(full_dir / "summary.json"))
    assert res["initial"]["heldout"]["pass@k"] == trainer["before"]["pass@k"]
    assert res["ckpt@4"]["heldout"]["pass@k"] == trainer["after"]["pass@k"]
    assert (tmp_path / "passk.png").stat().st_size > 1000
