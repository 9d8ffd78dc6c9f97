"""The CPU kernel library: packing, the packed GEMM and decode attention against plain references,
the build (atomic, one-line failure) and when the sampler may use it."""
import math
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.kernels import cpu_gemm
from rlvr_jax.models import create, tiny
from rlvr_jax.sampling.decode_kernels import decode_matmul

ON_X86 = platform.machine().lower() in ("x86_64", "amd64") and {"avx2", "fma"} <= cpu_gemm._cpu_flags()
needs_kernel = pytest.mark.skipif(not ON_X86, reason="the kernel needs an x86-64 CPU with AVX2 and FMA")


@needs_kernel
def test_kernel_builds_and_registers_here():
    assert cpu_gemm.status() == (True, "ok")
    assert cpu_gemm.library_path().exists()


@needs_kernel
@pytest.mark.parametrize("K,N", [(1, 8), (7, 24), (40, 48), (64, 56), (576, 192), (33, 200)])
def test_pack_matches_the_reference_layout(K, N):
    w = jnp.asarray(np.random.default_rng(K * N).standard_normal((K, N), dtype=np.float32))
    ref = cpu_gemm.pack_reference(w)
    np.testing.assert_array_equal(np.asarray(jax.jit(cpu_gemm.pack)(w)), np.asarray(ref))
    np.testing.assert_array_equal(np.asarray(jax.jit(cpu_gemm.pack_transposed)(w.T)), np.asarray(ref))
    # the layout is what the docstring says: first panel = columns 0..23 (or 0..7), row-major over K
    width = 24 if N >= 24 else 8
    np.testing.assert_array_equal(np.asarray(ref).reshape(-1)[:K * width], np.asarray(w)[:, :width].reshape(-1))


@needs_kernel
@pytest.mark.parametrize("M", [1, 3, 4, 5, 33, 64, 65, 130])
@pytest.mark.parametrize("K,N", [(1, 8), (7, 56), (576, 48)])
def test_packed_matmul_matches_float64(M, K, N):
    rng = np.random.default_rng(M + 7 * K + N)
    x = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((K, N), dtype=np.float32)
    y = np.asarray(jax.jit(cpu_gemm.packed_matmul)(jnp.asarray(x), cpu_gemm.pack(jnp.asarray(w))))
    ref = x.astype(np.float64) @ w.astype(np.float64)
    assert y.shape == (M, N)
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-6 * math.sqrt(K) * np.abs(ref).max())


@needs_kernel
def test_packed_matmul_keeps_leading_dims():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 16), dtype=np.float32))
    w = jnp.asarray(np.random.default_rng(1).standard_normal((16, 32), dtype=np.float32))
    y = jax.jit(cpu_gemm.packed_matmul)(x, cpu_gemm.pack(w))
    np.testing.assert_allclose(np.asarray(y), np.asarray(x) @ np.asarray(w), atol=1e-5)


def _attention_reference(q, k, v, mask, scale):
    B, H, D = q.shape
    K = k.shape[1]
    s = np.einsum("bkgd,bksd->bkgs", q.reshape(B, K, H // K, D).astype(np.float64), k.astype(np.float64)) * scale
    s = np.where(mask[:, None, None, :], s, -1e30)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bkgs,bksd->bkgd", p, v.astype(np.float64)).reshape(B, H, D)


@needs_kernel
@pytest.mark.parametrize("B,H,K,S,D", [(2, 4, 2, 7, 8), (5, 9, 3, 96, 64), (3, 16, 8, 40, 128), (2, 6, 6, 5, 40)])
def test_decode_attention_matches_softmax_attention(B, H, K, S, D):
    rng = np.random.default_rng(B * S + D)
    q = rng.standard_normal((B, H, D), dtype=np.float32)
    k = rng.standard_normal((B, K, S, D), dtype=np.float32)
    v = rng.standard_normal((B, K, S, D), dtype=np.float32)
    mask = rng.random((B, S)) < 0.6
    mask[0] = False  # a row with no valid slot: the uniform average, as the XLA path gives
    mask[1] = True
    out = jax.jit(cpu_gemm.decode_attention, static_argnums=4)(q, k, v, mask, 1 / math.sqrt(D))
    np.testing.assert_allclose(np.asarray(out), _attention_reference(q, k, v, mask, 1 / math.sqrt(D)), atol=2e-6)


def test_failed_build_leaves_nothing_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("RLVR_JAX_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails, silently
    with pytest.raises(RuntimeError, match=r"compiling cpu_gemm.cc failed"):
        cpu_gemm.build()
    assert list((tmp_path / "kernels").iterdir()) == []


@needs_kernel
def test_build_is_cached_by_source_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("RLVR_JAX_CACHE", str(tmp_path))
    path = cpu_gemm.build()
    assert path.parent == tmp_path / "kernels" and path.exists()
    mtime = os.stat(path).st_mtime_ns
    assert cpu_gemm.build() == path and os.stat(path).st_mtime_ns == mtime  # not rebuilt
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_matmul_resolution():
    policy = create(tiny("llama"))
    assert decode_matmul("xla", None, (policy,)) == "xla"
    if ON_X86:
        assert decode_matmul("auto", None, (policy,)) == "cpu_kernel"
    mesh = jax.make_mesh((len(jax.devices()),), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    if mesh.size > 1:
        assert decode_matmul("auto", mesh, (policy,)) == "xla"
        with pytest.raises(ValueError, match=r"^rollout.matmul: 'cpu_kernel' cannot run here: the sampling mesh"):
            decode_matmul("cpu_kernel", mesh, (policy,))
    bf16 = create(tiny("llama", dtype="bfloat16"))
    assert decode_matmul("auto", None, (bf16,)) == "xla"
    with pytest.raises(ValueError, match=r"^rollout.matmul: 'fast' must be one of"):
        decode_matmul("fast", None, (policy,))


@needs_kernel
def test_pack_into_a_donated_buffer():
    w = jnp.asarray(np.random.default_rng(5).standard_normal((40, 56), dtype=np.float32))
    f = jax.jit(lambda w, buf: (cpu_gemm.pack(w, buf), cpu_gemm.pack_transposed(w.T, buf * 0)), donate_argnums=1)
    buf = jnp.full((40, 56), 7.0, jnp.float32)
    a, b = f(w, buf)
    assert buf.is_deleted()  # donated: the packed weights live in the buffer's memory
    np.testing.assert_array_equal(np.asarray(a), np.asarray(cpu_gemm.pack_reference(w)))
    np.testing.assert_array_equal(np.asarray(b), np.asarray(cpu_gemm.pack_reference(w)))
    with pytest.raises(ValueError, match=r"`into` is \(40, 8\) float32, want \(40, 56\) float32"):
        cpu_gemm.pack(w, jnp.zeros((40, 8), jnp.float32))
