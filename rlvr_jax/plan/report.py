"""The verdict, advice and console tables of `rlvr-compile` reports (dicts made by `plan.aot.plan`)."""
from __future__ import annotations

import re

GiB = 2**30
# how `plan.aot.plan` names the compiler numbers that shrank between its two compile depths
_SHRANK = re.compile(r"not affine, shown at \d+ layers: ([^)]*)\)")
_DEPTHS = re.compile(r"compiled at (\d+) and (\d+) layers")


def gib(x) -> str:
    return "n/a" if x is None else f"{x / GiB:.2f} GiB"


def suggestions(rep: dict) -> list[str]:
    """What to change when a config does not fit: more fsdp, remat, smaller micro-batches, shorter caches."""
    b, cfg, tgt = rep["bytes_per_chip"], rep["config"], rep["target"]
    hbm = tgt["hbm_bytes"] or 0
    peak = rep["peak_bytes_per_chip"]
    out = []
    mesh = tgt["mesh"]
    chips = tgt["chips"]
    if mesh.get("fsdp", 1) < chips and (b["params"] + b["optimizer"]) > 0.25 * hbm:
        out.append(f"shard parameters and optimiser states over more chips: --config.mesh.fsdp=-1 "
                   f"--config.mesh.data=1 (now fsdp={mesh.get('fsdp', 1)}; params+optimiser "
                   f"{gib(b['params'] + b['optimizer'])}/chip)")
    if peak["train"] and peak["train"] > hbm:
        if not cfg["remat"]:
            out.append("rematerialise layers in the backward pass: --config.model.remat=True")
        if (b.get("train_temp") or 0) > 0.3 * hbm:
            out.append(_smaller_micro_batches(cfg, b.get("train_temp")))
        if not cfg.get("lora") and b["optimizer"] > 0.25 * hbm:
            out.append(f"train LoRA adapters on a frozen base: --config.model.lora_rank=32 (no gradients or AdamW "
                       f"moments of the full parameters: optimiser {gib(b['optimizer'])}/chip now)")
    if peak.get("sample") and peak["sample"] > hbm and "engine" not in rep:
        out.append("decode in fewer slots than rows, refilled as rows finish: --config.rollout.engine=continuous "
                   "--config.rollout.kv_budget_mb=<MB of KV per chip>")
    if peak.get("sample") and peak["sample"] > hbm:
        out.append(f"the KV cache takes {gib(b['kv_cache'])}/chip for {cfg['prompts_per_step']}x{cfg['group_size']} "
                   f"rows of {cfg['prompt_len']}+{cfg['max_new_tokens']} tokens: a shorter "
                   f"--config.rollout.max_new_tokens, a smaller largest prompt bucket, or fewer prompts per step")
        if rep.get("sampler", {}).get("sample_params_copy"):
            out.append("keep parameters fsdp-sharded while sampling: --config.mesh.sample_fsdp=True")
    out.append("or a larger slice")
    return out


def _smaller_micro_batches(cfg: dict, temp) -> str:
    """The next micro-batch count the config allows (micro-batches are whole groups and divide the mini-batch's
    prompts), or what is left when each micro-batch is already one group."""
    per_mini, m = cfg["prompts_per_step"] // cfg["mini_batches"], cfg["micro_batches"]
    finer = next((k for k in range(m + 1, per_mini + 1) if per_mini % k == 0), None)
    if finer:
        return f"smaller micro-batches: --config.algo.micro_batches={finer} (activations {gib(temp)}/chip)"
    return (f"each micro-batch is already one group of {cfg['group_size']} sequences (algo.micro_batches={m}, the "
            f"most the mini-batch's {per_mini} prompts allow); activations ({gib(temp)}/chip) shrink with a shorter "
            f"--config.rollout.max_new_tokens or a smaller --config.rollout.group_size")


def not_affine(rep: dict) -> list[str]:
    """The compiler numbers of a `--layers` report that shrank from the shallower to the deeper compile (kept at
    the deeper one, not extrapolated), e.g. ["train.temp", "train.peak"]."""
    m = _SHRANK.search(rep.get("method", ""))
    return m.group(1).split(", ") if m else []


def step_working(mem: dict) -> int:
    """What one compiled step needs beyond the resident state: temporaries plus outputs not aliased to donated
    inputs (a failed donation shows up here as a second copy)."""
    return int((mem.get("temp") or 0) + max(0, (mem.get("output") or 0) - (mem.get("alias") or 0)))


