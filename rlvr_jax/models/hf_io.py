"""HF checkpoints <-> the NNX Transformer: transformers-5 `config.json` plus (sharded) safetensors.

Loading builds the model abstractly (`transformer.abstract`) and fills every parameter from
the files, so no random init is computed; each tensor can go straight to its mesh sharding.
Our Dense kernels are [in, out], the transpose of HF's `nn.Linear.weight` [out, in].
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rlvr_jax.models import transformer
from rlvr_jax.models.config import ModelConfig, RopeScaling, family_defaults

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}
_ARCH_OF_FAMILY = {v: k for k, v in ARCHITECTURES.items()}
_DEFAULT_MAX_POS = {"llama": 2048, "qwen2": 32768, "qwen3": 32768}
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Buffers some older exports contain; they are recomputed, never loaded.
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read as asked; the message names the tensor/key and the file."""


# ----------------------------------------------------------------------------- config
def config_from_hf(d: dict, *, dtype: str = "float32", param_dtype: str | None = None,
                   source: str = "config.json") -> ModelConfig:
    """A transformers(-5 or legacy) config dict -> ModelConfig; `source` names the file in errors."""
    archs = d.get("architectures") or []
    arch = next((a for a in archs if a in ARCHITECTURES), None)
    if arch is not None:
        family = ARCHITECTURES[arch]
    elif not archs and d.get("model_type") in _ARCH_OF_FAMILY:
        family = d["model_type"]
    else:
        got = archs or d.get("model_type")
        raise CheckpointError(f"{source}: unknown architecture {got!r}; expected one of {sorted(ARCHITECTURES)}")

    def need(key):
        if key not in d:
            raise CheckpointError(f"{source}: missing key {key!r} (needed for {family})")
        return d[key]

    if d.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"{source}: hidden_act={d['hidden_act']!r} is not supported (only 'silu')")
    if d.get("mlp_bias", False):
        raise CheckpointError(f"{source}: mlp_bias=true is not supported")
    if d.get("use_sliding_window", False):
        raise CheckpointError(f"{source}: use_sliding_window=true is not supported")
    if family in ("llama", "qwen3") and d.get("attention_bias", False):
        raise CheckpointError(f"{source}: attention_bias=true ({arch or family} puts a bias on o_proj) "
                              "is not supported")

    rope = dict(d.get("rope_parameters") or {})
    legacy = d.get("rope_scaling") or {}
    if not rope.get("rope_type") and legacy:
        rope = {**legacy, **rope}
        rope.setdefault("rope_type", legacy.get("type"))
    theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type") or "default"
    if rope_type == "default":
        scaling = None
    elif rope_type == "llama3":
        try:
            scaling = RopeScaling(factor=float(rope["factor"]), low_freq_factor=float(rope["low_freq_factor"]),
                                  high_freq_factor=float(rope["high_freq_factor"]),
                                  original_max_position_embeddings=int(rope["original_max_position_embeddings"]))
        except KeyError as e:
            raise CheckpointError(f"{source}: rope_parameters lacks {e.args[0]!r} for rope_type 'llama3'") from None
    else:
        raise CheckpointError(f"{source}: rope_type {rope_type!r} is not supported (only 'default', 'llama3')")

    heads = int(need("num_attention_heads"))
    hidden = int(need("hidden_size"))
    head_dim = d.get("head_dim")
    if head_dim is None:  # transformers' own defaults when the key is absent
        head_dim = 128 if family == "qwen3" else hidden // heads
    eos = d.get("eos_token_id")
    flags = family_defaults(family)
    return ModelConfig(
        vocab_size=int(need("vocab_size")), hidden_size=hidden, intermediate_size=int(need("intermediate_size")),
        num_layers=int(need("num_hidden_layers")), num_heads=heads,
        num_kv_heads=int(d.get("num_key_value_heads") or heads), head_dim=int(head_dim), family=family,
        rope_theta=float(theta), rope_scaling=scaling, rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        attention_bias=flags["attention_bias"], qk_norm=flags["qk_norm"],
        max_position_embeddings=int(d.get("max_position_embeddings") or _DEFAULT_MAX_POS[family]),
        dtype=dtype, param_dtype=param_dtype or dtype,
        bos_token_id=d.get("bos_token_id"), eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        pad_token_id=d.get("pad_token_id"))


