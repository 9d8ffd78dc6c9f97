"""The embedded demo: a tiny policy warmed up on `sum_pair` (many correct answers per query), then RL.

    rlvr-train --config configs/demo.py                       # GRPO + IAC
    rlvr-train --config configs/demo.py --config.algo.variant=grpo
Finishes in a few minutes on a 2-core CPU and ends with a pass@k table and a plot.
"""
from rlvr_jax.config import base_config


def get_config():
    cfg = base_config()
    cfg.data.source = "embedded"
    cfg.data.task = "sum_pair"
    cfg.data.size = 2000
    cfg.data.eval_size = 48
    cfg.model.source = "embedded"
    cfg.model.hidden_size = 64
    cfg.model.intermediate_size = 192
    cfg.model.num_layers = 2
    cfg.model.num_heads = 4
    cfg.model.num_kv_heads = 2
    cfg.train.pretrain_steps = 400
    cfg.train.pretrain_lr = 6e-3
    cfg.train.pretrain_correct_frac = 0.9
    cfg.train.steps = 60
    cfg.train.iterations_per_call = 5
    cfg.rollout.group_size = 8
    cfg.rollout.prompts_per_step = 16
    cfg.rollout.max_new_tokens = 8
    cfg.optim.learning_rate = 1e-3
    cfg.algo.variant = "iac"
    cfg.eval.num_samples = 64
    cfg.eval.ks = "1,4,16,64"
    cfg.log.dir = "runs/demo"
    cfg.checkpoint.keep = 2
    cfg.log.every = 10
    return cfg
