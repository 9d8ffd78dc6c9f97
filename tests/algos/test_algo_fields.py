"""One test per config field read by rlvr_jax/algos: changing it changes the result."""
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import config as config_lib
from rlvr_jax.algos.advantages import compute_advantages
from rlvr_jax.algos.groups import successes
from rlvr_jax.algos.memory_loss import memory_loss
from rlvr_jax.algos.objective import policy_objective

P, G, T = 4, 4, 6
BASE = dict(iac=True, kl_coef=0.1, entropy_coef=0.01, tis_cap=2.0)  # so the IAC/KL/entropy/TIS fields act

# (field, new value, extra base overrides the field needs to have an effect)
CASES = [
    ("estimator", "rloo", {}), ("estimator", "dr_grpo", {}), ("estimator", "reinforce_pp", {}),
    ("estimator", "passk", {}), ("estimator", "pass_at_k", {}), ("estimator", "pkpo", {}),
    ("estimator", "w_reinforce", {}), ("estimator", "psr", {}), ("estimator", "nsr", {}), ("estimator", "qae", {}),
    ("pass_k", 2, {"estimator": "pass_at_k"}), ("pass_k", 2, {"estimator": "pkpo"}),
    ("positive_weight", 0.5, {"estimator": "w_reinforce"}),
    ("qae_quantile", 0.8, {"estimator": "qae"}),
    ("std_ddof", 1, {}),
    ("adv_eps", 0.5, {}),
    ("iac", False, {}),
    ("iac_alpha", 2.0, {}),
    ("iac_renorm", "g_alpha", {}), ("iac_renorm", "batch_mean", {}),
    ("success_threshold", 0.8, {}),
    ("clip_eps_low", 0.05, {}),
    ("clip_eps_high", 0.05, {}),
    ("dual_clip", 1.5, {}),
    ("tis_cap", 1.1, {}), ("tis_cap", 0.0, {}),
    ("loss_agg", "token_mean", {}), ("loss_agg", "seq_mean_token_sum_norm", {}),
    ("loss_norm_tokens", 3, {"loss_agg": "seq_mean_token_sum_norm"}),
    ("kl_coef", 0.0, {}),
    ("kl_estimator", "k1", {}), ("kl_estimator", "k2", {}),
    ("entropy_coef", 0.0, {}),
    ("unlikeliness_beta", 0.25, {}),
    ("policy_loss", "clip_cov", {"clip_cov_ratio": 0.5, "clip_cov_lb": -1.0}), ("policy_loss", "kl_cov", {}),
    ("policy_loss", "gspo", {}),
    ("clip_cov_ratio", 0.5, {"policy_loss": "clip_cov", "clip_cov_lb": -1.0}),
    ("clip_cov_lb", -1.0, {"policy_loss": "clip_cov", "clip_cov_ratio": 0.5}),
    ("clip_cov_ub", 0.05, {"policy_loss": "clip_cov", "clip_cov_ratio": 0.5, "clip_cov_lb": -1.0}),
    ("kl_cov_ratio", 0.5, {"policy_loss": "kl_cov"}),
    ("kl_cov_coef", 0.5, {"policy_loss": "kl_cov"}),
    ("entropy_top_frac", 0.2, {}),
    ("entropy_target", 0.5, {}),  # the token entropies average ~1.25: above the target, the bonus is off
]
# read by objective.adapt_entropy_coef between updates, not by the loss: test_adaptive_entropy.py
# read by the train step, not by these functions: the chunk size must NOT change results (test_logprobs.py)
NOT_RESULT_CHANGING = {"logprob_chunk", "entropy_coef_delta"}


def inputs():
    rng = np.random.default_rng(0)
    rewards = np.array([[1.0, 0.0, 0.0, 0.0], [0.9, 0.7, 0.2, 0.6], [0.0, 0.0, 0.0, 0.0], [1.0, 0.3, 0.55, 0.0]],
                       np.float32)
    valid = np.ones_like(rewards, bool)
    valid[3, 3] = False
    logp_old = rng.normal(-2.0, 0.5, size=(P * G, T)).astype(np.float32)
    logp_new = logp_old + rng.normal(0, 0.6, size=logp_old.shape).astype(np.float32)  # ratios far outside clips
    logp_sampler = logp_old + rng.normal(0, 0.5, size=logp_old.shape).astype(np.float32)
    logp_ref = logp_old + rng.normal(0, 0.3, size=logp_old.shape).astype(np.float32)
    entropy = rng.uniform(0.5, 2.0, size=logp_old.shape).astype(np.float32)
    mask = np.arange(T)[None] < rng.integers(1, T + 1, size=(P * G, 1))
    return [jnp.asarray(x) for x in (rewards, valid, logp_new, logp_old, logp_sampler, logp_ref, entropy, mask)]


def result(algo):
    rewards, valid, logp_new, logp_old, logp_sampler, logp_ref, entropy, mask = inputs()
    seq_logp = jnp.sum(jnp.where(mask, logp_old, 0.0), -1).reshape(P, G)
    adv, stats = compute_advantages(rewards, valid, algo, seq_logp)
    loss, metrics = policy_objective(logp_new, logp_old, logp_sampler, logp_ref if algo.kl_coef else None, entropy,
                                     adv.reshape(-1), mask & valid.reshape(-1, 1), algo, max_new_tokens=T,
                                     key=jax.random.key(0))
    metrics = {k: v for k, v in metrics.items() if k not in ("cov_frac", "entropy_kept_frac")}
    return np.concatenate([np.asarray(adv).ravel(), [float(loss)], [float(v) for v in metrics.values()],
                           [float(v) for v in stats.values()]])


def algo_cfg(**kw):
    cfg = config_lib.base_config().algo
    cfg.update(BASE)
    cfg.update(kw)
    config_lib.validate(_wrap(cfg))
    return cfg


def _wrap(algo):
    cfg = config_lib.base_config()
    cfg.algo = algo
    return cfg


@pytest.mark.parametrize("field,value,extra", CASES, ids=[f"{f}={v}" for f, v, _ in CASES])
def test_field_changes_result(field, value, extra):
    base = algo_cfg(**extra)
    assert base[field] != value
    changed = algo_cfg(**{**extra, field: value})
    a, b = result(base), result(changed)
    assert a.shape == b.shape
    assert not np.allclose(a, b, rtol=1e-6, atol=1e-7), f"algo.{field}={value!r} changed nothing"


@pytest.mark.parametrize("train_on", ["correct", "incorrect"])
def test_memory_train_on_changes_result(train_on):
    rewards, valid, logp_new, _, _, _, _, mask = inputs()
    success = successes(rewards, 0.5).reshape(-1)
    base, _ = memory_loss(logp_new, mask, success, "all", valid.reshape(-1))
    changed, _ = memory_loss(logp_new, mask, success, train_on, valid.reshape(-1))
    assert float(base) != pytest.approx(float(changed))


def test_every_field_read_is_covered():
    """The fields the algos source reads are exactly those tested above (plus the chunk size)."""
    src = "".join(p.read_text() for p in pathlib.Path(__file__).parents[2].joinpath("rlvr_jax/algos").glob("*.py"))
    read = set(re.findall(r"\balgo(?:_cfg)?\.([a-z_]+)", src)) & set(config_lib.SCHEMA["algo"])
    tested = {f for f, _, _ in CASES}
    assert read - NOT_RESULT_CHANGING == tested, (read ^ tested)
