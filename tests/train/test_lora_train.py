"""LoRA training (train/state.py, step.py, program.py, checkpoint.py, loop.py): gradients and Adam moments reach the
adapters only and the frozen base stays bit-identical, the KL reference is the base (no copy) and matches full
fine-tuning's, the state of SmolLM2-135M shrinks, a LoRA run resumes exactly and refuses another base."""
import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from rlvr_jax import models, parallel
from rlvr_jax.config import base_config
from rlvr_jax.models import lora
from rlvr_jax.train import loop
from rlvr_jax.train.build import build
from rlvr_jax.train.checkpoint import Checkpointer, CheckpointError, param_fingerprint, restore_with_base
from rlvr_jax.train.program import train_program, updates_per_run
from rlvr_jax.train.state import policy_params
from tests.train.batch_helpers import B, G, N, random_batch
from tests.train.test_resume import _cfg as tiny_run_cfg

# configs/tiny_test.py's untrained policy earns no reward in 4 steps (all advantages 0): an entropy bonus gives the
# adapters a gradient, so the runs below show them moving (and resume has non-zero updates to reproduce)
LORA = {"model.lora_rank": 4, "algo.entropy_coef": 0.01}


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def _step_cfg(**algo):
    cfg = base_config()
    cfg.rollout.max_new_tokens, cfg.rollout.group_size = N, G
    cfg.optim.learning_rate = 1e-2
    cfg.model.lora_rank = 4
    for k, v in algo.items():
        cfg.algo[k] = v
    return cfg


def _lora_policy(seed=0):
    pcfg = models.tiny("qwen2", vocab_size=96, hidden_size=32, intermediate_size=48, num_layers=1)
    return lora.add_lora(models.create(pcfg, seed=seed), 4, 16.0)


def _program(cfg, policy):
    return train_program(cfg, policy, None, parallel.single_device_mesh(), 10, rows=B)


def test_step_trains_the_adapters_only():
    """Through the real TrainProgram: `policy` is LoRAParams only, Adam's moments have adapter shapes, `base` is
    bit-identical after three updates while every B moved off zero."""
    program = _program(_step_cfg(), _lora_policy())
    state = program.init_state(_lora_policy())
    flat = nnx.to_flat_state(state.policy)
    assert flat and all(isinstance(v, nnx.LoRAParam) for _, v in flat)
    assert not any(isinstance(v, nnx.LoRAParam) for _, v in nnx.to_flat_state(state.base)) and state.ref is None
    adapter_shapes = sorted(v.shape for _, v in flat)
    moments = [x for x in jax.tree.leaves(state.policy_opt) if x.ndim]  # mu and nu (Adam's counts are scalars)
    assert sorted(x.shape for x in moments) == sorted(adapter_shapes * 2)
    base0 = _leaves(state.base)
    for i in range(3):
        state, met = program.update(state, random_batch(i))
        assert float(met["update_skipped"]) == 0 and np.isfinite(float(met["grad_norm"]))
    for a, b in zip(base0, _leaves(state.base)):
        np.testing.assert_array_equal(a, b)
    assert all(np.any(v.get_value() != 0) for p, v in nnx.to_flat_state(state.policy) if p[-1] == "lora_b")


def test_kl_reference_is_the_base():
    """kl_coef > 0 under LoRA: no ref copy, KL = 0 exactly at the first update (B = 0) and > 0 once the adapters
    moved; then equal (float error) to full fine-tuning's KL with the policy = the merged weights and the
    reference = the base (the merged weights with zero adapters)."""
    cfg = _step_cfg(kl_coef=0.1)
    program = _program(cfg, _lora_policy())
    state = program.init_state(_lora_policy())
    assert state.ref is None and state.base is not None
    state, met = program.update(state, random_batch(0))
    assert float(met["kl"]) == 0.0
    for i in (1, 2):
        state, met = program.update(state, random_batch(i))
    assert float(met["kl"]) > 1e-6

    merged = nnx.merge(program._plain_graphdef, jax.device_get(program._merge(policy_params(state))))
    base = nnx.state(nnx.merge(program._plain_graphdef, jax.device_get(state.base)), nnx.Param)
    cfg.model.lora_rank = 0
    full = _program(cfg, merged)
    full_state = full.init_state(merged)
    full_state = full_state.replace(ref=jax.device_put(base, full.state_shardings.ref))
    batch = random_batch(7)
    _, met_lora = program.update(state, batch)
    _, met_full = full.update(full_state, batch)
    print(f"kl lora {float(met_lora['kl']):.6e} full {float(met_full['kl']):.6e}")
    assert float(met_lora["kl"]) > 1e-6
    for k in ("kl", "loss", "pg_loss", "entropy"):
        np.testing.assert_allclose(float(met_lora[k]), float(met_full[k]), rtol=2e-5, atol=1e-7, err_msg=k)


