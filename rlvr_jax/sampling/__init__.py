"""Sampling: two rollout engines behind one `Rollout` (the static sampler and the continuous-batching engine),
sampling rules (temperature, top-p/k, min-p, DLC tilt), text layer."""
from rlvr_jax.sampling.config import SamplingConfig, bucket_length  # noqa: F401
from rlvr_jax.sampling.core import sample_core, sample_with_cache  # noqa: F401
from rlvr_jax.sampling.engine import ContinuousEngine  # noqa: F401
from rlvr_jax.sampling.next_token import dlc_tilt, sample_step, sampling_logits  # noqa: F401
from rlvr_jax.sampling.rollouts import Rollouts  # noqa: F401
from rlvr_jax.sampling.sampler import Sampler, pad_to_bucket, sample  # noqa: F401
from rlvr_jax.sampling.state import Rollout  # noqa: F401


def generate(*args, **kw):
    """Text in, text out (see `rlvr_jax.sampling.text.generate`); imported lazily (needs transformers)."""
    from rlvr_jax.sampling.text import generate as _generate
    return _generate(*args, **kw)
