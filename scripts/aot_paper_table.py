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
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"v5e": (4, 8, 16, 32, 64, 128, 256), "v5p": (8, 16, 32, 64, 128, 256), "v6e": (4, 8, 16, 32, 64, 256)}
VARIANTS = ((), ("--config.mesh.sample_fsdp=True",))
GiB = 2**30


def compile_cmd(model: str, slice_: str, extra: tuple, out: str, analytic: bool) -> list[str]:
    cmd = [sys.executable, "-m", "rlvr_jax.cli", "compile", f"--config={ROOT}/configs/paper_qwen3_{model}.py",
           f"--topology={slice_}", f"--out={out}", *extra]
    return cmd + (["--analytic"] if analytic else ["--layers=2,4"])


def run(cmd: list[str], log: str) -> dict | None:
    """Runs one rlvr-compile; returns its JSON report (None on failure, with the log kept)."""
    out = next(a for a in cmd if a.startswith("--out="))[len("--out="):]
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc != 0 or not os.path.exists(out):
        return None
    with open(out) as f:
        rep = json.load(f)
    return rep[0] if isinstance(rep, list) else rep


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
        tag = f"{model}_{sl}{'_sfsdp' if extra else ''}"
        t = time.time()
        rep = run(compile_cmd(model, sl, extra, f"{work}/{tag}.json", False), f"{work}/{tag}.log")
        tried.append((sl, None if rep is None else rep["fits"], time.time() - t))
        if rep is not None and rep["fits"]:
            return sl, rep, tried
    return None, None, tried


def one(model: str, gen: str, work: str) -> dict:
    t = time.time()
    pick, extra, scanned = analytic_pick(model, gen, work)
    row = {"model": model, "gen": gen, "analytic": pick, "variant": list(extra or ()), "scanned": scanned}
    if pick is not None:
        sl, rep, tried = compiled_pick(model, gen, pick, extra, work)
        row.update(compiled=sl, tried=tried, report=rep)
    row["seconds"] = time.time() - t
    print(f"[aot_paper_table] {model} {gen}: analytic {pick} compiled {row.get('compiled')} "
          f"({row['seconds']:.0f} s)", flush=True)
    return row


def cell(row: dict) -> str:
    if not row.get("compiled"):
        return f"none up to {SIZES[row['gen']][-1]} chips" if row["analytic"] is None else \
            f"{row['analytic']} (analytic; compile failed or did not fit)"
    rep = row["report"]
    peak = rep["peak_bytes_per_chip"]
    flag = " (`sample_fsdp=True`)" if row["variant"] else ""
    below = [s for s in row["scanned"] if s[0] != row["analytic"]]
    approx = " (train temp not affine in depth: its 4-layer value)" if "not affine" in rep.get("method", "") else ""
    return (f"**{row['compiled']}**{flag}: peak {peak['max'] / GiB:.1f} / {rep['target']['hbm_bytes'] / GiB:.0f} GiB"
            f"{approx}, {rep['time']['step_s_at_peak']:.0f} s/step at peak"
            + ("; the next size down does not fit (analytic)" if below else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="4b,8b,14b")
    ap.add_argument("--gens", default="v5e,v5p,v6e")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "aot"))
    ap.add_argument("--render", action="store_true", help="only rewrite paper_table.md from paper_table.json")
    args = ap.parse_args()
    if args.render:
        with open(os.path.join(args.out, "paper_table.json")) as f:
            write_table(json.load(f), args.models.split(","), args.gens.split(","), args.out)
        print(open(os.path.join(args.out, "paper_table.md")).read())
        return
    work = os.path.join(args.out, "runs")
    os.makedirs(work, exist_ok=True)
    todo = [(m, g) for m in args.models.split(",") for g in args.gens.split(",")]
    gens = args.gens.split(",")
    rows = []
    with cf.ThreadPoolExecutor(args.jobs) as ex:
        for fut in cf.as_completed([ex.submit(one, m, g, work) for m, g in todo]):
            rows.append(fut.result())
            write_table(rows, args.models.split(","), gens, args.out)  # after every cell: partial runs keep theirs
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
