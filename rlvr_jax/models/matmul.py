"""The dense-layer product `x @ W` over flattened rows, with a backward pass laid out for XLA:CPU's GEMMs.

Differentiating `x_RxI @ W_IxO` gives `dW = x^T @ dy`, a dot contracting dimension 0 of both operands.
XLA:CPU sends that form to its generic Eigen dot (about half the rate of its YNNPACK GEMM on this
repo's 2-core x86 machine, 86 vs ~170 GFLOP/s), and for [B, T, I] operands it also fused the elementwise
gradient above the layer into a transposing copy that ran at a tenth of memory speed. Here the rows are
flattened, and on CPU the backward transposes `x` once into memory (an optimisation barrier keeps XLA from
folding the transpose back into the dot), so all three products are row-major GEMMs. Other platforms
lower the plain `x^T @ dy` (`lax.platform_dependent` picks per lowering platform, so AOT compiles for TPU
from a CPU host get the plain form).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _dw_cpu(x_RxI, dy_RxO):
    xT_IxR = jax.lax.optimization_barrier(jnp.transpose(x_RxI))
    return jnp.dot(xT_IxR, dy_RxO, preferred_element_type=jnp.float32)


def _dw_plain(x_RxI, dy_RxO):
    return jax.lax.dot_general(x_RxI, dy_RxO, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)


@jax.custom_vjp
def _matmul_2d(x_RxI, w_IxO):
    return jnp.dot(x_RxI, w_IxO)


def _matmul_fwd(x_RxI, w_IxO):
    return jnp.dot(x_RxI, w_IxO), (x_RxI, w_IxO)


def _matmul_bwd(res, dy_RxO):
    x_RxI, w_IxO = res
    dx_RxI = jnp.dot(dy_RxO, w_IxO.T).astype(x_RxI.dtype)
    dw_IxO = jax.lax.platform_dependent(x_RxI, dy_RxO, cpu=_dw_cpu, default=_dw_plain).astype(w_IxO.dtype)
    return dx_RxI, dw_IxO


_matmul_2d.defvjp(_matmul_fwd, _matmul_bwd)


def rows_matmul(x_NxI, w_IxO):
    """`x @ w` for x of any leading shape [..., I]: one [rows, I] @ [I, O] product, same values as jnp.dot."""
    lead = x_NxI.shape[:-1]
    return _matmul_2d(x_NxI.reshape(-1, x_NxI.shape[-1]), w_IxO).reshape(*lead, w_IxO.shape[-1])
