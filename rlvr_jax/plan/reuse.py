"""Reusing an earlier report's train step in `rlvr-compile --train_from`: the check that it is the same step.

Only rollout fields differ between a static-sampler plan and an engine plan of one config, and none of them
enters the train step, so its (slow) compile need not be repeated to re-plan the sampling phase.
"""
from __future__ import annotations

from rlvr_jax.config import ConfigError
from rlvr_jax.plan.accounting import prompt_len
from rlvr_jax.plan.report import not_affine


def train_config(cfg) -> dict:
    """The report's summary of what shapes the train step (the rollout engine is not part of it)."""
    return {"model": cfg.model.preset or cfg.model.source, "variant": cfg.algo.variant or cfg.algo.estimator,
            "memory_net": bool(cfg.memory.enabled), "group_size": cfg.rollout.group_size,
            "prompts_per_step": cfg.rollout.prompts_per_step, "prompt_len": prompt_len(cfg),
            "max_new_tokens": cfg.rollout.max_new_tokens, "micro_batches": cfg.algo.micro_batches,
            "mini_batches": cfg.algo.mini_batches, "remat": bool(cfg.model.remat),
            "param_dtype": cfg.model.param_dtype, "dtype": cfg.model.dtype,
            # LoRA (absent for full fine-tuning, so reports made before LoRA still match theirs)
            **({"lora_rank": cfg.model.lora_rank, "lora_targets": cfg.model.lora_targets} if cfg.model.lora_rank
               else {})}


def take_train(nums: dict, rep: dict, cfg, topology: str, layers) -> None:
    """Puts the compiled train-step numbers of report `rep` into `nums`, after checking that it planned the
    same train step: same model, batch, optimiser split, precision, slice and compile depths."""
    mine = train_config(cfg)
    depth = "compiled at full depth" if layers is None else f"compiled at {layers[0]} and {layers[1]} layers"
    diff = [k for k in {**mine, **{k: 0 for k in ("lora_rank", "lora_targets") if k in rep["config"]}}
            if rep["config"].get(k) != mine.get(k)]
    if rep["target"]["topology"] != topology:
        diff.append(f"topology {rep['target']['topology']}")
    if not rep.get("method", "").startswith(depth):
        diff.append(f"method {rep.get('method', '')[:40]!r}")
    if diff:
        raise ConfigError(f"--train_from: that report planned another train step ({', '.join(diff)})")
    nums.update(train=rep["train_step"]["memory"], xla_flops=rep["train_step"]["xla_flops_per_chip"],
                train_s=rep["train_step"]["compile_s"])
    if "compiled_at_depth" in rep and "at_depth" in nums:
        for d, v in rep["compiled_at_depth"].items():
            nums["at_depth"].setdefault(d, {})["train"] = v["train"]
    old = [n for n in nums.get("not_affine", []) if not n.startswith("train")]
    nums["not_affine"] = old + [n for n in not_affine(rep) if n.startswith("train")]
