"""Which matmul the decode loop uses, and the decode-time copy of a model on the CPU kernels.

`decode_matmul(requested, mesh, models)` resolves the sampler's `matmul` setting: "auto" picks the
packed AVX2 kernel (`kernels.cpu_gemm`) on a single x86 CPU device with float32 models, where XLA's
dot is slow at decode's few rows, and XLA everywhere else (TPU, GPU, a sharded mesh, AOT compiles for
other chips). `pack_for_decode(model)` turns a module merged inside the sampler's jit into that copy:
its Dense layers, attention and LM head become the kernel subclasses below, with every Dense kernel
(and the LM head) re-laid out once per sampler call; stored models and checkpoints never see them.
"""
from __future__ import annotations

import math

import jax
from flax import nnx

from rlvr_jax.kernels import cpu_gemm
from rlvr_jax.models.layers import Attention, Dense
from rlvr_jax.models.transformer import Transformer

MATMULS = ("auto", "xla", "cpu_kernel")


def _platform(mesh) -> str:
    if mesh is None:
        return jax.default_backend()
    return mesh.devices.flat[0].platform


def kernel_blocker(mesh, models) -> str | None:
    """Why the CPU kernel cannot serve this sampler call (None: it can)."""
    platform = _platform(mesh)
    if platform != "cpu":
        return f"the sampler runs on {platform}, the kernel is for CPUs"
    if mesh is not None and mesh.size > 1:
        return f"the sampling mesh has {mesh.size} devices (the kernel runs unsharded)"
    for m in models:
        if m is not None and (m.cfg.dtype != "float32" or m.cfg.param_dtype != "float32"):
            return f"model dtype {m.cfg.dtype}/{m.cfg.param_dtype}: the kernel is float32"
    ok, why = cpu_gemm.status()
    return None if ok else why


def decode_matmul(requested: str, mesh=None, models=()) -> str:
    """'xla' or 'cpu_kernel' for this call; `requested` is the `rollout.matmul` setting."""
    if requested not in MATMULS:
        raise ValueError(f"rollout.matmul: {requested!r} must be one of {MATMULS}")
    if requested == "xla":
        return "xla"
    blocker = kernel_blocker(mesh, models)
    if blocker is None:
        return "cpu_kernel"
    if requested == "cpu_kernel":
        raise ValueError(f"rollout.matmul: 'cpu_kernel' cannot run here: {blocker}")
    return "xla"


# -- the kernel subclasses: only `pack_for_decode` makes them, on throwaway in-jit copies --

class PackedDense(Dense):
    """A Dense whose kernel holds the `cpu_gemm.pack` panel layout: x @ W in the packed GEMM (LoRA adapters and
    the bias as in Dense)."""

    def __call__(self, x):
        return self.finish(x, cpu_gemm.packed_matmul(x, self.kernel[...]).astype(self.dtype))  # + adapters, bias


class KernelAttention(Attention):
    """Attention whose decode step (T = 1 over the cache) runs in the kernel library."""

    def attend(self, q_BxTxHxD, k_BxKxSxD, v_BxKxSxD, mask_BxTxS):
        B, T, H, hd = q_BxTxHxD.shape
        if T != 1:  # prefill stays in XLA
            return super().attend(q_BxTxHxD, k_BxKxSxD, v_BxKxSxD, mask_BxTxS)
        out_BxHxD = cpu_gemm.decode_attention(q_BxTxHxD[:, 0], k_BxKxSxD, v_BxKxSxD, mask_BxTxS[:, 0],
                                              1 / math.sqrt(hd))
        return out_BxHxD.astype(q_BxTxHxD.dtype).reshape(B, T, H * hd)


class PackedHeadTransformer(Transformer):
    """A Transformer whose LM head (`packed_head`, [D, V] packed) runs in the packed GEMM."""

    def project(self, h_BxTxD):
        return cpu_gemm.packed_matmul(h_BxTxD, self.packed_head[...]).astype(self.cfg.jnp_dtype)


def _become(module, cls):
    # the in-jit copy is made by nnx.merge, so switching its class touches no stored model
    object.__setattr__(module, "__class__", cls)


def _packable_dense(model):
    return [m for _, m in nnx.iter_modules(model)  # an int8 (QLoRA) kernel keeps XLA's dequantizing dot
            if isinstance(m, Dense) and m.kernel_scale is None and cpu_gemm.packable(m.kernel.shape[1])]


def packed_shapes(model) -> list[tuple[int, int]]:
    """Shapes of the buffers `pack_for_decode` fills, in its order (Dense kernels, then the LM head)."""
    shapes = [tuple(m.kernel.shape) for m in _packable_dense(model)]
    if cpu_gemm.packable(model.cfg.vocab_size):
        shapes.append((model.cfg.hidden_size, model.cfg.vocab_size))
    return shapes


def pack_for_decode(model, into=None):
    """Switches a (throwaway, in-jit) model to the CPU kernels: packs every Dense kernel and the LM head,
    and runs decode-step (T = 1) attention over the cache in the kernel library.

    Weights whose output width is not a multiple of 8 keep XLA's dot (head_dim likewise for attention).
    into: buffers of `packed_shapes(model)` to pack into (donated by the caller, so no fresh memory is
    paged in per call); `packed_arrays(model)` returns the results in the same order. Returns the module.
    """
    bufs = iter(into) if into is not None else None
    for m in _packable_dense(model):
        # a new Variable, not set_value: nnx.merge shares Variable objects with the State it merged, so
        # writing into them would hand the packed layout to everything else traced from that State
        # (the fused iteration's train step)
        m.kernel = nnx.Param(cpu_gemm.pack(m.kernel[...], next(bufs) if bufs else None))
        _become(m, PackedDense)
    for _, m in nnx.iter_modules(model):
        if type(m) is Attention and m.cfg.head_dim_ % cpu_gemm.TAIL == 0:
            _become(m, KernelAttention)
    if cpu_gemm.packable(model.cfg.vocab_size):
        buf = next(bufs) if bufs else None
        head = (cpu_gemm.pack_transposed(model.embed_tokens[...], buf) if model.lm_head is None
                else cpu_gemm.pack(model.lm_head[...], buf))
        model.packed_head = nnx.data(nnx.Variable(head))
        _become(model, PackedHeadTransformer)
    return model


def packed_arrays(model) -> list:
    """The packed weights of a `pack_for_decode`d model, in `packed_shapes` order."""
    out = [m.kernel[...] for _, m in nnx.iter_modules(model) if isinstance(m, PackedDense)]
    if isinstance(model, PackedHeadTransformer):
        out.append(model.packed_head[...])
    return out
