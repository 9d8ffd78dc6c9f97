"""The single-chip table: Qwen3-0.6B / 1.7B / 4B, GRPO, full fine-tuning vs LoRA, on v5e-1, v6e-1 and v5e-8.

Every cell (model x response length x slice x mode) is planned analytically first (`rlvr-compile --analytic`,
in this process, seconds each); the cells chosen for compiling (`--compile`: by default those whose analytic
peak is within a factor `--band` of the chip's HBM, i.e. near the fit boundary) are then compiled for real
through libtpu, one at a time, each in its own `rlvr-compile --layers` process (two depths, extrapolated;
`--layers 1,2` is about 3x faster than 2,4 and came out above it where a cell was compiled both ways).
A compiled report, when there is one, decides the cell; the table says which cells are analytic. Reports:
docs/aot/lora/runs/<model>_<len>_<slice>_<mode>[_analytic].json (+ .log); table: docs/aot/lora/single_chip_table.md.

    python scripts/aot_single_chip.py                       # analytic grid + compiles near the boundary
    python scripts/aot_single_chip.py --reuse               # resume: reports already there stand
    python scripts/aot_single_chip.py --compile none        # analytic only
    python scripts/aot_single_chip.py --compile 4b_1k_v5e-1_lora,0.6b_2k_v5e-1_full --reuse
    python scripts/aot_single_chip.py --render              # the table again from the reports
    python scripts/aot_single_chip.py --sampler-only --layers 1,2 --compile 0.6b_2k_v5e-8_full  # rollout side again

Setup (configs/single_chip.py): 16 prompts x G = 8, prompts planned at 512 tokens, bf16 params and compute,
remat, 16 micro-batches (one group each: the most the config allows), rollouts on the continuous engine with a
KV budget of a quarter of the chip's HBM; LoRA rank 32 (alpha 64) on all seven projections, sampled on the fly.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from rlvr_jax.plan.report import judge, not_affine  # noqa: E402
from rlvr_jax.plan.topologies import CHIPS  # noqa: E402

MODELS = ("0.6b", "1.7b", "4b")
LENGTHS = (1024, 2048)
SLICES = ("v5e-1", "v6e-1", "v5e-8")
MODES = ("full", "lora")
LORA = {"rank": 32, "alpha": 64.0, "targets": "all"}
CONFIG = os.path.join(ROOT, "configs", "single_chip.py")
OUT = os.path.join(ROOT, "docs", "aot", "lora")
GiB = 2**30


def tag(model: str, length: int, slice_: str, mode: str) -> str:
    return f"{model}_{length // 1024}k_{slice_}_{mode}"


def overrides(model: str, length: int, slice_: str, mode: str) -> list[str]:
    """The cell's `--config.` flags on top of configs/single_chip.py."""
    hbm = CHIPS[slice_.split("-")[0]].hbm_bytes
    out = [f"--config.model.preset=qwen3-{model}", f"--config.rollout.max_new_tokens={length}",
           f"--config.rollout.kv_budget_mb={int(0.25 * hbm / 2**20)}"]
    if mode == "lora":
        out += [f"--config.model.lora_rank={LORA['rank']}", f"--config.model.lora_alpha={LORA['alpha']}",
                f"--config.model.lora_targets={LORA['targets']}"]
    return out


def cells():
    return [(m, n, s, mode) for m in MODELS for n in LENGTHS for s in SLICES for mode in MODES]


