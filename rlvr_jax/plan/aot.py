"""Ahead-of-time planning (`rlvr-compile`): compile the real-size train step and sampler from shapes only.

No weights are allocated: the model, the TrainState and the batch are `jax.eval_shape` structures with
shardings, lowered with `jax.jit(...).lower(...)` and compiled either for the local devices or for an
abstract TPU slice from libtpu (`--topology v5p-32` or `v5p:2x2x4`, several comma-separated). The
report gives per chip: parameter, optimiser, activation (compiler temp) and KV-cache bytes, the peak of
the two phases (update; sampling with the train state resident) against the chip's HBM, FLOPs per RL
step and the step time implied at peak (and the decode time implied by HBM bandwidth).

The train step compiled is the loops' own: `train.program.train_program(...)` wires it once, and the
plan lowers its `jitted` from the program's abstract state and batch.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from rlvr_jax import models
from rlvr_jax.config import ConfigError, int_list
from rlvr_jax.parallel import AXES, TRAIN_RULES, batch_shardings, resolve_sizes, rules_for, state_shardings
from rlvr_jax.plan.accounting import chip_bytes, kv_cache_bytes, prompt_len, step_flops
from rlvr_jax.plan.engine_plan import engine_bytes, engine_programs, engine_shape, sampling_config, working_bytes
from rlvr_jax.plan.report import format_report, format_sweep, judge
from rlvr_jax.plan.reuse import take_train, train_config
from rlvr_jax.plan.topologies import chip_of_device, slice_name, topology_devices
from rlvr_jax.train.program import TrainProgram, train_program, with_shardings


# ----------------------------------------------------------------------------------------- inputs

def policy_model_config(cfg):
    """The policy's ModelConfig from the config alone (presets and HF folders: config.json only)."""
    m = cfg.model
    if m.source == "preset":
        return models.preset(m.preset, dtype=m.dtype, param_dtype=m.param_dtype, remat=m.remat)
    if m.source == "hf":
        from rlvr_jax.models import hf_io
        return hf_io.load_config(m.path, dtype=m.dtype, param_dtype=m.param_dtype).replace(remat=m.remat)
    if m.source == "embedded":
        from rlvr_jax.train.build import build_task, policy_config
        task = build_task(cfg)
        if task is None:
            raise ConfigError("config.model.source: 'embedded' needs data.source='embedded' (its tiny tokenizer)")
        return policy_config(cfg, task.tokenizer.vocab_size, task.tokenizer)
    raise ConfigError(f"config.model.source: rlvr-compile plans 'preset', 'hf' or 'embedded' models, not "
                      f"{m.source!r}; use model.source='preset' with the matching model.preset")


def memory_model_config(cfg, pc):
    """The DLC memory network's ModelConfig (None unless memory.enabled)."""
    if not cfg.memory.enabled:
        return None
    return models.memory_config(pc, width_ratio=cfg.memory.width_ratio,
                                num_layers=None if cfg.memory.num_layers < 0 else cfg.memory.num_layers)


def make_mesh_for(cfg, devices) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (real or compile-only), physically laid out when possible."""
    shape = resolve_sizes((cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor), len(devices))
    try:
        from jax.experimental import mesh_utils
        arr = mesh_utils.create_device_mesh(shape, list(devices), allow_split_physical_axes=True)
    except Exception:  # noqa: BLE001 - fall back to a plain reshape for shapes the helper refuses
        arr = np.asarray(list(devices)).reshape(shape)
    return Mesh(arr, AXES, axis_types=(AxisType.Auto,) * 3)


def abstract_policy(cfg, pc):
    """The policy the run trains, from shapes: with LoRA adapters (`train.build.add_adapters`) when
    model.lora_rank > 0, so the planned train state is the adapters + the frozen base, not a full copy."""
    if not cfg.model.lora_rank:
        return models.abstract(pc)
    from flax import nnx

    from rlvr_jax.train.build import add_adapters
    return nnx.eval_shape(lambda: add_adapters(cfg, models.create(pc, seed=cfg.train.seed)))


def program_for(cfg, mesh, pc, mc) -> TrainProgram:
    """The run's TrainProgram for these model configs on `mesh`, from abstract models: shapes only."""
    updates = cfg.train.steps * cfg.algo.ppo_epochs * cfg.algo.mini_batches
    return train_program(cfg, abstract_policy(cfg, pc), models.abstract(mc) if mc is not None else None, mesh,
                         updates)


