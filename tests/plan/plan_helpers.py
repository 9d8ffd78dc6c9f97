"""The tiny embedded config the planner tests plan (1 layer, 32 wide, fsdp over the 8 fake devices)."""
from rlvr_jax.config import base_config, validate


def tiny_plan_cfg(*, model: dict | None = None, algo: dict | None = None, memory: bool = False):
    """The shared tiny config, with `model` / `algo` field overrides and the DLC memory on or off."""
    cfg = base_config()
    cfg.data.source, cfg.model.source = "embedded", "embedded"
    cfg.model.hidden_size, cfg.model.intermediate_size, cfg.model.num_layers = 32, 64, 1
    cfg.model.num_heads, cfg.model.num_kv_heads = 2, 2
    cfg.rollout.group_size, cfg.rollout.prompts_per_step, cfg.rollout.max_new_tokens = 2, 4, 6
    cfg.rollout.prompt_buckets = "8"
    cfg.algo.kl_coef = 0.1  # full fine-tuning holds a reference copy; LoRA's reference is the base
    cfg.memory.enabled = memory
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 1, -1, 1
    for section, fields in (("model", model), ("algo", algo)):
        for k, v in (fields or {}).items():
            setattr(cfg[section], k, v)
    return validate(cfg)
