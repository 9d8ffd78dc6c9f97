"""Checkpointer: bit-exact round trips into the live TrainState tree, keep-N, async, corrupt-step fallback,
structure mismatch errors, sharded restore; Preemption catches SIGTERM."""
import glob
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rlvr_jax import parallel
from rlvr_jax.models import create, memory_config, tiny
from rlvr_jax.train.checkpoint import (Checkpointer, CheckpointError, CheckpointFallbackWarning, Preemption,
                                       fingerprints, flat_leaves)
from rlvr_jax.train.state import init_state, train_state_shardings


def _make_state(with_memory: bool, with_ref: bool, seed: int = 0):
    pcfg = tiny("qwen2", vocab_size=32, num_layers=1)
    policy = create(pcfg, seed=0)
    memory = create(memory_config(pcfg, width_ratio=0.5, num_layers=1), seed=1) if with_memory else None
    ptx, mtx = optax.adam(1e-3), optax.adam(1e-3)
    state, _, _ = init_state(policy, memory, ptx, mtx, seed=seed, keep_reference=with_ref)
    # one optimiser update so the moments, counts and params are all non-trivial
    key = jax.random.key(seed + 7)
    g = jax.tree.map(lambda p: jax.random.normal(key, p.shape, p.dtype), state.policy)
    upd, popt = ptx.update(g, state.policy_opt, state.policy)
    state = state.replace(policy=optax.apply_updates(state.policy, upd), policy_opt=popt,
                          step=jnp.int32(5), nonfinite=jnp.int32(1),
                          rng=jax.random.key_data(jax.random.key(seed + 3)))
    return state


@pytest.fixture(scope="module")
def states():
    return {"full": _make_state(True, True), "bare": _make_state(False, False)}


def _bits(x):
    return np.ascontiguousarray(np.asarray(x)).tobytes()


def _assert_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.shape == y.shape and x.dtype == y.dtype
        assert _bits(x) == _bits(y)


def _bump(state, k):
    """A distinct state per step (every policy leaf changed)."""
    return state.replace(step=jnp.int32(k), policy=jax.tree.map(lambda p: p + k, state.policy))


@pytest.mark.parametrize("variant", ["full", "bare"])
def test_round_trip_bit_identical(tmp_path, states, variant):
    state = states[variant]
    extra = {"data": {"cursor": 17, "epoch": np.int64(2)}, "metrics": {"reward": np.float32(0.25)},
             "config": {"algo": {"variant": "iac"}}}
    with Checkpointer(str(tmp_path), async_save=False) as ck:
        assert ck.restore(jax.eval_shape(lambda: state)) is None  # empty folder
        assert ck.save(5, state, extra)
        step, got, got_extra = ck.restore(jax.eval_shape(lambda: state))
    assert step == 5
    _assert_identical(got, state)
    assert got_extra == {"data": {"cursor": 17, "epoch": 2}, "metrics": {"reward": 0.25},
                         "config": {"algo": {"variant": "iac"}}}
    assert isinstance(got.policy, nnx.State)
    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    assert all(isinstance(v, nnx.Param) for v in jax.tree.leaves(got.policy, is_leaf=is_var))
    assert (got.memory is None) == (variant == "bare") and (got.ref is None) == (variant == "bare")
    # the restored tree works where the live one does: same treedef means jit caches hit
    assert jax.tree.structure(jax.tree.map(jnp.add, got, state)) == jax.tree.structure(state)


def test_keep_n_and_skip_existing(tmp_path, states):
    state = states["bare"]
    with Checkpointer(str(tmp_path), keep=2, async_save=False) as ck:
        for k in (1, 2, 3, 4):
            assert ck.save(k, _bump(state, k), {"k": k})
        assert ck.all_steps() == [3, 4] and ck.latest_step() == 4
        assert not ck.save(4, state, {})  # existing step: skipped, not overwritten
        step, got, extra = ck.restore(jax.eval_shape(lambda: state), step=3)
    assert step == 3 and extra == {"k": 3}
    _assert_identical(got, _bump(state, 3))
    assert sorted(os.listdir(tmp_path)) == ["3", "4"]


def test_async_save_then_wait_and_tmp_dirs_ignored(tmp_path, states):
    state = states["full"]
    ck = Checkpointer(str(tmp_path), async_save=True)
    ck.save(1, _bump(state, 1), {"k": 1})
    live = jax.tree.map(jnp.copy, _bump(state, 2))
    ck.save(2, live, {"k": 2})
    jax.tree.map(lambda x: x.delete(), live)  # the loop donates the state right after save() returns
    ck.wait()
    # an unfinished save (killed mid-write) leaves only a temporary folder: it never counts
    junk = tmp_path / "9.orbax-checkpoint-tmp-123456"
    junk.mkdir()
    (junk / "garbage").write_bytes(b"\x00" * 10)
    assert ck.latest_step() == 2 and ck.all_steps() == [1, 2]
    step, got, extra = ck.restore(jax.eval_shape(lambda: state))
    ck.close()
    assert step == 2 and extra == {"k": 2}
    _assert_identical(got, _bump(state, 2))


def _largest_data_file(step_dir):
    files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
             if os.path.isfile(f)]
    return max(files, key=os.path.getsize)