def config_to_hf(cfg: ModelConfig) -> dict:
    """ModelConfig -> a transformers-5 config dict (with `architectures`), for `save_pretrained`."""
    if cfg.qk_norm != (cfg.family == "qwen3") or cfg.attention_bias != (cfg.family == "qwen2"):
        raise CheckpointError(
            f"model.family: {cfg.family!r} with attention_bias={cfg.attention_bias}, qk_norm={cfg.qk_norm} "
            "has no transformers architecture (qwen2 = q/k/v bias, qwen3 = q/k norm, llama = neither)")
    rope: dict[str, Any] = {"rope_theta": cfg.rope_theta, "rope_type": "default"}
    if cfg.rope_scaling is not None:
        s = cfg.rope_scaling
        rope.update(rope_type="llama3", factor=s.factor, low_freq_factor=s.low_freq_factor,
                    high_freq_factor=s.high_freq_factor,
                    original_max_position_embeddings=s.original_max_position_embeddings)
    eos = list(cfg.eos_token_id) if isinstance(cfg.eos_token_id, tuple) else cfg.eos_token_id
    d = dict(architectures=[_ARCH_OF_FAMILY[cfg.family]], model_type=cfg.family, vocab_size=cfg.vocab_size,
             hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
             num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
             num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim_, hidden_act="silu",
             rms_norm_eps=cfg.rms_norm_eps, rope_parameters=rope,
             max_position_embeddings=cfg.max_position_embeddings,
             tie_word_embeddings=cfg.tie_word_embeddings, bos_token_id=cfg.bos_token_id, eos_token_id=eos,
             pad_token_id=cfg.pad_token_id, dtype=cfg.param_dtype, use_cache=True, attention_dropout=0.0)
    if cfg.family in ("llama", "qwen3"):
        d["attention_bias"] = False
    if cfg.family == "llama":
        d["mlp_bias"] = False
    else:
        d.update(use_sliding_window=False, sliding_window=None)
    return d


# ----------------------------------------------------------------------------- names
def param_map(cfg: ModelConfig) -> dict[tuple, tuple[str, bool]]:
    """Our NNX param path -> (HF tensor name, transposed?) for every parameter of `cfg`."""
    m: dict[tuple, tuple[str, bool]] = {("embed_tokens",): ("model.embed_tokens.weight", False),
                                        ("norm", "scale"): ("model.norm.weight", False)}
    if not cfg.tie_word_embeddings:
        m[("lm_head",)] = ("lm_head.weight", True)
    for i in range(cfg.num_layers):
        hf = f"model.layers.{i}."
        m[("layers", i, "input_layernorm", "scale")] = (hf + "input_layernorm.weight", False)
        m[("layers", i, "post_attention_layernorm", "scale")] = (hf + "post_attention_layernorm.weight", False)
        for p in ("q", "k", "v", "o"):
            m[("layers", i, "self_attn", f"{p}_proj", "kernel")] = (hf + f"self_attn.{p}_proj.weight", True)
            if cfg.attention_bias and p != "o":
                m[("layers", i, "self_attn", f"{p}_proj", "bias")] = (hf + f"self_attn.{p}_proj.bias", False)
        if cfg.qk_norm:
            for p in ("q", "k"):
                m[("layers", i, "self_attn", f"{p}_norm", "scale")] = (hf + f"self_attn.{p}_norm.weight", False)
        for p in ("gate", "up", "down"):
            m[("layers", i, "mlp", f"{p}_proj", "kernel")] = (hf + f"mlp.{p}_proj.weight", True)
    return m


# ----------------------------------------------------------------------------- files
def _tensor_files(path: str) -> tuple[dict[str, str], str]:
    """HF tensor name -> file holding it, and the file to name in errors."""
    index = os.path.join(path, INDEX_FILE)
    single = os.path.join(path, SINGLE_FILE)
    if os.path.exists(index):
        with open(index) as f:
            wm = json.load(f).get("weight_map")
        if not isinstance(wm, dict):
            raise CheckpointError(f"{index}: no 'weight_map' object")
        for name, fn in wm.items():
            if not os.path.exists(os.path.join(path, fn)):
                raise CheckpointError(f"{index}: tensor {name} points to missing file {fn}")
        return {k: os.path.join(path, v) for k, v in wm.items()}, index
    if os.path.exists(single):
        from safetensors import safe_open
        with safe_open(single, framework="numpy") as f:
            return {k: single for k in f.keys()}, single
    raise CheckpointError(f"{path}: no {SINGLE_FILE} or {INDEX_FILE}")


def _read_tensors(files: dict[str, str], names: Iterable[str]):
    """Yields (name, numpy array, file) reading each shard once."""
    from safetensors import safe_open
    by_file: dict[str, list[str]] = {}
    for n in names:
        by_file.setdefault(files[n], []).append(n)
    for fn, ns in by_file.items():
        with safe_open(fn, framework="numpy") as f:
            for n in ns:
                yield n, f.get_tensor(n), fn


def load_config(path: str, dtype: str = "float32", param_dtype: str | None = None) -> ModelConfig:
    """ModelConfig from `<path>/config.json`."""
    cj = os.path.join(path, "config.json")
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: not a folder (expected an HF checkpoint folder or a .gguf file)")
    if not os.path.exists(cj):
        raise CheckpointError(f"{path}: missing config.json")
    with open(cj) as f:
        try:
            d = json.load(f)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{cj}:{e.lineno}: invalid JSON ({e.msg})") from None
    return config_from_hf(d, dtype=dtype, param_dtype=param_dtype, source=cj)


