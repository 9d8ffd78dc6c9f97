"""From a validated config to live objects: task or prompt source, tokenizer, policy, memory network."""
from __future__ import annotations

import dataclasses

from rlvr_jax import models
from rlvr_jax.config import ConfigError
from rlvr_jax.models.config import ModelConfig, family_defaults


@dataclasses.dataclass
class Built:
    policy: models.Transformer
    memory: models.Transformer | None
    task: object | None  # embedded token task (data.source == 'embedded')
    tokenizer: object  # TinyTokenizer or a HF tokenizer
    stop_token_ids: tuple[int, ...]
    pad_id: int


def build_task(cfg):
    """The embedded task named by data.task (None for text sources)."""
    if cfg.data.source != "embedded":
        return None
    from rlvr_jax.data.tasks import get_task
    try:
        return get_task(cfg.data.task)
    except (KeyError, ValueError) as e:
        raise ConfigError(f"config.data.task: {e}") from None


def policy_config(cfg, vocab_size: int, tok=None) -> ModelConfig:
    m = cfg.model
    return ModelConfig(vocab_size=vocab_size, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                       num_layers=m.num_layers, num_heads=m.num_heads, num_kv_heads=m.num_kv_heads,
                       family=m.family, dtype=m.dtype, param_dtype=m.param_dtype, remat=m.remat,
                       max_position_embeddings=1024, rope_theta=10000.0,
                       bos_token_id=getattr(tok, "bos_id", None), eos_token_id=getattr(tok, "eos_id", None),
                       pad_token_id=getattr(tok, "pad_id", None), **family_defaults(m.family))


def _with_remat(model, remat: bool):
    """model.remat for a loaded checkpoint: the flag lives in the (static) model config."""
    if model.cfg.remat != remat:
        model.cfg = dataclasses.replace(model.cfg, remat=remat)
    return model


def build_policy(cfg, task=None):
    """(policy model, tokenizer) for model.source."""
    m = cfg.model
    seed = cfg.train.seed
    if m.source == "embedded":
        if task is None:
            raise ConfigError("config.model.source: 'embedded' needs data.source='embedded' (its tiny tokenizer)")
        tok = task.tokenizer
        return models.create(policy_config(cfg, tok.vocab_size, tok), seed=seed), tok
    if m.source == "preset":
        pc = models.preset(m.preset, dtype=m.dtype, param_dtype=m.param_dtype, remat=m.remat)
        tok = task.tokenizer if task is not None else None
        return models.create(pc, seed=seed), tok
    if m.source == "hf":
        model = models.from_pretrained(m.path, dtype=m.dtype, param_dtype=m.param_dtype)
        from rlvr_jax.models.tokenizer import load_tokenizer
        return _with_remat(model, m.remat), load_tokenizer(m.path)
    if m.source == "gguf":
        from rlvr_jax.models import gguf_io
        model = gguf_io.load_gguf(m.path or None, cache_dir=m.cache_dir or None, dtype=m.dtype,
                                  param_dtype=m.param_dtype)
        from rlvr_jax.models.tokenizer import load_tokenizer
        return _with_remat(model, m.remat), load_tokenizer(m.path or None, cache_dir=m.cache_dir or None)
    raise ConfigError(f"config.model.source: unknown {m.source!r}")


def build_memory(cfg, policy):
    """The DLC memory network (None unless memory.enabled)."""
    if not cfg.memory.enabled:
        return None
    mcfg = models.memory_config(policy.cfg, width_ratio=cfg.memory.width_ratio,
                                num_layers=None if cfg.memory.num_layers < 0 else cfg.memory.num_layers)
    if cfg.memory.init == "policy":
        return models.memory_from_policy(policy, mcfg, seed=cfg.train.seed + 1)
    return models.create(mcfg, seed=cfg.train.seed + 1)


def add_adapters(cfg, policy):
    """The policy with LoRA adapters on model.lora_targets when model.lora_rank > 0 (in place; its base in int8 under
    model.lora_quant='int8'), else as is."""
    m = cfg.model
    if not m.lora_rank:
        return policy
    from rlvr_jax.models import lora
    targets = lora.parse_targets(m.lora_targets)
    if m.lora_quant == "int8":  # QLoRA: every projection of the frozen base in int8, adapters in float32
        lora.quantize_base(policy)
    return lora.add_lora(policy, m.lora_rank, m.lora_alpha, targets, seed=cfg.train.seed + 2)


def build(cfg) -> Built:
    task = build_task(cfg)
    policy, tok = build_policy(cfg, task)
    memory = build_memory(cfg, policy)  # before the adapters: the memory copies base weights only
    policy = add_adapters(cfg, policy)
    if task is not None:
        stop, pad = (task.tokenizer.eos_id,), task.tokenizer.pad_id
    else:
        eos = policy.cfg.eos_token_id
        stop = tuple(eos) if isinstance(eos, (tuple, list)) else ((eos,) if eos is not None else ())
        if tok is not None and getattr(tok, "eos_token_id", None) is not None:
            stop = tuple(sorted(set(stop) | {tok.eos_token_id}))
        pad = getattr(tok, "pad_token_id", None)
        pad = pad if pad is not None else (stop[0] if stop else 0)
    return Built(policy=policy, memory=memory, task=task, tokenizer=tok, stop_token_ids=stop, pad_id=pad)
