"""A random train-step batch shared by the train-step tests (tiny shapes, vocab 96 by default)."""
import jax.numpy as jnp
import numpy as np

P, N, B, G = 5, 6, 8, 2


def random_batch(seed=0, vocab=96):
    """B rows in groups of G sharing a left-padded prompt; responses of random lengths, pad 0 after them."""
    rng = np.random.default_rng(seed)
    prompt = rng.integers(1, vocab, (B // G, P)).astype(np.int32)
    pmask = np.ones((B // G, P), bool)
    for u, pad in enumerate(rng.integers(0, 3, B // G)):
        prompt[u, :pad], pmask[u, :pad] = 0, False
    resp = rng.integers(1, vocab, (B, N)).astype(np.int32)
    rmask = np.arange(N)[None] < rng.integers(2, N + 1, B)[:, None]
    resp[~rmask] = 0
    return dict(
        prompt_BxP=jnp.asarray(np.repeat(prompt, G, 0)), prompt_mask_BxP=jnp.asarray(np.repeat(pmask, G, 0)),
        response_BxN=jnp.asarray(resp), mask_BxN=jnp.asarray(rmask),
        adv_B=jnp.asarray(rng.normal(size=B), jnp.float32),
        logp_old_BxN=jnp.asarray(-rng.uniform(3, 6, (B, N)), jnp.float32),
        logp_sampler_BxN=jnp.asarray(-rng.uniform(3, 6, (B, N)), jnp.float32),
        success_B=jnp.asarray(rng.integers(0, 2, B).astype(bool)), valid_B=jnp.ones(B, bool))
