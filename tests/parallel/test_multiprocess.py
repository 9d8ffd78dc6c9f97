"""A real multi-controller run on this machine: two processes on loopback (jax.distributed with gloo CPU
collectives, two fake CPU devices each, parameters fsdp-sharded across the processes) train
configs/tiny_multihost.py through `rlvr_jax.train.loop.run` and end with the same parameters as one
process with four devices; checkpoints are written once and the two-process run resumes from them.
"""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from rlvr_jax.parallel.distributed import launch_kind

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "multiprocess_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(local_devices: int, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROC",
                                                                     "JAX_PROCESS_ID", "TPU_"))}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={local_devices}",
               PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


def _run(log_dir, steps, out, procs: int, timeout=600):
    """Runs the worker as `procs` processes (2 local devices each when procs > 1, else 4) and waits."""
    if procs == 1:
        cmds = [(_env(4), [sys.executable, WORKER, str(log_dir), str(steps), str(out)])]
    else:
        port = _free_port()
        cmds = [(_env(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(procs),
                      JAX_PROCESS_ID=str(i)), [sys.executable, WORKER, str(log_dir), str(steps), str(out)])
                for i in range(procs)]
    ps = [subprocess.Popen(c, env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
          for e, c in cmds]
    outs = []
    try:
        for p in ps:
            outs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in ps:
            if p.poll() is None:
                p.kill()
    for p, o in zip(ps, outs):
        assert p.returncode == 0, o[-4000:]
    return outs


def _layout(ckpt_dir) -> set[str]:
    """Folders holding files, with hashed data-file names and per-process metadata names folded."""
    out = set()
    for root, _, files in os.walk(ckpt_dir):
        rel = os.path.relpath(root, ckpt_dir)
        if "ocdbt.process_" in rel:
            out.add(rel.split("ocdbt.process_")[0] + "ocdbt.process_" + rel.split("ocdbt.process_")[1][0] + "/*")
            continue
        for f in files:
            if rel.endswith("/d") or rel.endswith("array_metadatas"):
                out.add(rel + "/*")
            else:
                out.add(os.path.join(rel, f))
    return out


def _data_bytes(ckpt_dir) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(ckpt_dir) for f in fs
               if "ocdbt.process_" in r)


def test_launch_kind_from_environment():
    assert launch_kind({}) is None
    assert launch_kind({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}) == \
        "explicit"
    assert launch_kind({"TPU_WORKER_HOSTNAMES": "10.0.0.2,10.0.0.3"}) == "tpu_pod"
    assert launch_kind({"TPU_WORKER_HOSTNAMES": "localhost"}) is None
    assert launch_kind({"SLURM_NTASKS": "4", "SLURM_PROCID": "1"}) == "slurm"
    assert launch_kind({"RLVR_DISTRIBUTED": "0", "TPU_WORKER_HOSTNAMES": "a,b"}) is None


@pytest.mark.slow
def test_two_processes_train_like_one_and_resume(tmp_path):
    # one process, 4 devices, 4 steps straight (checkpoints at 2 and 4)
    single = tmp_path / "single"
    _run(single, 4, tmp_path / "single.npz", procs=1)
    # two processes x 2 devices: 2 steps, then a fresh pair of processes resumes to step 4
    two = tmp_path / "two"
    outs = _run(two, 2, tmp_path / "two_a.npz", procs=2)
    assert all("process" in o and "/2 done: 2 steps, 4 devices" in o for o in outs)
    outs = _run(two, 4, tmp_path / "two.npz", procs=2)
    assert "resumed from" in outs[0] and "at step 2" in outs[0]

    a, b = np.load(tmp_path / "single.npz"), np.load(tmp_path / "two.npz")
    assert int(a["step"]) == int(b["step"]) == 4
    keys = [k for k in a.files if k != "step"]
    assert keys == [k for k in b.files if k != "step"] and len(keys) > 5
    first = np.load(tmp_path / "two_a.npz")
    assert max(float(np.abs(first[k] - b[k]).max()) for k in keys) > 0  # steps 3-4 changed the params
    for k in keys:
        np.testing.assert_allclose(b[k], a[k], atol=2e-5, rtol=1e-5, err_msg=k)

    # checkpoints written once: one folder per saved step, the same metadata files as the single-process
    # run, array data split into one shard file set per process (not duplicated: about the same bytes)
    assert sorted(os.listdir(two / "ckpt")) == sorted(os.listdir(single / "ckpt")) == ["2", "4"]
    assert _layout(two / "ckpt") == _layout(single / "ckpt") | {"2/state/ocdbt.process_1/*",
                                                                  "4/state/ocdbt.process_1/*"}
    size2, size1 = _data_bytes(two / "ckpt"), _data_bytes(single / "ckpt")
    # OCDBT packs arrays into data files per write batch, so totals vary by up to ~40% between runs;
    # an array written by both processes would double them
    assert 0.7 < size2 / size1 < 1.6, (size2, size1)
    # process 0 alone wrote the logs: one metrics line per step, one summary
    lines = (two / "metrics.jsonl").read_text().splitlines()
    assert len([ln for ln in lines if '"correct_mean"' in ln]) == 4
    assert os.path.exists(two / "summary.json")
