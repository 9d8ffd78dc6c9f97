"""LoRA: low-rank adapters on the policy's projections, the frozen base split off, merging and PEFT names.

A target projection `y = x @ W` becomes `y = x @ W + (alpha / r) * (x @ A) @ B`, with A [in, r] drawn like
PEFT's default (kaiming-uniform, bound 1/sqrt(in)) and B [r, out] zero, so at init the added term is an exact zero
and the jitted model computes the base's logits bit for bit (tests/models/test_lora.py; the one exception seen is
qwen3's q/k RMSNorm in float32 on XLA:CPU, whose fused mean of squares can round ~1 ulp apart). Adapters are `nnx.LoRAParam` (a subclass of `nnx.Param`) in
float32 whatever the base's dtype, with logical axes (W's input axis, "lora") and ("lora", W's output axis), so
the sharding rules place them like their kernels and replicate the rank axis.

The train state holds the adapters as its trainable params and the base once, frozen (`TrainState.base`);
`join` puts them back together for a forward, `merged` folds the adapters into the kernels for a sampler
that runs the plain base graph (`model.lora_sampling = 'merged'`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from rlvr_jax.parallel.sharding import logical_names

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # model.lora_targets
SAMPLING = ("on_the_fly", "merged")  # model.lora_sampling
QUANT = ("none", "int8")  # model.lora_quant: the frozen base's storage
ADAPTERS = ("lora_a", "lora_b")  # the attribute names of a Dense's adapter pair


def parse_targets(spec: str) -> tuple[str, ...]:
    """'q_proj,v_proj' | 'attention' | 'mlp' | 'all' -> target projection names (ValueError names the bad one)."""
    groups = {"all": TARGETS, "attention": TARGETS[:4], "mlp": TARGETS[4:]}
    out: list[str] = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        for t in groups.get(name, (name,)):
            if t not in TARGETS:
                raise ValueError(f"model.lora_targets: unknown projection {t!r}; expected names from {TARGETS} "
                                 f"or one of {tuple(groups)}")
            if t not in out:
                out.append(t)
    if not out:
        raise ValueError("model.lora_targets: empty; name at least one projection (or 'all')")
    return tuple(out)


def _targets_of(model: nnx.Module, targets):
    """(path, Dense) of every target projection of `model`, in graph order."""
    from rlvr_jax.models.layers import Dense
    for path, node in nnx.iter_graph(model):
        if isinstance(node, Dense) and path and path[-1] in targets:
            yield path, node


def add_lora(model: nnx.Module, rank: int, alpha: float, targets=TARGETS, seed: int = 0) -> nnx.Module:
    """Adds rank-`rank` adapters (scale alpha / rank) to `model`'s target projections, in place; returns it.

    The base parameters are untouched (same arrays); B = 0, so the logits stay the base's until B moves.
    """
    if rank < 1:
        raise ValueError(f"model.lora_rank: {rank} must be >= 1 to add adapters")
    key = jax.random.key(seed)
    found = False
    for i, (path, dense) in enumerate(_targets_of(model, tuple(targets))):
        if dense.lora_a is not None:
            raise ValueError(f"model.lora_rank: {'/'.join(map(str, path))} already has adapters")
        d_in, d_out = dense.kernel.shape
        names = logical_names(dense.kernel) or (None, None)
        bound = 1.0 / math.sqrt(d_in)  # PEFT's kaiming_uniform_(a=sqrt(5)) on a [r, in] weight
        a = jax.random.uniform(jax.random.fold_in(key, i), (d_in, rank), jnp.float32, -bound, bound)
        dense.lora_a = nnx.LoRAParam(a, sharding_names=(names[0], "lora"), eager_sharding=False)
        dense.lora_b = nnx.LoRAParam(jnp.zeros((rank, d_out), jnp.float32), sharding_names=("lora", names[1]),
                                     eager_sharding=False)
        dense.lora_scale = float(alpha) / rank
        found = True
    if not found:
        raise ValueError(f"model.lora_targets: none of {tuple(targets)} is a projection of this model")
    return model


def has_lora(model: nnx.Module) -> bool:
    """Whether a model carries adapters."""
    return any(d.lora_a is not None for _, d in _targets_of(model, TARGETS))


def is_quantized(model: nnx.Module) -> bool:
    """Whether any projection holds an int8 kernel (`quantize_base`)."""
    return any(d.kernel_scale is not None for _, d in _targets_of(model, TARGETS))


def split(params):
    """(adapters, base) of a policy's params State: the LoRAParams, and every other Param (the frozen base)."""
    adapters, base = nnx.split_state(params, nnx.LoRAParam, ...)
    return adapters, base


def join(base, adapters):
    """The whole params State of a LoRA model from its frozen base and its adapters (no copies)."""
    return nnx.merge_state(base, adapters)


def zero_adapters(adapters):
    """The adapters with B = 0 (A kept): with them the model computes exactly the base (the KL reference)."""
    flat = [(p, v.replace(jnp.zeros_like(v.get_value())) if p[-1] == "lora_b" else v)
            for p, v in nnx.to_flat_state(adapters)]
    return nnx.from_flat_state(flat)


