"""The over-sharpening sweep on `countdown_small` (`scripts/sweep.py --config configs/sweep_countdown.py`).

Everything as configs/sweep.py (policy, warm-up recipe, RL hyper-parameters, evaluation) except the task:
reach a target with 2 or 3 of three given digits and + - * (see rlvr_jax/data/tasks/countdown_small.py).
Commutative rewrites give several correct answers to most targets, and some targets have one, so the
task has both many-mode and single-mode queries, like sum_pair but with a different answer grammar.
"""
from rlvr_jax.config import config_module


def get_config():
    cfg = config_module(__file__, "sweep.py").get_config()
    cfg.data.task = "countdown_small"
    cfg.train.pretrain_steps = 1500  # 400 (sum_pair's) leaves countdown at pass@1 0.005; 1500 gives 0.06, pass@128 0.89
    cfg.log.dir = "runs/sweep_countdown"
    return cfg
