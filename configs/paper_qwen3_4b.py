"""Paper reproduction, Qwen3-4B: DeepScaleR, G = 8, 64 prompts per step, AdamW lr 1e-6, 2000 steps.

    rlvr-train   --config configs/paper_qwen3_4b.py --config.algo.variant=iac_dlc \\
                 --config.model.source=hf --config.model.path=/path/to/Qwen3-4B \\
                 --config.data.path=/path/to/deepscaler.jsonl
    rlvr-compile --config configs/paper_qwen3_4b.py --topology v5p-16,v5p-32    # plan, no weights needed

model.source='preset' gives the Qwen3-4B shapes with random weights (enough for `rlvr-compile`); for a
real run point model.source='hf' and model.path at a local HF folder of Qwen/Qwen3-4B (config.json,
tokenizer and safetensors). Variants: algo.variant in grpo, rloo, reinforce_pp, dr_grpo, dapo, iac, dlc,
iac_dlc. Sizes planned with rlvr-compile are in docs/aot.md.
"""
from rlvr_jax.config import base_config

PRESET = "qwen3-4b"


def paper_config(preset: str = PRESET):
    """The shared paper setup for a Qwen3 preset."""
    cfg = base_config()
    cfg.model.source = "preset"
    cfg.model.preset = preset
    cfg.model.dtype = "bfloat16"
    cfg.model.param_dtype = "bfloat16"
    cfg.model.remat = True
    cfg.data.source = "jsonl"
    cfg.data.path = "data/deepscaler.jsonl"
    cfg.data.schema = "deepscaler"
    cfg.data.template = "chat"
    cfg.data.eval_size = 500
    cfg.reward.verifier = "math"
    cfg.reward.workers = 8
    cfg.rollout.group_size = 8
    cfg.rollout.prompts_per_step = 64
    cfg.rollout.max_new_tokens = 4096  # response length (tokens)
    cfg.rollout.prompt_buckets = "128,256,512"  # DeepScaleR chat prompts; the largest is planned for
    cfg.rollout.temperature = 1.0
    cfg.algo.variant = "iac"
    cfg.algo.iac_alpha = 1.0
    cfg.algo.mini_batches = 1
    cfg.algo.micro_batches = 16  # 32 sequences per gradient-accumulation chunk
    cfg.algo.logprob_chunk = 512
    cfg.optim.learning_rate = 1e-6
    cfg.optim.weight_decay = 0.01
    cfg.optim.grad_clip = 1.0
    cfg.train.steps = 2000
    cfg.eval.every = 50
    cfg.eval.num_samples = 8
    cfg.eval.ks = "1,8"
    cfg.mesh.data = 1
    cfg.mesh.fsdp = -1
    cfg.mesh.tensor = 1
    cfg.checkpoint.every = 50
    cfg.log.dir = f"runs/paper_{preset.replace('-', '_')}"
    return cfg


def get_config():
    return paper_config(PRESET)
