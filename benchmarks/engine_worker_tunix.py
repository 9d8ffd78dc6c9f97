"""Engine-benchmark worker: tunix's static `Sampler` on its Llama3 model (runs in benchmarks/.venvs/tunix).

tunix decodes the whole batch in lock-step, so a forced stop at each row's length cannot end it before its
longest row: it runs max(lengths) steps for every row (EOS never occurs with these prompts and weights) and
its useful tokens are the workload's. All R = requests * G rows go in one call, each prompt repeated G times.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from tunix.generate import sampler as tsampler  # noqa: E402

from engine_workload import requests, worker_parser, workload  # noqa: E402
from sampler_worker_common import PROMPT_BUCKET  # noqa: E402
from sampler_worker_tunix import IdTokenizer, S  # noqa: E402


def main():
    ap = worker_parser()
    a = ap.parse_args()
    t0 = time.perf_counter()
    from tunix.models.llama3 import model as tmodel
    from tunix.models.llama3 import params as tparams
    cfg = tmodel.ModelConfig(num_layers=S["num_hidden_layers"], vocab_size=S["vocab_size"],
                             embed_dim=S["hidden_size"], hidden_dim=S["intermediate_size"],
                             num_heads=S["num_attention_heads"], head_dim=S["head_dim"],
                             num_kv_heads=S["num_key_value_heads"], rope_theta=int(S["rope_theta"]),
                             norm_eps=S["rms_norm_eps"], weight_tying=True)
    model = tparams.create_model_from_safe_tensors(a.folder, cfg, dtype=jnp.float32)
    plist, lens = workload(a.requests, a.group, a.limit)
    steps = int(lens.max())
    cache = tsampler.CacheConfig(cache_size=PROMPT_BUCKET + steps, num_layers=cfg.num_layers,
                                 num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim)
    sampler = tsampler.Sampler(model, IdTokenizer(), cache)
    texts = [" ".join(map(str, p)) for p in plist for _ in range(a.group)]
    rows = len(texts)
    kv = 2 * cfg.num_layers * rows * cfg.num_kv_heads * (PROMPT_BUCKET + steps) * cfg.head_dim * 4
    import tunix
    print(json.dumps({"ready": True, "framework": "tunix", "tunix": getattr(tunix, "__version__", "?"),
                      "jax": jax.__version__, "load_seconds": time.perf_counter() - t0}), flush=True)
    for calls, req in requests():
        t = time.perf_counter()
        out = sampler(texts, max_generation_steps=steps, max_prompt_length=PROMPT_BUCKET, temperature=1.0,
                      top_p=1.0, top_k=None, seed=calls, eos_tokens=[S["vocab_size"] + 7])
        n = [len(x.split()) for x in out.text]
        dt = time.perf_counter() - t
        assert min(n) == steps, (min(n), steps)
        print(json.dumps({**req, "seconds": dt, "tokens": int(lens.sum()), "decoded_tokens": rows * steps,
                          "kv_bytes": kv}), flush=True)


if __name__ == "__main__":
    main()
