"""The planner counts the continuous engine: with it, the sampling phase holds S slots of P + N and a store of
Q prompts of P (not every row), analytically on the 8 fake CPU devices, and `rlvr-compile` compiles the
engine's own steps for an abstract TPU slice (libtpu; skipped without it)."""
import math

import jax
import pytest

from rlvr_jax.config import ConfigError, base_config, validate
from rlvr_jax.plan import aot, topologies
from rlvr_jax.plan.engine_plan import engine_shape
from rlvr_jax.plan.reuse import take_train
from rlvr_jax.sampling.engine import kv_bytes, slots_for_budget

N_PROMPTS, G, N, P = 8, 4, 24, 8  # 32 rows of 8 + 24 tokens


def _cfg(**rollout):
    cfg = base_config()
    cfg.data.source, cfg.model.source = "embedded", "embedded"
    cfg.model.hidden_size, cfg.model.intermediate_size, cfg.model.num_layers = 64, 128, 2
    cfg.model.num_heads, cfg.model.num_kv_heads = 4, 4
    cfg.rollout.group_size, cfg.rollout.prompts_per_step, cfg.rollout.max_new_tokens = G, N_PROMPTS, N
    cfg.rollout.prompt_buckets = str(P)
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 1, -1, 1
    for k, v in rollout.items():
        cfg.rollout[k] = v
    return validate(cfg)


def _plan(cfg):
    return aot.plan(cfg, aot.target_for(None), analytic=True)


@pytest.fixture(scope="module")
def static():
    return _plan(_cfg(engine="static"))


def test_engine_kv_is_slots_and_store_not_rows(static):
    rep = _plan(_cfg(engine="continuous", slots=8))
    pc = aot.policy_model_config(_cfg())
    e, devices = rep["engine"], len(jax.devices())
    # ceil(8 / G) + 1 = 3 prompts, rounded up to one per device: slots and store are split over the batch axes
    assert (e["slots"], e["store"], e["waves"]) == (8, devices * math.ceil(min(N_PROMPTS, 8 // G + 1) / devices), 4)
    assert e["slots_kv"] == kv_bytes(pc, 8 // devices, P + N) and e["store_kv"] == kv_bytes(pc, e["store"] // devices, P)
    assert rep["bytes_per_chip"]["kv_cache"] == e["slots_kv"] + e["store_kv"] == e["kv"]
    assert static["bytes_per_chip"]["kv_cache"] == kv_bytes(pc, N_PROMPTS * G // devices, P + N)
    assert rep["bytes_per_chip"]["kv_cache"] < static["bytes_per_chip"]["kv_cache"]
    assert rep["peak_bytes_per_chip"]["sample"] < static["peak_bytes_per_chip"]["sample"]
    assert rep["peak_bytes_per_chip"]["train"] == static["peak_bytes_per_chip"]["train"]  # the engine is sampling only
    assert "engine" not in static


def test_kv_budget_sets_slots_per_device_and_auto_falls_back_to_static(static):
    pc = aot.policy_model_config(_cfg())
    budget_mb = 3 * kv_bytes(pc, 1, P + N) / 2**20  # about three slots per device (less the store)
    per_device = slots_for_budget([pc], budget_mb * 2**20, P + N, G, P, len(jax.devices()))
    rep = _plan(_cfg(engine="auto", kv_budget_mb=budget_mb))
    assert 0 < per_device < 4 and rep["engine"]["slots"] == per_device * len(jax.devices())
    assert rep["bytes_per_chip"]["kv_cache"] < static["bytes_per_chip"]["kv_cache"]
    # auto with at least as many slots as rows runs the static sampler: so does the plan
    cfg = _cfg(engine="auto", slots=N_PROMPTS * G)
    assert engine_shape(cfg, (pc,), aot.make_mesh_for(cfg, jax.devices()), None) is None
    assert _plan(cfg)["bytes_per_chip"]["kv_cache"] == static["bytes_per_chip"]["kv_cache"]


def test_a_budget_too_small_for_one_slot_is_a_config_error():
    with pytest.raises(ConfigError, match="kv_budget_mb"):
        _plan(_cfg(engine="continuous", kv_budget_mb=1e-6))


def test_train_from_takes_only_the_same_train_step(static):
    rep = dict(static, method="compiled at full depth",
               train_step={"memory": {"temp": 5, "peak": 7}, "xla_flops_per_chip": 1.0, "compile_s": 2.0})
    nums = {"train": {}, "sample": {"temp": 1}}
    take_train(nums, rep, _cfg(engine="continuous", slots=8), rep["target"]["topology"], None)
    assert nums["train"] == {"temp": 5, "peak": 7} and nums["sample"] == {"temp": 1}
    with pytest.raises(ConfigError, match="micro_batches"):
        cfg = _cfg()
        cfg.algo.micro_batches = 2
        take_train({}, rep, cfg, rep["target"]["topology"], None)
    with pytest.raises(ConfigError, match="method"):
        take_train({}, rep, _cfg(), rep["target"]["topology"], (2, 4))


@pytest.mark.skipif(topologies.find_libtpu() is None, reason="libtpu is not installed: no TPU compiler")
def test_engine_steps_compile_for_an_abstract_tpu_slice(tmp_path):
    cfg = _cfg(engine="continuous", slots=8, decode_chunk=4)
    rep = aot.plan(cfg, aot.target_for("v5e:2x2"))
    mem = rep["sampler"]["memory"]
    assert set(mem) == {"decode_chunk", "admit", "prefill_store"}
    for name, m in mem.items():
        assert m["argument"] > 0 and m["alias"] > 0, name  # the donated slots (or store) come back in place
    e, b = rep["engine"], rep["bytes_per_chip"]
    assert rep["peak_bytes_per_chip"]["sample"] >= b["train_state"] + e["resident"]
    assert e["slots"] == 8 and rep["fits"] is True
