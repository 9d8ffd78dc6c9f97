"""The smallest TPU slice for each paper config, per chip generation: scanned analytically, then compiled.

For every model x generation: `rlvr-compile --analytic` over the rented slice sizes (as configured and
with `mesh.sample_fsdp=True`) finds the smallest slice the closed forms say fits; that slice is then
compiled for real through libtpu (`--layers 2,4`: two depths, extrapolated to the model's), and if the
compiler's numbers do not fit, the next size up is compiled. Each compile runs in its own process
(`--jobs` at a time); reports land in docs/aot/*.json and the table in docs/aot/paper_table.md.

    .venv/bin/python scripts/aot_paper_table.py [--models 4b,8b,14b] [--gens v5e,v5p,v6e] [--jobs 2]
    .venv/bin/python scripts/aot_paper_table.py --render     # the table again from docs/aot/paper_table.json
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from rlvr_jax.plan.report import judge  # noqa: E402
from rlvr_jax.plan.topologies import CHIPS  # noqa: E402

SIZES = {"v5e": (4, 8, 16, 32, 64, 128, 256), "v5p": (8, 16, 32, 64, 128, 256), "v6e": (4, 8, 16, 32, 64, 256)}
VARIANTS = ((), ("--config.mesh.sample_fsdp=True",))
GiB = 2**30


def engine_flags(slice_: str) -> list[str]:
    """--engine_hbm_frac F: rollouts on the continuous engine (auto) with a KV budget of F of the chip's HBM."""
    if not ENGINE[0]:
        return []
    hbm = CHIPS[slice_.split("-")[0]].hbm_bytes
    return ["--config.rollout.engine=auto", f"--config.rollout.kv_budget_mb={int(ENGINE[0] * hbm / 2**20)}"]


def compile_cmd(model: str, slice_: str, extra: tuple, out: str, analytic: bool) -> list[str]:
    cmd = [sys.executable, "-m", "rlvr_jax.cli", "compile", f"--config={ROOT}/configs/paper_qwen3_{model}.py",
           f"--topology={slice_}", f"--out={out}", *extra, *engine_flags(slice_)]
    if not analytic and ENGINE[0]:  # the train step is the static table's: reuse its compile when there is one
        tags = [_tag(model, slice_, sf, LAYERS[0]) for sf in (bool(extra), not extra)]
        have = [t for t in tags if os.path.exists(os.path.join(STATIC_RUNS, t + ".json"))]
        cmd += [f"--train_from={os.path.join(STATIC_RUNS, have[0])}.json"] if have else []
    return cmd + (["--analytic"] if analytic else [f"--layers={LAYERS[0]}"])


REUSE = [False]  # --reuse: a report already in the work folder stands for its compile
LAYERS = ["2,4"]  # --layers: the two depths compiled
RUNS = [os.path.join(ROOT, "docs", "aot", "runs")]  # where the per-compile reports are (<out>/runs)
ENGINE = [0.0]  # --engine_hbm_frac
ANALYTIC_ONLY = [False]  # --analytic_only: the scan, no compiles
STATIC_RUNS = os.path.join(ROOT, "docs", "aot", "runs")  # the static table's compiles (train steps to reuse)


def _tag(model: str, slice_: str, sfsdp: bool, layers: str) -> str:
    """File name (no extension) of a compiled report in the work folder."""
    return f"{model}_{slice_}{'_sfsdp' if sfsdp else ''}" + ("" if layers == "2,4" else "_L" + layers.replace(",", "-"))


def _load(path: str) -> dict:
    """A report JSON (rlvr-compile writes a list for several topologies), re-judged."""
    with open(path) as f:
        rep = json.load(f)
    return rejudge(rep[0] if isinstance(rep, list) else rep)


