"""Hand-written kernels for where XLA's own code is slow: the packed-weight CPU GEMM of the decode loop."""
from rlvr_jax.kernels.cpu_gemm import pack, pack_transposed, packable, packed_matmul, status

__all__ = ["pack", "pack_transposed", "packable", "packed_matmul", "status"]