# --------------------------------------------------------------------------------------- compiling

def _device_bytes(compiled) -> dict:
    try:
        ma = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - some backends have none
        return {}
    if ma is None:
        return {}
    keys = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
            "generated_code_size_in_bytes")
    out = {k.replace("_size_in_bytes", ""): int(getattr(ma, k, 0) or 0) for k in keys}
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def _cost(compiled) -> float | None:
    try:
        ca = compiled.cost_analysis()
    except Exception:  # noqa: BLE001
        return None
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else None
    return float(ca["flops"]) if ca and "flops" in ca else None


def compile_train_step(cfg, program: TrainProgram):
    """(compiled train step, state shardings, seconds): the program's `jitted`, the very function the loops
    run, lowered for one optimiser step of the configured size (a mini-batch of rollouts)."""
    t0 = time.time()
    batch = program.abstract_batch(prompt_len(cfg), cfg.rollout.max_new_tokens)
    compiled = program.jitted.lower(program.abstract_state, batch).compile()
    return compiled, program.state_shardings, time.time() - t0


def compile_sampler(cfg, program: TrainProgram, pc):
    """(compiled sampler, sample-layout param shardings, seconds): prefill + decode of prompts_per_step * G
    rows with KV caches of the largest prompt bucket + max_new_tokens (and the memory network when on).
    The policy is the one the loops sample (`TrainProgram.sampling_policy`): under LoRA the base with its
    adapters applied on the fly, or the plain graph with merged kernels (model.lora_sampling='merged')."""
    from rlvr_jax.sampling import sample_core
    mesh, state = program.mesh, program.abstract_state
    pg, sparams = program.abstract_sampling_policy()
    mg = program.memory_graphdef
    rules = rules_for("sample", cfg.mesh.sample_fsdp)
    scfg = sampling_config(cfg, pc)
    n, Pl = cfg.rollout.prompts_per_step, prompt_len(cfg)

    def sample(pstate, mstate, prompts, mask, key_data):
        return sample_core(pg, pstate, prompts, mask, jax.random.wrap_key_data(key_data), scfg, mg, mstate,
                           mesh=mesh, rules=rules)
    p_sh = state_shardings(sparams, mesh, rules)
    m_sh = state_shardings(state.memory, mesh, rules) if state.memory is not None else None
    pr_sh = batch_shardings(jax.ShapeDtypeStruct((n, Pl), jnp.int32), mesh, rules)
    rep = NamedSharding(mesh, P())
    t0 = time.time()
    fn = jax.jit(sample, in_shardings=(p_sh, m_sh, pr_sh, pr_sh, rep))
    args = (with_shardings(sparams, p_sh), None if m_sh is None else with_shardings(state.memory, m_sh),
            jax.ShapeDtypeStruct((n, Pl), jnp.int32, sharding=pr_sh),
            jax.ShapeDtypeStruct((n, Pl), jnp.bool_, sharding=pr_sh),
            jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=rep))
    compiled = fn.lower(*args).compile()
    return compiled, (p_sh, m_sh), time.time() - t0


@dataclasses.dataclass
class Target:
    """Where to compile: devices, the topology name and its chip spec (None: local devices)."""

    devices: list
    name: str
    chip: object | None


def target_for(topology: str | None) -> Target:
    if not topology:
        devs = jax.devices()
        return Target(devs, f"local:{len(devs)}x{devs[0].platform}", chip_of_device(devs[0]))
    devs, topo, chip = topology_devices(topology)
    return Target(list(devs), topo, chip)


