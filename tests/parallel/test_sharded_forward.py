"""A sharded forward on 8 fake CPU devices equals the single-device forward, for several meshes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rlvr_jax import parallel
from rlvr_jax.models import create, tiny


@pytest.fixture(scope="module")
def setup():
    cfg = tiny("qwen3", hidden_size=64, num_heads=4, num_kv_heads=2, vocab_size=96)
    model = create(cfg, seed=1)
    toks = jax.random.randint(jax.random.key(0), (8, 12), 0, cfg.vocab_size)
    mask = jnp.arange(12)[None, :] >= jnp.array([0, 1, 2, 3, 0, 5, 0, 2])[:, None]
    pos = jnp.maximum(jnp.cumsum(mask, 1) - 1, 0)
    ref, _ = model(toks, pos, kv_mask_BxS=mask)
    return cfg, model, toks, pos, mask, np.asarray(ref)


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 2, 2), (1, 2, 4)])
def test_sharded_forward_matches_single_device(setup, shape):
    cfg, model, toks, pos, mask, ref = setup
    assert jax.device_count() == 8
    mesh = parallel.make_mesh(shape=shape)
    graphdef, state = nnx.split(model)
    sharded = parallel.shard_state(state, mesh, parallel.TRAIN_RULES)
    specs = [v.sharding.spec for v in jax.tree.leaves(sharded)]
    if shape[1] * shape[2] > 1:
        assert any(any(a is not None for a in s) for s in specs), "nothing was sharded"
    b = parallel.shard_batch((toks, pos, mask), mesh, parallel.TRAIN_RULES)

    @jax.jit
    def fwd(st, t, p, m):
        return nnx.merge(graphdef, st)(t, p, kv_mask_BxS=m)[0]

    out = fwd(sharded, *b)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5, rtol=1e-5)


def test_indivisible_axis_is_replicated():
    mesh = parallel.make_mesh(shape=(2, 1, 4))
    spec = parallel.logical_to_spec(("embed", "kv_heads"), (64, 6), mesh, parallel.TRAIN_RULES)
    assert spec == jax.sharding.PartitionSpec(None, None)
    spec = parallel.logical_to_spec(("embed", "kv_heads"), (64, 8), mesh, parallel.TRAIN_RULES)
    assert spec == jax.sharding.PartitionSpec(None, "tensor")


def test_bad_mesh_sizes_name_the_field():
    with pytest.raises(ValueError, match="config.mesh"):
        parallel.resolve_sizes((3, 1, 1), 8)
    with pytest.raises(ValueError, match="config.mesh"):
        parallel.resolve_sizes((-1, -1, 1), 8)
    assert parallel.resolve_sizes((2, -1, 2), 8) == (2, 2, 2)
