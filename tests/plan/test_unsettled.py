"""A `--layers 1,N` plan whose peak-setting number shrank from the 1-layer compile has no full-depth projection:
under HBM it is "unsettled" (fits None, advice to compile deeper), over HBM it still does not fit; a shrinking
number that sets no peak (an engine step lighter than another) or a shrink between deeper compiles leaves the
verdict alone."""
from rlvr_jax.plan.report import format_report, judge, not_affine
from rlvr_jax.plan.topologies import CHIPS

GiB = 2 ** 30
V5E = CHIPS["v5e"]


def _report(train_peak: float, shrank: str = "", steps=None, depths=(1, 2)):
    steps = steps or {"decode_chunk": {"temp": 1 * GiB}, "admit": {"temp": 0.3 * GiB}}
    method = (f"compiled at {depths[0]} and {depths[1]} layers, compiler numbers extrapolated affinely to 36 layers"
              + (f" (not affine, shown at {depths[1]} layers: {shrank})" if shrank else ""))
    return {"config": {"model": "qwen3-4b", "policy_params": 4e9, "memory_params": 0, "variant": "grpo",
                       "prompts_per_step": 16, "group_size": 8, "prompt_len": 512, "max_new_tokens": 2048,
                       "micro_batches": 16, "mini_batches": 1, "remat": True, "param_dtype": "bfloat16"},
            "target": {"topology": "v5e:1x1", "slice": "v5e-1", "chips": 1, "chip": "v5e", "hbm_bytes": V5E.hbm_bytes,
                       "mesh": {"data": 1, "fsdp": 1, "tensor": 1}},
            "method": method,
            "bytes_per_chip": {"params": 8 * GiB, "optimizer": 0.5 * GiB, "train_state": 8.7 * GiB,
                               "train_temp": 3 * GiB, "kv_cache": 3 * GiB, "sample_temp": 1 * GiB},
            "train_step": {"memory": {"temp": 3 * GiB}, "compile_s": 1.0, "xla_flops_per_chip": None},
            "sampler": {"memory": steps, "compile_s": 1.0, "sample_params_copy": 0},
            "engine": {"slots": 10, "store": 2, "slots_kv": GiB, "store_kv": GiB, "waves": 13},
            "flops_per_step": {"train": 1e15, "sample": 1e15, "total": 2e15},
            "decode_bytes_per_step": 1e9, "peak_bytes_per_chip": {"train": train_peak * GiB, "sample": 13 * GiB,
                                                                   "max": max(train_peak, 13) * GiB}}


def test_a_shrinking_train_step_under_hbm_is_unsettled():
    rep = judge(_report(12.4, "train.temp, train.peak"), V5E)
    assert not_affine(rep) == ["train.temp", "train.peak"]
    assert rep["fits"] is None and "--layers 2,4" in rep["suggestions"][0]
    assert "UNSETTLED (not extrapolable)" in format_report(rep)


def test_a_lower_bound_over_hbm_still_does_not_fit():
    rep = judge(_report(17.0, "train.temp, train.peak"), V5E)
    assert rep["fits"] is False and "compile deeper" not in " ".join(rep["suggestions"])


def test_only_the_number_that_sets_a_peak_matters():
    assert judge(_report(12.4), V5E)["fits"] is True
    assert judge(_report(12.4, "sample.admit.temp"), V5E)["fits"] is True  # decode_chunk is the heavier step
    assert judge(_report(12.4, "sample.decode_chunk.temp"), V5E)["fits"] is None
    assert judge(_report(12.4, "train.temp, train.peak", depths=(4, 8)), V5E)["fits"] is True  # shrinking goes on
