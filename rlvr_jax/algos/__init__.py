"""algos: advantage estimators, IAC calibration, policy losses, KL, aggregation: arrays in, arrays out.

Pure, jittable functions over arrays (no modules: teacher-forced scoring of a model is `models.scoring`);
configuration comes in as the `algo` config group.
"""
from rlvr_jax.algos.advantages import (compute_advantages, estimators, get_estimator,  # noqa: F401
                                       register_advantage)
from rlvr_jax.algos import diversity_advantages  # noqa: F401  (registers pass_at_k, w_reinforce, psr, nsr, qae, pkpo)
from rlvr_jax.algos.aggregation import MODES as LOSS_AGG_MODES, aggregate, aggregate_parts  # noqa: F401
from rlvr_jax.algos.calibration import apply_iac, calibrate, iac_factors  # noqa: F401
from rlvr_jax.algos.groups import successes, zero_std_groups  # noqa: F401
from rlvr_jax.algos.kl import kl_per_token  # noqa: F401
from rlvr_jax.algos.losses import clipped_pg_loss  # noqa: F401
from rlvr_jax.algos.memory_loss import memory_loss, memory_rollouts  # noqa: F401
from rlvr_jax.algos.objective import policy_objective  # noqa: F401
