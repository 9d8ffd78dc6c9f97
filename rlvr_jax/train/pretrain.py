"""Supervised warm-up of a base policy on an embedded task, so RL starts from a policy with many modes.

Targets are a uniformly random correct answer with probability `train.pretrain_correct_frac`,
else a uniformly random wrong (but well-formed) answer: the base policy spreads its mass over all
correct answers and keeps room to improve, the setting where over-sharpening can be seen.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from rlvr_jax.models import lora

from rlvr_jax.models.scoring import token_logprobs_and_entropy


def make_sft_batches(task, steps: int, batch: int, correct_frac: float, seed: int):
    """[steps, batch, P + L] token arrays (prompt left-padded, answer + EOS right-padded) and masks."""
    rng = np.random.default_rng(seed)
    tok = task.tokenizer
    P, L = task.prompt_len, task.max_answer_len
    qb = task.sample(rng, steps * batch)
    tokens = np.full((steps * batch, P + L), tok.pad_id, np.int32)
    tokens[:, :P] = np.asarray(qb.prompts_BxP)
    amask = np.zeros((steps * batch, P + L), bool)
    for i, q in enumerate(qb.queries):
        good = task.answers(q)
        if rng.random() < correct_frac or len(good) == len(task.answer_space(q)):
            ans = good[rng.integers(len(good))]
        else:
            good_set = set(good)
            space = task.answer_space(q)
            while True:
                ans = space[rng.integers(len(space))]
                if ans not in good_set:
                    break
        ids = tok.encode(ans) + [tok.eos_id]
        tokens[i, P:P + len(ids)] = ids
        amask[i, P:P + len(ids)] = True
    present = (tokens != tok.pad_id) | amask
    return (tokens.reshape(steps, batch, -1), present.reshape(steps, batch, -1), amask.reshape(steps, batch, -1))


def sft_loss(model, tokens_BxT, present_BxT, answer_BxT, chunk: int = 256):
    """Mean next-token cross-entropy on answer tokens."""
    positions = jnp.maximum(jnp.cumsum(present_BxT, 1) - 1, 0)
    logp, _ = token_logprobs_and_entropy(model, tokens_BxT[:, :-1], positions[:, :-1], present_BxT[:, :-1],
                                         tokens_BxT[:, 1:], chunk)
    m = answer_BxT[:, 1:]
    return -jnp.sum(jnp.where(m, logp, 0.0)) / jnp.maximum(jnp.sum(m), 1)


def pretrain(policy: nnx.Module, task, cfg, *, log=print) -> tuple[nnx.Module, list[float]]:
    """Fits `policy` (in place) for train.pretrain_steps; returns it and the loss curve."""
    steps = cfg.train.pretrain_steps
    if steps == 0:
        return policy, []
    toks, present, amask = make_sft_batches(task, steps, cfg.train.pretrain_batch, cfg.train.pretrain_correct_frac,
                                            cfg.train.seed + 17)
    # the warm-up makes the base: it trains the plain model (LoRA adapters, zero at this point, are left to the
    # RL run), so the base is bit for bit the one a full fine-tuning run starts from
    graphdef, params = nnx.split(policy, nnx.Param)
    adapters, params = lora.split(params)
    if len(adapters):
        graphdef = lora.base_graphdef(graphdef, lora.join(params, adapters))
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.train.pretrain_lr))

    @jax.jit
    def run(params, opt, toks, present, amask):
        def step(carry, xs):
            p, o = carry
            loss, g = jax.value_and_grad(lambda p_: sft_loss(nnx.merge(graphdef, p_), *xs))(p)
            upd, o = tx.update(g, o, p)
            return (optax.apply_updates(p, upd), o), loss
        (params, opt), losses = jax.lax.scan(step, (params, opt), (toks, present, amask))
        return params, opt, losses

    params, _, losses = run(params, tx.init(params), jnp.asarray(toks), jnp.asarray(present), jnp.asarray(amask))
    nnx.update(policy, params)
    losses = np.asarray(losses).tolist()
    log(f"warm-up: {steps} supervised steps, loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f}")
    return policy, losses