# the two ways libtpu words an out-of-HBM compile ("... HLO temporaries (24.67G) exceeds ..." and
# "Ran out of memory in memory space hbm. Used 16.27G of 15.75G hbm")
_OOM = re.compile(r"HLO temporaries \(([\d.]+)([KMGT])\)|memory space hbm\. Used ([\d.]+)([KMGT]) of")


def _compile_or_oom(fn):
    """Runs a compile; a TPU compiler out-of-HBM error becomes (None, {"temp": bytes it asked for, "oom": msg})."""
    t0 = time.time()
    try:
        compiled, _, secs = fn()
    except jax.errors.JaxRuntimeError as e:
        msg = str(e)
        m = _OOM.search(msg)
        if m is None:
            raise
        num, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        temp = float(num) * 1024 ** " KMGT".index(unit)
        return None, {"temp": int(temp), "oom": msg.splitlines()[0][:300]}, time.time() - t0
    return compiled, _device_bytes(compiled), secs


def compile_engine(cfg, program, model_cfgs, eng) -> tuple[dict, float]:
    """({step name: memory analysis}, seconds) of the continuous engine's steps (`engine_plan.engine_programs`)."""
    mems, secs = {}, 0.0
    for name, lower in engine_programs(cfg, program, model_cfgs, eng, rules_for("sample", cfg.mesh.sample_fsdp)).items():
        _, mems[name], t = _compile_or_oom(lambda: (lambda t0: (lower().compile(), None, time.time() - t0))(time.time()))
        secs += t
    return mems, secs


def compile_numbers(cfg, mesh, pc, mc, *, sampler: bool = True, train: bool = True, eng=None) -> dict:
    """What only the compiler knows, for these model configs: memory analyses, XLA FLOPs, compile times.

    A program the TPU compiler refuses for lack of HBM is reported with the temporaries it asked for
    (and an "oom" message), so the plan says "does not fit" with numbers instead of failing. eng (an
    `engine_plan.EngineShape`, sized at full depth): the continuous engine's steps are compiled instead of
    the static sampler. train=False: the sampler only (the caller has the train step's numbers from an earlier report).
    """
    program = program_for(cfg, mesh, pc, mc)
    out = {"train": {}, "xla_flops": None, "train_s": 0.0}
    if train:
        compiled, mem, t_train = _compile_or_oom(lambda: compile_train_step(cfg, program))
        out = {"train": mem, "xla_flops": None if compiled is None else _cost(compiled), "train_s": t_train}
        del compiled
    if sampler:
        if eng is not None:
            mem, t_sample = compile_engine(cfg, program, (pc,) + ((mc,) if mc is not None else ()), eng)
        else:
            compiled, mem, t_sample = _compile_or_oom(lambda: compile_sampler(cfg, program, pc))
            del compiled
        out.update(sample=mem, sample_s=t_sample)
    return out


def _at_depth(pc, mc, layers: int):
    """Policy (and memory) configs cut to `layers` policy layers, the memory keeping its depth ratio."""
    mem = None if mc is None else mc.replace(num_layers=max(1, round(layers * mc.num_layers / pc.num_layers)))
    return pc.replace(num_layers=layers), mem


def extrapolate(lo: dict, hi: dict, l_lo: int, l_hi: int, L: int) -> dict:
    """Affine extrapolation in the layer count of every number of two `compile_numbers` results.

    A number that shrinks from l_lo to l_hi layers (the compiler reused buffers differently) is not
    extrapolated: the l_hi value is kept and its path listed under "not_affine", so no plan ever shows
    a negative or shrinking memory figure. Messages (strings) are taken from whichever side has one.
    """
    not_affine = []

    def one(a, b, path):
        if path and path[-1] in ("train_s", "sample_s"):
            return b  # compile seconds: summed by the caller, not a per-chip figure
        if isinstance(a, dict) or isinstance(b, dict):
            a, b = a or {}, b or {}
            return {k: one(a.get(k), b.get(k), path + (k,)) for k in {**a, **b}}
        if isinstance(a, str) or isinstance(b, str):
            return b if isinstance(b, str) else a
        if a is None or b is None:
            return None
        if b < a:
            not_affine.append(".".join(path))
            return b
        return a + (b - a) * (L - l_lo) / (l_hi - l_lo)
    out = one(lo, hi, ())
    out["not_affine"] = not_affine
    return out


