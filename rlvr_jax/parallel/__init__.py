"""Mesh, logical-axis rules (train vs sample), placement of state and batches, multi-host start-up."""
from rlvr_jax.parallel.mesh import AXES, describe, make_mesh, resolve_sizes, single_device_mesh  # noqa: F401
from rlvr_jax.parallel.rules import SAMPLE_RULES, TRAIN_RULES, rules_for  # noqa: F401
from rlvr_jax.parallel.sharding import (  # noqa: F401
    batch_shards, batch_sharding, batch_shardings, explain, logical_names, logical_to_spec, shard_batch, shard_model,
    shard_state, state_shardings)
from rlvr_jax.parallel.distributed import is_main, maybe_initialize  # noqa: F401
