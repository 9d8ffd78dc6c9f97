"""The one functional train step: policy (clipped PG + KL + entropy) and memory network (CE) together.

`make_train_step(...)` returns a pure `train_step(state, batch) -> (state, metrics)`. The batch is
one optimiser step's worth of rollouts; it is split into `algo.micro_batches` chunks scanned with
gradient accumulation (exact: each chunk's loss is weighted by its share of the aggregation
denominator). A non-finite loss or gradient skips the update, leaves the state as it was
(bit-identical) and increments `state.nonfinite`.

Batch fields (B rows = sequences in prompt-major groups of G = rollout.group_size, P prompt slots,
N response slots):
  prompt_BxP, prompt_mask_BxP             left-padded prompts (the same within a group)
  response_BxN, mask_BxN                  response tokens and 1 where a token counts in the loss
  adv_B                                   advantage per sequence
  logp_old_BxN, logp_sampler_BxN          rollout logprobs of the response tokens (policy at T=1, sampler)
  success_B, valid_B                      for the memory loss (memory.train_on) and padding rows
With `algo.share_prompt` each group's prompt is run once per forward (see
`response_logprobs_and_entropy`); micro-batches are made of whole groups.

With memory.window > 1 the memory's CE also covers the replayed batches of `state.replay` (train/replay.py),
and the step's batch is written into it. Metrics include `sampling_entropy` (every run) and, with a memory,
the tilt diagnostics of `algos.tilt_stats` on this batch before the update.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from rlvr_jax.algos.aggregation import aggregate_parts
from rlvr_jax.models import lora
from rlvr_jax.algos.groups import masked_mean
from rlvr_jax.models.scoring import response_hidden, response_logprobs_and_entropy
from rlvr_jax.algos.memory_loss import memory_loss, memory_rollouts
from rlvr_jax.algos.objective import adapt_entropy_coef, norm_tokens_of, policy_objective
from rlvr_jax.algos.policy_losses import needs_key
from rlvr_jax.algos.tilt_stats import masked_sums, tilt_means, tilt_token_stats
from rlvr_jax.train.replay import push, replay_chunks
from rlvr_jax.train.state import TrainState, clip_scale, merge, policy_params

BATCH_KEYS = ("prompt_BxP", "prompt_mask_BxP", "response_BxN", "mask_BxN", "adv_B", "logp_old_BxN",
              "logp_sampler_BxN", "success_B", "valid_B")
BATCH_DTYPES = dict(prompt_BxP=jnp.int32, prompt_mask_BxP=jnp.bool_, response_BxN=jnp.int32, mask_BxN=jnp.bool_,
                    adv_B=jnp.float32, logp_old_BxN=jnp.float32, logp_sampler_BxN=jnp.float32,
                    success_B=jnp.bool_, valid_B=jnp.bool_)


def batch_spec(rows: int, prompt_len: int, response_len: int) -> dict:
    """ShapeDtypeStructs of a train-step batch of `rows` sequences (what `batch_from_rollout` makes)."""
    width = dict(BxP=prompt_len, BxN=response_len)
    return {k: jax.ShapeDtypeStruct((rows, width[k[-3:]]) if k[-3:] in width else (rows,), BATCH_DTYPES[k])
            for k in BATCH_KEYS}


def make_train_step(policy_graphdef, memory_graphdef, cfg, policy_tx, memory_tx, batch_shards: int = 1):
    """A pure train_step(state, batch) for these model structures and this config.

    batch_shards: how many devices the batch rows are split over (`parallel.batch_shards(mesh, rules)`).
    The shared-prompt forward is used when every shard holds whole groups of each micro-batch; when a
    group spans devices (fewer rows per device than G), each row runs its own prompt instead, which
    costs no cross-device traffic and keeps the prompt work spread over all devices.
    """
    algo = cfg.algo
    mem_on = memory_graphdef is not None
    max_new = cfg.rollout.max_new_tokens
    M = algo.micro_batches
    group = cfg.rollout.group_size

    def share_groups(rows_per_micro_batch: int) -> int:
        """Rows per prompt the forward shares (1: no sharing)."""
        if algo.share_prompt and group > 1 and rows_per_micro_batch % (batch_shards * group) == 0:
            return group
        return 1

    def logprobs(model, mb):
        G = share_groups(mb["response_BxN"].shape[0])
        return response_logprobs_and_entropy(model, mb["prompt_BxP"], mb["prompt_mask_BxP"], mb["response_BxN"],
                                             G, algo.logprob_chunk)

    def policy_loss(params, ref, base, mb, totals, key, entropy_coef):
        """Loss of one micro-batch scaled by its share of the aggregation denominator; metrics scaled so
        their sum over micro-batches is exact (token means by the share of tokens).

        params: the trainable policy params (the adapters under LoRA, joined with the frozen `base`); ref: the
        reference copy (full fine-tuning with KL) or None; under LoRA the KL reference is the base itself."""
        total_den, total_tokens = totals
        model = merge(policy_graphdef, params if base is None else lora.join(base, params))
        logp, ent = logprobs(model, mb)
        logp_ref = None
        if algo.kl_coef > 0:
            ref_params = (jax.lax.stop_gradient(ref) if base is None
                          else lora.join(base, lora.zero_adapters(jax.lax.stop_gradient(params))))
            logp_ref, _ = logprobs(merge(policy_graphdef, ref_params), mb)
        mask = mb["mask_BxN"] & mb["valid_B"][:, None]
        loss, metrics = policy_objective(logp, mb["logp_old_BxN"], mb["logp_sampler_BxN"], logp_ref,
                                         ent, mb["adv_B"], mask,
                                         algo, max_new_tokens=max_new, key=key, entropy_coef=entropy_coef)
        _, den = aggregate_parts(jnp.zeros_like(logp), mask, algo.loss_agg, norm_tokens_of(algo, max_new, mask))
        w = den / jnp.maximum(total_den, 1.0)
        tw = jnp.sum(mask) / jnp.maximum(total_tokens, 1.0)
        share = dict(pg_loss=w, agg_denominator=1.0)
        return loss * w, {k: v * share.get(k, tw) for k, v in metrics.items()}

    def mem_loss(params, mb, total_tokens):
        """Memory CE of one micro-batch, weighted by its share of the selected tokens (exact accumulation)."""
        logp, _ = logprobs(merge(memory_graphdef, params), mb)
        loss, met = memory_loss(logp, mb["mask_BxN"], mb["success_B"], cfg.memory.train_on, mb["valid_B"])
        w = met["memory_tokens"] / jnp.maximum(total_tokens, 1.0)
        return loss * w, met

    def selected_tokens(b):
        """Response tokens of the rollouts the memory learns from (any leading axes)."""
        rows = memory_rollouts(b["success_B"], b["valid_B"], cfg.memory.train_on)
        return jnp.sum(b["mask_BxN"] & rows[..., None]).astype(jnp.float32)

    def replay_grads(params, replay, total_tokens):
        """(loss, grads) of the memory CE over the replayed batches, each split like the step's micro-batches;
        weighted by their share of `total_tokens`, so they add to the batch's exactly."""
        chunks = replay_chunks(replay, M)
        zeros = jax.tree.map(jnp.zeros_like, params)

        def body(carry, mb):
            loss_acc, g_acc = carry
            (ml, _), g = mgrad(params, mb, total_tokens)
            return (loss_acc + ml, jax.tree.map(jnp.add, g_acc, g)), None
        (loss, grads), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros), chunks)
        return loss, grads

    mgrad = jax.value_and_grad(mem_loss, has_aux=True)

    def tilt_metrics(state, micro):
        """DLC tilt diagnostics (algos/tilt_stats.py) of the policy and memory before the update, over the
        response tokens of the micro-batches `micro` [M, rows, ...] (no gradient; [rows, chunk, V] logits)."""
        policy = merge(policy_graphdef, jax.lax.stop_gradient(policy_params(state)))
        memory = merge(memory_graphdef, jax.lax.stop_gradient(state.memory))

        def chunk_sums(h, hm, tokens, mask):
            return masked_sums(tilt_token_stats(policy.project(h), memory.project(hm), tokens, cfg.memory.mu), mask)

        def sums(mb):
            G = share_groups(mb["response_BxN"].shape[0])
            hidden = [response_hidden(m, mb["prompt_BxP"], mb["prompt_mask_BxP"], mb["response_BxN"], G)
                      for m in (policy, memory)]
            mask = mb["mask_BxN"] & mb["valid_B"][:, None]
            return sequence_chunk_sums(chunk_sums, algo.logprob_chunk, *hidden, mb["response_BxN"], mask)
        total = jax.tree.map(lambda x: jnp.sum(x, 0), jax.lax.map(sums, micro))
        return tilt_means(total)

    def train_step(state: TrainState, batch: dict):
        B = batch["adv_B"].shape[0]
        # micro-batches of whole groups when the forward shares prompts, else of strided rows: either way
        # every micro-batch stays spread evenly over the devices holding the batch
        G = share_groups(B // M) if B % M == 0 else 1
        if B % (M * G):
            raise ValueError(f"config.algo.micro_batches: {M} micro-batches of whole groups of {G} rows do not "
                             f"split the batch of {B} sequences")
        mask_all = batch["mask_BxN"] & batch["valid_B"][:, None]
        _, total_den = aggregate_parts(jnp.zeros(mask_all.shape, jnp.float32), mask_all, algo.loss_agg,
                                       norm_tokens_of(algo, max_new, mask_all))
        totals = (total_den, jnp.sum(mask_all).astype(jnp.float32))
        mem_rows = batch["valid_B"]
        mem_total = selected_tokens(batch)
        replay = state.replay
        if mem_on and replay is not None:  # memory.window > 1: the CE is the token mean over batch and replay
            mem_total = mem_total + selected_tokens(replay)
        # micro-batch m takes groups (rows when G = 1) m, m + M, m + 2M, ...
        micro = jax.tree.map(
            lambda x: x.reshape(B // (M * G), M, G, *x.shape[1:]).swapaxes(0, 1).reshape(M, B // M, *x.shape[1:]),
            batch)

        pgrad = jax.value_and_grad(policy_loss, has_aux=True)
        # a policy loss that draws (clip_cov) gets a key of this update and micro-batch, apart from sampling's
        key = (jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(state.rng), 0xC0F), state.step)
               if needs_key(algo.policy_loss) else None)
        mb_key = (lambda m: None) if key is None else (lambda m: jax.random.fold_in(key, m))  # noqa: E731
        ent_coef = state.entropy_coef

        def body(carry, xs):
            mb, m = xs
            g_p, g_m, loss_acc, met_acc, mloss_acc = carry
            (loss, met), gp = pgrad(state.policy, state.ref, state.base, mb, totals, mb_key(m), ent_coef)
            g_p = jax.tree.map(jnp.add, g_p, gp)
            met_acc = jax.tree.map(jnp.add, met_acc, met)
            if mem_on:
                (ml, _), gm = mgrad(state.memory, mb, mem_total)
                g_m = jax.tree.map(jnp.add, g_m, gm)
                mloss_acc = mloss_acc + ml
            return (g_p, g_m, loss_acc + loss, met_acc, mloss_acc), None

        zero = jnp.zeros((), jnp.float32)
        if M == 1:  # no accumulation buffers: two fewer passes over every gradient
            (loss, metrics), g_p = pgrad(state.policy, state.ref, state.base, batch, totals, mb_key(0), ent_coef)
            (mloss, _), g_m = mgrad(state.memory, batch, mem_total) if mem_on else ((zero, None), None)
        else:
            zeros_p = jax.tree.map(jnp.zeros_like, state.policy)
            zeros_m = jax.tree.map(jnp.zeros_like, state.memory) if mem_on else None
            met0 = jax.eval_shape(lambda: policy_loss(state.policy, state.ref, state.base,
                                                      jax.tree.map(lambda x: x[0], micro), totals, mb_key(0),
                                                      ent_coef)[1])
            met0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), met0)
            carry0 = (zeros_p, zeros_m, zero, met0, zero)
            (g_p, g_m, loss, metrics, mloss), _ = jax.lax.scan(body, carry0, (micro, jnp.arange(M)))
        if mem_on and replay is not None:
            rloss, g_r = replay_grads(state.memory, replay, mem_total)
            mloss, g_m = mloss + rloss, jax.tree.map(jnp.add, g_m, g_r)

        # a NaN or inf anywhere in a gradient makes its global norm non-finite: one pass, shared with the metric
        grad_norm = optax.global_norm(g_p)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if mem_on:
            memory_grad_norm = optax.global_norm(g_m)
            ok = ok & jnp.isfinite(mloss) & jnp.isfinite(memory_grad_norm)
        clip = cfg.optim.grad_clip

        def update(tx, grads, norm, opt, params):
            scale = clip_scale(norm, clip)
            upd, new_opt = tx.update(jax.tree.map(lambda g: g * scale.astype(g.dtype), grads), opt, params)
            return optax.apply_updates(params, upd), new_opt

        def apply(st):
            policy, popt = update(policy_tx, g_p, grad_norm, st.policy_opt, st.policy)
            memory, mopt = (update(memory_tx, g_m, memory_grad_norm, st.memory_opt, st.memory) if mem_on
                            else (st.memory, st.memory_opt))
            coef = (None if st.entropy_coef is None
                    else adapt_entropy_coef(st.entropy_coef, metrics["entropy"], algo))
            new_replay = push(st.replay, batch) if mem_on and st.replay is not None else st.replay
            return st.replace(step=st.step + 1, policy=policy, policy_opt=popt, memory=memory, memory_opt=mopt,
                              entropy_coef=coef, replay=new_replay)

        def skip(st):
            return st.replace(nonfinite=st.nonfinite + 1)

        # one branch runs: a skipped update costs no pass over the parameters (a select would cost two)
        new_state = jax.lax.cond(ok, apply, skip, state)
        metrics = dict(metrics)
        metrics.update(loss=loss, grad_norm=grad_norm, update_skipped=(~ok).astype(jnp.float32),
                       adv_mean=jnp.sum(batch["adv_B"] * mem_rows) / jnp.maximum(jnp.sum(mem_rows), 1))
        # a Monte-Carlo estimate of the sampling distribution's per-token entropy along the rollouts
        metrics["sampling_entropy"] = -masked_mean(batch["logp_sampler_BxN"], mask_all)
        if mem_on:
            metrics.update(memory_loss=mloss, memory_grad_norm=memory_grad_norm)
            metrics.update(tilt_metrics(state, micro))
        if state.entropy_coef is not None:
            metrics.update(entropy_coef=state.entropy_coef)
        return new_state, metrics

    return train_step


