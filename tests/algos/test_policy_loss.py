"""Clipped surrogate, aggregation modes and the full objective: hand examples and finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rlvr_jax import config as config_lib
from rlvr_jax.algos.aggregation import aggregate, aggregate_parts
from rlvr_jax.models.scoring import token_logprobs_and_entropy
from rlvr_jax.algos.losses import clipped_pg_loss
from rlvr_jax.algos.memory_loss import memory_loss
from rlvr_jax.algos.objective import policy_objective
from rlvr_jax.models.config import tiny
from rlvr_jax.models.transformer import create


# ---------------------------------------------------------------- surrogate, by hand
def test_clipped_surrogate_hand_example():
    ratio = np.array([1.5, 0.5, 0.5, 1.5, 4.0, 1.1], np.float32)
    adv = np.array([1.0, 1.0, -1.0, -1.0, -1.0, 2.0], np.float32)
    # eps_low 0.2, eps_high 0.28: -min(rA, clip(r, 0.8, 1.28) A)
    want = np.array([-1.28, -0.5, 0.8, 1.5, 4.0, -2.2])
    logp_new = jnp.asarray(np.log(ratio))[None]
    logp_old = jnp.zeros_like(logp_new)
    loss, aux = clipped_pg_loss(logp_new, logp_old, adv[None], eps_low=0.2, eps_high=0.28)
    np.testing.assert_allclose(np.asarray(loss)[0], want, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(aux["clip_high"])[0], [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(aux["clip_low"])[0], [0, 0, 1, 0, 0, 0])
    # dual clip c = 3 caps the negative-advantage loss at 3 |A|
    loss, aux = clipped_pg_loss(logp_new, logp_old, adv[None], eps_low=0.2, eps_high=0.28, dual_clip=3.0)
    np.testing.assert_allclose(np.asarray(loss)[0], np.where(np.arange(6) == 4, 3.0, want), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(aux["dual_clipped"])[0], [0, 0, 0, 0, 1, 0])
    # truncated importance weights: exp(old - sampler) capped at 2, no gradient through them
    logp_sampler = jnp.asarray(np.log([1 / 3, 2.0, 1.0, 1.0, 1.0, 1.0]), jnp.float32)[None]
    loss, aux = clipped_pg_loss(logp_new, logp_old, adv[None], eps_low=0.2, eps_high=0.28,
                                logp_sampler_BxT=logp_sampler, tis_cap=2.0)
    w = np.array([2.0, 0.5, 1, 1, 1, 1])
    np.testing.assert_allclose(np.asarray(loss)[0], want * w, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(aux["tis_capped"])[0], [1, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="config.algo.tis_cap"):
        clipped_pg_loss(logp_new, logp_old, adv[None], eps_low=0.2, eps_high=0.2, tis_cap=2.0)


def test_surrogate_gradient_zero_where_clipped():
    ratio = np.array([1.5, 0.5, 0.5, 1.5, 1.1], np.float32)
    adv = np.array([1.0, 1.0, -1.0, -1.0, 2.0], np.float32)
    g = jax.grad(lambda lp: clipped_pg_loss(lp, jnp.zeros(5), adv, eps_low=0.2, eps_high=0.28)[0].sum())(
        jnp.asarray(np.log(ratio)))
    np.testing.assert_allclose(np.asarray(g), [0.0, -0.5, 0.0, 1.5, -2.2], rtol=1e-6)


# ---------------------------------------------------------------- aggregation, by hand
LOSS = np.array([[1.0, 2.0, 3.0, 77.0], [4.0, 99.0, 99.0, 99.0], [55.0, 55.0, 55.0, 55.0]], np.float32)
MASK = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)


@pytest.mark.parametrize("mode,want", [
    ("token_mean", (1 + 2 + 3 + 4) / 4),  # DAPO
    ("seq_mean_token_mean", ((1 + 2 + 3) / 3 + 4 / 1) / 2),  # GRPO; the empty row is left out
    ("seq_mean_token_sum_norm", ((1 + 2 + 3) / 4 + 4 / 4) / 2),  # Dr.GRPO with a budget of 4 tokens
])
def test_aggregation_hand_example(mode, want):
    assert float(aggregate(jnp.asarray(LOSS), jnp.asarray(MASK), mode, 4)) == pytest.approx(want)
    # micro-batch additivity: summing parts over row splits gives the full value
    parts = [aggregate_parts(jnp.asarray(LOSS[s]), jnp.asarray(MASK[s]), mode, 4) for s in (slice(0, 1), slice(1, 3))]
    num, den = sum(p[0] for p in parts), sum(p[1] for p in parts)
    assert float(num / den) == pytest.approx(want)


def test_aggregation_errors():
    with pytest.raises(ValueError, match="config.algo.loss_agg"):
        aggregate(jnp.asarray(LOSS), jnp.asarray(MASK), "sum")
    with pytest.raises(ValueError, match="config.algo.loss_norm_tokens"):
        aggregate(jnp.asarray(LOSS), jnp.asarray(MASK), "seq_mean_token_sum_norm", 0)


# ---------------------------------------------------------------- gradients vs finite differences
B, T = 4, 8


def algo_cfg(**kw):
    cfg = config_lib.base_config().algo
    cfg.update(dict(clip_eps_low=0.2, clip_eps_high=0.28, dual_clip=3.0, tis_cap=1.5, kl_coef=0.1,
                    kl_estimator="k3", entropy_coef=0.01, loss_agg="seq_mean_token_sum_norm", loss_norm_tokens=T))
    cfg.update(kw)
    return cfg


def _losses(graphdef, cfg):
    """(policy loss, memory loss, logp) of params p on batch d, one jitted function for all uses."""
    def values(p, d):
        model = nnx.merge(graphdef, p)
        logp, ent = token_logprobs_and_entropy(model, d["inp"], d["pos"], d["kv"], d["tgt"], 3)
        loss, _ = policy_objective(logp, d["logp_old"], d["logp_sampler"], d["logp_ref"], ent, d["adv"],
                                   d["mask"], cfg)
        mem, _ = memory_loss(logp, d["mask"], d["success"], "correct")
        return loss, mem, logp

    def grads(p, d):
        return (jax.grad(lambda q: values(q, d)[0])(p), jax.grad(lambda q: values(q, d)[1])(p))

    return jax.jit(values), jax.jit(grads)


@pytest.fixture(scope="module")
def setup():
    model = create(tiny("llama", vocab_size=64, hidden_size=32, intermediate_size=64, num_heads=2, num_layers=1),
                   seed=0)
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(1)
    tokens = jnp.asarray(rng.integers(0, 64, size=(B, T + 1)), jnp.int32)
    zeros = jnp.zeros((B, T), jnp.float32)
    data = dict(inp=tokens[:, :-1], tgt=tokens[:, 1:], pos=jnp.broadcast_to(jnp.arange(T), (B, T)),
                kv=jnp.ones((B, T), bool), mask=jnp.asarray(np.arange(T)[None] >= np.array([[2], [3], [2], [4]])),
                logp_old=zeros, logp_sampler=zeros, logp_ref=zeros, adv=jnp.asarray([1.0, -1.0, 0.5, -2.0]),
                success=jnp.asarray([True, False, True, False]))
    values, grads = _losses(graphdef, algo_cfg())
    logp0 = values(params, data)[2]
    data["logp_old"] = logp0 + jnp.asarray(rng.normal(0, 0.3, (B, T)), jnp.float32)
    data["logp_sampler"] = data["logp_old"] + jnp.asarray(rng.normal(0, 0.5, (B, T)), jnp.float32)
    data["logp_ref"] = logp0 + jnp.asarray(rng.normal(0, 0.2, (B, T)), jnp.float32)
    # stay away from the clip kinks (0.8, 1.28 and the dual clip at 3) so central differences are smooth
    r = np.exp(np.asarray(logp0 - data["logp_old"]))
    assert np.min(np.abs(np.concatenate([r - 0.8, r - 1.28, r - 3.0]))) > 1e-2
    assert np.any(r > 1.28) and np.any(r < 0.8)
    grad_policy, grad_mem = grads(params, data)
    return params, data, values, grad_policy, grad_mem


def check_fd(value_fn, params, grad, n_dirs=2, n_entries=3, h=3e-3):
    """Directional derivatives grad . v against central differences, for random v and single entries."""
    leaves, treedef = jax.tree.flatten(grad)
    leaves = [np.asarray(x) for x in leaves]
    rng = np.random.default_rng(1)
    dirs = []
    for _ in range(n_dirs):
        v = [rng.normal(size=x.shape).astype(np.float32) for x in leaves]
        norm = np.sqrt(sum((x ** 2).sum() for x in v))
        dirs.append([x / norm for x in v])
    flat = np.concatenate([x.ravel() for x in leaves])
    for idx in np.argsort(-np.abs(flat))[:n_entries]:
        e = np.zeros_like(flat)
        e[idx] = 1.0
        dirs.append(np.split(e, np.cumsum([x.size for x in leaves])[:-1]))
        dirs[-1] = [p.reshape(x.shape) for p, x in zip(dirs[-1], leaves)]
    p_leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
    for v in dirs:
        shift = lambda s: jax.tree.unflatten(treedef, [p + s * h * d for p, d in zip(p_leaves, v)])  # noqa: E731
        fd = (float(value_fn(shift(1.0))) - float(value_fn(shift(-1.0)))) / (2 * h)
        an = float(sum(np.vdot(a, b) for a, b in zip(leaves, v)))
        assert an == pytest.approx(fd, rel=2e-3, abs=2e-4), (an, fd)


def test_policy_loss_gradient_matches_finite_differences(setup):
    params, data, values, grad_policy, _ = setup
    check_fd(lambda p: values(p, data)[0], params, grad_policy)


def test_memory_loss_gradient_matches_finite_differences(setup):
    params, data, values, _, grad_mem = setup
    check_fd(lambda p: values(p, data)[1], params, grad_mem, n_dirs=1, n_entries=2)


def test_objective_metrics_and_reference_free(setup):
    d = setup[1]
    logp = d["logp_old"] + 0.1
    ent = jnp.ones((B, T))
    loss, m = policy_objective(logp, d["logp_old"], d["logp_sampler"], None, ent, d["adv"], d["mask"],
                               algo_cfg(kl_coef=0.0))
    assert set(m) >= {"pg_loss", "clip_frac_low", "clip_frac_high", "kl", "entropy", "ratio_mean", "tis_frac_capped"}
    assert float(m["kl"]) == 0.0 and float(m["entropy"]) == pytest.approx(1.0)
    assert float(m["ratio_mean"]) == pytest.approx(np.exp(0.1), rel=1e-5)
    # entropy bonus under seq_mean_token_sum_norm: rows hold 6, 5, 6, 4 response tokens, budget T
    assert float(loss) == pytest.approx(float(m["pg_loss"]) - 0.01 * (6 + 5 + 6 + 4) / 4 / T, rel=1e-5)
    with pytest.raises(ValueError, match="config.algo.kl_coef"):
        policy_objective(logp, d["logp_old"], None, None, ent, d["adv"], d["mask"], algo_cfg(tis_cap=0.0))


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_micro_batches_weighted_by_agg_denominator_give_full_loss(setup, mode):
    d = setup[1]
    cfg = algo_cfg(loss_agg=mode)
    logp = d["logp_old"] + 0.05
    ent = jnp.abs(d["logp_ref"])

    def obj(rows):
        return policy_objective(logp[rows], d["logp_old"][rows], d["logp_sampler"][rows], d["logp_ref"][rows],
                                ent[rows], d["adv"][rows], d["mask"][rows], cfg)

    full, _ = obj(slice(0, B))
    parts = [obj(s) for s in (slice(0, 1), slice(1, B))]
    weights = [float(m["agg_denominator"]) for _, m in parts]
    combined = sum(float(loss) * w for (loss, _), w in zip(parts, weights)) / sum(weights)
    assert combined == pytest.approx(float(full), rel=1e-5)
