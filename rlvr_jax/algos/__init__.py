"""algos: advantage estimators, IAC calibration, policy losses, KL, aggregation, chunked logprobs.

Pure, jittable functions; configuration comes in as the `algo` config group.
"""
from rlvr_jax.algos.advantages import (compute_advantages, estimators, get_estimator,  # noqa: F401
                                       register_advantage)
from rlvr_jax.algos.aggregation import MODES as LOSS_AGG_MODES, aggregate, aggregate_parts  # noqa: F401
from rlvr_jax.algos.calibration import apply_iac, calibrate, iac_factors  # noqa: F401
from rlvr_jax.algos.groups import successes, zero_std_groups  # noqa: F401
from rlvr_jax.algos.kl import kl_per_token  # noqa: F401
from rlvr_jax.algos.logprobs import (chunked_logprobs_and_entropy, logprobs_from_logits,  # noqa: F401
                                     token_logprobs_and_entropy, token_logprobs_and_entropy_reference)
from rlvr_jax.algos.losses import clipped_pg_loss  # noqa: F401
from rlvr_jax.algos.memory_loss import memory_loss, memory_rollouts  # noqa: F401
from rlvr_jax.algos.objective import policy_objective  # noqa: F401
