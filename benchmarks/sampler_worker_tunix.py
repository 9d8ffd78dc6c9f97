"""Benchmark worker: tunix's `Sampler` on its Llama3 model (runs in benchmarks/.venvs/tunix)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from tunix.generate import sampler as tsampler  # noqa: E402
from tunix.models.llama3 import model as tmodel  # noqa: E402
from tunix.models.llama3 import params as tparams  # noqa: E402

from sampler_weights import SMOLLM2_135M as S  # noqa: E402
from sampler_worker_common import NEW_TOKENS, PROMPT_BUCKET, prompts, serve  # noqa: E402


class IdTokenizer:
    """Prompts are space-separated token ids; no BOS is added, EOS never occurs."""

    def encode(self, text, **kw):
        return [int(t) for t in text.split()]

    def decode(self, ids, **kw):
        return " ".join(map(str, ids))

    def bos_id(self):
        return 0

    def eos_id(self):
        return S["vocab_size"] + 7

    def pad_id(self):
        return 0


def main(folder):
    cfg = tmodel.ModelConfig(num_layers=S["num_hidden_layers"], vocab_size=S["vocab_size"],
                             embed_dim=S["hidden_size"], hidden_dim=S["intermediate_size"],
                             num_heads=S["num_attention_heads"], head_dim=S["head_dim"],
                             num_kv_heads=S["num_key_value_heads"], rope_theta=int(S["rope_theta"]),
                             norm_eps=S["rms_norm_eps"], weight_tying=True)
    model = tparams.create_model_from_safe_tensors(folder, cfg, dtype=jnp.float32)
    cache = tsampler.CacheConfig(cache_size=PROMPT_BUCKET + NEW_TOKENS, num_layers=cfg.num_layers,
                                 num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim)
    sampler = tsampler.Sampler(model, IdTokenizer(), cache)
    calls = [0]

    def run(batch, variant):
        texts = [" ".join(map(str, p)) for p in prompts(batch)]
        calls[0] += 1
        out = sampler(texts, max_generation_steps=NEW_TOKENS, max_prompt_length=PROMPT_BUCKET, temperature=1.0,
                      top_p=1.0, top_k=None, seed=calls[0], eos_tokens=[S["vocab_size"] + 7])
        n = [len(t.split()) for t in out.text]
        assert min(n) == NEW_TOKENS, (min(n), NEW_TOKENS)

    import tunix
    serve(run, {"framework": "tunix", "tunix": getattr(tunix, "__version__", "?"), "jax": jax.__version__})


if __name__ == "__main__":
    main(sys.argv[1])
