"""rlvr_jax: reinforcement learning from verifiable rewards in JAX/Flax, with IAC and DLC calibrations."""
__version__ = "0.1.0"