def _bytes(tree) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def test_train_state_bytes_smollm2():
    """SmolLM2-135M (f32, abstract: nothing allocated), rank 8 on all 7 projections of its 30 layers. Full
    fine-tuning: params + 2 Adam moments = 1,614,180,104 bytes (134.5 M params; + a 538,060,032-byte reference
    copy with kl_coef > 0). LoRA: the base once (538,060,032) + adapters (9,768,960: 2.44 M params) + 2 moments
    (19,537,928) = 567,366,920 bytes, 35.1% of full, and no reference copy even with kl_coef > 0."""
    pc = models.preset("smollm2-135m")
    cfg = base_config()
    cfg.algo.kl_coef = 0.1
    mesh = parallel.single_device_mesh()
    full = train_program(cfg, models.abstract(pc), None, mesh, 10).abstract_state
    cfg.model.lora_rank = 8
    lora_model = nnx.eval_shape(lambda: lora.add_lora(models.Transformer(pc, rngs=nnx.Rngs(params=0)), 8, 16.0))
    low = train_program(cfg, lora_model, None, mesh, 10).abstract_state
    params = _bytes(full.policy)
    full_bytes = _bytes(full.policy) + _bytes(full.policy_opt)
    lora_bytes = _bytes(low.base) + _bytes(low.policy) + _bytes(low.policy_opt)
    print(f"smollm2-135m f32 train state: full {full_bytes:,} B (+ ref {_bytes(full.ref):,}), "
          f"lora r8 all {lora_bytes:,} B (base {_bytes(low.base):,} + adapters {_bytes(low.policy):,} + "
          f"moments {_bytes(low.policy_opt):,}), {lora_bytes / full_bytes:.1%}")
    assert params == 4 * pc.num_params() == _bytes(low.base) and _bytes(full.ref) == params
    assert low.ref is None and _bytes(low.policy) == 4 * 30 * 8 * (576 * 6 + 1536 + 576 * 3 + 192 * 2 + 1536 * 2)  # 30 x r x (ins + outs)
    assert full_bytes == 1_614_180_104 and lora_bytes == 567_366_920 and lora_bytes < 0.36 * full_bytes


# ------------------------------------------------------------------------------------------- runs of the loop

@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """configs/tiny_test.py (GRPO, 4 steps, checkpoints at 2 and 4) with rank-4 adapters."""
    d = tmp_path_factory.mktemp("lora_full")
    return d, loop.run(tiny_run_cfg(d, **LORA))


def _step_metrics(log_dir, after: int):
    """metrics.jsonl records of the steps after `after`, timings left out."""
    rows = [json.loads(line) for line in open(os.path.join(log_dir, "metrics.jsonl"))]
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k not in ("tokens_per_s", "wall_time")}
            for r in rows if r.get("step", 0) > after and "loss" in r]


def test_lora_run_moves_adapters_not_base(lora_run):
    d, out = lora_run
    assert out["steps"] == 4 and out["lora_base_fingerprint"] == out["lora_base_final_fingerprint"]
    assert out["final_param_fingerprint"] != out["base_param_fingerprint"]
    summary = json.load(open(d / "summary.json"))
    assert summary["lora_base_fingerprint"] == param_fingerprint(out["state"].base)
    state = out["state"]
    assert all(isinstance(v, nnx.LoRAParam) for _, v in nnx.to_flat_state(state.policy))


def test_lora_resume_is_bit_identical(lora_run, tmp_path):
    """Resumed from the step-2 checkpoint (which holds no base): the same final adapters, opt state and metrics."""
    full_dir, full = lora_run
    shutil.copytree(full_dir / "ckpt" / "2", tmp_path / "ckpt" / "2")
    resumed = loop.run(tiny_run_cfg(tmp_path, **LORA))
    for a, b in zip(_leaves((full["state"].policy, full["state"].policy_opt, full["state"].base)),
                    _leaves((resumed["state"].policy, resumed["state"].policy_opt, resumed["state"].base))):
        np.testing.assert_array_equal(a, b)
    assert resumed["final_param_fingerprint"] == full["final_param_fingerprint"]
    got, want = _step_metrics(tmp_path, 2), _step_metrics(full_dir, 2)
    assert len(want) == 2 and got == want and all(r["grad_norm"] > 0 for r in want)


def test_resume_on_another_base_is_refused(lora_run):
    """The same run's state built on another seed's base model: restore_with_base refuses in one line."""
    full_dir, _ = lora_run
    cfg = tiny_run_cfg(full_dir / "other", **LORA, **{"train.seed": 1})
    b = build(cfg)
    program = train_program(cfg, b.policy, b.memory, parallel.make_mesh(cfg.mesh), updates_per_run(cfg),
                            prompt_len=b.task.prompt_len)
    state = program.init_state(b.policy)
    ckpt = Checkpointer(str(full_dir / "ckpt"), async_save=False)
    with pytest.raises(CheckpointError, match=r"^checkpoint .* step 4: its LoRA adapters were trained on another "
                                              r"base model \(\d+ of \d+ base weights differ") as e:
        restore_with_base(ckpt, state, program.state_shardings)
    assert "\n" not in str(e.value)
    ckpt.close()


def test_merged_sampling_token_run(tmp_path):
    """model.lora_sampling='merged': rollouts run the plain graph with folded kernels; the run trains."""
    out = loop.run(tiny_run_cfg(tmp_path, **LORA, **{"model.lora_sampling": "merged", "train.steps": 2,
                                                    "checkpoint.every": 0}))
    assert out["steps"] == 2 and out["lora_base_fingerprint"] == out["lora_base_final_fingerprint"]
    assert out["final_param_fingerprint"] != out["base_param_fingerprint"]
    rows = _step_metrics(tmp_path, 0)
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