def _strip(model: nnx.Module, fold: bool) -> nnx.Module:
    """Removes every adapter pair of `model` in place, and turns int8 (QLoRA) kernels back into float kernels of the
    model's param dtype; fold=True computes the new kernels, W + scale * A @ B (float32, rounded once), and
    fold=False only sets the structure (for `base_graphdef`: no arrays are read)."""
    param_dtype = model.cfg.jnp_param_dtype
    for _, dense in _targets_of(model, TARGETS):
        quant = dense.kernel_scale is not None
        if dense.lora_a is None and not quant:
            continue
        dtype = param_dtype if quant else dense.kernel.get_value().dtype
        if fold:
            w = dense.kernel.get_value().astype(jnp.float32)
            if quant:
                w = w * dense.kernel_scale.get_value()
            if dense.lora_a is not None:
                w = w + dense.lora_scale * jnp.dot(dense.lora_a.get_value(), dense.lora_b.get_value(),
                                                   preferred_element_type=jnp.float32)
            dense.kernel = dense.kernel.replace(w.astype(dtype))
        elif quant:
            dense.kernel = dense.kernel.replace(jax.ShapeDtypeStruct(dense.kernel.get_value().shape, dtype))
        dense.lora_a = dense.lora_b = dense.kernel_scale = None
    return model


def quantize_base(model: nnx.Module, targets=TARGETS) -> nnx.Module:
    """QLoRA's frozen base in int8: each target projection's kernel W [in, out] becomes round(W / s) in int8 with
    s = max_i |W[i, o]| / 127 per output channel (float32, `Dense.kernel_scale`), in place; returns the model.
    Only for a frozen base: the int8 kernels get no gradients (`model.lora_quant='int8'` needs LoRA)."""
    for _, dense in _targets_of(model, tuple(targets)):
        if dense.kernel_scale is not None:
            continue
        w = dense.kernel.get_value().astype(jnp.float32)
        scale = jnp.max(jnp.abs(w), axis=0) / 127.0
        scale = jnp.where(scale > 0, scale, 1.0)
        q = jnp.clip(jnp.round(w / scale), -127, 127).astype(jnp.int8)
        names = logical_names(dense.kernel) or (None, None)
        dense.kernel = dense.kernel.replace(q)
        dense.kernel_scale = nnx.Param(scale, sharding_names=(names[1],), eager_sharding=False)
    return model


def base_graphdef(graphdef, params):
    """The graphdef of the plain model (no adapters, float kernels) that `merged_params` fill (params may be
    ShapeDtypeStructs: only structure is read)."""
    return nnx.split(_strip(nnx.merge(graphdef, params), fold=False), nnx.Param)[0]


def merged_params(graphdef, params):
    """Params of the plain model (`base_graphdef`) with each adapter folded into its kernel: the weights
    the merged sampler runs and the export writes. Pure: jit it."""
    return nnx.state(_strip(nnx.merge(graphdef, params), fold=True), nnx.Param)


def merged_model(model: nnx.Module) -> nnx.Module:
    """A plain model (no adapters, float kernels) computing base + adapters with folded kernels; `model` is
    untouched (its arrays are not written)."""
    return _strip(nnx.merge(*nnx.split(model)), fold=True)


def adapter_bytes(adapters) -> int:
    """Bytes of the adapters (what a LoRA checkpoint and optimiser moments scale with)."""
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(adapters))


def save_peft(model: nnx.Module, path: str, base_model: str = "") -> str:
    """Writes the adapters alone as PEFT does (adapter_config.json + adapter_model.safetensors, lora_A [r, in]
    and lora_B [out, r] under `base_model.model.<HF module name>`), so `peft.PeftModel.from_pretrained(hf_base,
    path)` loads them onto the HF base model. Returns `path`."""
    import json
    import os

    import numpy as np
    from safetensors.numpy import save_file

    from rlvr_jax.models.hf_io import param_map
    names = param_map(model.cfg)
    tensors, targets, ranks, scales = {}, set(), set(), set()
    for path_, dense in _targets_of(model, TARGETS):
        if dense.lora_a is None:
            continue
        hf = names[tuple(path_) + ("kernel",)][0][:-len(".weight")]
        a = np.asarray(jax.device_get(dense.lora_a.get_value()), np.float32)
        b = np.asarray(jax.device_get(dense.lora_b.get_value()), np.float32)
        tensors[f"base_model.model.{hf}.lora_A.weight"] = np.ascontiguousarray(a.T)
        tensors[f"base_model.model.{hf}.lora_B.weight"] = np.ascontiguousarray(b.T)
        targets.add(path_[-1])
        ranks.add(a.shape[1])
        scales.add(dense.lora_scale)
    if not tensors:
        raise ValueError("save_peft: the model has no LoRA adapters")
    if len(ranks) > 1 or len(scales) > 1:
        raise ValueError(f"save_peft: one rank and scale per model expected, got ranks {sorted(ranks)}")
    (rank,), (scale,) = ranks, scales
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, "adapter_model.safetensors"), metadata={"format": "pt"})
    config = dict(peft_type="LORA", task_type="CAUSAL_LM", r=rank, lora_alpha=scale * rank,
                  target_modules=sorted(targets), lora_dropout=0.0, bias="none", fan_in_fan_out=False,
                  use_rslora=False, init_lora_weights=True, inference_mode=True, base_model_name_or_path=base_model)
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    return path
