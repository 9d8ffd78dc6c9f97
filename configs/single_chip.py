"""GRPO on one TPU chip (or one small slice): Qwen3 preset shapes, G = 8, 16 prompts per step, 1k-token responses.

    rlvr-compile --config configs/single_chip.py --topology v5e-1,v6e-1,v5e-8 --layers 2,4
    rlvr-compile --config configs/single_chip.py --topology v5e-1 --config.model.lora_rank=32 \
        --config.model.lora_alpha=64                                                             # LoRA
    python scripts/aot_single_chip.py      # the README's single-chip table (docs/aot/lora/)

The planning config of the single-chip table in docs/aot.md: the paper setup (configs/paper_qwen3_4b.py:
DeepScaleR chat prompts planned at the 512-token bucket, bf16 parameters and compute, remat, AdamW) at a size
for one chip: 16 prompts x G = 8 = 128 rollouts per step in 16 micro-batches of one group each (the most the
config allows: micro-batches are whole groups; 8 sequences per micro-batch on one chip, one per chip on
v5e-8), and rollouts on the
continuous engine with a KV budget of a quarter of the chip's HBM (`rollout.engine=auto`: the static
sampler's 128 rows of 512 + 1024 tokens alone take 22 GiB of KV for Qwen3-0.6B). Model, response length
and LoRA are overridden per cell (model.preset, rollout.max_new_tokens, model.lora_rank / lora_alpha / lora_targets:
the table's LoRA is rank 32, alpha 64, every projection).
"""
from rlvr_jax.config import config_module


def get_config():
    cfg = config_module(__file__, "paper_qwen3_4b.py").paper_config("qwen3-0.6b")
    cfg.algo.variant = "grpo"
    cfg.rollout.prompts_per_step = 16
    cfg.rollout.max_new_tokens = 1024
    cfg.algo.micro_batches = 16  # one group of G = 8 sequences per micro-batch
    cfg.rollout.engine = "auto"
    cfg.rollout.kv_budget_mb = 4032  # a quarter of a v5e chip's 15.75 GiB
    cfg.log.dir = "runs/single_chip"
    return cfg
