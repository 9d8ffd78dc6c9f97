"""memory.window: the memory trains on this batch plus a ring buffer of the previous W - 1 batches kept in the
TrainState; W = 1 keeps no buffer; the CE over batch + replay is the exact token mean; the ring wraps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlvr_jax.algos.memory_loss import memory_loss
from rlvr_jax.config import ConfigError, base_config, validate
from rlvr_jax.models import create, memory_config, tiny
from rlvr_jax.models.scoring import response_logprobs_and_entropy
from rlvr_jax.train.replay import replay_spec
from rlvr_jax.train.state import init_state, merge
from rlvr_jax.train.step import make_train_step
from tests.train.batch_helpers import B, G, N, P, random_batch as _batch  # noqa: F401



def _cfg(window, **algo):
    cfg = base_config()
    cfg.rollout.max_new_tokens = N
    cfg.rollout.group_size = G
    cfg.optim.grad_clip = 0.0  # plain SGD below: the memory update is -lr * its gradient
    cfg.memory.enabled = True
    cfg.memory.window = window
    cfg.memory.train_on = "correct"
    for k, v in algo.items():
        cfg.algo[k] = v
    return cfg


def _setup(cfg, prompt_len=P):
    pcfg = tiny("qwen2", vocab_size=96, num_layers=1)
    policy = create(pcfg, seed=0)
    memory = create(memory_config(pcfg, width_ratio=0.5, num_layers=1), seed=1)
    ptx, mtx = optax.sgd(0.1), optax.sgd(0.1)
    spec = replay_spec(cfg.memory.window, B, prompt_len, N)
    state, pg, mg = init_state(policy, memory, ptx, mtx, seed=0, keep_reference=False, replay=spec)
    return state, jax.jit(make_train_step(pg, mg, cfg, ptx, mtx)), mg


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_window_1_keeps_no_replay_and_an_empty_replay_changes_nothing():
    """W = 1: no buffer in the state. W = 2 at its first step (replay unfilled) updates exactly like W = 1."""
    s1, step1, _ = _setup(_cfg(1))
    assert s1.replay is None
    s2, step2, _ = _setup(_cfg(2))
    assert s2.replay is not None and not bool(jnp.any(s2.replay["valid_B"]))
    (n1, m1), (n2, m2) = step1(s1, _batch(0)), step2(s2, _batch(0))
    for a, b in zip(_leaves((n1.policy, n1.memory)), _leaves((n2.policy, n2.memory))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(m1["memory_loss"]), float(m2["memory_loss"]), rtol=1e-6)


@pytest.mark.parametrize("micro", [1, 2])
def test_window_2_gradient_is_the_ce_gradient_on_both_steps(micro):
    """At step t with W = 2 the memory moves by -lr * grad of the token-mean CE over steps t-1 and t together."""
    cfg = _cfg(2, micro_batches=micro)
    state, step, mg = _setup(cfg)
    a, b = _batch(1), _batch(2)
    s1, _ = step(state, a)
    s2, met = step(s1, b)
    both = jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)

    def ce(params):
        logp, _ = response_logprobs_and_entropy(merge(mg, params), both["prompt_BxP"], both["prompt_mask_BxP"],
                                                both["response_BxN"], 1, 256)
        return memory_loss(logp, both["mask_BxN"], both["success_B"], "correct", both["valid_B"])[0]
    loss, grad = jax.value_and_grad(ce)(s1.memory)
    np.testing.assert_allclose(float(met["memory_loss"]), float(loss), rtol=1e-5)
    np.testing.assert_allclose(float(met["memory_grad_norm"]), float(optax.global_norm(grad)), rtol=1e-5)
    for m1, m2, g in zip(_leaves(s1.memory), _leaves(s2.memory), _leaves(grad)):
        np.testing.assert_allclose(m2, m1 - 0.1 * g, atol=2e-6)


def test_ring_buffer_wraps_for_window_3():
    """W = 3 over 4 steps: the two slots hold the last two batches (slot 0 step 2, slot 1 step 3); prompts are
    stored left-padded to the replay's prompt width."""
    state, step, _ = _setup(_cfg(3), prompt_len=P + 2)
    batches = [_batch(10 + i) for i in range(4)]
    seen = []
    for b in batches:
        state, _ = step(state, b)
        seen.append(jax.device_get(state.replay))
    assert [int(r["next"]) for r in seen] == [1, 0, 1, 0]
    assert bool(np.all(seen[0]["valid_B"][0])) and not bool(np.any(seen[0]["valid_B"][1]))
    for slot, i in ((0, 2), (1, 3)):
        np.testing.assert_array_equal(seen[-1]["prompt_BxP"][slot, :, 2:], batches[i]["prompt_BxP"])
        assert not np.any(seen[-1]["prompt_mask_BxP"][slot, :, :2])
        for k in ("response_BxN", "mask_BxN", "success_B", "valid_B"):
            np.testing.assert_array_equal(seen[-1][k][slot], batches[i][k])


def test_window_refuses_several_updates_per_step():
    cfg = _cfg(2)
    cfg.rollout.prompts_per_step = 4
    cfg.algo.mini_batches = 2
    with pytest.raises(ConfigError, match="memory.window"):
        validate(cfg)
