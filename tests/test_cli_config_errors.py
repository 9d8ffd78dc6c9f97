"""Malformed configs and overrides: each gives one line naming the field, exit status 2, no traceback."""
import os
import subprocess
import sys

import pytest

from rlvr_jax import cli
from rlvr_jax.config import ConfigError, apply_variant, base_config, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.py")

# (override args, text the one-line error must contain)
CASES = [
    (["--config.rollout.group_size=1"], "config.rollout.group_size"),
    (["--config.rollout.group_size=abc"], "group_size"),
    (["--config.rollout.temperature=-1"], "config.rollout.temperature"),
    (["--config.rollout.top_p=0"], "config.rollout.top_p"),
    (["--config.rollout.top_p=1.5"], "config.rollout.top_p"),
    (["--config.rollout.prompt_buckets=a,b"], "config.rollout.prompt_buckets"),
    (["--config.algo.estimator=ppo"], "config.algo.estimator"),
    (["--config.algo.estimator=rloo"], "config.algo.estimator"),
    (["--config.algo.variant=magic"], "config.algo.variant"),
    (["--config.algo.loss_agg=sum"], "config.algo.loss_agg"),
    (["--config.algo.kl_estimator=k4"], "config.algo.kl_estimator"),
    (["--config.algo.dual_clip=0.5"], "config.algo.dual_clip"),
    (["--config.algo.mini_batches=3"], "config.algo.mini_batches"),
    (["--config.algo.iac_renorm=sometimes"], "config.algo.iac_renorm"),
    (["--config.algo.pass_k=0"], "config.algo.pass_k"),
    (["--config.algo.estimator=pkpo", "--config.algo.variant=", "--config.algo.pass_k=9"], "config.algo.pass_k"),
    (["--config.algo.positive_weight=-1.0"], "config.algo.positive_weight"),
    (["--config.algo.qae_quantile=1.5"], "config.algo.qae_quantile"),
    (["--config.memory.width_ratio=2.0"], "config.memory.width_ratio"),
    (["--config.memory.train_on=maybe"], "config.memory.train_on"),
    (["--config.model.num_kv_heads=3"], "config.model.num_kv_heads"),
    (["--config.model.source=hf"], "config.model.path"),
    (["--config.model.dtype=int8"], "config.model.dtype"),
    (["--config.model.lora_rank=4", "--config.model.lora_targets=nope"], "config.model.lora_targets"),
    (["--config.model.lora_alpha=32"], "config.model.lora_alpha"),  # lora_rank=0: refused as inactive
    (["--config.data.source=jsonl"], "config.data.path"),
    (["--config.eval.ks=1,128"], "config.eval.ks"),
    (["--config.mesh.data=-1", "--config.mesh.fsdp=-1"], "config.mesh"),
    (["--config.optim.schedule=exp"], "config.optim.schedule"),
    (["--config.rollout.nonexistent=3"], "nonexistent"),
    (["--config.nogroup.x=3"], "nogroup"),
]