def plan(cfg, target: Target, *, sampler: bool = True, layers: tuple[int, int] | None = None,
         analytic: bool = False, train_from: dict | None = None) -> dict:
    """Compiles the train step (and sampler) of `cfg` for `target` and returns the per-chip report dict.

    layers=(l1, l2): compile at l1 and l2 policy layers only and extrapolate the compiler's numbers
    affinely to the real depth (a fallback for slow machines; the report says so). Analytic numbers
    (parameter, optimiser and KV bytes, FLOPs) are always computed at the real size.
    analytic=True: no compile at all; activations from the closed forms of `plan.estimate` (labelled).
    train_from: an earlier report of the same train step (same model, batch and slice: the rollout engine
    does not enter it); its compiled train-step numbers are taken and only the sampler is compiled.
    With the continuous engine (`engine_plan.engine_shape`) the sampling phase is the engine's.
    """
    pc = policy_model_config(cfg)
    mc = memory_model_config(cfg, pc)
    mesh = make_mesh_for(cfg, target.devices)
    rules = rules_for("sample", cfg.mesh.sample_fsdp)
    model_cfgs = (pc,) + ((mc,) if mc is not None else ())
    eng = engine_shape(cfg, model_cfgs, mesh, rules) if sampler else None
    kw = dict(sampler=sampler, train=train_from is None, eng=eng)
    if analytic:
        nums = {"train": {}, "xla_flops": None, "train_s": 0.0, "sample": {}, "sample_s": 0.0}
    elif layers is None:
        nums = compile_numbers(cfg, mesh, pc, mc, **kw)
    else:
        l1, l2 = layers
        n1 = compile_numbers(cfg, mesh, *_at_depth(pc, mc, l1), **kw)
        n2 = compile_numbers(cfg, mesh, *_at_depth(pc, mc, l2), **kw)
        nums = extrapolate(n1, n2, l1, l2, pc.num_layers)
        # what the compiler said at each depth, so an extrapolation can be checked by eye
        nums["at_depth"] = {str(l1): {"train": n1["train"], "sample": n1.get("sample", {})},
                            str(l2): {"train": n2["train"], "sample": n2.get("sample", {})}}
        nums["train_s"], nums["sample_s"] = n1["train_s"] + n2["train_s"], n1.get("sample_s", 0) + n2.get(
            "sample_s", 0)
    if train_from is not None:
        take_train(nums, train_from, cfg, target.name, layers)
    program = program_for(cfg, mesh, pc, mc)
    state, st_sh = program.abstract_state, program.state_shardings
    _, sparams = program.abstract_sampling_policy()  # the params the sampler runs
    merged = program.use_lora and program.lora_sampling == "merged"
    merged_b = chip_bytes(sparams, state_shardings(sparams, mesh, program.rules)) if merged else 0
    train_mem = nums["train"]
    params_b = chip_bytes(state.policy, st_sh.policy)  # the trainable policy params: the adapters under LoRA
    base_b = chip_bytes(state.base, st_sh.base) if state.base is not None else 0  # LoRA's frozen base
    mem_b = chip_bytes(state.memory, st_sh.memory) if state.memory is not None else 0
    ref_b = chip_bytes(state.ref, st_sh.ref) if state.ref is not None else 0
    opt_b = chip_bytes(state.policy_opt, st_sh.policy_opt) + (
        chip_bytes(state.memory_opt, st_sh.memory_opt) if state.memory_opt is not None else 0)
    state_b = chip_bytes(state, st_sh)

    rows = cfg.rollout.prompts_per_step * cfg.rollout.group_size
    S = prompt_len(cfg) + cfg.rollout.max_new_tokens
    kv_b = kv_cache_bytes(pc, rows, S, mesh, rules) + (kv_cache_bytes(mc, rows, S, mesh, rules) if mc else 0)
    eng_b = engine_bytes(cfg, model_cfgs, eng, mesh, rules) if eng is not None else None
    if eng_b is not None:  # the sampling phase holds the engine's slots and store, not every row
        kv_b = eng_b["kv"]
    report = {
        "config": {**train_config(cfg), "policy_params": pc.num_params(),
                   "memory_params": mc.num_params() if mc else 0, "num_layers": pc.num_layers,
                   **({"lora": lora_summary(cfg, state)} if program.use_lora else {})},
        "target": {"topology": target.name, "slice": slice_name(target.name), "chips": len(target.devices),
                   "chip": target.chip.name if target.chip else target.devices[0].platform,
                   "hbm_bytes": target.chip.hbm_bytes if target.chip else None,
                   "mesh": dict(mesh.shape)},
        "method": ("analytic estimate, nothing compiled" if analytic else
                   "compiled at full depth" if layers is None else
                   f"compiled at {layers[0]} and {layers[1]} layers, compiler numbers extrapolated affinely to "
                   f"{pc.num_layers} layers" + (f" (not affine, shown at {layers[1]} layers: "
                                                f"{', '.join(nums['not_affine'])})" if nums.get("not_affine") else "")),
        "bytes_per_chip": {"params": params_b + base_b + mem_b + ref_b, "optimizer": opt_b, "train_state": state_b,
                           **({"base": base_b, "adapters": params_b, "merged_copy": merged_b}
                              if program.use_lora else {}),
                           "train_temp": train_mem.get("temp"), "kv_cache": kv_b},
        "train_step": {"memory": train_mem, "compile_s": round(nums["train_s"], 1),
                       "xla_flops_per_chip": nums["xla_flops"]},
    }
    if nums.get("at_depth"):
        report["compiled_at_depth"] = nums["at_depth"]
    if train_from is not None:
        report["method"] += "; train step: the compiler's numbers of an earlier report (--train_from)"
    peak_train = train_mem.get("peak") or state_b + (train_mem.get("temp") or 0)
    if train_mem.get("oom"):  # the compiler refused the step: its temporaries alone exceed HBM
        peak_train = max(peak_train, state_b + train_mem["temp"])
    peak_sample = None
    sample_param_b = chip_bytes(sparams, state_shardings(sparams, mesh, rules)) + (
        chip_bytes(state.memory, state_shardings(state.memory, mesh, rules)) if state.memory is not None else 0)
    if sampler and not analytic:
        smem = nums["sample"]
        copy = sample_param_b if _layouts_differ(mesh, rules) else 0
        # merged LoRA sampling: the merged kernels (train layout) stay alive beside the state while sampling
        copy += merged_b
        # sampling runs while the train state stays resident; the sample-layout params are a second copy
        # only when the layouts differ (fsdp > 1 and mesh.sample_fsdp=False)
        # (small buffers may sit in on-chip VMEM and escape the temp count: never count less than the KV caches)
        peak_sample = state_b + copy + max(smem.get("temp") or 0, kv_b) + (smem.get("output") or 0)
        if eng_b is not None:  # params come in the train layout: any sample-layout copy is in each step's temp
            copy = merged_b
            peak_sample = state_b + merged_b + eng_b["resident"] + working_bytes(smem)
        report["sampler"] = {"memory": smem, "compile_s": round(nums["sample_s"], 1), "sample_params_copy": copy}
        report["bytes_per_chip"]["sample_temp"] = smem.get("temp") if eng_b is None else working_bytes(smem)
    flops = step_flops(cfg, pc, mc)
    report["flops_per_step"] = flops
    peak = max(peak_train, peak_sample or 0)
    report["peak_bytes_per_chip"] = {"train": peak_train, "sample": peak_sample, "max": peak}
    if analytic:
        from rlvr_jax.plan.estimate import estimate
        copy = (sample_param_b if _layouts_differ(mesh, rules) else 0) + merged_b
        held, sizes = (kv_b, {}) if eng is None else (eng_b["resident"], {"rows": eng.slots, "prompts": eng.store})
        est = estimate(cfg, pc, mc, state_b, params_b + mem_b, held, copy, dict(mesh.shape), **sizes)
        report["bytes_per_chip"].update(train_temp=est["train_activations"] + est["grads"],
                                        sample_temp=est["sample_activations"] + held)
        report["peak_bytes_per_chip"] = {"train": est["train"], "sample": est["sample"],
                                         "max": max(est["train"], est["sample"])}
        report["sampler"] = {"sample_params_copy": copy, "compile_s": 0.0}
    report["decode_bytes_per_step"] = sample_param_b + kv_b
    if eng is not None:
        report["engine"] = {**dataclasses.asdict(eng), "waves": eng.waves, **eng_b, "kind": cfg.rollout.engine,
                            "slots_setting": cfg.rollout.slots, "kv_budget_mb": cfg.rollout.kv_budget_mb}
    return judge(report, target.chip)


