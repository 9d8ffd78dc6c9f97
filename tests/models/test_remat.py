"""model.remat=True gives the same loss and gradients as without (it only changes what is stored)."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rlvr_jax.models import create, tiny


def test_remat_same_loss_and_grads():
    out = []
    for remat in (False, True):
        model = create(tiny("qwen3", remat=remat), seed=3)
        gdef, params = nnx.split(model, nnx.Param)
        toks = jax.random.randint(jax.random.key(0), (2, 9), 0, 128)

        def loss(p):
            logits, _ = nnx.merge(gdef, p)(toks)
            return jnp.mean(jax.nn.log_softmax(logits)[..., 0])
        val, g = jax.jit(jax.value_and_grad(loss))(params)
        out.append((float(val), [np.asarray(x) for x in jax.tree.leaves(g)]))
    assert abs(out[0][0] - out[1][0]) < 1e-6
    for a, b in zip(out[0][1], out[1][1]):
        np.testing.assert_allclose(a, b, atol=1e-6)