def _load(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rep = json.load(f)
    rep = rep[0] if isinstance(rep, list) else rep
    chip = CHIPS.get(rep["target"].get("chip"))
    return judge(rep, chip) if chip is not None else rep


def analytic(cell, runs: str, reuse: bool) -> dict:
    """The cell's analytic report (planned in this process)."""
    out = os.path.join(runs, tag(*cell) + "_analytic.json")
    if reuse and os.path.exists(out):
        return _load(out)
    from rlvr_jax.cli import _parse
    from rlvr_jax.plan import aot
    cfg, _ = _parse(["rlvr-compile", f"--config={CONFIG}", *overrides(*cell)], runs=False)
    with open(out.replace(".json", ".log"), "w") as log:
        aot.run(cfg, topology=cell[2], out=out, analytic=True, echo=lambda s: print(s, file=log))
    return _load(out)


def compile_cell(cell, runs: str, reuse: bool, layers: str, sampler_only: bool = False) -> dict | None:
    """The cell compiled through libtpu (`rlvr-compile --layers`), in its own process; None if it failed.

    sampler_only: the cell's compiled report must exist; its train step stands (`--train_from`) and only the
    sampler is compiled again (after a change to the rollout side); on failure the old report is kept."""
    out = os.path.join(runs, tag(*cell) + ".json")
    if reuse and os.path.exists(out) and not sampler_only:
        return _load(out)
    train_from = []
    if sampler_only:
        if not os.path.exists(out):
            raise SystemExit(f"aot_single_chip: --sampler-only: {tag(*cell)} has no compiled report to take the "
                             f"train step from ({out})")
        old = out.replace(".json", "_train_from.json")
        os.replace(out, old)
        train_from = [f"--train_from={old}"]
    elif os.path.exists(out):
        os.remove(out)
    cmd = [sys.executable, "-m", "rlvr_jax.cli", "compile", f"--config={CONFIG}", f"--topology={cell[2]}",
           f"--out={out}", f"--layers={layers}", *train_from, *overrides(*cell)]
    t = time.time()
    with open(out.replace(".json", ".log"), "a" if sampler_only else "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if train_from and rc != 0:
        os.replace(old, out)  # the earlier report stands
    elif train_from:
        os.remove(old)
    print(f"[aot_single_chip] compiled {tag(*cell)}{' (sampler)' if sampler_only else ''}: rc {rc}, "
          f"{time.time() - t:.0f} s", flush=True)
    return _load(out) if rc == 0 else None


def reports(cell, runs: str) -> tuple:
    """(compiled report or None, analytic report or None) of a cell."""
    return tuple(_load(os.path.join(runs, tag(*cell) + s + ".json")) for s in ("", "_analytic"))


def program_bytes(comp: dict | None) -> int | None:
    """The train step's generated TPU code of a compiled report (None for an analytic one)."""
    return comp["train_step"]["memory"].get("generated_code") if comp else None


def depths(rep: dict) -> str:
    """The two depths a compiled report was compiled at, e.g. '2+4'."""
    return "+".join(sorted(rep.get("compiled_at_depth", {}), key=int)) or "full-depth"


def fit_word(rep: dict, yes: str = "**yes**") -> str:
    """yes / no / unsettled (a number that sets the peak shrank from the 1-layer compile: `shrink_unsettles`)."""
    return {True: yes, False: "no", None: "unsettled"}[rep["fits"]]


def use(rep: dict) -> str:
    """Peak over HBM ("?" after it where that peak is not a full-depth projection)."""
    return f"{rep['hbm_use']:.0%}{'?' if rep['fits'] is None else ''}"


def _g(x) -> str:
    return "-" if not x else f"{x / GiB:.2f}"


def row(cell, runs: str) -> str:
    comp, ana = reports(cell, runs)
    rep = comp or ana
    if rep is None:
        return f"| Qwen3-{cell[0].upper()} | {cell[1] // 1024}k | {cell[2]} | {cell[3]} | not run |" + " |" * 9
    b, p, hbm = rep["bytes_per_chip"], rep["peak_bytes_per_chip"], rep["target"]["hbm_bytes"]
    how = f"compiled ({depths(comp)} layers)" if comp else "analytic"
    if comp and any((comp.get(k) or {}).get("memory", {}).get("oom") for k in ("train_step", "sampler")):
        how += ", compiler out of HBM"
    if comp and comp["fits"] is None:
        how += f", {' and '.join(not_affine(comp))} shrank from {depths(comp).replace('+', ' to ')} layers"
    if comp and ana:
        how += f"; analytic {ana['hbm_use']:.0%}"
    code = program_bytes(comp)
    eng = rep.get("engine")
    sampler = f"engine {eng['slots']} slots" if eng else "static"
    base = b.get("base", b["params"])
    mode = cell[3] if cell[3] == "full" else f"LoRA r{LORA['rank']}"
    return (f"| Qwen3-{cell[0].upper()} | {cell[1] // 1024}k | {cell[2]} | {mode} | "
            f"{fit_word(rep)} ({use(rep)}) | {_g(base)} | {_g(b.get('adapters'))} | "
            f"{_g(b['optimizer'])} | {_g(p['train'])} | {_g(p['sample'])} | {hbm / GiB:.2f} | {_g(code)} | {sampler} | "
            f"{how} |")


HEADER = ("| model | response | slice | mode | fits (peak/HBM) | params or frozen base | adapters | optimiser | "
          "peak update | peak sampling | HBM | train step code | sampler | numbers |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def write_table(runs: str, out: str):
    lines = ["GiB per chip. GRPO, 16 prompts x G = 8, prompt 512 + response tokens, bf16, remat, 16 micro-batches "
             f"(one group each), continuous engine with a KV budget of 1/4 of HBM; LoRA rank {LORA['rank']} "
             f"(alpha {LORA['alpha']:g}) on q,k,v,o,gate,up,down, sampled on the fly. \"compiled (a+b layers)\": "
             "libtpu compiles at a and b layers, extrapolated affinely to full depth; the train step's temporaries "
             "grow less per layer the deeper the model, so 1+2 overstates the peak (Qwen3-0.6B 1k v5e-1 LoRA: 51% "
             "from 1+2, 43% from 2+4: docs/aot/lora/depth_check). \"analytic\": closed forms only "
             "(scripts/aot_single_chip.py).", "", HEADER]
    lines += [row(c, runs) for c in cells()]
    with open(os.path.join(out, "single_chip_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    short = summary(runs)
    with open(os.path.join(out, "single_chip_summary.md"), "w") as f:
        f.write(short + "\n")
    if os.path.abspath(out) == OUT:  # the committed reports: keep the README's and docs/aot.md's copies in step
        paste(os.path.join(ROOT, "README.md"), "SINGLE_CHIP_SUMMARY", short)
        paste(os.path.join(ROOT, "docs", "aot.md"), "SINGLE_CHIP_TABLE", "\n".join(lines))


def paste(path: str, marker: str, text: str):
    """Replaces the block between `<!-- MARKER (scripts/aot_single_chip.py) -->` and `<!-- /MARKER -->` in `path`
    (README.md, docs/aot.md) with `text`; a file without the pair is left as it is."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        doc = f.read()
    start, end = f"<!-- {marker} (scripts/aot_single_chip.py) -->\n", f"<!-- /{marker} -->"
    i, j = doc.find(start), doc.find(end)
    if i < 0 or j < i:
        return
    with open(path, "w") as f:
        f.write(doc[:i + len(start)] + text.rstrip("\n") + "\n" + doc[j:])


def _verdict(cell, runs: str) -> str:
    comp, ana = reports(cell, runs)
    rep = comp or ana
    if rep is None:
        return "not run"
    word = fit_word(rep, "**fits**")
    if not comp:
        return f"{word} {use(rep)}"
    code = program_bytes(comp) or 0
    return f"{word} {use(rep)} (compiled {depths(comp)}; code +{code / rep['target']['hbm_bytes']:.0%})"


def summary(runs: str) -> str:
    """The README's short table: per model and response length, full / LoRA verdicts on each slice."""
    lines = ["| model, response | " + " | ".join(f"{s}: full / LoRA r{LORA['rank']}" for s in SLICES) + " |",
             "|---" * (len(SLICES) + 1) + "|"]
    for m in MODELS:
        for n in LENGTHS:
            cells_ = [" / ".join(_verdict((m, n, s, mode), runs) for mode in MODES) for s in SLICES]
            lines.append(f"| Qwen3-{m.upper()}, {n // 1024}k | " + " | ".join(cells_) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--compile", default="auto",
                    help="auto (cells with analytic peak within --band of HBM), all, none, or comma-separated tags")
    ap.add_argument("--band", type=float, default=1.5, help="auto: compile cells with 1/band < peak/HBM < band")
    ap.add_argument("--layers", default="2,4")
    ap.add_argument("--reuse", action="store_true", help="reports already there stand (resume a cut-off run)")
    ap.add_argument("--render", action="store_true", help="only rewrite the table from the reports there")
    ap.add_argument("--sampler-only", action="store_true",
                    help="--compile cells: keep each one's compiled train step, compile only its sampler again")
    args = ap.parse_args()
    runs = os.path.join(args.out, "runs")
    os.makedirs(runs, exist_ok=True)
    if args.render:
        write_table(runs, args.out)
        print(open(os.path.join(args.out, "single_chip_table.md")).read())
        return
    t0 = time.time()
    reps = {c: analytic(c, runs, args.reuse) for c in cells()}
    print(f"[aot_single_chip] analytic grid: {time.time() - t0:.0f} s", flush=True)
    write_table(runs, args.out)
    if args.compile == "none":
        todo = []
    elif args.compile == "all":
        todo = cells()
    elif args.compile == "auto":
        todo = [c for c, r in reps.items() if 1 / args.band < r["hbm_use"] < args.band]
    else:
        by_tag = {tag(*c): c for c in cells()}
        unknown = [t for t in args.compile.split(",") if t not in by_tag]
        if unknown:
            raise SystemExit(f"aot_single_chip: --compile: unknown cell {unknown[0]!r} (e.g. {tag(*cells()[0])})")
        todo = [by_tag[t] for t in args.compile.split(",")]  # in the order given
    print(f"[aot_single_chip] compiling {len(todo)} cells: {', '.join(tag(*c) for c in todo)}", flush=True)
    for c in todo:
        compile_cell(c, runs, args.reuse, args.layers, args.sampler_only)
        write_table(runs, args.out)  # after every cell: a cut-off run keeps what it has
    print(open(os.path.join(args.out, "single_chip_table.md")).read())


if __name__ == "__main__":
    main()
