"""SmolLM2-135M-Instruct on a local JSONL math dataset (DeepScaleR / MATH / GSM8K schemas), verified by
math-verify in a time-limited process pool.

    rlvr-train --config configs/smollm2_jsonl_math.py --config.data.path=/data/gsm8k_train.jsonl \\
        --config.data.schema=gsm8k --config.data.eval_files=/data/gsm8k_test.jsonl,/data/math500.jsonl

Sized like configs/smollm2_gym.py (4 prompts x 8, lr 1e-5), which takes held-out pass@1 from 0.12 to 0.61 in
40 steps on easy arithmetic. On a JSONL of that arithmetic, this config with these sizes and 160 new tokens
raised the reward from 0.07 to 0.23 in 29 steps (issue #17); at lr 1e-6 nothing moved in 40 steps. GSM8K / MATH
are far harder for a 135M model.

Without data.eval_files a seeded slice of data.eval_size rows of the training file is held out (never
trained on) and evaluated at the start, every eval.every steps and at the end.
"""
from rlvr_jax.config import base_config


def get_config():
    cfg = base_config()
    cfg.model.source = "gguf"
    cfg.data.source = "jsonl"
    cfg.data.path = ""  # required: set with --config.data.path
    cfg.data.schema = "deepscaler"
    cfg.data.template = "chat"
    cfg.data.on_bad_row = "skip"
    cfg.reward.verifier = "math"
    cfg.reward.workers = 2
    cfg.reward.item_timeout_s = 5.0
    cfg.rollout.group_size = 8
    cfg.rollout.prompts_per_step = 4
    cfg.rollout.max_new_tokens = 256
    cfg.rollout.prompt_buckets = "128,256,512,1024"
    cfg.optim.learning_rate = 1e-5  # 1e-6 moved nothing in 40 steps at 4 x 8
    cfg.algo.variant = "iac"
    cfg.algo.logprob_chunk = 64
    cfg.train.steps = 100
    cfg.data.eval_size = 32
    cfg.eval.every = 20
    cfg.eval.num_samples = 16
    cfg.eval.ks = "1,2,4,8,16"
    cfg.checkpoint.every = 10
    cfg.log.dir = "runs/smollm2_math"
    return cfg
