"""`rlvr-compile`: a small config compiled ahead of time for an abstract TPU slice (libtpu, no TPU).

The report's analytic numbers are checked against closed forms and against what the compiler says, a
config that does not fit says so with suggestions, and the layer-extrapolation fallback reproduces a
real compile.
"""
import json

import jax
import pytest

from rlvr_jax.plan import topologies

pytestmark = pytest.mark.skipif(topologies.find_libtpu() is None,
                                reason="libtpu is not installed (pip install 'libtpu==0.0.42.*'): "
                                       "no TPU compiler to compile for an abstract topology")

CONFIG = '''
from rlvr_jax.config import base_config
def get_config():
    cfg = base_config()
    cfg.data.source, cfg.model.source = "embedded", "embedded"
    cfg.model.hidden_size, cfg.model.intermediate_size, cfg.model.num_layers = 128, 256, 2
    cfg.model.num_heads, cfg.model.num_kv_heads = 4, 4
    cfg.rollout.group_size, cfg.rollout.prompts_per_step, cfg.rollout.max_new_tokens = 2, 4, 8
    cfg.rollout.prompt_buckets = "8"
    cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor = 1, -1, 1
    return cfg
'''


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from rlvr_jax import cli
    d = tmp_path_factory.mktemp("aot")
    (d / "small.py").write_text(CONFIG)
    out = d / "plan.json"
    cli.compile_main(["rlvr-compile", f"--config={d / 'small.py'}", "--topology=v5e:2x2", f"--out={out}"])
    return json.loads(out.read_text())


def _small_cfg():
    from rlvr_jax.config import validate
    ns = {}
    exec(CONFIG, ns)  # noqa: S102 - our own config text
    return validate(ns["get_config"]())


def test_topology_names():
    assert topologies.resolve_topology("v5p-32") == ("v5p:2x2x4", topologies.CHIPS["v5p"])
    assert topologies.resolve_topology("v5e:4x4")[0] == "v5e:4x4" and topologies.num_chips("v5e:4x4") == 16
    assert topologies.slice_name("v6e:2x4") == "v6e-8"
    assert topologies.resolve_topology("v5e-1")[0] == "v5e:1x1" and topologies.num_chips("v5e:1x1") == 1
    with pytest.raises(ValueError, match="--topology"):
        topologies.resolve_topology("v9x-8")


def test_a_single_chip_is_a_topology():
    """v5e-1 (a Colab TPU runtime) is less than one libtpu host: planned with one-chip host bounds."""
    devs, topo, chip = topologies.topology_devices("v5e-1")
    assert topo == "v5e:1x1" and len(devs) == 1 and chip.name == "v5e"


