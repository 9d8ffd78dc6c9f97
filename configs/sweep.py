"""Base config of the over-sharpening sweep (`scripts/sweep.py`): the demo task and policy, one set of
RL hyper-parameters shared by every method; `scripts/sweep.py` sets `algo.variant` per method.

    python scripts/sweep.py --out docs/figures/sweep              # the committed sweep (see docs/results.md)
    python scripts/sweep.py --quick --out /tmp/sweep_quick        # seconds-to-a-minute smoke run

Choices (justified in docs/results.md): the warm-up of configs/demo.py (a base policy with pass@1
~0.1 and pass@64 ~0.98 on `sum_pair`, mass spread over many correct answers); G = 8 and 16 prompts
per step (128 samples per step, the paper's G); AdamW lr 1e-3 constant, one PPO epoch, no KL
(the paper's setting: the KL term is off); DAPO's overlong buffer 2 tokens (set for DAPO only, by
scripts/sweep.py METHOD_FIELDS); 200 RL steps, evaluated every 40 on 64 held-out queries x 128 samples
(pass@k up to k = 128, and the exact teacher-forced correct-mode instruments).
DLC: memory network a quarter of the policy's width, one layer, fresh init, lr 1e-3, mu = 0.5.
"""
from rlvr_jax.config import config_module


def get_config():
    cfg = config_module(__file__, "demo.py").get_config()  # its task, tiny policy and warm-up, unchanged
    cfg.data.eval_size = 64
    cfg.train.seed = 0  # the warm-up seed: one base policy for every run
    cfg.train.steps = 200
    cfg.algo.variant = ""  # scripts/sweep.py sets one per method
    cfg.checkpoint.keep = 3
    cfg.log.every = 1
    # DAPO's overlong buffer (2 tokens) acts only under algo.variant='dapo': scripts/sweep.py METHOD_FIELDS
    cfg.memory.mu = 0.5
    cfg.memory.width_ratio = 0.25
    cfg.memory.learning_rate = 1e-3
    cfg.eval.every = 40
    cfg.eval.num_samples = 128
    cfg.eval.ks = "1,2,4,8,16,32,64,128"
    cfg.log.dir = "runs/sweep"
    cfg.log.progress = True
    return cfg
