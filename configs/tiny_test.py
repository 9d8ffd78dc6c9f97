"""A seconds-long embedded run for tests (resume exactness, CLI errors)."""
from rlvr_jax.config import base_config


def get_config():
    cfg = base_config()
    cfg.data.task = "sum_pair"
    cfg.data.size = 64
    cfg.data.eval_size = 4
    cfg.model.hidden_size = 32
    cfg.model.intermediate_size = 64
    cfg.model.num_layers = 1
    cfg.model.num_heads = 2
    cfg.model.num_kv_heads = 1
    cfg.train.pretrain_steps = 0
    cfg.train.steps = 4
    cfg.train.iterations_per_call = 1
    cfg.rollout.group_size = 4
    cfg.rollout.prompts_per_step = 2
    cfg.rollout.max_new_tokens = 6
    cfg.eval.num_samples = 4
    cfg.eval.ks = "1,4"
    cfg.checkpoint.every = 2
    cfg.checkpoint.async_save = False
    cfg.log.progress = False
    cfg.log.tensorboard = False
    cfg.log.dir = "runs/tiny_test"
    return cfg