def shrink_unsettles(rep: dict) -> bool:
    """Whether the report's verdict rests on a number that shrank from a 1-layer compile: the update's
    temporaries, or the sampler's (the engine's heaviest step). A 1-layer program is unlike deeper ones (Qwen3-4B
    2k LoRA on v5e-1: train temporaries 11.66 -> 11.26 GiB from 1 to 2 layers, then +0.82 GiB per layer from 2
    to 3), so its deeper value says nothing about full depth. From deeper compiles the deeper value stands: there
    the shrinking went on (Qwen3-4B on v5e-64: 15.91 / 14.82 / 14.06 GiB at 4 / 8 / 12 layers)."""
    depth = _DEPTHS.search(rep.get("method", ""))
    shrank = set(not_affine(rep))
    if not depth or int(depth.group(1)) > 1 or not shrank:
        return False
    if shrank & {"train.temp", "train.peak"}:
        return True
    smem = (rep.get("sampler") or {}).get("memory") or {}
    steps = {k: m for k, m in smem.items() if isinstance(m, dict)}
    if "engine" in rep and steps:  # the engine's sampling peak is set by its heaviest step
        top = max(steps, key=lambda k: step_working(steps[k]))
        return bool(shrank & {f"sample.{top}.temp", f"sample.{top}.output"})
    return bool(shrank & {"sample.temp", "sample.output"})


def judge(report: dict, chip) -> dict:
    """Fills in fit against `chip`'s HBM, the step time at its peak FLOP/s and the decode time at its HBM
    bandwidth, and suggestions when it does not fit (chip None: local CPU/GPU, no verdict)."""
    report = dict(report)
    if chip is None:
        report["fits"], report["suggestions"] = None, []
        return report
    chips, flops = report["target"]["chips"], report["flops_per_step"]
    peak = report["peak_bytes_per_chip"]["max"]
    report["target"] = dict(report["target"], chip=chip.name, hbm_bytes=chip.hbm_bytes)
    report["time"] = {
        "train_s_at_peak": flops["train"] / (chips * chip.peak_bf16_flops),
        "sample_s_at_peak": flops["sample"] / (chips * chip.peak_bf16_flops),
        "step_s_at_peak": flops["total"] / (chips * chip.peak_bf16_flops),
        # the engine decodes its rows in up to `waves` rounds of its slots (every row to max_new_tokens)
        "decode_s_at_hbm_bw": report["config"]["max_new_tokens"] * report.get("engine", {}).get("waves", 1)
        * report["decode_bytes_per_step"] / chip.hbm_bw_bytes_s,
    }
    report["fits"] = bool(peak <= chip.hbm_bytes)
    if report["fits"] and shrink_unsettles(report):
        report["fits"] = None  # unsettled: the full-depth peak is unknown
    report["hbm_use"] = peak / chip.hbm_bytes
    if report["fits"] is None:
        report["suggestions"] = [f"unsettled: {', '.join(not_affine(report))} shrank from the 1-layer compile, so "
                                 f"the full-depth peak is unknown; compile deeper, e.g. --layers 2,4, or at full "
                                 f"depth (no --layers)"]
    else:
        report["suggestions"] = [] if report["fits"] else suggestions(report)
    return report