def sequence_chunk_sums(fn, chunk: int, *xs_BxT):
    """fn(*chunks) summed over chunks of `chunk` positions of the arrays [B, T, ...] (T padded with zeros:
    pad positions must add nothing, e.g. a False mask), so at most [B, chunk, V] logits live at once."""
    T = xs_BxT[0].shape[1]
    if T <= chunk:
        return fn(*xs_BxT)
    n = -(-T // chunk)
    pads = [jnp.pad(x, ((0, 0), (0, n * chunk - T)) + ((0, 0),) * (x.ndim - 2)) for x in xs_BxT]
    split = tuple(x.reshape(x.shape[0], n, chunk, *x.shape[2:]).swapaxes(0, 1) for x in pads)
    return jax.tree.map(lambda v: jnp.sum(v, 0), jax.lax.map(lambda c: fn(*c), split))


def batch_from_rollout(rollout, adv_B, success_B, valid_B):
    """Train-step batch from a sampler Rollout (rows stay in its prompt-major groups).

    logp_old is the rollout's `logp_policy` (the policy that sampled, at temperature 1), so no extra
    forward pass is spent recomputing it.
    """
    return dict(
        prompt_BxP=rollout.prompt_tokens_BxP.astype(jnp.int32),
        prompt_mask_BxP=rollout.prompt_mask_BxP.astype(bool),
        response_BxN=rollout.tokens_BxN.astype(jnp.int32),
        mask_BxN=rollout.mask_BxN.astype(bool),
        adv_B=adv_B.astype(jnp.float32),
        logp_old_BxN=rollout.logp_policy_BxN.astype(jnp.float32),
        logp_sampler_BxN=rollout.logp_sampler_BxN.astype(jnp.float32),
        success_B=success_B.astype(bool),
        valid_B=valid_B.astype(bool),
    )