@pytest.mark.parametrize("args,field", CASES, ids=[c[0][0].split("=")[0][9:] for c in CASES])
def test_bad_override_one_line_exit_2(args, field, capsys):
    with pytest.raises(SystemExit) as e:
        cli._parse(["rlvr-train", "--config", DEMO, *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert field in err, err
    assert "Traceback" not in err


def test_missing_config_file(capsys):
    with pytest.raises(SystemExit) as e:
        cli._parse(["rlvr-train", "--config", "configs/nope.py"])
    assert e.value.code == 2
    assert "nope.py" in capsys.readouterr().err


def test_unknown_field_in_file(tmp_path, capsys):
    f = tmp_path / "bad.py"
    f.write_text("from rlvr_jax.config import base_config\n"
                 "def get_config():\n    c = base_config()\n    c.algo.lr = 3.0\n    return c\n")
    with pytest.raises(SystemExit) as e:
        cli._parse(["rlvr-train", "--config", str(f)])
    assert e.value.code == 2
    assert "config.algo.lr" in capsys.readouterr().err


def test_real_process_exit_status_and_single_line():
    p = subprocess.run([sys.executable, "-m", "rlvr_jax.cli", "train", "--config", DEMO,
                        "--config.rollout.top_k=-2"], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines == ["rlvr-train: error: config.rollout.top_k: -2 must be >= 0"], p.stderr


def test_variants_expand_and_validate():
    for v in ("grpo", "rloo", "reinforce_pp", "dr_grpo", "dapo", "iac", "dlc", "iac_dlc"):
        cfg = base_config()
        cfg.algo.variant = v
        cfg = validate(apply_variant(cfg))
        assert cfg.algo.iac == (v in ("iac", "iac_dlc"))
        assert cfg.memory.enabled == (v in ("dlc", "iac_dlc"))


def test_every_default_validates_and_help_lists_fields():
    validate(base_config())
    text = cli.help_text()
    assert "algo.iac_alpha" in text and "memory.mu" in text
    with pytest.raises(ConfigError, match="config.train.steps"):
        c = base_config()
        c.train.steps = 0
        validate(c)


@pytest.mark.parametrize("layers", ["4,2", "2", "a,b", "0,2"])
def test_compile_layers_flag_one_line_exit_2(layers, capsys):
    """rlvr-compile --layers must be two increasing positive depths; checked before anything compiles."""
    with pytest.raises(SystemExit) as e:
        cli.compile_main(["rlvr-compile", "--config", DEMO, f"--layers={layers}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--layers" in err and "Traceback" not in err, err


# (overrides on configs/demo.py, the field refused): set to a value that has no effect on the run
INACTIVE_CASES = [
    (["--config.rollout.prompt_buckets=8,16"], "config.rollout.prompt_buckets: '8,16' has no effect here "
                                               "(token tasks sample their fixed-width prompts unpadded)"),
    (["--config.reward.verifier=math"], "config.reward.verifier: 'math' has no effect here (token tasks are "
                                        "verified on device by the task)"),
    (["--config.algo.iac_alpha=2.0", "--config.algo.variant=grpo"], "config.algo.iac_alpha: 2.0 has no effect "
                                                                     "here (algo.iac is False)"),
    (["--config.memory.mu=1.0"], "config.memory.mu: 1.0 has no effect here (memory.enabled is False)"),
    (["--config.model.source=preset", "--config.model.preset=smollm2-135m", "--config.model.hidden_size=32"],
     "config.model.hidden_size: 32 has no effect here (only model.source='embedded' builds from these"),
]


@pytest.mark.parametrize("args,msg", INACTIVE_CASES, ids=[c[0][0].split("=")[0][9:] for c in INACTIVE_CASES])
@pytest.mark.parametrize("prog", ["rlvr-train", "rlvr-eval"])
def test_inactive_field_refused_one_line_exit_2(prog, args, msg, capsys):
    with pytest.raises(SystemExit) as e:
        cli._parse([prog, "--config", DEMO, *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"{prog}: error: {msg}"), err


def test_compile_plans_what_it_is_given():
    """rlvr-compile only plans: a field that acts elsewhere is not refused there."""
    cfg, _ = cli._parse(["rlvr-compile", "--config", DEMO, "--config.rollout.prompt_buckets=8,16"], runs=False)
    assert cfg.rollout.prompt_buckets == "8,16"


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py")))
def test_shipped_configs_are_not_refused(name):
    """Every shipped config parses as rlvr-train parses it, and sets no field that has no effect on its run."""
    extra = ["--config.data.path=/data/train.jsonl"] if name == "smollm2_jsonl_math.py" else []  # required there
    cfg, _ = cli._parse(["rlvr-train", "--config", os.path.join(ROOT, "configs", name), *extra])
    assert cfg.train.steps > 0
