"""`SamplingConfig`: the static (hashable) settings of one sampler compilation, and prompt buckets."""
from __future__ import annotations

import dataclasses

from rlvr_jax.sampling.decode_kernels import MATMULS

TILT_ORDERS = ("tilt_then_temperature", "temperature_then_tilt")
# rollout.engine: the lock-step sampler (sampler.py), the continuous-batching engine (engine.py), or per call
# the engine when the rows exceed its slots and the static sampler otherwise (rollouts.py)
ENGINES = ("auto", "static", "continuous")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """What to sample; frozen and hashable so it can be a static jit argument.

    temperature 0 is greedy. top_p = 1, top_k = 0 and min_p = 0 switch those rules off (statically:
    no vocabulary sort is compiled in). dlc_mu, plausibility and tilt_order only act when a memory
    network is given to the sampler.
    """

    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    stop_token_ids: tuple[int, ...] = ()
    pad_id: int = 0
    num_samples: int = 1  # G: samples per prompt
    dlc_mu: float = 0.0
    plausibility: float = 0.0
    tilt_order: str = "tilt_then_temperature"
    prompt_buckets: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048)
    matmul: str = "auto"  # decode matmuls: auto | xla | cpu_kernel (sampling.decode_kernels)

    def __post_init__(self):
        checks = [
            ("max_new_tokens", self.max_new_tokens > 0, "must be > 0"),
            ("temperature", self.temperature >= 0, "must be >= 0"),
            ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("top_k", self.top_k >= 0, "must be >= 0"),
            ("min_p", 0 <= self.min_p <= 1, "must be in [0, 1]"),
            ("num_samples", self.num_samples >= 1, "must be >= 1"),
            ("dlc_mu", self.dlc_mu >= 0, "must be >= 0"),
            ("plausibility", 0 <= self.plausibility <= 1, "must be in [0, 1]"),
            ("tilt_order", self.tilt_order in TILT_ORDERS, f"must be one of {TILT_ORDERS}"),
            ("prompt_buckets", len(self.prompt_buckets) > 0 and all(b > 0 for b in self.prompt_buckets),
             "must list positive lengths"),
            ("matmul", self.matmul in MATMULS, f"must be one of {MATMULS}"),
        ]
        for name, ok, msg in checks:
            if not ok:
                raise ValueError(f"SamplingConfig.{name}: {getattr(self, name)!r} {msg}")
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
        object.__setattr__(self, "prompt_buckets", tuple(sorted(int(b) for b in self.prompt_buckets)))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def replace(self, **kw) -> "SamplingConfig":
        return dataclasses.replace(self, **kw)

    @classmethod
    def from_config(cls, cfg, stop_token_ids=(), pad_id: int = 0, **overrides) -> "SamplingConfig":
        """From the `rollout` and `memory` groups of rlvr_jax.config (mu only when memory.enabled)."""
        from rlvr_jax.fields import int_list
        r, m = cfg.rollout, cfg.memory
        kw = dict(max_new_tokens=r.max_new_tokens, temperature=float(r.temperature), top_p=float(r.top_p),
                  top_k=int(r.top_k), min_p=float(r.min_p), stop_token_ids=tuple(stop_token_ids), pad_id=pad_id,
                  num_samples=r.group_size, dlc_mu=float(m.mu) if m.enabled else 0.0,
                  plausibility=float(m.plausibility) if m.enabled else 0.0, tilt_order=m.tilt_order,
                  prompt_buckets=int_list(r.prompt_buckets, "rollout.prompt_buckets"), matmul=r.matmul)
        kw.update(overrides)
        return cls(**kw)


def bucket_length(length: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds `length` prompt tokens; one clear error if none does."""
    for b in sorted(buckets):
        if length <= b:
            return b
    raise ValueError(f"rollout.prompt_buckets: a prompt of {length} tokens exceeds the largest bucket "
                     f"{max(buckets)}; add a larger bucket or shorten the prompt")