def format_report(rep: dict) -> str:
    """A readable per-chip table of one report."""
    c, t, b, p = rep["config"], rep["target"], rep["bytes_per_chip"], rep["peak_bytes_per_chip"]
    mesh = " x ".join(f"{k}={v}" for k, v in t["mesh"].items())
    lines = [f"== {c['model']} ({c['policy_params'] / 1e9:.2f} B params"
             + (f", memory net {c['memory_params'] / 1e9:.2f} B" if c["memory_params"] else "")
             + f") {c['variant']}: {c['prompts_per_step']} prompts x G={c['group_size']}, "
             f"prompt {c['prompt_len']} + response {c['max_new_tokens']} tokens, micro_batches={c['micro_batches']}, "
             f"remat={c['remat']}, params {c['param_dtype']}",
             f"   on {t['slice']} ({t['topology']}, {t['chips']} x {t['chip']}, "
             f"{gib(t['hbm_bytes'])} HBM/chip), mesh {mesh}"]
    lo = c.get("lora")
    if lo:
        lines.append(f"   LoRA rank {lo['rank']} (alpha {lo['alpha']:g}) on {','.join(lo['targets'])}: "
                     f"{lo['adapter_params'] / 1e6:.1f} M adapter params trained, base frozen; sampling "
                     f"{lo['sampling'].replace('_', ' ')}")
    e = rep.get("engine")
    if e:
        lines.append(f"   continuous engine: {e['slots']} slots over the mesh, a store of {e['store']} prompts "
                     f"(KV {gib(e['slots_kv'])} + {gib(e['store_kv'])}/chip), up to {e['waves']} waves of decoding")
    if "extrapolated" in rep.get("method", "") or "analytic" in rep.get("method", ""):
        lines.append(f"   (!) {rep['method']}")
    for phase in ("train_step", "sampler"):
        oom = (rep.get(phase) or {}).get("memory", {}).get("oom")
        if oom:
            lines.append(f"   (!) {phase.replace('_', ' ')}: the TPU compiler ran out of HBM: {oom}")
    if lo:
        rows = [("frozen base (also the KL reference)", b["base"]), ("LoRA adapters", b["adapters"]),
                ("optimiser states (the adapters' moments)", b["optimizer"])]
        rows += [("memory network and its moments", b["train_state"] - b["base"] - b["adapters"] - b["optimizer"])] \
            if c["memory_params"] else []
        rows += [("merged-kernel copy (sampling)", b["merged_copy"])] if b.get("merged_copy") else []
    else:
        rows = [("parameters (policy, memory, ref)", b["params"]), ("optimiser states", b["optimizer"])]
    rows += [("train step activations/temp", b.get("train_temp")), ("KV caches (sampling)", b["kv_cache"]),
             ("sampler temp (incl. KV caches)", b.get("sample_temp")),
             ("peak: update phase", p["train"]), ("peak: sampling phase (train state resident)", p["sample"])]
    code = (rep.get("train_step") or {}).get("memory", {}).get("generated_code")
    if code:  # the compiler's executable size; HBM holds it too, but the peaks above (XLA's buffers) leave it out
        rows.append(("train step program code (not in the peaks)", code))
    for label, v in rows:
        lines.append(f"   {label:<46}{gib(v):>14}")
    if rep.get("hbm_use") is not None:
        verdict = {True: "FITS", False: "DOES NOT FIT", None: "UNSETTLED (not extrapolable)"}[rep["fits"]]
        lines.append(f"   {'peak / HBM':<46}{rep['hbm_use'] * 100:>13.0f}%  {verdict}")
    f = rep["flops_per_step"]
    lines.append(f"   {'FLOPs per RL step (sample + train)':<46}{f['total']:>14.3e}")
    if rep["train_step"].get("xla_flops_per_chip"):
        lines.append(f"   {'XLA cost_analysis FLOPs, one update, per chip':<46}"
                     f"{rep['train_step']['xla_flops_per_chip']:>14.3e}")
    if "time" in rep:
        tm = rep["time"]
        lines.append(f"   {'step time at peak bf16 FLOP/s':<46}{tm['step_s_at_peak']:>12.1f} s")
        lines.append(f"   {'decode time at HBM bandwidth (lower bound)':<46}{tm['decode_s_at_hbm_bw']:>12.1f} s")
    comp = f"train step {rep['train_step']['compile_s']} s"
    if rep.get("sampler", {}).get("compile_s"):
        comp += f", sampler {rep['sampler']['compile_s']} s"
    if "analytic" not in rep.get("method", ""):
        lines.append(f"   compiled in: {comp}")
    for s in rep.get("suggestions", []):
        lines.append(f"   -> {s}")
    return "\n".join(lines)


def format_sweep(reports: list[dict]) -> str:
    """One line per target and the smallest slice that fits."""
    lines = [f"{'slice':<10}{'chips':>6}{'mesh':>16}{'peak/chip':>14}{'HBM':>10}{'fits':>6}{'step@peak':>11}"]
    for r in reports:
        t = r["target"]
        m = "x".join(str(v) for v in t["mesh"].values())
        st = r.get("time", {}).get("step_s_at_peak")
        lines.append(f"{t['slice']:<10}{t['chips']:>6}{m:>16}{gib(r['peak_bytes_per_chip']['max']):>14}"
                     f"{gib(t['hbm_bytes']):>10}{ {True: 'yes', False: 'no', None: '?'}[r['fits']]:>6}"
                     f"{('%.1f s' % st) if st is not None else 'n/a':>11}")
    fit = [r for r in reports if r["fits"]]
    if fit:
        best = min(fit, key=lambda r: r["target"]["chips"])
        lines.append(f"smallest slice that fits: {best['target']['slice']}")
    else:
        lines.append("no listed slice fits")
    return "\n".join(lines)
