"""Base config of the over-sharpening sweep (`scripts/sweep.py`): the demo task and policy, one set of
RL hyper-parameters shared by every method; `scripts/sweep.py` sets `algo.variant` per method.

    python scripts/sweep.py --out docs/figures/sweep              # the committed sweep (see docs/results.md)
    python scripts/sweep.py --quick --out /tmp/sweep_quick        # seconds-to-a-minute smoke run

Choices (justified in docs/results.md): the warm-up of configs/demo.py (a base policy with pass@1
~0.1 and pass@64 ~0.98 on `sum_pair`, mass spread over many correct answers); G = 8 and 16 prompts
per step (128 samples per step, the paper's G); AdamW lr 1e-3 constant, one PPO epoch, no KL
(the paper's setting: the KL term is off); DAPO's overlong buffer 2 tokens (see below); 200 RL steps, evaluated every 40 on 64 held-out queries
x 128 samples (pass@k up to k = 128, and the exact teacher-forced correct-mode instruments).
DLC: memory network a quarter of the policy's width, one layer, fresh init, lr 1e-3, mu = 0.5.
"""
from rlvr_jax.config import base_config


def get_config():
    cfg = base_config()
    cfg.data.source = "embedded"
    cfg.data.task = "sum_pair"
    cfg.data.size = 2000
    cfg.data.eval_size = 64
    cfg.model.source = "embedded"
    cfg.model.hidden_size = 64
    cfg.model.intermediate_size = 192
    cfg.model.num_layers = 2
    cfg.model.num_heads = 4
    cfg.model.num_kv_heads = 2
    cfg.train.seed = 0  # the warm-up seed: one base policy for every run
    cfg.train.pretrain_steps = 400
    cfg.train.pretrain_lr = 6e-3
    cfg.train.pretrain_correct_frac = 0.9
    cfg.train.steps = 200
    cfg.train.iterations_per_call = 5
    cfg.rollout.group_size = 8
    cfg.rollout.prompts_per_step = 16
    cfg.rollout.max_new_tokens = 8
    cfg.optim.learning_rate = 1e-3
    # DAPO's soft overlong penalty ramps over the last `overlong_buffer` tokens of max_new_tokens = 8; the
    # longest valid answer "19+19"+EOS is 6 tokens, so a buffer of 2 only penalises over-long responses
    # (the default 4 would penalise every two-digit answer and bias DAPO towards short ones)
    cfg.algo.overlong_buffer = 2
    cfg.memory.mu = 0.5
    cfg.memory.width_ratio = 0.25
    cfg.memory.learning_rate = 1e-3
    cfg.eval.every = 40
    cfg.eval.num_samples = 128
    cfg.eval.ks = "1,2,4,8,16,32,64,128"
    cfg.log.dir = "runs/sweep"
    cfg.log.progress = True
    return cfg
