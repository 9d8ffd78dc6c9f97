"""scripts/aot_paper_table.py: how a cell reads its reports (fits, does not fit, out of HBM everywhere, a
number that shrank with depth), and that a partial run keeps the cells it did not redo."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GiB = 2 ** 30


@pytest.fixture
def script(tmp_path, monkeypatch, load_script):
    mod = load_script("aot_paper_table")
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(mod, "RUNS", [str(tmp_path / "runs")])
    return mod


def _report(fits, use, method="compiled at 2 and 4 layers, compiler numbers extrapolated affinely to 36 layers",
            oom=None, micro=16):
    mem = {"temp": 20 * GiB, **({"oom": oom} if oom else {})}
    return {"fits": fits, "hbm_use": use, "method": method, "train_step": {"memory": mem},
            "config": {"micro_batches": micro}, "peak_bytes_per_chip": {"max": use * 16 * GiB},
            "target": {"hbm_bytes": 16 * GiB}, "time": {"step_s_at_peak": 18.2},
            "suggestions": ["smaller micro-batches: --config.algo.micro_batches=32", "or a larger slice"]}


def _save(script, tag, rep):
    with open(os.path.join(script.RUNS[0], f"{tag}.json"), "w") as f:
        json.dump(rep, f)


def test_a_fitting_cell_names_the_slices_that_did_not(script):
    _save(script, "4b_v5e-16_sfsdp", _report(False, 1.07))
    method = ("compiled at 2 and 4 layers, compiler numbers extrapolated affinely to 36 layers "
              "(not affine, shown at 4 layers: train.temp, sample_s)")
    row = {"model": "4b", "gen": "v5e", "analytic": "v5e-16", "variant": ["--config.mesh.sample_fsdp=True"],
           "scanned": [("v5e-8", [], False, 1), ("v5e-16", [], True, 1)], "compiled": "v5e-32",
           "tried": [("v5e-16", False, 1.0), ("v5e-32", True, 1.0)], "report": _report(True, 0.91, method)}
    cell = script.cell(row)
    assert cell.startswith("**v5e-32** (`sample_fsdp=True`): peak 14.6 / 16 GiB (91%)")
    assert "compiled and did not fit: v5e-16 107%" in cell and "smaller sizes do not fit (analytic)" in cell
    assert "train.temp shrank from 2 to 4 layers" in cell and "sample_s" not in cell  # seconds are not memory


def test_no_slice_fits_when_every_compile_runs_out_of_hbm(script):
    for n in (32, 64):
        _save(script, f"8b_v5e-{n}", _report(False, 1.3, oom="Ran out of memory in memory space hbm"))
    row = {"model": "8b", "gen": "v5e", "analytic": "v5e-32", "variant": [], "scanned": [], "compiled": None,
           "tried": [("v5e-32", False, 1.0), ("v5e-64", False, 1.0)], "report": None}
    assert script.cell(row) == ("none at 16 micro-batches: v5e-32 to v5e-64 compiled, the compiler runs out of "
                                "HBM in the train step (needs `micro_batches` >= 32)")
    row["analytic"], row["tried"] = None, []
    assert script.cell(row) == "none up to 256 chips (analytic)"


def test_other_depths_have_their_own_reports(script):
    row = {"model": "14b", "gen": "v5p", "layers": "4,8", "variant": []}
    _save(script, "14b_v5p-32_L4-8", _report(True, 0.61))
    _save(script, "14b_v5p-32", _report(False, 1.77))
    assert script._tried_report(row, "v5p-32")["hbm_use"] == 0.61
    assert script._tried_report(dict(row, layers="2,4"), "v5p-32")["hbm_use"] == 1.77


def test_a_partial_run_keeps_the_other_cells(script, tmp_path, monkeypatch):
    out = tmp_path
    kept = {"model": "4b", "gen": "v5e", "analytic": None, "variant": [], "scanned": []}
    redo = {"model": "14b", "gen": "v5p", "analytic": None, "variant": [], "scanned": []}
    (out / "paper_table.json").write_text(json.dumps([kept, redo]))
    monkeypatch.setattr(script, "one", lambda m, g, work: {"model": m, "gen": g, "analytic": None, "variant": [],
                                                           "scanned": [], "new": True})
    monkeypatch.setattr(sys, "argv", ["aot_paper_table", "--models", "14b", "--gens", "v5p", "--out", str(out)])
    script.main()
    rows = json.loads((out / "paper_table.json").read_text())
    assert {(r["model"], r["gen"]) for r in rows} == {("4b", "v5e"), ("14b", "v5p")}
    assert next(r for r in rows if r["model"] == "14b").get("new") is True
    md = (out / "paper_table.md").read_text()
    assert "| Qwen3-4B |" in md and "| Qwen3-14B |" in md


def test_a_reused_report_is_judged_against_todays_chip_table(script):
    """A real report (Qwen3-8B on v6e-16) made when the chip table said 32 GiB: its 31.86 GiB peak is over
    the 31.25 GiB the TPU compiler makes available, so it no longer fits."""
    with open(os.path.join(ROOT, "docs", "aot", "runs", "8b_v6e-16_sfsdp_L4-8.json")) as f:
        rep = json.load(f)
    rep = rep[0] if isinstance(rep, list) else rep
    rep["target"]["hbm_bytes"], rep["fits"] = 32 * GiB, True  # as judged then
    out = script.rejudge(rep)
    peak = rep["peak_bytes_per_chip"]["max"]
    assert 31.25 * GiB < peak < 32 * GiB
    assert out["fits"] is False and out["hbm_use"] == pytest.approx(peak / (31.25 * GiB), rel=1e-6)
    assert out["target"]["hbm_bytes"] == int(31.25 * GiB) and out["suggestions"]
