"""The text path end to end on a tiny HF-format model with a real `tokenizers` tokenizer built here (no hub):
held-out evaluation at the start / every eval.every / the end, sample completions in JSONL and TensorBoard,
a checkpoint and a resume bit-identical to an uninterrupted run, SIGTERM save-and-exit, and rlvr-eval on
the run's checkpoint with its "initial" row being the policy the trainer started from."""
import json
import os
import shutil
import signal

import jax
import numpy as np
import pytest

from rlvr_jax import models
from rlvr_jax.config import base_config, validate
from rlvr_jax.train import loop

WORDS = ["what", "is", "plus", "?", "3", "4", "7", "8"]  # few tokens: random responses often hold the answer
SPECIALS = ["<pad>", "<eos>", "<unk>"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An HF folder: a tiny random Llama (config.json + safetensors) and a WordLevel tokenizer."""
    from tokenizers import Tokenizer, decoders, models as tok_models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    d = tmp_path_factory.mktemp("tiny_hf")
    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS)}
    tk = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece()
    hf = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    hf.save_pretrained(str(d))
    mc = models.tiny(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                     num_kv_heads=1, eos_token_id=1, bos_token_id=None, pad_token_id=0)
    models.save_pretrained(models.create(mc, seed=3), str(d))
    sums = [(3, 4), (4, 3), (4, 4)]
    rows = [{"prompt": "what " * (j + 1) + f"is {a} plus {b} ?", "answer": str(a + b)} for j in range(5)
            for a, b in sums]
    with open(d / "rows.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return d


def _cfg(model_dir, log_dir, **kw):
    cfg = base_config()
    cfg.model.source, cfg.model.path = "hf", str(model_dir)
    cfg.data.source, cfg.data.path, cfg.data.template = "jsonl", str(model_dir / "rows.jsonl"), "none"
    cfg.data.eval_size = 6
    cfg.reward.verifier = "exact"
    cfg.rollout.group_size, cfg.rollout.prompts_per_step, cfg.rollout.max_new_tokens = 4, 2, 6
    cfg.rollout.prompt_buckets = "16"
    cfg.optim.learning_rate = 3e-2
    cfg.train.steps = 4
    cfg.eval.every, cfg.eval.num_samples, cfg.eval.ks = 2, 4, "1,2,4"
    cfg.checkpoint.every, cfg.checkpoint.async_save = 2, False
    cfg.log.dir, cfg.log.progress, cfg.log.samples = str(log_dir), False, 2
    for k, v in kw.items():
        g, f = k.split(".")
        cfg[g][f] = v
    return validate(cfg)


def _params(state):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.policy))]


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_memory_window_and_tilt_metrics_on_the_text_path(model_dir, tmp_path):
    """memory.window = 2 on text prompts (the replay holds them at the largest prompt bucket): the replay fills,
    and every step's metrics.jsonl row has the tilt diagnostics and sampling_entropy."""
    out = loop.run(_cfg(model_dir, tmp_path, **{"memory.enabled": True, "memory.width_ratio": 0.5,
                                                "memory.num_layers": 1, "memory.window": 2, "train.steps": 2,
                                                "log.samples": 0}))
    replay = jax.device_get(out["state"].replay)
    assert replay["prompt_BxP"].shape == (1, 8, 16) and bool(np.all(replay["valid_B"]))
    rows = [r for r in _jsonl(tmp_path / "metrics.jsonl") if "loss" in r]
    keys = {"memory_kl", "tilt_slope", "tilt_temperature", "tilt_entropy", "memory_lag_ce", "sampling_entropy"}
    assert len(rows) == 2 and all(keys <= set(r) for r in rows)
    assert all(r["memory_kl"] > 0 and r["sampling_entropy"] > 0 for r in rows)


@pytest.fixture(scope="module")
def full_run(model_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("full")
    return d, loop.run(_cfg(model_dir, d))


def test_evaluates_at_start_every_and_end_and_logs_samples(full_run):
    d, out = full_run
    evals = _jsonl(d / "evals.jsonl")
    assert [e["step"] for e in evals] == [0, 2, 4]
    res = evals[0]["results"]["heldout"]
    assert res["num_queries"] == 6 and res["num_samples"] == 4 and res["ks"] == [1, 2, 4]
    p = res["pass@k"]
    assert 0.0 <= p["1"]["lo"] <= p["1"]["mean"] <= p["1"]["hi"] <= 1.0 and p["1"]["mean"] <= p["4"]["mean"]
    for key in ("response_len_mean", "truncated_frac", "status/correct", "status/unparsable"):
        assert key in res
    assert abs(sum(v for k, v in res.items() if k.startswith("status/")) - 1.0) < 1e-6
    summary = json.load(open(d / "summary.json"))
    assert summary["before"] == evals[0]["results"] and summary["after"] == evals[-1]["results"]
    assert summary["base_param_fingerprint"] != summary["final_param_fingerprint"]  # it trained
    for png in ("passk_before_after.png", "passk_over_steps.png"):
        assert (d / png).stat().st_size > 5_000
    samples = _jsonl(d / "samples.jsonl")
    assert [s["step"] for s in samples] == [1, 1, 2, 2, 3, 3, 4, 4]  # log.every=1, log.samples=2
    for s in samples:
        assert s["prompt"].startswith("what ") and isinstance(s["completion"], str)
        assert s["status"] in ("correct", "wrong", "unparsable") and s["reward"] in (0.0, 1.0)
    metrics = _jsonl(d / "metrics.jsonl")
    assert any("eval/heldout/pass@1" in m for m in metrics)
    step_rows = [m for m in metrics if "time/update" in m]
    assert len(step_rows) == 4
    for m in step_rows:  # the phases measure work: they add up to (nearly) the step's wall time
        phases = m["time/sample"] + m["time/verify"] + m["time/update"]
        assert m["time/update"] > 0 and phases <= m["time/s_per_it"] * 1.05 + 0.05
    from rlvr_jax.train.metrics import read_event_scalars  # noqa: F401  (the TB file holds the text entries)
    tb = [f for f in os.listdir(d / "tb")]
    assert tb and any(os.path.getsize(d / "tb" / f) > 0 for f in tb)


def test_heldout_rows_never_train(model_dir, tmp_path):
    from rlvr_jax.data.sources import make_eval_sets, make_source
    cfg = _cfg(model_dir, tmp_path)
    (name, held), = make_eval_sets(cfg)
    assert name == "heldout" and len(held) == 6
    src = make_source(cfg)
    train_rows, _ = src.take(len(src))
    assert len(train_rows) == 9 and {r["prompt"] for r in held}.isdisjoint({r["prompt"] for r in train_rows})


def test_resume_from_a_checkpoint_is_bit_identical(model_dir, full_run, tmp_path):
    full_dir, full = full_run
    assert sorted(os.listdir(full_dir / "ckpt")) == ["2", "4"]
    shutil.copytree(full_dir / "ckpt" / "2", tmp_path / "ckpt" / "2")
    shutil.copy(full_dir / "evals.jsonl", tmp_path / "evals.jsonl")  # what the killed run had written
    resumed = loop.run(_cfg(model_dir, tmp_path))
    for a, b in zip(_params(full["state"]), _params(resumed["state"])):
        np.testing.assert_array_equal(a, b)
    assert json.load(open(tmp_path / "summary.json"))["before"] == json.load(open(full_dir / "summary.json"))["before"]


def test_continuous_engine_trains_exactly_as_the_static_sampler(model_dir, full_run, tmp_path):
    """3 decode slots for 8 rows: the engine refills, streams groups to the verifier, and samples the very
    tokens of the static run, so the run's rewards and completions are the same and it ends on the same
    parameters (up to float order: XLA's dots of 3 slot rows and of 8 batch rows round differently)."""
    full_dir, full = full_run
    out = loop.run(_cfg(model_dir, tmp_path, **{"rollout.engine": "continuous", "rollout.slots": 3,
                                                "rollout.decode_chunk": 2}))
    for a, b in zip(_params(full["state"]), _params(out["state"])):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert _jsonl(tmp_path / "samples.jsonl") == _jsonl(full_dir / "samples.jsonl")
    def steps(d):  # the training steps' rows (evaluation rows are interleaved)
        return [r for r in _jsonl(d / "metrics.jsonl") if "correct_mean" in r]
    m, ref = steps(tmp_path), steps(full_dir)
    assert len(m) == 4 and all(r["rollout_continuous"] == 1.0 and r["rollout_slots"] == 3.0 for r in m)
    assert [r["correct_mean"] for r in m] == [r["correct_mean"] for r in ref]
    assert all(r["rollout_continuous"] == 0.0 for r in ref)


def test_sigterm_saves_and_exits_then_resumes_bit_identically(model_dir, full_run, tmp_path, monkeypatch):
    full_dir, full = full_run
    from rlvr_jax.train import collect_text
    real = collect_text.TextCollector.collect_and_update

    def preempted_at_step_3(self, state, step, n):
        if step == 2:  # during the third step, as a TPU preemption would
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, state, step, n)
    monkeypatch.setattr(collect_text.TextCollector, "collect_and_update", preempted_at_step_3)
    with pytest.raises(SystemExit) as e:
        loop.run(_cfg(model_dir, tmp_path))
    assert e.value.code == 0 and sorted(os.listdir(tmp_path / "ckpt")) == ["2", "3"]
    monkeypatch.setattr(collect_text.TextCollector, "collect_and_update", real)
    resumed = loop.run(_cfg(model_dir, tmp_path))
    for a, b in zip(_params(full["state"]), _params(resumed["state"])):
        np.testing.assert_array_equal(a, b)
    assert [e["step"] for e in _jsonl(tmp_path / "evals.jsonl")] == [0, 2, 4]


def test_rlvr_eval_on_text_checkpoints(model_dir, full_run, tmp_path):
    from rlvr_jax import cli
    full_dir, _ = full_run
    out = tmp_path / "eval"
    cfg_file = tmp_path / "text_run.py"  # the run's config as a config file, as a user would keep it
    cfg_file.write_text("import json\nfrom rlvr_jax.config import base_config\n\n\ndef get_config():\n"
                        "    c = base_config()\n"
                        f"    for g, sub in json.loads({json.dumps(json.dumps(_cfg(model_dir, full_dir).to_dict()))})"
                        ".items():\n"
                        "        for k, v in sub.items():\n            c[g][k] = v\n    return c\n")
    cli.eval_main(["rlvr-eval", "--config", str(cfg_file), f"--checkpoint={full_dir / 'ckpt'}", f"--out={out}"])
    res = json.load(open(out / "eval.json"))
    assert set(res) == {"initial", "ckpt@4"}
    trainer = json.load(open(full_dir / "summary.json"))
    # "initial" is the policy the trainer started from: the same samples give the same pass@k
    assert res["initial"]["heldout"]["pass@k"] == trainer["before"]["heldout"]["pass@k"]
    assert res["ckpt@4"]["heldout"]["pass@k"] == trainer["after"]["heldout"]["pass@k"]
    assert (out / "passk.png").stat().st_size > 5_000
