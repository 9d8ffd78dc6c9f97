"""The adaptive entropy coefficient (Skywork-OR1): the update rule, the gate, and the train state carrying it."""
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import config as config_lib
from rlvr_jax.algos.objective import adapt_entropy_coef, policy_objective


def algo(**kw):
    a = config_lib.base_config().algo
    a.update(kw)
    return a


def test_update_moves_by_delta_toward_the_target_and_stays_nonnegative():
    a = algo(entropy_target=0.5, entropy_coef_delta=0.01)
    assert float(adapt_entropy_coef(jnp.float32(0.02), jnp.float32(0.3), a)) == pytest.approx(0.03)
    assert float(adapt_entropy_coef(jnp.float32(0.02), jnp.float32(0.7), a)) == pytest.approx(0.01)
    assert float(adapt_entropy_coef(jnp.float32(0.005), jnp.float32(0.7), a)) == 0.0


@pytest.mark.parametrize("entropy_level,on", [(0.2, True), (1.5, False)])
def test_bonus_acts_only_below_the_target(entropy_level, on):
    rng = np.random.default_rng(0)
    lp = rng.normal(-1, 0.3, size=(4, 5)).astype(np.float32)
    ent = jnp.full((4, 5), entropy_level, jnp.float32)
    mask = np.ones((4, 5), bool)
    adv = np.array([1.0, -1.0, 0.5, -0.5], np.float32)
    plain, _ = policy_objective(lp, lp, None, None, None, adv, mask, algo())
    adaptive, _ = policy_objective(lp, lp, None, None, ent, adv, mask, algo(entropy_target=1.0),
                                   entropy_coef=jnp.float32(0.1))
    expect = float(plain) - (0.1 * entropy_level if on else 0.0)
    assert float(adaptive) == pytest.approx(expect, rel=1e-6)


def test_train_step_carries_the_coefficient():
    """Through the train step: entropy_coef starts at algo.entropy_coef and moves by +-delta per update."""
    import jax
    import optax

    from rlvr_jax.models import create, tiny
    from rlvr_jax.train.state import init_state
    from rlvr_jax.train.step import make_train_step

    cfg = config_lib.base_config()
    cfg.rollout.max_new_tokens, cfg.rollout.group_size = 4, 2
    cfg.algo.entropy_coef, cfg.algo.entropy_target, cfg.algo.entropy_coef_delta = 0.02, 50.0, 0.01
    policy = create(tiny("qwen2", vocab_size=32, num_layers=1), seed=0)
    tx = optax.sgd(0.1)
    state, pg, _ = init_state(policy, None, tx, tx, seed=0, keep_reference=False, entropy_coef=0.02)
    step = jax.jit(make_train_step(pg, None, cfg, tx, tx))
    rng = np.random.default_rng(0)
    batch = dict(prompt_BxP=jnp.asarray(rng.integers(1, 32, (4, 3)), jnp.int32), prompt_mask_BxP=jnp.ones((4, 3), bool),
                 response_BxN=jnp.asarray(rng.integers(1, 32, (4, 4)), jnp.int32), mask_BxN=jnp.ones((4, 4), bool),
                 adv_B=jnp.array([1.0, -1.0, 0.5, -0.5]), logp_old_BxN=jnp.full((4, 4), -3.0),
                 logp_sampler_BxN=jnp.full((4, 4), -3.0), success_B=jnp.ones(4, bool), valid_B=jnp.ones(4, bool))
    coefs = []
    for _ in range(3):
        state, m = step(state, batch)
        coefs.append(float(m["entropy_coef"]))
    # the token entropy (< log 32) is always below 50: up by delta each update
    assert coefs == pytest.approx([0.02, 0.03, 0.04])
    assert float(state.entropy_coef) == pytest.approx(0.05)