def _placer(mesh, rules) -> Callable[[Any, np.ndarray], jax.Array]:
    if mesh is None:
        return lambda var, x: jnp.asarray(x)
    from jax.sharding import NamedSharding
    from rlvr_jax.parallel.sharding import logical_names, logical_to_spec
    if rules is None:
        from rlvr_jax.parallel.rules import rules_for
        rules = rules_for("train")

    def place(var, x):
        return jax.device_put(x, NamedSharding(mesh, logical_to_spec(logical_names(var), x.shape, mesh, rules)))
    return place


def from_pretrained(path: str, dtype: str = "float32", param_dtype: str | None = None, *,
                    mesh=None, rules: dict | None = None) -> transformer.Transformer:
    """Loads a local HF folder into a Transformer (param_dtype None: same as `dtype`).

    With a `mesh`, each tensor is placed directly on its sharding (logical `rules`, default train).
    """
    path = os.fspath(path)
    cfg = load_config(path, dtype, param_dtype)
    files, where = _tensor_files(path)
    pmap = param_map(cfg)
    wanted = {hf: (p, t) for p, (hf, t) in pmap.items()}
    for name in files:
        if name not in wanted and not name.endswith(_IGNORED_SUFFIXES) and not (
                cfg.tie_word_embeddings and name == "lm_head.weight"):
            raise CheckpointError(f"{where}: unexpected tensor {name} (not in a {cfg.family} model "
                                  f"with this config.json)")
    for name in wanted:
        if name not in files:
            raise CheckpointError(f"{where}: missing tensor {name}")

    graphdef, state = nnx.split(transformer.abstract(cfg))
    targets = dict(nnx.to_flat_state(state))
    place = _placer(mesh, rules)
    pdt = cfg.jnp_param_dtype
    filled = {}
    for name, x, fn in _read_tensors(files, wanted):
        p, transpose = wanted[name]
        var = targets[p]
        x = x.T if transpose else x
        if tuple(x.shape) != tuple(var.shape):
            raise CheckpointError(f"{fn}: tensor {name} has shape {tuple(x.T.shape if transpose else x.shape)}, "
                                  f"config.json implies {tuple(var.shape[::-1] if transpose else var.shape)}")
        filled[p] = var.replace(place(var, np.ascontiguousarray(x).astype(pdt)))
    left = [p for p in targets if p not in filled]
    if left:  # a variable the map does not cover: a bug in param_map, not in the files
        raise RuntimeError(f"hf_io.param_map does not cover {left[0]}")
    state = nnx.from_flat_state([(p, filled[p]) for p in targets])
    return nnx.merge(graphdef, state)


# ----------------------------------------------------------------------------- save
def _write_atomic(fn: str, write: Callable[[str], None]) -> None:
    tmp = fn + ".tmp"
    write(tmp)
    os.replace(tmp, fn)


def save_pretrained(model: transformer.Transformer, path: str, shard_size_mb: float | None = None) -> str:
    """Writes config.json + safetensors (sharded with an index beyond `shard_size_mb`) that
    `transformers.AutoModelForCausalLM.from_pretrained(path)` loads back. Returns `path`."""
    cfg = model.cfg
    hf_cfg = config_to_hf(cfg)
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    tensors: dict[str, np.ndarray] = {}
    for p, (name, transpose) in param_map(cfg).items():
        x = np.asarray(jax.device_get(flat[p][...]))
        tensors[name] = np.ascontiguousarray(x.T if transpose else x)
    return write_hf_folder(hf_cfg, tensors, path, shard_size_mb)


def write_hf_folder(hf_cfg: dict, tensors: dict[str, np.ndarray], path: str,
                    shard_size_mb: float | None = None) -> str:
    """config.json + model.safetensors, or model-0000i-of-0000n.safetensors + index past the size."""
    from safetensors.numpy import save_file
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    for fn in os.listdir(path):  # stale shards from an earlier save would confuse loaders
        if fn.startswith("model") and (fn.endswith(".safetensors") or fn == INDEX_FILE):
            os.remove(os.path.join(path, fn))
    limit = None if shard_size_mb is None else shard_size_mb * 2 ** 20
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, x in tensors.items():
        if limit is not None and shards[-1] and size + x.nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = x
        size += x.nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        _write_atomic(os.path.join(path, SINGLE_FILE), lambda t: save_file(shards[0], t, metadata=meta))
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            _write_atomic(os.path.join(path, fn), lambda t, s=shard: save_file(s, t, metadata=meta))
            weight_map.update({n: fn for n in shard})
        index = {"metadata": {"total_size": int(sum(x.nbytes for x in tensors.values()))},
                 "weight_map": weight_map}
        _write_atomic(os.path.join(path, INDEX_FILE), lambda t: _dump_json(index, t))
    _write_atomic(os.path.join(path, "config.json"), lambda t: _dump_json(hf_cfg, t))
    return path


def _dump_json(obj, fn):
    with open(fn, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
