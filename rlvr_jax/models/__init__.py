"""Policy transformer, memory network, checkpoint import/export."""
import os

from rlvr_jax.models.config import ModelConfig, RopeScaling, preset, tiny  # noqa: F401
from rlvr_jax.models.transformer import (  # noqa: F401
    Transformer, abstract, create, init_cache, memory_config, memory_from_policy)


def from_pretrained(path, dtype="float32", **kw):
    """Reads a local HF folder (config.json + safetensors) or a .gguf file; see `hf_io`/`gguf_io`."""
    if path is None or os.fspath(path).endswith(".gguf"):
        from rlvr_jax.models import gguf_io
        return gguf_io.load_gguf(path, dtype=dtype, **kw)
    from rlvr_jax.models import hf_io
    return hf_io.from_pretrained(path, dtype=dtype, **kw)


def save_pretrained(model, path, **kw):
    """Writes an HF folder (config.json + model.safetensors) that transformers loads back."""
    from rlvr_jax.models import hf_io
    return hf_io.save_pretrained(model, path, **kw)
