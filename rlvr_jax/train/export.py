"""The end-of-run export: the policy as an HF folder transformers loads (LoRA adapters folded into the
kernels), and under LoRA the adapters alone in PEFT's layout beside it (`export/adapter/`)."""
from __future__ import annotations

import os

import jax
from flax import nnx

from rlvr_jax.models import save_pretrained


def export_policy(program, state, out_dir: str) -> list[str]:
    """Writes `out_dir` (merged HF safetensors + config.json) and, with LoRA, `out_dir/adapter` (PEFT);
    -> log lines saying what was written."""
    full = program.policy_params(state)
    model = nnx.merge(program.policy_graphdef, jax.device_get(full))
    if not program.use_lora:
        save_pretrained(model, out_dir)
        return [f"exported the policy to {out_dir}"]
    from rlvr_jax.models import lora
    save_pretrained(lora.merged_model(model), out_dir)
    adapter_dir = os.path.join(out_dir, "adapter")
    lora.save_peft(model, adapter_dir)
    return [f"exported the policy (LoRA adapters merged into the base) to {out_dir}",
            f"exported the LoRA adapters alone (PEFT layout) to {adapter_dir}"]
