"""The text layer: chat template applied, left padding, EOS stops, decoding matches the token sampler."""
import jax
import numpy as np
import pytest

from rlvr_jax.sampling import Sampler, SamplingConfig
from rlvr_jax.sampling.text import encode, generate
from tests.sampling.sampler_helpers import peaky, tiny_cfg


@pytest.fixture(scope="module")
def setup():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    specials = ["<pad>", "<eos>", "<unk>", "<user>", "<assistant>", "<system>"]
    vocab = {t: i for i, t in enumerate(specials + [f"w{i}" for i in range(128 - len(specials))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece()  # joins with spaces
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                 additional_special_tokens=["<user>", "<assistant>", "<system>"])
    hf.chat_template = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
                        "{% if add_generation_prompt %}<assistant>{% endif %}")
    model = peaky(tiny_cfg(), seed=4, scale=2.0)
    return hf, model, Sampler()


def test_chat_template_and_plain_encoding(setup):
    hf, _, _ = setup
    ids = encode(hf, ["w0 w5", "w7"], chat=True, system_prompt="w1")
    assert ids[0] == [5, 7, 3, 6, 11, 4] and ids[1] == [5, 7, 3, 13, 4]
    assert encode(hf, ["w0 w5"], chat=False) == [[6, 11]]
    hf2 = type(hf)(tokenizer_object=hf.backend_tokenizer, eos_token="<eos>")
    with pytest.raises(ValueError, match="chat template"):
        encode(hf2, ["w0"], chat=True)


def test_generate_matches_token_sampler(setup):
    hf, model, sampler = setup
    cfg = SamplingConfig(max_new_tokens=6, temperature=1.0, num_samples=2, prompt_buckets=(8, 16))
    texts = ["w0 w5 w9", "w7"]
    out = generate(model, hf, texts, cfg, jax.random.key(3), chat=True, sampler=sampler)
    assert len(out) == 4 and all(isinstance(s, str) for s in out)
    ids = encode(hf, texts, chat=True)
    P = max(map(len, ids))
    arr = np.array([[0] * (P - len(r)) + r for r in ids])
    r = sampler(model, arr, arr > 0, jax.random.key(3), cfg.replace(stop_token_ids=(hf.eos_token_id,)))
    for row in range(4):
        toks = np.asarray(r.tokens_BxN[row, :int(r.lengths_B[row])]).tolist()
        if toks and toks[-1] == hf.eos_token_id:
            toks = toks[:-1]
        assert out[row] == hf.decode(toks, skip_special_tokens=True)
        assert "<eos>" not in out[row]
