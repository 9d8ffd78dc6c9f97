"""The functional train step: micro-batching is exact, NaN skips, memory trains, sharded == single device;
its TrainProgram (the one wiring of the jitted step) builds a state born sharded, equal to the eager one."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlvr_jax import parallel
from rlvr_jax.config import base_config
from rlvr_jax.models import create, memory_config, tiny
from rlvr_jax.train.program import train_program
from rlvr_jax.train.state import init_state, make_optimizers, train_state_shardings
from rlvr_jax.train.step import make_train_step
from tests.train.batch_helpers import B, G, N, P, random_batch as _batch  # noqa: F401

def _cfg(**algo):
    cfg = base_config()
    cfg.rollout.max_new_tokens = N
    cfg.rollout.group_size = G
    cfg.optim.learning_rate = 1e-3
    cfg.memory.enabled = True
    for k, v in algo.items():
        cfg.algo[k] = v
    return cfg


def _setup(cfg, kl=False, adam=False, batch_shards=1):
    """Plain SGD by default, so parameter comparisons measure gradients (Adam's first step is
    sign(g) * lr and amplifies float noise on near-zero gradients)."""
    pcfg = tiny("qwen2", vocab_size=96, num_layers=1)
    policy = create(pcfg, seed=0)
    memory = create(memory_config(pcfg, width_ratio=0.5, num_layers=1), seed=1)
    ptx, mtx = make_optimizers(cfg, 10) if adam else (optax.sgd(0.1), optax.sgd(0.1))
    state, pg, mg = init_state(policy, memory, ptx, mtx, seed=0, keep_reference=kl)
    step = make_train_step(pg, mg, cfg, ptx, mtx, batch_shards)
    return state, step


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def reference_run():
    cfg = _cfg(loss_agg="token_mean")
    state, step = _setup(cfg, adam=True)
    new, metrics = jax.jit(step)(state, _batch())
    return cfg, state, new, metrics


def test_step_updates_policy_and_memory(reference_run):
    _, state, new, metrics = reference_run
    assert int(new.step) == 1 and int(new.nonfinite) == 0
    for old, upd in ((state.policy, new.policy), (state.memory, new.memory)):
        diffs = [np.abs(a - b).max() for a, b in zip(_leaves(old), _leaves(upd))]
        assert max(diffs) > 0
    assert np.isfinite(float(metrics["memory_loss"])) and float(metrics["memory_loss"]) > 0
    assert float(metrics["update_skipped"]) == 0


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_sum_norm"])
def test_micro_batching_is_exact(agg):
    outs = []
    for m in (1, 4):
        cfg = _cfg(loss_agg=agg, micro_batches=m)
        state, step = _setup(cfg)
        new, met = jax.jit(step)(state, _batch(1))
        outs.append((new, met))
    for k in ("loss", "pg_loss", "entropy", "ratio_mean", "clip_frac_high", "agg_denominator"):
        np.testing.assert_allclose(float(outs[0][1][k]), float(outs[1][1][k]), rtol=1e-5, atol=1e-7, err_msg=k)
    for a, b in zip(_leaves(outs[0][0].policy), _leaves(outs[1][0].policy)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(float(outs[0][1]["memory_loss"]), float(outs[1][1]["memory_loss"]), rtol=1e-5)
    for a, b in zip(_leaves(outs[0][0].memory), _leaves(outs[1][0].memory)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_shared_prompt_step_equals_full_forward_step():
    """The shared-prompt forward (each group's prompt once, KV repeated) gives the same loss, metrics and
    update as one full forward per row, for the policy and the memory network, with micro-batching."""
    outs = []
    for share in (False, True):
        cfg = _cfg(loss_agg="seq_mean_token_mean", share_prompt=share, micro_batches=2, entropy_coef=0.01)
        state, step = _setup(cfg)
        outs.append(jax.jit(step)(state, _batch(4)))
    (full, mf), (shared, ms) = outs
    for k in ("loss", "grad_norm", "memory_loss", "memory_grad_norm", "entropy"):
        np.testing.assert_allclose(float(ms[k]), float(mf[k]), rtol=2e-5, err_msg=k)
    for a, b in zip(_leaves(full.policy) + _leaves(full.memory), _leaves(shared.policy) + _leaves(shared.memory)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_nan_skips_update_bit_identically():
    cfg = _cfg()
    state, step = _setup(cfg)
    batch = _batch(2)
    batch["adv_B"] = batch["adv_B"].at[3].set(jnp.nan)
    new, met = jax.jit(step)(state, batch)
    assert int(new.nonfinite) == 1 and int(new.step) == 0 and float(met["update_skipped"]) == 1
    for a, b in zip(_leaves(state), _leaves(new.replace(nonfinite=state.nonfinite))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("clip", [1e-3, pytest.param(1e3, marks=pytest.mark.slow)])  # 1e3: clipping inactive
def test_gradient_clip_equals_optax_clip_by_global_norm(clip):
    """The step clips with the global norm it already computes; the update equals chaining
    optax.clip_by_global_norm before AdamW (clipping active at 1e-3, inactive at 1e3)."""
    pcfg = tiny("qwen2", vocab_size=96, num_layers=1)
    outs = []
    for ours in (True, False):
        cfg = _cfg()
        cfg.optim.grad_clip = clip if ours else 0.0
        ptx, mtx = make_optimizers(cfg, 10)
        if not ours:
            ptx, mtx = (optax.chain(optax.clip_by_global_norm(clip), t) for t in (ptx, mtx))
        policy, memory = create(pcfg, seed=0), create(memory_config(pcfg, width_ratio=0.5, num_layers=1), seed=1)
        state, pg, mg = init_state(policy, memory, ptx, mtx, seed=0, keep_reference=False)
        new, met = jax.jit(make_train_step(pg, mg, cfg, ptx, mtx))(state, _batch(5))
        outs.append((new, met))
    (a, ma), (b, mb) = outs
    assert (float(ma["grad_norm"]) > clip) == (clip < 1)
    for x, y in zip(_leaves(a.policy) + _leaves(a.memory), _leaves(b.policy) + _leaves(b.memory)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_kl_reference_changes_loss():
    cfg = _cfg(kl_coef=0.5)
    state, step = _setup(cfg, kl=True)
    assert state.ref is not None
    batch = _batch(3)
    s1, _ = jax.jit(step)(state, batch)
    s2, m2 = jax.jit(step)(s1, batch)
    assert float(m2["kl"]) > 0


# (1, 2, 4) is also run by test_program_jitted_step_runs_on_its_shardings; here it is in the slow suite
@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 2, 2), pytest.param((1, 2, 4), marks=pytest.mark.slow)])
def test_sharded_step_equals_single_device(reference_run, shape):
    cfg, state, _, _ = reference_run
    mesh = parallel.make_mesh(shape=shape)
    rules = parallel.TRAIN_RULES
    state0, ref_step = _setup(cfg)
    ref_new, ref_met = jax.jit(ref_step)(state0, _batch())
    # groups of G = 2 rows: shared prompts where each device holds whole groups ((2,2,2): 2 rows per batch
    # shard, (1,2,4): 4), one forward per row where a group spans devices ((8,1,1): 1 row per shard)
    _, sgd_step = _setup(cfg, batch_shards=parallel.batch_shards(mesh, rules))
    shardings = train_state_shardings(state0, mesh, rules)
    st = jax.device_put(state0, shardings)
    assert any(s.spec != jax.sharding.PartitionSpec() for s in jax.tree.leaves(shardings.policy)) or shape[1:] == (1, 1)
    batch = parallel.shard_batch(_batch(), mesh, rules)
    new, met = jax.jit(sgd_step, out_shardings=(shardings, None))(st, batch)
    np.testing.assert_allclose(float(met["loss"]), float(ref_met["loss"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(met["grad_norm"]), float(ref_met["grad_norm"]), rtol=1e-5)
    for a, b in zip(_leaves(ref_new.policy), _leaves(new.policy)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(_leaves(ref_new.memory), _leaves(new.memory)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _modules():
    pcfg = tiny("qwen2", vocab_size=96, num_layers=1)
    return create(pcfg, seed=0), create(memory_config(pcfg, width_ratio=0.5, num_layers=1), seed=1)


@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 8, 1)])
def test_program_state_is_born_sharded_and_equals_the_eager_state(shape):
    """The state is built from shapes (eval_shape -> shardings -> a jitted init with out_shardings): every
    leaf sits on the sharding the abstract state carries, parameters and Adam moments split alike over the
    8 devices, counters and RNG replicated, and every value bit-identical to building it eagerly."""
    from jax.sharding import PartitionSpec
    cfg = _cfg(kl_coef=0.1)  # a reference copy is kept
    policy, memory = _modules()
    mesh = parallel.make_mesh(shape=shape)
    program = train_program(cfg, policy, memory, mesh, 10, rows=B)
    state = program.init_state(policy, memory)
    ptx, mtx = make_optimizers(cfg, 10)
    eager, pg, mg = init_state(policy, memory, ptx, mtx, seed=cfg.train.seed, keep_reference=True)
    assert jax.tree.structure(eager) == jax.tree.structure(state) and state.ref is not None
    for a, b in zip(_leaves(eager), _leaves(state)):
        np.testing.assert_array_equal(a, b)
    assert program.policy_graphdef == pg and program.memory_graphdef == mg
    sh = program.state_shardings
    # the shardings derived from the abstract state are the ones of the concrete state
    for x, y in zip(jax.tree.leaves(sh), jax.tree.leaves(train_state_shardings(eager, mesh, parallel.TRAIN_RULES))):
        assert x == y
    for x, s, a in zip(jax.tree.leaves(state), jax.tree.leaves(sh), jax.tree.leaves(program.abstract_state)):
        assert x.sharding.is_equivalent_to(s, x.ndim) and len(x.sharding.device_set) == 8
        assert a.sharding == s and (a.shape, a.dtype) == (x.shape, x.dtype)

    def specs(tree):
        return [s.spec for s in jax.tree.leaves(tree)]
    assert any(any(ax is not None for ax in sp) for sp in specs(sh.policy))  # fsdp / tensor really split
    adam = sh.policy_opt[0]
    assert specs(adam.mu) == specs(adam.nu) == specs(sh.policy) == specs(sh.ref)
    assert specs(sh.memory_opt[0].mu) == specs(sh.memory)
    for s in (sh.step, sh.rng, sh.nonfinite, adam.count):
        assert s.spec == PartitionSpec()


def test_program_jitted_step_runs_on_its_shardings(reference_run):
    """`update` = the jitted step (in/out shardings, state donated) on the placed batch: same initial state,
    same loss as the plain single-device step, the new state on the program's shardings."""
    cfg, state0, _, ref_met = reference_run
    policy, memory = _modules()
    mesh = parallel.make_mesh(shape=(1, 2, 4))
    program = train_program(cfg, policy, memory, mesh, 10, rows=B)
    state = program.init_state(policy, memory)
    for a, b in zip(_leaves(state0), _leaves(state)):
        np.testing.assert_array_equal(a, b)
    batch = program.abstract_batch(P, N)
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        k: (v.shape, v.dtype) for k, v in _batch().items()}
    assert all(batch[k].sharding == program.batch_shardings[k] for k in batch)
    assert program.batch_shardings["adv_B"].spec == jax.sharding.PartitionSpec("fsdp")  # rows over the batch axes
    assert program.batch_shardings["response_BxN"].spec == jax.sharding.PartitionSpec("fsdp", None)
    new, met = program.update(state, _batch())
    assert all(x.is_deleted() for x in jax.tree.leaves(state.policy))  # donated
    np.testing.assert_allclose(float(met["loss"]), float(ref_met["loss"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(met["grad_norm"]), float(ref_met["grad_norm"]), rtol=1e-5)
    for x, s in zip(jax.tree.leaves(new), jax.tree.leaves(program.state_shardings)):
        assert x.sharding.is_equivalent_to(s, x.ndim)
    assert int(new.step) == 1


def test_program_on_one_device_is_the_plain_jitted_step(reference_run):
    """On a one-device mesh the program's jitted step gives bit for bit what jax.jit(step) gives."""
    cfg, _, ref_new, ref_met = reference_run
    policy, memory = _modules()
    program = train_program(cfg, policy, memory, parallel.single_device_mesh(), 10, rows=B)
    new, met = program.jitted(program.init_state(policy, memory), _batch())
    for a, b in zip(_leaves(ref_new), _leaves(new)):
        np.testing.assert_array_equal(a, b)
    assert float(met["loss"]) == float(ref_met["loss"])