def _truncate(d):
    f = _largest_data_file(d)
    with open(f, "r+b") as fh:
        fh.truncate(os.path.getsize(f) // 2)


def _garbage_data(d):  # same size, different bytes
    f = _largest_data_file(d)
    n = os.path.getsize(f)
    with open(f, "r+b") as fh:
        fh.seek(n // 2)
        fh.write(np.random.default_rng(0).bytes(n - n // 2))


def _delete_data(d):
    os.remove(_largest_data_file(d))


def _garbage_extra(d):
    with open(os.path.join(d, "extra", "metadata"), "wb") as fh:
        fh.write(b"{not json")


def _silent_bit_rot(d):
    """Data that reads back fine but is not what was saved (the store has no checksums of its own):
    simulated by changing the recorded fingerprint of one array."""
    fn = os.path.join(d, "extra", "metadata")
    with open(fn) as fh:
        extra = json.load(fh)
    name = next(iter(extra["_ckpt"]["leaves"]))
    extra["_ckpt"]["leaves"][name][2] ^= 1
    with open(fn, "w") as fh:
        json.dump(extra, fh)


def _delete_manifest(d):
    os.remove(os.path.join(d, "state", "manifest.ocdbt"))


@pytest.mark.parametrize("corrupt", [_truncate, _garbage_data, _delete_data, _garbage_extra, _delete_manifest,
                                     _silent_bit_rot])
def test_corrupt_latest_falls_back_with_warning(tmp_path, states, corrupt):
    state = states["bare"]
    abstract = jax.eval_shape(lambda: state)
    with Checkpointer(str(tmp_path), keep=3, async_save=False) as ck:
        ck.save(1, _bump(state, 1), {"k": 1})
        ck.save(2, _bump(state, 2), {"k": 2})
        corrupt(str(tmp_path / "2"))
        with pytest.warns(CheckpointFallbackWarning, match="step 2 .*unreadable"):
            step, got, extra = ck.restore(abstract)
        assert step == 1 and extra == {"k": 1}
        _assert_identical(got, _bump(state, 1))
        # the bad step was moved aside: the resumed run can write step 2 again
        assert ck.all_steps() == [1] and (tmp_path / "2.corrupt").is_dir()
        if corrupt is _truncate:
            assert ck.save(2, _bump(state, 2), {"k": 2})
            step, got, _ = ck.restore(abstract)
            assert step == 2
            _assert_identical(got, _bump(state, 2))


def test_only_checkpoint_corrupt_gives_none_and_explicit_step_raises(tmp_path, states):
    state = states["bare"]
    abstract = jax.eval_shape(lambda: state)
    with Checkpointer(str(tmp_path), async_save=False) as ck:
        ck.save(3, state, {})
        _truncate(str(tmp_path / "3"))
        with pytest.raises(CheckpointError, match="step 3 .*unreadable"):
            ck.restore(abstract, step=3)
        with pytest.warns(CheckpointFallbackWarning, match="step 3"):
            assert ck.restore(abstract) is None


def test_structure_mismatch_is_an_error_not_corruption(tmp_path, states):
    with Checkpointer(str(tmp_path), async_save=False) as ck:
        ck.save(1, states["full"], {})
        with pytest.raises(CheckpointError, match="does not match the current one"):
            ck.restore(jax.eval_shape(lambda: states["bare"]))
        wrong = jax.eval_shape(lambda: states["full"].replace(step=jnp.zeros((2,), jnp.int32)))
        with pytest.raises(CheckpointError, match=r"step is int32\[\] in the checkpoint"):
            ck.restore(wrong)
        assert ck.all_steps() == [1]  # nothing moved aside


def test_sharded_restore_places_leaves(tmp_path, states):
    state = states["bare"]
    mesh = parallel.make_mesh(shape=(2, 2, 2))
    shardings = train_state_shardings(state, mesh, parallel.TRAIN_RULES)
    sharded = jax.device_put(state, shardings)
    with Checkpointer(str(tmp_path), async_save=False) as ck:
        ck.save(7, sharded, {})
        # the loop's pattern: abstract leaves carrying their shardings
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
        _, got, _ = ck.restore(abstract)
        # or plain abstract leaves plus a shardings tree
        _, got2, _ = ck.restore(jax.eval_shape(lambda: state), shardings=shardings)
    want = jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
    for g in (got, got2):
        _assert_identical(g, state)
        assert [x.sharding for x in jax.tree.leaves(g)] == want
    assert any(len(s.device_set) == 8 and not s.is_fully_replicated for s in want)  # something really is split


def test_fingerprint_sees_single_bit_flips_and_swaps():
    x = jnp.arange(12, dtype=jnp.float32).reshape(3, 4) / 7
    y = x.at[1, 2].set(jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(x[1, 2], jnp.uint32) ^ 1,
                                                     jnp.float32))
    z = x[::-1]
    fp = fingerprints({"x": x, "y": y, "z": z, "b": jnp.ones((3,), jnp.bfloat16), "k": jnp.ones((2,), bool)})
    assert len({fp["x"], fp["y"], fp["z"]}) == 3
    assert list(flat_leaves({"a": {"b": x}, "c": None, "d": [z]})) == ["a/b", "d/0"]


def test_reserved_extra_key(tmp_path, states):
    with Checkpointer(str(tmp_path), async_save=False) as ck:
        with pytest.raises(CheckpointError, match="_ckpt"):
            ck.save(1, states["bare"], {"_ckpt": 1})


def test_preemption_catches_sigterm_and_restores_handler():
    before = signal.getsignal(signal.SIGTERM)
    with Preemption() as pre:
        assert not pre.requested and not pre.should_stop()
        os.kill(os.getpid(), signal.SIGTERM)
        # the handler runs at the next bytecode boundary of the main thread
        for _ in range(1000):
            if pre.requested:
                break
        assert pre.requested and pre.signum == signal.SIGTERM and pre.should_stop()
    assert signal.getsignal(signal.SIGTERM) == before