def test_small_config_compiles_for_v5e_slice(report):
    t = report["target"]
    assert t["topology"] == "v5e:2x2" and t["chips"] == 4 and t["chip"] == "v5e"
    assert t["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
    assert t["hbm_bytes"] == int(15.75 * 2**30) and report["fits"] is True and report["suggestions"] == []
    b = report["bytes_per_chip"]
    # closed forms: f32 params; 'embed' (128) split 4 ways over fsdp; norms and the vocab axis replicated
    from rlvr_jax.plan.aot import policy_model_config
    pc = policy_model_config(_small_cfg())
    d, f, V, L = 128, 256, pc.vocab_size, 2
    sharded = V * d + L * (4 * d * d + 3 * d * f)  # embedding, q/k/v/o, gate/up/down: all have 'embed'
    replicated = L * 2 * d + d  # layer norms and the final norm (llama family: no q/k norms)
    assert pc.num_params() == sharded + replicated
    assert b["params"] == 4 * (sharded // 4 + replicated)
    assert 0 < b["optimizer"] - 2 * b["params"] <= 16  # Adam mu and nu like the params, plus int32 counts
    rows, S = 4 * 2, 8 + 8
    assert b["kv_cache"] == 2 * L * (rows // 4) * S * 4 * 32 * 4  # rows split over fsdp, f32
    tm = report["train_step"]["memory"]
    assert tm["argument"] >= b["train_state"] and tm["temp"] >= 0  # tiny temporaries may all sit in VMEM
    assert report["peak_bytes_per_chip"]["max"] >= b["train_state"]
    assert report["peak_bytes_per_chip"]["sample"] >= b["train_state"] + b["kv_cache"]


def test_flops_match_closed_form_and_compiler(report):
    from rlvr_jax.plan.accounting import forward_flops
    from rlvr_jax.plan.aot import policy_model_config
    pc = policy_model_config(_small_cfg())
    T = 8 + 8 - 1
    # the 4 prompts run once each (shared by their group of 2), no LM head; the 8 responses attend T slots
    train = 3 * (forward_flops(pc, 4 * 8, 8, 0) + forward_flops(pc, 8 * 8, T))
    assert report["flops_per_step"]["train"] == pytest.approx(train)
    # XLA's count of the same update (all chips) agrees with the analytic one within 25%
    xla = report["train_step"]["xla_flops_per_chip"] * report["target"]["chips"]
    assert 0.75 < xla / train < 1.25, (xla, train)
    assert report["time"]["step_s_at_peak"] == pytest.approx(report["flops_per_step"]["total"] / (4 * 197e12))


def test_a_config_that_does_not_fit_says_so(report):
    from rlvr_jax.plan.report import judge
    from rlvr_jax.plan.report import format_report
    tiny_chip = topologies.Chip("tiny", 64 * 1024, 1e12, 1e11, 1)
    report = json.loads(json.dumps(report))
    report["bytes_per_chip"]["train_temp"] = 48 * 1024  # activations dominating the (tiny) chip
    rep = judge(report, tiny_chip)
    assert rep["fits"] is False and rep["hbm_use"] > 1
    text = " ".join(rep["suggestions"])
    assert "model.remat=True" in text and "micro_batches" in text and "larger slice" in text
    assert "DOES NOT FIT" in format_report(rep)


@pytest.mark.slow
def test_layer_extrapolation_reproduces_a_full_compile():
    """The fallback for slow machines: compile at 3 and 4 layers, extrapolate to 6, compare with 6 compiled.

    Arguments, outputs (the train state) and XLA's FLOPs are affine in depth. The temporaries are not at
    this small size (XLA keeps some in on-chip VMEM, more of them spill to HBM as depth grows), so only
    their growth is checked; docs/aot.md says the same of extrapolated plans."""
    from rlvr_jax.plan import aot
    cfg = _small_cfg()
    cfg.model.hidden_size, cfg.model.intermediate_size = 512, 1024
    cfg.rollout.max_new_tokens = 120
    target = aot.target_for("v5e:2x2")
    mesh = aot.make_mesh_for(cfg, target.devices)
    pc = aot.policy_model_config(cfg)
    nums = {n: aot.compile_numbers(cfg, mesh, pc.replace(num_layers=n), None, sampler=False) for n in (3, 4, 6)}
    est = aot.extrapolate(nums[3], nums[4], 3, 4, 6)
    for k in ("argument", "output"):
        assert est["train"][k] == pytest.approx(nums[6]["train"][k], rel=0.02), k
    assert est["xla_flops"] == pytest.approx(nums[6]["xla_flops"], rel=0.02)
    temps = [nums[n]["train"]["temp"] for n in (3, 4, 6)]
    assert 0 <= temps[0] <= temps[1] <= temps[2] and temps[2] > 0, temps  # small ones may all sit in VMEM


def test_extrapolation_never_shrinks_and_says_so():
    """A compiler number that shrinks with depth is kept at the deeper value and listed, not extrapolated
    below zero (a real 4B plan's temp went -10.8 GiB when extrapolated from 2 and 4 layers)."""
    from rlvr_jax.plan.aot import extrapolate
    lo = {"train": {"temp": 30.0, "argument": 10.0, "oom": None}, "xla_flops": 2.0, "sample": {"temp": 5.0},
          "train_s": 9.0}
    hi = {"train": {"temp": 20.0, "argument": 14.0, "oom": None}, "xla_flops": 4.0, "sample": {"temp": 5.0},
          "train_s": 7.0}  # compile seconds may shrink too: not a memory figure, not listed
    out = extrapolate(lo, hi, 2, 4, 36)
    assert out["train"]["temp"] == 20.0 and out["not_affine"] == ["train.temp"]
    assert out["train"]["argument"] == pytest.approx(10.0 + 2.0 * 34) and out["xla_flops"] == pytest.approx(36.0)
    assert out["sample"]["temp"] == 5.0


def test_compiler_out_of_hbm_becomes_numbers():
    from rlvr_jax.plan.aot import _compile_or_oom

    def refuse():
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required "
                                         "for HLO temporaries (54.45G) exceeds available HBM (15.75G).")
    compiled, mem, _ = _compile_or_oom(refuse)
    assert compiled is None and mem["temp"] == int(54.45 * 2**30) and "54.45G" in mem["oom"]

    def refuse_total():
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in "
                                         "memory space hbm. Used 16.27G of 15.75G hbm. Exceeded hbm capacity by 538.42M.")
    compiled, mem, _ = _compile_or_oom(refuse_total)
    assert compiled is None and mem["temp"] == int(16.27 * 2**30)

    def other():
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")
    with pytest.raises(jax.errors.JaxRuntimeError):
        _compile_or_oom(other)


def test_extrapolated_plan_keeps_what_each_depth_compiled_to():
    """`--layers l1,l2`: the report carries the compiler's numbers at both depths, and its figures are their
    affine extrapolation to the model's depth (or the deeper value where a number shrank)."""
    from rlvr_jax.plan import aot
    cfg = _small_cfg()
    cfg.model.num_layers = 4
    rep = aot.plan(cfg, aot.target_for("v5e:2x2"), sampler=False, layers=(1, 2))
    at = rep["compiled_at_depth"]
    assert set(at) == {"1", "2"} and "compiled at 1 and 2 layers" in rep["method"]
    a, b = at["1"]["train"]["argument"], at["2"]["train"]["argument"]
    assert 0 < a < b and rep["train_step"]["memory"]["argument"] == pytest.approx(a + (b - a) * 3)


@pytest.mark.parametrize("topology,chip", [("v5e:2x2", "v5e"), ("v5p:2x2x1", "v5p"), ("v6e:2x2", "v6e")])
def test_chip_hbm_is_what_the_compiler_makes_available(topology, chip):
    """Fits are judged against the HBM libtpu lets a program use: a program far too big for one chip is
    refused with 'exceeds available HBM (X)', and X is the chip table's figure."""
    import re

    import jax.numpy as jnp
    from jax.sharding import SingleDeviceSharding

    from rlvr_jax.plan import aot
    dev = SingleDeviceSharding(aot.target_for(topology).devices[0])
    n = 200 * 2 ** 30 // 4
    f = jax.jit(lambda x: jnp.cumsum(jnp.broadcast_to(x, (n,)) * 2.0)[::1000], out_shardings=dev)
    with pytest.raises(Exception) as e:
        f.lower(jax.ShapeDtypeStruct((), jnp.float32, sharding=dev)).compile()
    m = re.search(r"available HBM \(([\d.]+)G\)", str(e.value))
    assert m, str(e.value)[:300]
    assert topologies.CHIPS[chip].hbm_bytes == int(float(m.group(1)) * 2 ** 30)