def run(cmd: list[str], log: str) -> dict | None:
    """Runs one rlvr-compile; returns its JSON report (None on failure, with the log kept)."""
    out = next(a for a in cmd if a.startswith("--out="))[len("--out="):]
    if not (REUSE[0] and os.path.exists(out)):
        if os.path.exists(out):
            os.remove(out)  # a stale report must not pass for this run's
        with open(log, "w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
        if rc != 0 or not os.path.exists(out):
            return None
    return _load(out)


def rejudge(rep: dict) -> dict:
    """The fit verdict again against today's chip table (a reused report may predate it): the compiled
    numbers stay, `fits`, `hbm_use`, times and suggestions are recomputed."""
    chip = CHIPS.get(rep["target"].get("chip"))
    return judge(rep, chip) if chip is not None else rep


def analytic_pick(model: str, gen: str, work: str):
    """(slice, variant, report) of the smallest analytically fitting slice, plus all scanned verdicts."""
    scanned = []
    for n in SIZES[gen]:
        for extra in VARIANTS:
            tag = f"{model}_{gen}-{n}{'_sfsdp' if extra else ''}_analytic"
            rep = run(compile_cmd(model, f"{gen}-{n}", extra, f"{work}/{tag}.json", True), f"{work}/{tag}.log")
            if rep is None:
                continue
            scanned.append((f"{gen}-{n}", extra, rep["fits"], rep["peak_bytes_per_chip"]["max"]))
            if rep["fits"]:
                return f"{gen}-{n}", extra, scanned
    return None, None, scanned


def compiled_pick(model: str, gen: str, start: str, extra: tuple, work: str):
    """Compiles from `start` upwards until the compiler's numbers fit; returns (slice, report, tried)."""
    sizes = [n for n in SIZES[gen] if n >= int(start.split("-")[1])]
    tried = []
    for n in sizes:
        sl = f"{gen}-{n}"
        tag = _tag(model, sl, bool(extra), LAYERS[0])
        t = time.time()
        rep = run(compile_cmd(model, sl, extra, f"{work}/{tag}.json", False), f"{work}/{tag}.log")
        tried.append((sl, None if rep is None else rep["fits"], time.time() - t))
        if rep is not None and rep["fits"]:
            return sl, rep, tried
    return None, None, tried


def one(model: str, gen: str, work: str) -> dict:
    t = time.time()
    pick, extra, scanned = analytic_pick(model, gen, work)
    row = {"model": model, "gen": gen, "analytic": pick, "variant": list(extra or ()), "scanned": scanned,
           "layers": LAYERS[0]}
    if pick is not None and not ANALYTIC_ONLY[0]:
        sl, rep, tried = compiled_pick(model, gen, pick, extra, work)
        row.update(compiled=sl, tried=tried, report=rep)
    row["seconds"] = time.time() - t
    print(f"[aot_paper_table] {model} {gen}: analytic {pick} compiled {row.get('compiled')} "
          f"({row['seconds']:.0f} s)", flush=True)
    return row


def _tried_report(row: dict, slice_: str) -> dict | None:
    path = os.path.join(RUNS[0], _tag(row["model"], slice_, bool(row["variant"]), row.get("layers", "2,4")) + ".json")
    return _load(path) if os.path.exists(path) else None


def _none_fits(row: dict) -> str:
    """Why no slice fits, from the reports of the slices compiled."""
    reps = [r for r in (_tried_report(row, t[0]) for t in row["tried"]) if r is not None]
    first, last = row["tried"][0][0], row["tried"][-1][0]
    if reps and all("oom" in r["train_step"]["memory"] for r in reps):
        micro = reps[0]["config"]["micro_batches"]
        hint = next((s for s in reps[-1]["suggestions"] if "micro_batches" in s), "")
        hint = f" (needs `micro_batches` >= {2 * micro})" if hint else ""
        return (f"none at {micro} micro-batches: {first} to {last} compiled, the compiler runs out of HBM in the "
                f"train step{hint}")
    use = ", ".join(f"{t[0]} {r['hbm_use']:.0%}" for t, r in zip(row["tried"], reps))
    return f"none: {first} to {last} compiled, none fits (HBM use {use})"


def cell(row: dict) -> str:
    if not row.get("compiled"):
        if row["analytic"] is None:
            return f"none up to {SIZES[row['gen']][-1]} chips (analytic)"
        if row.get("tried"):
            return _none_fits(row)
        peak = next((s[3] for s in row["scanned"] if s[0] == row["analytic"] and s[2]), None)
        hbm = CHIPS[row["gen"]].hbm_bytes
        return (f"{row['analytic']}{' (`sample_fsdp=True`)' if row['variant'] else ''} (analytic; not compiled)"
                + (f": peak {peak / GiB:.1f} / {hbm / GiB:.4g} GiB ({peak / hbm:.0%})" if peak else ""))
    rep = row["report"]
    peak = rep["peak_bytes_per_chip"]
    flag = " (`sample_fsdp=True`)" if row["variant"] else ""
    below = [s for s in row["scanned"] if s[0] != row["analytic"]]
    shrank = re.search(r"not affine, shown at (\d+) layers: ([^)]*)\)", rep.get("method", ""))
    # compile seconds shrinking with depth says nothing of memory; older reports listed them too
    names = [n for n in (shrank.group(2).split(", ") if shrank else []) if not n.endswith("_s")]
    layers = row.get("layers", "2,4")
    approx = (f" ({', '.join(names)} shrank from {layers.split(',')[0]} to {shrank.group(1)} layers: the "
              f"{shrank.group(1)}-layer value)" if names else "")
    depth = "" if layers == "2,4" else f" (compiled at {layers.replace(',', ' + ')} layers)"
    failed = [(t[0], _tried_report(row, t[0])) for t in row.get("tried", []) if t[0] != row["compiled"]]
    failed = ", ".join(f"{sl} {r['hbm_use']:.0%}" if r else sl for sl, r in failed)
    return (f"**{row['compiled']}**{flag}{depth}: peak {peak['max'] / GiB:.1f} / "
            f"{rep['target']['hbm_bytes'] / GiB:.4g} GiB ({rep['hbm_use']:.0%}){approx}, {rep['time']['step_s_at_peak']:.0f} s/step at peak"
            + (f"; compiled and did not fit: {failed}" if failed else "")
            + ("; smaller sizes do not fit (analytic)" if below else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="4b,8b,14b")
    ap.add_argument("--gens", default="v5e,v5p,v6e")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "aot"))
    ap.add_argument("--render", action="store_true", help="only rewrite paper_table.md from paper_table.json")
    ap.add_argument("--layers", default="2,4", help="the two depths compiled and extrapolated from")
    ap.add_argument("--reuse", action="store_true",
                    help="take reports already in <out>/runs/ instead of compiling them again (resume a cut-off run)")
    ap.add_argument("--engine_hbm_frac", type=float, default=0.0,
                    help="plan rollouts on the continuous engine (rollout.engine=auto) with this fraction of a chip's "
                         "HBM as rollout.kv_budget_mb (default out: docs/aot/engine)")
    ap.add_argument("--analytic_only", action="store_true", help="only the analytic scan, no compiles")
    args = ap.parse_args()
    ENGINE[0], ANALYTIC_ONLY[0] = args.engine_hbm_frac, args.analytic_only
    if ENGINE[0] and args.out == ap.get_default("out"):
        args.out = os.path.join(ROOT, "docs", "aot", "engine")
    RUNS[0] = os.path.join(args.out, "runs")
    if args.render:
        with open(os.path.join(args.out, "paper_table.json")) as f:
            write_table(json.load(f), args.models.split(","), args.gens.split(","), args.out)
        print(open(os.path.join(args.out, "paper_table.md")).read())
        return
    REUSE[0], LAYERS[0] = args.reuse, args.layers
    work = RUNS[0]
    os.makedirs(work, exist_ok=True)
    todo = [(m, g) for m in args.models.split(",") for g in args.gens.split(",")]
    table = os.path.join(args.out, "paper_table.json")
    rows = []  # cells of earlier runs that this one does not redo are kept
    if os.path.exists(table):
        with open(table) as f:
            rows = [r for r in json.load(f) if (r["model"], r["gen"]) not in todo]
    models = sorted({r["model"] for r in rows} | set(args.models.split(",")), key=lambda m: float(m[:-1]))
    gens = sorted({r["gen"] for r in rows} | set(args.gens.split(",")))
    with cf.ThreadPoolExecutor(args.jobs) as ex:
        for fut in cf.as_completed([ex.submit(one, m, g, work) for m, g in todo]):
            rows.append(fut.result())
            write_table(rows, models, gens, args.out)  # after every cell: partial runs keep theirs
    print(open(os.path.join(args.out, "paper_table.md")).read())


def write_table(rows: list[dict], models: list[str], gens: list[str], out: str):
    with open(os.path.join(out, "paper_table.json"), "w") as f:
        json.dump(rows, f, indent=1)
    lines = ["| model | " + " | ".join(gens) + " |", "|---" * (len(gens) + 1) + "|"]
    for m in models:
        done = {r["gen"]: r for r in rows if r["model"] == m}
        cells = [cell(done[g]) if g in done else "not run" for g in gens]
        lines.append(f"| Qwen3-{m.upper()} | " + " | ".join(cells) + " |")
    with open(os.path.join(out, "paper_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
