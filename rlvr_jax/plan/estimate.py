"""Analytic per-chip memory when compiling is too slow (a labelled fallback of `rlvr-compile`).

Exact parts come from the shapes and shardings (parameters, optimiser states, KV caches); the
activation parts are closed forms of what the model materialises: with remat, one residual stream per
layer plus one layer's working set in the backward pass, dominated by the naive attention scores
[rows, heads, T, T] in float32, plus one logprob chunk's [rows, chunk, V] logits. `COEF` scales the
working sets; it is calibrated against compiled plans (docs/aot.md lists the comparison).
"""
from __future__ import annotations

import math

import numpy as np

from rlvr_jax.plan.accounting import prompt_len

# bytes of working set per element of the scores / logits / MLP intermediates in one layer's backward
COEF = {"scores": 3.0, "logits": 3.0, "mlp": 4.0}


def rows_per_chip(rows: int, mesh_shape: dict) -> int:
    """Sequences of one micro-batch a chip holds (batch split over data x fsdp; at least one row)."""
    return max(1, math.ceil(rows / (mesh_shape["data"] * mesh_shape["fsdp"])))


def train_activations(cfg, mc, mesh_shape: dict, T: int) -> int:
    """Activation bytes per chip of one micro-batch's forward + backward (policy model config `mc`)."""
    rows = cfg.rollout.prompts_per_step * cfg.rollout.group_size // (cfg.algo.mini_batches * cfg.algo.micro_batches)
    r = rows_per_chip(rows, mesh_shape)
    tp = mesh_shape["tensor"]
    act = np.dtype(mc.jnp_dtype).itemsize
    d, H, f, L, V = mc.hidden_size, mc.num_heads, mc.intermediate_size, mc.num_layers, mc.vocab_size
    heads = max(1, H // tp) if H % tp == 0 else H
    scores = COEF["scores"] * 4 * r * heads * T * T
    mlp = COEF["mlp"] * act * r * T * (f // tp if f % tp == 0 else f)
    layer = scores + mlp + 8 * act * r * T * d
    chunk = min(cfg.algo.logprob_chunk, T)
    logits = COEF["logits"] * 4 * r * chunk * (V // tp if V % tp == 0 else V)
    residuals = (L if mc.remat else L * 6) * act * r * T * d
    return int(residuals + (layer if mc.remat else layer * L) + logits)


def sample_activations(cfg, mc, mesh_shape: dict, S: int, rows: int | None = None, prompts: int | None = None) -> int:
    """Working bytes per chip of one decode step outside the KV caches: logits, sampling rule buffers and
    the prefill's [prompts, heads, P, P] scores. rows / prompts: decoded and prefilled together (default
    all rows and prompts of a step; the continuous engine's slots and store entries)."""
    rows = cfg.rollout.prompts_per_step * cfg.rollout.group_size if rows is None else rows
    r = rows_per_chip(rows, mesh_shape)
    n = rows_per_chip(cfg.rollout.prompts_per_step if prompts is None else prompts, mesh_shape)
    P = S - cfg.rollout.max_new_tokens
    decode = 6 * 4 * r * mc.vocab_size + 4 * 4 * r * mc.num_heads * S
    prefill = 3 * 4 * n * mc.num_heads * P * P + 8 * 2 * n * P * mc.intermediate_size
    return int(max(decode, prefill))


def estimate(cfg, pc, mc, state_bytes: int, params_bytes: int, kv_bytes: int, sample_param_copy: int,
             mesh_shape: dict, rows: int | None = None, prompts: int | None = None) -> dict:
    """Peak bytes per chip of the update phase and the sampling phase (analytic); params_bytes: the trainable
    params (the gradients' size: under LoRA the adapters, not the frozen base); kv_bytes: what sampling holds
    throughout (KV caches, or the engine's slots and store), rows / prompts as `sample_activations`."""
    T = prompt_len(cfg) + cfg.rollout.max_new_tokens - 1
    act = train_activations(cfg, pc, mesh_shape, T) + (train_activations(cfg, mc, mesh_shape, T) if mc else 0)
    grads = 2 * params_bytes  # accumulated gradients + one micro-batch's gradients (trainable params only)
    train = state_bytes + grads + act
    s_act = sample_activations(cfg, pc, mesh_shape, T + 1, rows, prompts)
    sample = state_bytes + sample_param_copy + kv_bytes + s_act
    return {"train": train, "sample": sample, "train_activations": act, "sample_activations": s_act,
            "grads": grads}
