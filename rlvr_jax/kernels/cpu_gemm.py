"""The packed-weight float32 GEMM for x86 CPUs (AVX2 + FMA) as an XLA FFI custom call.

`cpu_gemm.cc` is compiled on first use with the system C++ compiler into a cache folder
(`$RLVR_JAX_CACHE`, default `~/.cache/rlvr_jax`), keyed by a hash of the source, the flags and the
jaxlib version, written to a temporary name and renamed into place, so a broken or concurrent build
never leaves a half-written library behind. `status()` says whether the kernel can run here and, if
not, why in one line; the sampler then keeps XLA's dot.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = Path(__file__).with_name("cpu_gemm.cc")
TARGET, PACK_TARGET, ATTN_TARGET = "rlvr_packed_gemm", "rlvr_pack", "rlvr_decode_attention"
PACK_INTO_TARGET = "rlvr_pack_into"
FLAGS = ("-O3", "-march=x86-64-v3", "-std=c++17", "-shared", "-fPIC")
PANEL, TAIL = 24, 8  # columns per packed panel, and per tail panel


def cache_dir() -> Path:
    """Where built kernels live: $RLVR_JAX_CACHE/kernels (default ~/.cache/rlvr_jax/kernels)."""
    root = os.environ.get("RLVR_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rlvr_jax")
    return Path(root) / "kernels"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def library_path() -> Path:
    """The cached library for this source, these flags and this jaxlib."""
    import jaxlib
    h = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + jaxlib.__version__.encode()).hexdigest()
    return cache_dir() / f"cpu_gemm-{h[:16]}.so"


def build(verbose: bool = False) -> Path:
    """Compiles the kernel into the cache (once); returns the library path. Raises RuntimeError on failure."""
    out = library_path()
    if out.exists():
        return out
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    cmd = [cxx, *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"compiling {SOURCE.name} failed: {last}")
        if verbose and r.stderr:
            print(r.stderr)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


@functools.cache
def status() -> tuple[bool, str]:
    """(usable, reason): builds, loads and registers the kernel on first call; never raises."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False, f"needs an x86-64 CPU (this is {platform.machine()})"
    missing = {"avx2", "fma"} - _cpu_flags()
    if missing:
        return False, f"needs AVX2 and FMA (the CPU lacks {', '.join(sorted(missing))})"
    try:
        lib = ctypes.cdll.LoadLibrary(str(build()))
        jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.RlvrPackedGemm), platform="cpu")
        jax.ffi.register_ffi_target(PACK_TARGET, jax.ffi.pycapsule(lib.RlvrPack), platform="cpu")
        jax.ffi.register_ffi_target(PACK_INTO_TARGET, jax.ffi.pycapsule(lib.RlvrPackInto), platform="cpu")
        jax.ffi.register_ffi_target(ATTN_TARGET, jax.ffi.pycapsule(lib.RlvrDecodeAttention), platform="cpu")
    except (OSError, RuntimeError, AttributeError) as e:
        return False, str(e).splitlines()[0] if str(e) else type(e).__name__
    return True, "ok"


def _require():
    """Builds/registers the kernels on first use; one clear error where they cannot run."""
    ok, why = status()
    if not ok:
        raise RuntimeError(f"rlvr_jax CPU kernels unavailable: {why}")


def packable(n_out: int) -> bool:
    """Whether a weight with this many output columns can be packed (panels of 24, tails of 8)."""
    return n_out % TAIL == 0


def _pack(w, K: int, N: int, transposed: bool, into=None):
    _require()
    if not packable(N):
        raise ValueError(f"cpu_gemm.pack: N = {N} output columns must be a multiple of {TAIL}")
    out = jax.ShapeDtypeStruct((K, N), jnp.float32)
    if into is None:
        return jax.ffi.ffi_call(PACK_TARGET, out)(w.astype(jnp.float32), transposed=transposed)
    if into.shape != (K, N) or into.dtype != jnp.float32:
        raise ValueError(f"cpu_gemm.pack: `into` is {into.shape} {into.dtype}, want ({K}, {N}) float32")
    return jax.ffi.ffi_call(PACK_INTO_TARGET, out, input_output_aliases={1: 0})(
        w.astype(jnp.float32), into, transposed=transposed)


def pack(w_KxN, into=None):
    """W [K, N] -> the packed layout (logical shape still [K, N]): panels of 24 columns, then of 8.

    Runs as the kernel library's parallel copy (XLA's transpose of the same reshape is slower on CPU);
    `pack_reference` is its jnp definition. `into`: a [K, N] float32 buffer to write (a donated one
    that is already paged in), instead of a new allocation.
    """
    K, N = w_KxN.shape
    return _pack(w_KxN, K, N, False, into)


def pack_transposed(w_NxK, into=None):
    """pack(w_NxK.T) without materialising the transpose (tied embeddings [V, D] as the LM head)."""
    N, K = w_NxK.shape
    return _pack(w_NxK, K, N, True, into)


def pack_reference(w_KxN):
    """The packed layout in plain jnp (the definition `pack` is tested against)."""
    K, N = w_KxN.shape
    full = N // PANEL
    parts = [w_KxN[:, :full * PANEL].reshape(K, full, PANEL).transpose(1, 0, 2).reshape(-1)]
    if N % PANEL:
        parts.append(w_KxN[:, full * PANEL:].reshape(K, -1, TAIL).transpose(1, 0, 2).reshape(-1))
    return jnp.concatenate(parts).reshape(K, N)


def packed_matmul(x_MxK, w_packed_KxN):
    """x [..., K] @ W for a `pack`ed float32 W [K, N] (CPU only; call `status()` first)."""
    _require()
    K, N = w_packed_KxN.shape
    if x_MxK.shape[-1] != K:
        raise ValueError(f"packed_matmul: x has {x_MxK.shape[-1]} features, the weight {K}")
    out = jax.ShapeDtypeStruct(x_MxK.shape[:-1] + (N,), jnp.float32)
    return jax.ffi.ffi_call(TARGET, out)(x_MxK.astype(jnp.float32), w_packed_KxN.astype(jnp.float32))


def decode_attention(q_BxHxD, k_BxKxSxD, v_BxKxSxD, mask_BxS, scale: float):
    """One decode step of grouped-query attention over the cache (float32, D % 8 == 0): [B, H, D]."""
    _require()
    B, H, D = q_BxHxD.shape
    if D % TAIL or k_BxKxSxD.shape != v_BxKxSxD.shape or H % k_BxKxSxD.shape[1]:
        raise ValueError(f"decode_attention: q {q_BxHxD.shape}, cache {k_BxKxSxD.shape}: need D % 8 == 0, K | H")
    f32 = jnp.float32
    return jax.ffi.ffi_call(ATTN_TARGET, jax.ShapeDtypeStruct((B, H, D), f32))(
        q_BxHxD.astype(f32), k_BxKxSxD.astype(f32), v_BxKxSxD.astype(f32), mask_BxS.astype(bool),
        scale=np.float32(scale))
