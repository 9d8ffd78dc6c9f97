"""rows_matmul: same values and gradients as jnp.dot, and on CPU a backward without dims-0 contractions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.models.matmul import rows_matmul


def _loss(mm, x, w, c):
    return jnp.sum(jnp.tanh(mm(x, w)) * c)


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 5), (2, 3, 4, 5)])
def test_values_and_gradients_match_jnp_dot(shape):
    k = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k[0], shape, jnp.float32)
    w = jax.random.normal(k[1], (shape[-1], 6), jnp.float32)
    c = jax.random.normal(k[2], (*shape[:-1], 6), jnp.float32)
    np.testing.assert_allclose(rows_matmul(x, w), jnp.dot(x, w), rtol=1e-6, atol=1e-6)
    got = jax.jit(jax.grad(lambda x, w: _loss(rows_matmul, x, w, c), argnums=(0, 1)))(x, w)
    want = jax.grad(lambda x, w: _loss(jnp.dot, x, w, c), argnums=(0, 1))(x, w)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_gradient_matches_finite_differences_in_float64():
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(1), 3)
        x = jax.random.normal(k[0], (2, 3, 4), jnp.float64)
        w = jax.random.normal(k[1], (4, 5), jnp.float64)
        c = jax.random.normal(k[2], (2, 3, 5), jnp.float64)
        f = lambda w: _loss(rows_matmul, x, w, c)  # noqa: E731
        g = jax.grad(f)(w)
        eps = 1e-6
        for i, j in [(0, 0), (1, 3), (3, 4)]:
            d = jnp.zeros_like(w).at[i, j].set(eps)
            fd = (f(w + d) - f(w - d)) / (2 * eps)
            assert abs(float(g[i, j]) - float(fd)) < 1e-7


def test_bfloat16_gradients_keep_dtypes():
    x = jnp.ones((2, 3, 4), jnp.bfloat16)
    w = jnp.ones((4, 5), jnp.bfloat16)
    gx, gw = jax.grad(lambda x, w: jnp.sum(rows_matmul(x, w).astype(jnp.float32)), argnums=(0, 1))(x, w)
    assert gx.dtype == jnp.bfloat16 and gw.dtype == jnp.bfloat16
    assert float(gw[0, 0]) == 6.0


def _grad_hlo(platform: str) -> str:
    x = jax.ShapeDtypeStruct((4, 8, 16), jnp.float32)
    w = jax.ShapeDtypeStruct((16, 32), jnp.float32)
    f = jax.jit(jax.grad(lambda x, w: jnp.sum(rows_matmul(x, w) ** 2), argnums=1))
    return f.trace(x, w).lower(lowering_platforms=(platform,)).as_text()


def test_cpu_backward_is_row_major_and_other_platforms_get_the_plain_product():
    cpu = _grad_hlo("cpu")
    assert "optimization_barrier" in cpu and "transpose" in cpu
    compiled = jax.jit(jax.grad(lambda x, w: jnp.sum(rows_matmul(x, w) ** 2), argnums=1)).lower(
        jnp.ones((4, 8, 16)), jnp.ones((16, 32))).compile().as_text()
    assert "lhs_contracting_dims={0}" not in compiled  # XLA:CPU would run that form on its slow Eigen dot
    gpu = _grad_hlo("cuda")
    assert "optimization_barrier" not in gpu
    assert "contracting_dims = [0] x [0]" in gpu
