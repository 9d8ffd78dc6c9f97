"""Benchmark worker: rlvr_jax's sampler (main venv). Variants: plain, dlc (memory network at 1/4 width)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

from sampler_weights import load_ours  # noqa: E402
from sampler_worker_common import NEW_TOKENS, PROMPT_BUCKET, left_pad, prompts, serve  # noqa: E402

from rlvr_jax.models import create, memory_config  # noqa: E402
from rlvr_jax.sampling import Sampler, SamplingConfig  # noqa: E402


def main(folder):
    policy = load_ours(folder)
    memory = create(memory_config(policy.cfg, width_ratio=0.25), seed=1)
    sampler = Sampler()
    plain = SamplingConfig(max_new_tokens=NEW_TOKENS, temperature=1.0, num_samples=1, pad_id=0,
                           prompt_buckets=(PROMPT_BUCKET,))
    dlc = plain.replace(dlc_mu=0.5)
    calls = [0]

    def run(batch, variant):
        ids, mask = left_pad(prompts(batch))
        calls[0] += 1
        key = jax.random.fold_in(jax.random.key(0), calls[0])
        if variant == "dlc":
            r = sampler(policy, ids, mask, key, dlc, memory=memory)
        else:
            r = sampler(policy, ids, mask, key, plain)
        r.tokens_BxN.block_until_ready()
        assert int(r.lengths_B.min()) == NEW_TOKENS

    serve(run, {"framework": "rlvr_jax", "jax": jax.__version__, "devices": str(jax.devices()),
                "memory_params": sum(x.size for x in jax.tree.leaves(__import__("flax").nnx.state(memory)))})


if __name__ == "__main__":
    main(sys.argv[1])
