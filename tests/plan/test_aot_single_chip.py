"""scripts/aot_single_chip.py: a compiled report decides its cell and the table says at which depths it was
compiled and how large the train step's program is, an analytic-only cell says so, a cell with no report says
"not run", and --compile keeps its order and refuses unknown cells. Reads the committed reports of
docs/aot/lora/runs (no compile here)."""
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNS = os.path.join(ROOT, "docs", "aot", "lora", "runs")


@pytest.fixture
def script(load_script):
    return load_script("aot_single_chip")


def test_rows_name_how_each_cell_was_planned(script, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("0.6b_1k_v5e-1_lora", "0.6b_1k_v5e-1_lora_analytic", "0.6b_1k_v6e-1_full_analytic"):
        shutil.copy(os.path.join(RUNS, name + ".json"), runs)
    compiled = script.row(("0.6b", 1024, "v5e-1", "lora"), str(runs))
    assert "| Qwen3-0.6B | 1k | v5e-1 | LoRA r32 | **yes** (43%) |" in compiled
    assert "| 15.75 | 3.56 | engine 22 slots | compiled (2+4 layers); analytic 82% |" in compiled  # HBM, code
    assert script.row(("0.6b", 1024, "v6e-1", "full"), str(runs)).endswith("| analytic |")
    assert "| not run |" in script.row(("4b", 2048, "v5e-8", "full"), str(runs))
    script.write_table(str(runs), str(tmp_path))
    summary = (tmp_path / "single_chip_summary.md").read_text()
    assert "**fits** 43% (compiled 2+4; code +23%)" in summary and "not run" in summary


def test_compile_list_keeps_its_order_and_refuses_unknown_cells(script, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    for c in script.cells():  # every analytic report in place (reused), so nothing is planned here
        shutil.copy(os.path.join(RUNS, script.tag(*c) + "_analytic.json"), runs)
    done = []
    monkeypatch.setattr(script, "compile_cell", lambda c, *a: done.append(script.tag(*c)))
    monkeypatch.setattr("sys.argv", ["aot_single_chip", "--out", str(tmp_path), "--reuse",
                                     "--compile", "4b_2k_v5e-8_lora,0.6b_1k_v6e-1_full"])
    script.main()
    assert done == ["4b_2k_v5e-8_lora", "0.6b_1k_v6e-1_full"]
    monkeypatch.setattr("sys.argv", ["aot_single_chip", "--out", str(tmp_path), "--reuse", "--compile", "4b_9k"])
    with pytest.raises(SystemExit, match="unknown cell '4b_9k'"):
        script.main()


def test_sampler_only_keeps_the_train_step_and_the_old_report_on_failure(script, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    cell, name = ("0.6b", 2048, "v5e-8", "full"), "0.6b_2k_v5e-8_full"
    with pytest.raises(SystemExit, match="has no compiled report to take the train step from"):
        script.compile_cell(cell, str(runs), True, "1,2", sampler_only=True)
    shutil.copy(os.path.join(RUNS, name + ".json"), runs)
    before = (runs / f"{name}.json").read_text()
    cmds = []

    def fake_run(cmd, rc, **kw):
        cmds.append(cmd)
        old = next(a.split("=", 1)[1] for a in cmd if a.startswith("--train_from="))
        assert open(old).read() == before  # the train step comes from the report that was there
        if rc == 0:
            shutil.copy(old, next(a.split("=", 1)[1] for a in cmd if a.startswith("--out=")))
        return type("Done", (), {"returncode": rc})()
    monkeypatch.setattr(script.subprocess, "run", lambda cmd, **kw: fake_run(cmd, 1, **kw))
    assert script.compile_cell(cell, str(runs), True, "1,2", sampler_only=True) is None
    assert (runs / f"{name}.json").read_text() == before and not (runs / f"{name}_train_from.json").exists()
    monkeypatch.setattr(script.subprocess, "run", lambda cmd, **kw: fake_run(cmd, 0, **kw))
    assert script.compile_cell(cell, str(runs), True, "1,2", sampler_only=True)["fits"] is not None
    assert sorted(os.listdir(runs)) == [f"{name}.json", f"{name}.log"] and "--layers=1,2" in cmds[-1]
