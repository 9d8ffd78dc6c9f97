"""`rlvr-compile` plans LoRA runs: the train state is the frozen base + adapters (no reference copy, moments of
the adapters only), the compiled step is the LoRA one, the sampler runs what the loops sample (base with
adapters, or merged kernels), and the analytic mode counts the same bytes. CPU only: the 8 fake devices of
tests/conftest.py, a tiny model, no libtpu."""
import pytest

from tests.plan.plan_helpers import tiny_plan_cfg


def _cfg(**lora):
    return tiny_plan_cfg(model=lora)


@pytest.fixture(scope="module")
def plans():
    from rlvr_jax.plan import aot
    target = aot.target_for(None)
    return {"full": aot.plan(_cfg(), target, sampler=False), "lora": aot.plan(_cfg(lora_rank=2), target),
            "merged": aot.plan(_cfg(lora_rank=2, lora_targets="q_proj,v_proj", lora_sampling="merged"), target,
                               analytic=True)}


def test_lora_plan_splits_base_adapters_and_moments(plans):
    from rlvr_jax.plan import aot
    full, lo = plans["full"]["bytes_per_chip"], plans["lora"]["bytes_per_chip"]
    assert "base" not in full and lo["adapters"] > 0
    assert lo["optimizer"] < full["optimizer"] / 2  # AdamW moments of the adapters only
    assert 0 <= lo["optimizer"] - 2 * lo["adapters"] < 64  # two float32 moments per float32 adapter (+ counts)
    # the base is the whole policy of the full plan (same model, same layout); held once: no reference copy
    ref = full["params"] / 2  # full: policy + its reference copy (kl_coef > 0)
    assert lo["base"] == pytest.approx(ref) and lo["params"] == lo["base"] + lo["adapters"]
    assert lo["train_state"] < full["train_state"]
    info = plans["lora"]["config"]["lora"]
    assert info["rank"] == 2 and len(info["targets"]) == 7 and info["sampling"] == "on_the_fly"
    from rlvr_jax.plan.accounting import projection_dims
    dims = projection_dims(aot.policy_model_config(_cfg()))
    assert info["adapter_params"] == 2 * sum(i + o for i, o in dims.values())  # rank 2, one layer


def test_the_compiled_step_is_the_lora_one(plans):
    """The compiled train step's arguments are the LoRA state (smaller than the full one's), its output the
    same state again; the sampler compiled and the peak covers both phases."""
    full, lo = plans["full"], plans["lora"]
    fa, la = full["train_step"]["memory"]["argument"], lo["train_step"]["memory"]["argument"]
    assert 0 < la < fa
    assert lo["sampler"]["memory"]["argument"] > 0 and lo["peak_bytes_per_chip"]["sample"] > 0
    assert lo["flops_per_step"]["train"] < full["flops_per_step"]["train"]  # the base's weight gradients skipped


def test_merged_sampling_counts_the_merged_copy(plans):
    m = plans["merged"]
    b = m["bytes_per_chip"]
    assert b["merged_copy"] == b["base"]  # the plain model's params, in the train layout
    assert plans["lora"]["bytes_per_chip"]["merged_copy"] == 0
    assert m["sampler"]["sample_params_copy"] >= b["merged_copy"]


def test_analytic_mode_counts_lora_too(plans):
    from rlvr_jax.plan import aot
    from rlvr_jax.plan.report import format_report
    target = aot.target_for(None)
    lo = aot.plan(_cfg(lora_rank=2), target, analytic=True)
    full = aot.plan(_cfg(), target, analytic=True)
    for k in ("base", "adapters", "optimizer", "train_state"):
        assert lo["bytes_per_chip"][k] == plans["lora"]["bytes_per_chip"][k], k
    # gradients are the adapters' only
    assert lo["peak_bytes_per_chip"]["train"] < full["peak_bytes_per_chip"]["train"]
    text = format_report(lo)
    assert "LoRA rank 2" in text and "frozen base" in text and "optimiser states (the adapters' moments)" in text


def test_the_planners_lora_program_is_the_loops():
    """The loop builds its LoRA program from live modules (`train.build`: adapters added after building), the
    planner from abstract ones: same state, shardings and lowered train step, and the same sampling policy."""
    import jax

    from rlvr_jax.plan import aot
    from rlvr_jax.train.build import build
    from rlvr_jax.train.program import train_program, updates_per_run
    cfg = _cfg(lora_rank=2, lora_sampling="merged")
    mesh = aot.make_mesh_for(cfg, jax.devices())
    planned = aot.program_for(cfg, mesh, aot.policy_model_config(cfg), None)
    built = build(cfg)
    live = train_program(cfg, built.policy, built.memory, mesh, updates_per_run(cfg))
    assert planned.use_lora and live.use_lora and planned.abstract_state.ref is None
    assert jax.tree.leaves(live.state_shardings) == jax.tree.leaves(planned.state_shardings)
    assert jax.tree.leaves(live.abstract_state) == jax.tree.leaves(planned.abstract_state)
    P, N = aot.prompt_len(cfg), cfg.rollout.max_new_tokens
    texts = [p.jitted.lower(p.abstract_state, p.abstract_batch(P, N)).as_text() for p in (live, planned)]
    assert texts[0] == texts[1]
    (lg, lp), (pg, pp) = live.abstract_sampling_policy(), planned.abstract_sampling_policy()
    assert lg == pg and jax.tree.leaves(lp) == jax.tree.leaves(pp)
    assert not any("lora" in str(k) for k, _ in jax.tree_util.tree_flatten_with_path(pp)[0])  # merged: plain graph
