"""A seconds-long RL run for multi-process checks: the embedded sum_pair task and a tiny policy.

    # two processes on one machine (loopback), two fake CPU devices each:
    JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_COORDINATOR_ADDRESS=127.0.0.1:12355 \\
      JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 rlvr-train --config configs/tiny_multihost.py &   # and PROCESS_ID=1
The mesh shards parameters over fsdp=2 and the batch over data x fsdp, so collectives cross processes.
"""
from rlvr_jax.config import base_config


def get_config():
    cfg = base_config()
    cfg.data.source = "embedded"
    cfg.data.task = "sum_pair"
    cfg.data.size = 64
    cfg.data.eval_size = 8
    cfg.model.source = "embedded"
    cfg.model.hidden_size = 32
    cfg.model.intermediate_size = 64
    cfg.model.num_layers = 1
    cfg.model.num_heads = 2
    cfg.model.num_kv_heads = 2
    cfg.train.pretrain_steps = 0
    cfg.train.steps = 4
    cfg.train.iterations_per_call = 1
    cfg.rollout.group_size = 4
    cfg.rollout.prompts_per_step = 4
    cfg.rollout.max_new_tokens = 4
    cfg.optim.learning_rate = 3e-3
    cfg.algo.variant = "iac"
    cfg.algo.overlong = "soft"  # length-shaped rewards: an untrained policy still gets non-zero advantages
    cfg.algo.overlong_buffer = 3
    cfg.eval.num_samples = 4
    cfg.eval.ks = "1,4"
    cfg.mesh.data = -1
    cfg.mesh.fsdp = 2
    cfg.mesh.tensor = 1
    cfg.checkpoint.every = 2
    cfg.checkpoint.keep = 5
    cfg.checkpoint.async_save = False
    cfg.log.dir = "runs/tiny_multihost"
    cfg.log.tensorboard = False
    cfg.log.progress = False
    return cfg