def lora_summary(cfg, state) -> dict:
    """The report's LoRA entry: rank, scale, targets, sampling mode, base storage and the adapters' parameter count."""
    from rlvr_jax.models import lora
    m = cfg.model
    return {"rank": m.lora_rank, "alpha": m.lora_alpha, "targets": list(lora.parse_targets(m.lora_targets)),
            "sampling": m.lora_sampling, "quant": m.lora_quant,
            "adapter_params": sum(x.size for x in jax.tree.leaves(state.policy))}


def _layouts_differ(mesh, sample_rules) -> bool:
    return sample_rules is not TRAIN_RULES and mesh.shape["fsdp"] > 1 and sample_rules.get("embed") != "fsdp"


def run(cfg, topology: str | None = None, out: str | None = None, *, sampler: bool = True,
        layers: tuple[int, int] | None = None, analytic: bool | None = None, train_from: str | None = None,
        echo=print) -> dict | list[dict]:
    """`rlvr-compile`: plans `cfg` for the local devices or each comma-separated TPU topology; prints a
    table per target (and a summary with the smallest slice that fits) and writes JSON to `out`."""
    names = [t for t in (topology or "").split(",") if t.strip()] or [None]
    if analytic is None:
        analytic = os.environ.get("RLVR_AOT_MODE", "") == "analytic"
    if layers is None and os.environ.get("RLVR_AOT_LAYERS"):
        layers = tuple(int_list(os.environ["RLVR_AOT_LAYERS"], "RLVR_AOT_LAYERS (environment)"))
        if len(layers) != 2 or layers[0] >= layers[1]:
            raise ConfigError("RLVR_AOT_LAYERS: give two increasing layer counts, e.g. 2,4")
    reports = []
    if train_from:
        with open(train_from) as f:
            train_from = json.load(f)
        if isinstance(train_from, list) or len(names) > 1:
            raise ConfigError("--train_from: give one report of one topology (and plan that one topology)")
    for name in names:
        try:
            target = target_for(name)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        rep = plan(cfg, target, sampler=sampler, layers=layers, analytic=analytic, train_from=train_from or None)
        echo(format_report(rep))
        reports.append(rep)
    if len(reports) > 1:
        echo(format_sweep(reports))
    if out:
        with open(out, "w") as f:
            json.dump(reports if len(reports) > 1 else reports[0], f, indent=1)
        echo(f"wrote {out}")
    return reports if len(reports) > 1 else reports[0]
