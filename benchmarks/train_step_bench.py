"""Step time and peak host memory of the train step (policy + DLC memory network, AdamW) on this machine.

    python benchmarks/train_step_bench.py tiny|smollm2 [--no-share]
"""
import resource, sys, time
import jax, jax.numpy as jnp, numpy as np
from rlvr_jax import parallel
from rlvr_jax.config import base_config
from rlvr_jax.models import create, memory_config, preset, tiny
from rlvr_jax.train.program import train_program
which = sys.argv[1]
cfg = base_config()
if "--no-share" in sys.argv:
    cfg.algo.share_prompt = False
if which == "tiny":
    pcfg = tiny("llama", vocab_size=64); B, P, N = 128, 16, 8
else:
    pcfg = preset("smollm2-135m"); B, P, N = 16, 64, 64
    cfg.algo.logprob_chunk = 64
cfg.rollout.max_new_tokens = N
cfg.memory.enabled = True
pol = create(pcfg, 0); mem = create(memory_config(pcfg, width_ratio=0.25), 1)
program = train_program(cfg, pol, mem, parallel.single_device_mesh(), 100, rows=B)  # the loops' jitted step
state = program.init_state(pol, mem)
step = program.jitted
rng = np.random.default_rng(0)
T = P + N - 1
G = cfg.rollout.group_size
prompts = np.repeat(rng.integers(1, pcfg.vocab_size, (B // G, P)), G, 0)
batch = dict(prompt_BxP=jnp.asarray(prompts, jnp.int32), prompt_mask_BxP=jnp.ones((B, P), bool),
             response_BxN=jnp.asarray(rng.integers(1, pcfg.vocab_size, (B, N)), jnp.int32),
             mask_BxN=jnp.ones((B, N), bool), adv_B=jnp.asarray(rng.normal(size=B), jnp.float32),
             logp_old_BxN=-jnp.ones((B, N)) * 5, logp_sampler_BxN=-jnp.ones((B, N)) * 5,
             success_B=jnp.ones(B, bool), valid_B=jnp.ones(B, bool))
t = time.time(); state, m = step(state, batch); jax.block_until_ready(m); first = time.time() - t
ts = []
for _ in range(3):
    t = time.time(); state, m = step(state, batch); jax.block_until_ready(m); ts.append(time.time() - t)
print(f"{which}: B={B} (groups of {G}, share_prompt={cfg.algo.share_prompt}) T={T} first call (compile) {first:.1f} s, step {np.median(ts):.3f} s median of 3, "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB, loss {float(m['loss']):.4f}")
