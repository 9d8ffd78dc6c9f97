"""Logical-axis rules: which mesh axis shards each logical parameter/activation axis.

Training shards parameters over fsdp (and tensor); sampling by default drops fsdp so decode
steps need no parameter all-gathers (weights replicated over data/fsdp, split over tensor).
"""
from __future__ import annotations

TRAIN_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "vocab": "tensor",
    "embed": "fsdp",
    "q_heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "head_dim": None,
    "norm": None,
    "length": None,
    "lora": None,  # the rank axis of LoRA adapters (models/lora.py): small, replicated
}

SAMPLE_RULES: dict[str, str | tuple[str, ...] | None] = {
    **TRAIN_RULES,
    "embed": None,
}

SAMPLE_RULES_FSDP = dict(TRAIN_RULES)


def rules_for(kind: str, keep_fsdp: bool = False) -> dict:
    if kind == "train":
        return TRAIN_RULES
    if kind == "sample":
        return SAMPLE_RULES_FSDP if keep_fsdp else SAMPLE_RULES
    raise ValueError(f"unknown rules kind {kind!r}")
