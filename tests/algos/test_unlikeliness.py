"""The unlikeliness reward (arXiv 2506.02355) against its closed form, and its place before the estimator."""
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import config as config_lib
from rlvr_jax.algos.advantages import compute_advantages
from rlvr_jax.algos.unlikeliness import sequence_logp, unlikeliness_rewards


def test_closed_form_on_a_hand_group():
    """G = 4, three correct with log-probs -1 > -2 > -5: ranks 0, 1, 2 keep 1 - b(4 - rank)/4."""
    r = np.array([[1.0, 1.0, 0.0, 1.0]], np.float32)
    lp = np.array([[-2.0, -1.0, -0.5, -5.0]], np.float32)  # the wrong one is the most likely: no rank
    b = 0.25
    out = np.asarray(unlikeliness_rewards(r, np.ones_like(r, bool), lp, b, 0.5))
    np.testing.assert_allclose(out, [[1 - b * 3 / 4, 1 - b * 4 / 4, 0.0, 1 - b * 2 / 4]], rtol=1e-6)


def test_ties_padding_and_off():
    r = np.array([[1.0, 1.0, 1.0, 1.0]], np.float32)
    lp = np.array([[-1.0, -1.0, -3.0, -0.1]], np.float32)
    valid = np.array([[True, True, True, False]])
    out = np.asarray(unlikeliness_rewards(r, valid, lp, 0.5, 0.5))
    # ranks among the valid correct ones: -1 (first) 0, -1 (second) 1, -3 2; the padding keeps its reward
    np.testing.assert_allclose(out, [[1 - 0.5, 1 - 0.5 * 3 / 4, 1 - 0.5 * 2 / 4, 1.0]], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(unlikeliness_rewards(r, valid, lp, 0.0, 0.5)), r)


def test_all_correct_group_gets_an_advantage_toward_the_unlikely():
    """GRPO gives an all-correct group no signal; with the transform the least likely response is pushed up."""
    algo = config_lib.base_config().algo
    r = jnp.ones((1, 4))
    lp = jnp.array([[-1.0, -2.0, -3.0, -4.0]])
    adv0, _ = compute_advantages(r, jnp.ones((1, 4), bool), algo, lp)
    algo.unlikeliness_beta = 0.25
    adv, _ = compute_advantages(r, jnp.ones((1, 4), bool), algo, lp)
    assert np.allclose(adv0, 0)
    assert list(np.argsort(np.asarray(adv)[0])) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unlikeliness_beta"):
        compute_advantages(r, jnp.ones((1, 4), bool), algo)


def test_sequence_logp_sums_the_response_tokens():
    lp = np.array([[-1.0, -2.0, -9.0], [-0.5, -0.5, -0.5]], np.float32)
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    np.testing.assert_allclose(np.asarray(sequence_logp(lp, mask)), [-3.0, -1.5])
