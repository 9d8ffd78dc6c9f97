"""Every config field acts: for each field of `config.SCHEMA` a probe sets a valid non-default value on a run
where the field is active (`active_fields.inactive_fields` does not list it there) and shows a traced program or an
output changes: the train step's or the fused iteration's jaxpr, advantages, sampling logits, built models,
optimiser updates, rewards, prompt rows, metrics files, checkpoint settings, evaluator results, the CLI, or a
(stubbed, seconds-long) run of the token loop. A field without a probe fails `test_every_field_has_a_probe`, so
a new field needs one. Fields that act only on some runs are refused on the others (`refuse_inactive`); a few
of those rules are checked the other way round too (the field really changes nothing there).
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import io
import json
import os
import re
import shutil
import tempfile
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from rlvr_jax import cli, host_alloc, models, parallel
from rlvr_jax.algos.advantages import compute_advantages
from rlvr_jax.active_fields import TEXT_EVAL_FIELDS, inactive_fields, refuse_inactive
from rlvr_jax.config import SCHEMA, ConfigError, apply_variant, base_config, validate
from rlvr_jax.data.sources import make_eval_sets, make_source
from rlvr_jax.rewards import factory as reward_factory
from rlvr_jax.rewards.base import Status, Verdict
from rlvr_jax.sampling import SamplingConfig
from rlvr_jax.sampling.decode_kernels import kernel_blocker
from rlvr_jax.sampling.next_token import sampling_logits
from rlvr_jax.sampling.sampler import pad_to_bucket
from rlvr_jax.train import collect_tokens, console, evaluate, loop
from rlvr_jax.train.build import build, build_policy, build_task
from rlvr_jax.train.checkpoint import Checkpointer, open_and_resume
from rlvr_jax.train.iteration import make_iteration, overlong_shaping, query_pool
from rlvr_jax.train.metrics import MetricsWriter
from rlvr_jax.train import pretrain as pretrain_mod
from rlvr_jax.train.pretrain import pretrain
from rlvr_jax.train.program import train_program, updates_per_run
from rlvr_jax.train.state import make_optimizers, params_of

ALL_FIELDS = [f"{g}.{k}" for g, fields in SCHEMA.items() for k in fields]
SCHEMA_DEFAULTS = base_config().to_dict()
TMP = tempfile.mkdtemp(prefix="rlvr_field_probes_")
atexit.register(shutil.rmtree, TMP, ignore_errors=True)
_n = [0]


def fresh_dir(name="d") -> str:
    _n[0] += 1
    path = os.path.join(TMP, f"{name}{_n[0]}")
    os.makedirs(path)
    return path


def _set(cfg, name, value):
    group, key = name.split(".")
    cfg[group][key] = value


def _get(cfg, name):
    group, key = name.split(".")
    return cfg[group][key]


# ------------------------------------------------------------------------------------------------ base runs

def TOKEN():
    """A tiny embedded token-task run (whole iterations on device: train/collect_tokens.py)."""
    c = base_config()
    c.model.hidden_size, c.model.intermediate_size, c.model.num_layers = 16, 32, 1
    c.model.num_heads, c.model.num_kv_heads = 2, 1
    c.rollout.group_size, c.rollout.prompts_per_step, c.rollout.max_new_tokens = 2, 2, 4
    c.data.size, c.data.eval_size = 8, 2
    c.eval.num_samples, c.eval.ks = 2, "1,2"
    c.train.steps = 2
    c.log.dir = fresh_dir("run")
    c.log.tensorboard = False
    return c


def TOKEN_MEM():
    c = TOKEN()
    c.memory.enabled, c.memory.width_ratio, c.memory.num_layers = True, 0.5, 1
    return c


def with_(base, **fields):
    """A base factory: `base()` with these fields ("group__key": value) set."""
    def make():
        c = base()
        for k, v in fields.items():
            _set(c, k.replace("__", "."), v)
        return c
    return make


ROWS = [{"prompt": f"What is {i}+{i}?", "answer": str(2 * i), "problem": f"Double {i}.",
         "solution": f"It is \\boxed{{{2 * i}}}."} for i in range(1, 5)]


def _jsonl(name, rows, bad_line=None):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        if bad_line is not None:
            f.write(bad_line + "\n")
    return path


JSONL_A = _jsonl("a.jsonl", ROWS)
JSONL_B = _jsonl("b.jsonl", ROWS[::-1])
JSONL_BAD = _jsonl("bad.jsonl", ROWS, bad_line='{"prompt": "no answer"}')


def TEXT():
    """A text-task run on a JSONL file (train/collect_text.py), verified by exact match, one row held out."""
    c = base_config()
    c.model.source = "gguf"
    c.data.source, c.data.path, c.data.eval_size = "jsonl", JSONL_A, 1
    c.reward.verifier = "exact"
    c.log.dir = fresh_dir("text")
    return c


def GYM():
    c = TEXT()
    c.data.source, c.data.path, c.data.task = "reasoning_gym", "", "basic_arithmetic"
    c.data.size, c.data.eval_size = 8, 2
    c.reward.verifier = "task"
    return c


def HF_DATA():
    c = TEXT()
    c.data.source, c.data.path = "hf", _hf_dataset()
    return c


@functools.lru_cache(None)
def _hf_dataset():
    datasets = pytest.importorskip("datasets")
    path = os.path.join(TMP, "hf_data")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:2]),
                          "test": datasets.Dataset.from_list(ROWS[2:])}).save_to_disk(path)
    return path


@functools.lru_cache(None)
def _hf_model(hidden: int) -> str:
    """A tiny HF checkpoint folder (config.json + safetensors)."""
    path = os.path.join(TMP, f"hf_model_{hidden}")
    models.save_pretrained(models.create(models.tiny("llama", vocab_size=32, hidden_size=hidden, num_layers=1,
                                                     intermediate_size=32, num_heads=2, num_kv_heads=1)), path)
    return path


def HF_MODEL():
    c = TOKEN()
    for k in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads"):
        c.model[k] = SCHEMA["model"][k].default  # the folder brings its own shape
    c.model.source, c.model.path = "hf", _hf_model(16)
    return c


def PRESET():
    c = TOKEN()
    c.model.source, c.model.preset = "preset", "smollm2-135m"
    return c


def _mesh_fsdp():
    c = TOKEN()
    c.mesh.data, c.mesh.fsdp = 4, 2
    return c


# ------------------------------------------------------------------------------------------------ observers

_ADDR = re.compile(r" at 0x[0-9a-f]+|id=\d+")


def _text(x) -> str:
    return _ADDR.sub("", str(x))


def cached(observe):
    """Memoises a pure observer on the config (log.dir aside: every base run gets a fresh folder)."""
    memo = {}

    @functools.wraps(observe)
    def wrapper(cfg):
        d = cfg.to_dict()
        d["log"].pop("dir")
        key = json.dumps(d, sort_keys=True, default=str)
        if key not in memo:
            memo[key] = observe(cfg)
        return memo[key]
    return wrapper


def _tree(tree) -> str:
    """Shapes, dtypes and a checksum of every leaf (None: no model)."""
    if tree is None:
        return "None"
    def one(path, x):
        total = "" if isinstance(x, jax.ShapeDtypeStruct) else float(np.sum(np.abs(np.asarray(x, np.float32))))
        return f"{jax.tree_util.keystr(path)} {x.shape} {x.dtype} {total}"
    return "\n".join(one(p, x) for p, x in jax.tree_util.tree_leaves_with_path(tree))


def policy_tree(cfg):
    return _tree(nnx.state(build(cfg).policy, nnx.Param))


def memory_tree(cfg):
    mem = build(cfg).memory
    return _tree(None if mem is None else nnx.state(mem, nnx.Param))


def preset_shapes(cfg):
    """The policy build_policy makes, created abstractly (a preset has billions of parameters)."""
    with mock.patch.object(models, "create", lambda pc, seed=0: models.abstract(pc)):
        return _tree(nnx.state(build_policy(cfg, build_task(cfg))[0], nnx.Param))


def hf_policy(cfg):
    """The policy build_policy loads (tokenizer loading stubbed: the tiny folder has none)."""
    with mock.patch("rlvr_jax.models.tokenizer.load_tokenizer", lambda *a, **k: None):
        model, _ = build_policy(cfg, build_task(cfg))
    return _tree(nnx.state(model, nnx.Param)), model.cfg


def gguf_calls(cfg):
    """What build_policy asks the GGUF loader and tokenizer for (both stubbed: no GGUF file needed)."""
    calls = []
    tiny = models.create(models.tiny("llama", vocab_size=32, hidden_size=16, num_layers=1))
    with mock.patch("rlvr_jax.models.gguf_io.load_gguf", lambda *a, **k: calls.append(("model", a, k)) or tiny), \
            mock.patch("rlvr_jax.models.tokenizer.load_tokenizer", lambda *a, **k: calls.append(("tok", a, k))):
        build_policy(cfg)
    return calls


def _program(cfg, mesh=None):
    b = build(cfg)
    prog = train_program(cfg, b.policy, b.memory, mesh or parallel.single_device_mesh(), updates_per_run(cfg))
    return b, prog


@cached
def step_jaxpr(cfg):
    """The train step of the run (TrainProgram.step) traced on one optimiser step's batch."""
    _, prog = _program(cfg)
    return _text(jax.make_jaxpr(prog.step)(prog.abstract_state, prog.abstract_batch(3, cfg.rollout.max_new_tokens)))


@cached
def iteration_jaxpr(cfg):
    """The fused on-device iteration, made as collect_tokens.TokenCollector makes it (on the run's mesh)."""
    mesh = parallel.make_mesh(cfg.mesh)
    b, prog = _program(cfg, mesh)
    scfg = SamplingConfig.from_config(cfg, stop_token_ids=b.stop_token_ids, pad_id=b.pad_id)
    it = make_iteration(b.task, cfg, prog.policy_graphdef, prog.memory_graphdef, prog.step, scfg, mesh=mesh,
                        sampling_policy=prog.sampling_policy)
    pool = query_pool(b.task.sample(np.random.default_rng(0), cfg.data.size))
    return _text(jax.make_jaxpr(it)(prog.abstract_state, pool))


_Z = np.random.default_rng(0).normal(size=(2, 24)).astype(np.float32) * 3


def logits(cfg):
    """The logits tokens are drawn from, under the run's SamplingConfig (the memory's when it has one)."""
    zm = jnp.asarray(_Z[::-1]) if cfg.memory.enabled else None  # build_memory: a memory network iff enabled
    return np.asarray(sampling_logits(jnp.asarray(_Z), zm, SamplingConfig.from_config(cfg))).tobytes()


_R = np.array([[0, 1, 0.7, 0], [1, 1, 1, 0], [0, 0, 0, 1]], np.float32)


_LP = np.array([[-3, -1, -2, -4], [-1, -2, -5, -3], [-2, -1, -4, -3]], np.float32)  # sequence log-probs


def advantages(cfg):
    adv, stats = compute_advantages(jnp.asarray(_R), jnp.ones(_R.shape, bool), cfg.algo, jnp.asarray(_LP))
    return np.asarray(adv).round(6).tobytes(), {k: round(float(v), 6) for k, v in stats.items()}


def overlong(cfg):
    r, v = overlong_shaping(jnp.ones(4), jnp.array([1, 2, 3, 4]), jnp.array([False, False, False, True]), cfg.algo,
                            cfg.rollout.max_new_tokens)
    return np.asarray(r).tobytes(), np.asarray(v).tobytes()


def optimizer_updates(cfg):
    """Parameters after three updates by the run's policy and memory optimisers."""
    out = []
    for tx in make_optimizers(cfg, updates_per_run(cfg)):
        p = {"w": jnp.ones(3)}
        s = tx.init(p)
        for scale in (1.0, -2.0, 3.0):  # gradients that change (Adam's moments of a constant one cancel b1, b2)
            u, s = tx.update({"w": scale * jnp.array([0.1, -0.2, 0.3])}, s, p)
            p = optax.apply_updates(p, u)
        out.append(np.asarray(p["w"]).tobytes())
    return out


@cached
def warm_up(cfg):
    """The warmed-up policy and its loss curve."""
    b = build(cfg)
    policy, losses = pretrain(b.policy, b.task, cfg, log=lambda *a: None)
    return [round(x, 6) for x in losses], _tree(nnx.state(policy, nnx.Param))


class _Stop(Exception):
    pass


def sft_batches(cfg):
    """The supervised batches the warm-up would train on (stopped before it compiles anything)."""
    got = []

    def capture(*args, **kw):
        got.append(real(*args, **kw))
        raise _Stop

    real = pretrain_mod.make_sft_batches
    b = build(cfg)
    with mock.patch.object(pretrain_mod, "make_sft_batches", capture):
        try:
            pretrain(b.policy, b.task, cfg, log=lambda *a: None)
        except _Stop:
            pass
    return [np.asarray(x).tobytes() for x in got[0]] if got else "no warm-up"


class FakePool:
    """Stands in for the verifier process pool: records what it was built with, answers 0.25 / wrong."""

    def __init__(self, *args, **kw):
        self.built_with = (args, kw)

    def verify_batch(self, responses, references, kind):
        return [Verdict(0.25, Status.WRONG) for _ in responses]

    def close(self):
        pass


RESPONSES = ["\\boxed{4}", "the answer is 4.01", "4", "I think 5"]


def rewards(cfg):
    with mock.patch("rlvr_jax.rewards.pool.VerifierPool", FakePool):
        fn = reward_factory.make_reward_fn(cfg)
        verdicts = fn(RESPONSES, ["4"] * len(RESPONSES))
    return [(v.reward, v.status) for v in verdicts], getattr(fn.pool, "built_with", None)


class ChatTok:
    chat_template = "fake"

    def apply_chat_template(self, messages, **kw):
        return " | ".join(f"{m['role']}: {m['content']}" for m in messages)


def rows(cfg):
    """The first prompt rows, from the source collect_text.TextCollector makes (same arguments)."""
    try:
        src = make_source(cfg, tokenizer=ChatTok(), plain_template=cfg.data.plain_template)
        got, _ = src.take(3)
        return [(r["prompt"], str(r["reference"])) for r in got], src.metrics()
    except ValueError as e:  # DataError
        return f"{type(e).__name__}: {e}"


def eval_sets(cfg):
    """The held-out sets of a text run, as collect_text.text_evaluator asks for them."""
    try:
        sets = make_eval_sets(cfg, tokenizer=ChatTok(), plain_template=cfg.data.plain_template)
    except ValueError as e:  # DataError
        return f"{type(e).__name__}: {e}"
    return [(name, [(r["prompt"], str(r["reference"])) for r in got]) for name, got in sets]


def task_name(cfg):
    task = build_task(cfg)
    return None if task is None else task.name


def mesh_shape(cfg):
    return dict(parallel.make_mesh(cfg.mesh).shape)


@functools.lru_cache(None)
def _built(key):
    return build(validate(ml_collections.ConfigDict(json.loads(key))))


def _evaluator(cfg):
    """The run's evaluator; the model and task are shared by runs that differ only in eval.* / log.* (so the
    compiled sampler is reused)."""
    d = cfg.to_dict()
    for g in ("eval", "log"):
        d[g] = SCHEMA_DEFAULTS[g]
    b = _built(json.dumps(d, sort_keys=True))
    return evaluate.TaskEvaluator(b.task, cfg, b.stop_token_ids, b.pad_id), *params_of(b.policy)


def eval_queries(cfg):
    ev, _, _ = _evaluator(cfg)
    return ev.prompts.shape, np.asarray(ev.prompts).tobytes()


@cached
def evaluation(cfg):
    """The evaluator's pass@k on the untrained policy (the exact mode instruments left out)."""
    ev, pg, params = _evaluator(cfg)
    res = ev(pg, params, modes_too=False)
    return res["pass@k"], res["response_len_mean"]


def eval_sampler_jaxpr(cfg):
    """The evaluator's sampling program (sample_core with the run's rollout.matmul, off the mesh)."""
    ev, pg, params = _evaluator(cfg)
    return _text(jax.make_jaxpr(lambda p: evaluate._sample_verify(
        pg, p, ev.prompts, ev.mask, ev.params, jax.random.key(0), ev.scfg, ev.task.verify_tokens))(params))


def rollout_run(cfg):
    """Which engine the text loop's `Rollouts` runs for one step's rows, and how (slots, dispatches, KV)."""
    from rlvr_jax.models import create, tiny
    from rlvr_jax.sampling.rollouts import Rollouts
    model = create(tiny("llama", vocab_size=32, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
                        num_kv_heads=1), 0)
    n, G = cfg.rollout.prompts_per_step, cfg.rollout.group_size
    ro = Rollouts.from_config(cfg)
    scfg = SamplingConfig.from_config(cfg).replace(max_new_tokens=6)
    out = ro(model, np.arange(1, 3 * n + 1).reshape(n, 3) % 31 + 1, None, jax.random.key(0), scfg)
    st = ro.stats
    return ro.last, st.get("slots"), st.get("dispatches"), st.get("kv_bytes"), np.asarray(out.tokens_BxN).tobytes()


_STATE = {"w": jnp.arange(3.0)}


def checkpointing(cfg):
    """What open_and_resume sets up for the run: folder, steps kept after four saves, async option, resume."""
    log_dir = cfg.log.dir
    Checkpointer(os.path.join(log_dir, "ckpt"), keep=10, async_save=False).save(7, _STATE)  # an earlier run
    sh = jax.tree.map(lambda x: x.sharding, _STATE)
    ckpt, start, _, _ = open_and_resume(cfg, log_dir, _STATE, sh, log=lambda *a: None)
    for s in (8, 9, 10):
        ckpt.save(s, _STATE)
    ckpt.wait()
    inside = os.path.commonpath([str(ckpt.directory), os.path.abspath(log_dir)]) == os.path.abspath(log_dir)
    out = (inside, ckpt.all_steps(),
           ckpt._mgr._options.enable_async_checkpointing, start)  # orbax keeps the option only there
    ckpt.close()
    return out


def writer_files(cfg):
    d = fresh_dir("writer")
    try:
        with mock.patch.dict(os.environ, {"WANDB_MODE": "disabled"}):
            w = MetricsWriter(d, cfg.log)
            w.write(1, {"x": 1.0})
            w.close()
    except ConfigError as e:
        return f"ConfigError: {e}"
    return sorted(os.listdir(d))


def cli_allocator(cfg):
    """What rlvr-train does with train.host_allocator before JAX starts (the re-exec itself stubbed)."""
    seen = []
    with mock.patch.object(host_alloc, "ensure", seen.append):
        cli._host_allocator(cfg, None, True)
    return seen, [host_alloc.wanted(m) for m in seen]


# -- the loop (train/loop.py) on a token run, stubbed to seconds: real build, program, checkpoints, metrics and
#    loop logic; the iteration, the evaluator and the plots are stand-ins that record what the loop asked of them

class _FakeEvaluator:
    calls: list = []

    def __init__(self, task, cfg, stop_token_ids, pad_id):
        self.ks = [int(k) for k in cfg.eval.ks.split(",")]
        self.prompts = np.zeros((cfg.data.eval_size, 1))

    def set_reference(self, graphdef, params):
        pass

    def __call__(self, graphdef, params):
        _FakeEvaluator.calls.append(1)
        return {"pass@k": {str(k): {"mean": 0.0, "lo": 0.0, "hi": 0.0} for k in self.ks},
                "distinct_correct_mean": 0.0}


def _fake_make_iteration(task, cfg, pg, mg, train_step, scfg, **kw):
    def iteration(state, pool):
        met = dict(response_len_mean=jnp.float32(1), correct_mean=jnp.float32(0),
                   pool_size=jnp.float32(pool.prompts_QxP.shape[0]))
        return state.replace(step=state.step + 1), met
    return iteration


ELSEWHERE = os.path.join(TMP, "elsewhere")


@contextlib.contextmanager
def _stand_ins(multi):
    real_multi = collect_tokens.make_multi_iteration
    with mock.patch.object(collect_tokens, "make_iteration", _fake_make_iteration), \
            mock.patch.object(collect_tokens, "make_multi_iteration",
                              lambda it, n: multi.append(n) or real_multi(it, n)), \
            mock.patch.object(evaluate, "TaskEvaluator", _FakeEvaluator), \
            mock.patch("rlvr_jax.eval.plots.plot_passk_curves", lambda curves, path, **k: path), \
            mock.patch("rlvr_jax.eval.plots.plot_metric_grid", lambda panels, path, **k: path):
        yield


_LOOP_RUNS: dict = {}


def token_loop(cfg):
    """Runs loop.run with the stand-ins; -> what the run did (memoised on the config; base runs differ only by
    their fresh log.dir)."""
    d = cfg.to_dict()
    if d["log"]["dir"].startswith(os.path.join(TMP, "run")):
        d["log"]["dir"] = "<fresh>"
    key = json.dumps(d, sort_keys=True)
    if key not in _LOOP_RUNS:
        _LOOP_RUNS[key] = _token_loop(cfg)
    return _LOOP_RUNS[key]


def _token_loop(cfg):
    multi = []
    _FakeEvaluator.calls = []
    out = io.StringIO()
    with _stand_ins(multi), contextlib.redirect_stdout(out):
        summary = loop.run(cfg)
    with open(os.path.join(cfg.log.dir, "metrics.jsonl")) as f:
        recs = [json.loads(line) for line in f]
    text = out.getvalue()
    return dict(
        steps=summary["steps"], multi=multi, evals=len(_FakeEvaluator.calls),
        pool={r["pool_size"] for r in recs if "pool_size" in r},
        ckpt=sorted(os.listdir(os.path.join(cfg.log.dir, "ckpt"))),
        export=os.path.isdir(os.path.join(cfg.log.dir, "export")),
        console=len(re.findall(r"step \d+  ", text)), bar="RL:" in text,
        elsewhere=sorted(os.listdir(ELSEWHERE)) if os.path.isdir(ELSEWHERE) else [])


def loop_says(key):
    return lambda cfg: token_loop(cfg)[key]


SAMPLE = {"prompt": "What is 2+2?", "completion": "4", "reference": "4", "reward": 1.0, "status": "correct"}


def text_samples(cfg):
    """loop.drive on a text run's config, with a collector whose steps yield one sample completion (the text
    collector keeps log.samples of them): -> samples.jsonl lines, and the console lines showing samples."""
    with _stand_ins([]):
        c = collect_tokens.TokenCollector(validate(TOKEN()), build(validate(TOKEN())), parallel.make_mesh())
    c.samples = lambda: [SAMPLE][:cfg.log.samples]
    out = io.StringIO()
    with _stand_ins([]), contextlib.redirect_stdout(out):
        loop.drive(cfg, c)
    path = os.path.join(cfg.log.dir, "samples.jsonl")
    lines = open(path).read().splitlines() if os.path.exists(path) else []
    return len(lines), len(re.findall(r"sample @\d+", out.getvalue()))


# ------------------------------------------------------------------------------------------------ the probes

_KERNEL = kernel_blocker(None, ()) is None  # the CPU decode kernel can run here ("auto" picks it on one device)

# field: (non-default value, base run where it is active, observer)
PROBES = {
    # model: train/build.py
    "model.source": ("preset", with_(TOKEN, model__preset="smollm2-135m"), preset_shapes),
    "model.path": (_hf_model(32), HF_MODEL, hf_policy),
    "model.preset": ("qwen3-4b", PRESET, preset_shapes),
    "model.family": ("qwen3", TOKEN, policy_tree),
    "model.hidden_size": (32, TOKEN, policy_tree),
    "model.intermediate_size": (48, TOKEN, policy_tree),
    "model.num_layers": (3, TOKEN, policy_tree),
    "model.num_heads": (8, TOKEN, policy_tree),
    "model.num_kv_heads": (4, with_(TOKEN, model__num_heads=4), policy_tree),
    "model.dtype": ("bfloat16", TOKEN, step_jaxpr),
    "model.param_dtype": ("bfloat16", TOKEN, policy_tree),
    "model.remat": (True, TOKEN, step_jaxpr),
    "model.cache_dir": (os.path.join(TMP, "gguf_cache"), with_(TOKEN, model__source="gguf"), gguf_calls),
    # LoRA: build.add_adapters (the policy's params), the adapters' scale in the step, the sampler's graph
    "model.lora_rank": (4, TOKEN, policy_tree),
    "model.lora_alpha": (32.0, with_(TOKEN, model__lora_rank=4), step_jaxpr),
    "model.lora_targets": ("attention", with_(TOKEN, model__lora_rank=4), policy_tree),
    "model.lora_sampling": ("merged", with_(TOKEN, model__lora_rank=4), iteration_jaxpr),
    "model.lora_quant": ("int8", with_(TOKEN, model__lora_rank=4), policy_tree),
    # memory: build_memory, the sampler's tilt, the memory optimiser and loss
    "memory.enabled": (True, TOKEN, memory_tree),
    "memory.width_ratio": (1.0, TOKEN_MEM, memory_tree),
    "memory.num_layers": (2, TOKEN_MEM, memory_tree),
    "memory.init": ("policy", TOKEN_MEM, memory_tree),
    "memory.mu": (2.0, TOKEN_MEM, logits),
    "memory.plausibility": (0.3, TOKEN_MEM, logits),
    "memory.tilt_order": ("temperature_then_tilt", with_(TOKEN_MEM, rollout__temperature=0.7), logits),
    "memory.learning_rate": (1e-2, TOKEN_MEM, optimizer_updates),
    "memory.train_on": ("correct", TOKEN_MEM, step_jaxpr),
    "memory.window": (2, TOKEN_MEM, step_jaxpr),
    # rollout: the iteration's shapes, the sampling rules, the text sampler's buckets
    "rollout.group_size": (4, TOKEN, iteration_jaxpr),
    "rollout.prompts_per_step": (4, TOKEN, iteration_jaxpr),
    "rollout.max_new_tokens": (6, TOKEN, iteration_jaxpr),
    "rollout.temperature": (0.7, TOKEN, logits),
    "rollout.top_p": (0.8, TOKEN, logits),
    "rollout.top_k": (3, TOKEN, logits),
    "rollout.min_p": (0.2, TOKEN, logits),
    "rollout.prompt_buckets": ("8,64", TEXT, lambda c: pad_to_bucket(
        np.ones((1, 5), np.int32), None, SamplingConfig.from_config(c).prompt_buckets, 0)[0].shape),
    "rollout.engine": ("static", with_(TEXT, rollout__slots=4), rollout_run),
    "rollout.slots": (4, TEXT, rollout_run),
    "rollout.kv_budget_mb": (0.01, TEXT, rollout_run),
    "rollout.decode_chunk": (1, with_(TEXT, rollout__slots=4), rollout_run),
    "rollout.matmul": ("xla" if _KERNEL else "cpu_kernel", TOKEN, lambda c: _raises_or(eval_sampler_jaxpr, c)),
    # algo: advantages, the train step's objective, the iteration's PPO loop and dynamic sampling
    "algo.variant": ("dapo", TOKEN, lambda c: apply_variant(c).to_dict()),
    "algo.estimator": ("rloo", TOKEN, advantages),
    "algo.std_ddof": (1, TOKEN, advantages),
    "algo.adv_eps": (0.5, TOKEN, advantages),
    "algo.iac": (True, TOKEN, advantages),
    "algo.iac_alpha": (2.0, with_(TOKEN, algo__iac=True), advantages),
    "algo.iac_renorm": ("g_alpha", with_(TOKEN, algo__iac=True), advantages),
    "algo.success_threshold": (0.8, TOKEN, advantages),
    "algo.pass_k": (2, with_(TOKEN, algo__estimator="pass_at_k", rollout__group_size=4), advantages),
    "algo.positive_weight": (0.5, with_(TOKEN, algo__estimator="w_reinforce"), advantages),
    "algo.qae_quantile": (0.8, with_(TOKEN, algo__estimator="qae"), advantages),
    "algo.unlikeliness_beta": (0.25, TOKEN, advantages),
    "algo.policy_loss": ("gspo", TOKEN, step_jaxpr),
    "algo.clip_cov_ratio": (0.01, with_(TOKEN, algo__policy_loss="clip_cov"), step_jaxpr),
    "algo.clip_cov_lb": (0.5, with_(TOKEN, algo__policy_loss="clip_cov"), step_jaxpr),
    "algo.clip_cov_ub": (3.0, with_(TOKEN, algo__policy_loss="clip_cov"), step_jaxpr),
    "algo.kl_cov_ratio": (0.01, with_(TOKEN, algo__policy_loss="kl_cov"), step_jaxpr),
    "algo.kl_cov_coef": (0.5, with_(TOKEN, algo__policy_loss="kl_cov"), step_jaxpr),
    "algo.entropy_top_frac": (0.2, TOKEN, step_jaxpr),
    "algo.entropy_target": (0.5, TOKEN, step_jaxpr),
    "algo.entropy_coef_delta": (0.01, with_(TOKEN, algo__entropy_target=0.5), step_jaxpr),
    "algo.clip_eps_low": (0.3, TOKEN, step_jaxpr),
    "algo.clip_eps_high": (0.28, TOKEN, step_jaxpr),
    "algo.dual_clip": (3.0, TOKEN, step_jaxpr),
    "algo.tis_cap": (2.0, TOKEN, step_jaxpr),
    "algo.loss_agg": ("token_mean", TOKEN, step_jaxpr),
    "algo.loss_norm_tokens": (3, with_(TOKEN, algo__loss_agg="seq_mean_token_sum_norm"), step_jaxpr),
    "algo.kl_coef": (0.1, TOKEN, step_jaxpr),
    "algo.kl_estimator": ("k1", with_(TOKEN, algo__kl_coef=0.1), step_jaxpr),
    "algo.entropy_coef": (0.01, TOKEN, step_jaxpr),
    "algo.ppo_epochs": (2, TOKEN, iteration_jaxpr),
    "algo.mini_batches": (2, TOKEN, iteration_jaxpr),
    "algo.micro_batches": (2, TOKEN, step_jaxpr),
    "algo.dynamic_sampling": (True, TOKEN, iteration_jaxpr),
    "algo.max_extra_rounds": (5, with_(TOKEN, algo__dynamic_sampling=True), iteration_jaxpr),
    "algo.overlong": ("mask", TOKEN, overlong),
    "algo.overlong_buffer": (2, with_(TOKEN, algo__overlong="soft"), overlong),
    "algo.overlong_penalty": (0.5, with_(TOKEN, algo__overlong="soft"), overlong),
    "algo.share_prompt": (False, TOKEN, step_jaxpr),
    "algo.logprob_chunk": (2, TOKEN, step_jaxpr),
    # optim: make_optimizers, the step's clip
    "optim.learning_rate": (1e-2, TOKEN, optimizer_updates),
    "optim.schedule": ("cosine", TOKEN, optimizer_updates),
    "optim.warmup_steps": (2, TOKEN, optimizer_updates),
    "optim.weight_decay": (0.1, TOKEN, optimizer_updates),
    "optim.b1": (0.5, TOKEN, optimizer_updates),
    "optim.b2": (0.9, TOKEN, optimizer_updates),
    "optim.grad_clip": (0.5, TOKEN, step_jaxpr),
    # train: the loop, the warm-up, the CLI
    "train.steps": (3, TOKEN, loop_says("steps")),
    "train.seed": (1, TOKEN, policy_tree),
    "train.pretrain_steps": (1, TOKEN, sft_batches),
    "train.pretrain_lr": (0.1, with_(TOKEN, train__pretrain_steps=1, train__pretrain_batch=4), warm_up),
    "train.pretrain_batch": (8, with_(TOKEN, train__pretrain_steps=1), sft_batches),
    "train.pretrain_correct_frac": (0.0, with_(TOKEN, train__pretrain_steps=1), sft_batches),
    "train.iterations_per_call": (2, TOKEN, loop_says("multi")),
    "train.host_allocator": ("system", TOKEN, cli_allocator),
    # reward: make_reward_fn (the verifier pool stood in for; its own behaviour: tests/rewards/test_verifier_pool.py)
    "reward.verifier": ("exact", GYM, rewards),
    "reward.format_weight": (0.5, TEXT, rewards),
    "reward.numeric_tolerance": (0.01, with_(TEXT, reward__verifier="numeric"), rewards),
    "reward.workers": (3, with_(TEXT, reward__verifier="math"), rewards),
    "reward.item_timeout_s": (2.0, with_(TEXT, reward__verifier="math"), rewards),
    "reward.batch_timeout_s": (30.0, with_(TEXT, reward__verifier="math"), rewards),
    "reward.worker_address_space_mb": (2048, with_(TEXT, reward__verifier="math"), rewards),
    "reward.fallback": ("none", TEXT, rewards),
    # data: the token loop's task, pool and held-out queries; the text loop's prompt source
    "data.source": ("reasoning_gym", TOKEN, task_name),
    "data.task": ("multiple", TOKEN, task_name),
    "data.path": (JSONL_B, TEXT, rows),
    "data.split": ("test", HF_DATA, rows),
    "data.schema": ("math", TEXT, rows),
    "data.prompt_key": ("problem", TEXT, rows),
    "data.answer_key": ("solution", TEXT, rows),
    "data.template": ("none", TEXT, rows),
    "data.system_prompt": ("Be brief.", with_(TEXT, data__template="chat"), rows),
    "data.plain_template": ("Q: {question}\nA:", TEXT, rows),
    "data.on_bad_row": ("skip", with_(TEXT, data__path=JSONL_BAD), rows),
    "data.eval_size": (3, TOKEN, eval_queries),
    "data.eval_files": (JSONL_B, TEXT, eval_sets),
    "data.eval_split": ("test", HF_DATA, eval_sets),
    "data.task_params": ('{"max_terms": 2, "max_digits": 1}', GYM, rows),
    "data.size": (12, TOKEN, loop_says("pool")),
    # mesh
    "mesh.data": (4, with_(TOKEN, mesh__data=8, mesh__tensor=-1), mesh_shape),
    "mesh.fsdp": (2, TOKEN, mesh_shape),
    "mesh.tensor": (2, TOKEN, mesh_shape),
    "mesh.sample_fsdp": (True, _mesh_fsdp, iteration_jaxpr),
    # checkpoint
    "checkpoint.dir": (os.path.join(TMP, "ckpt_elsewhere"), TOKEN, checkpointing),
    "checkpoint.every": (1, TOKEN, loop_says("ckpt")),
    "checkpoint.keep": (1, TOKEN, checkpointing),
    "checkpoint.async_save": (False, TOKEN, checkpointing),
    "checkpoint.resume": (False, TOKEN, checkpointing),
    "checkpoint.export": (True, TOKEN, loop_says("export")),
    # eval (token tasks; text data with an eval set: see active_fields.TEXT_EVAL_FIELDS)
    "eval.every": (1, with_(TOKEN, train__steps=3), loop_says("evals")),
    "eval.num_samples": (4, TOKEN, eval_sampler_jaxpr),
    "eval.ks": ("1", TOKEN, evaluation),
    "eval.temperature": (0.3, TOKEN, eval_sampler_jaxpr),
    # log
    "log.dir": (ELSEWHERE, TOKEN, loop_says("elsewhere")),
    "log.every": (2, TOKEN, loop_says("console")),
    "log.tensorboard": (False, with_(TOKEN, log__tensorboard=True), writer_files),
    "log.jsonl": (False, TOKEN, writer_files),
    "log.wandb": (True, TOKEN, writer_files),
    "log.progress": (False, TOKEN, loop_says("bar")),
    "log.samples": (0, with_(TEXT, train__steps=2, log__tensorboard=False), text_samples),
    "log.print_samples": (True, with_(TEXT, train__steps=2, log__tensorboard=False), text_samples),
}


def _raises_or(fn, cfg):
    try:
        return fn(cfg)
    except ValueError as e:
        return f"ValueError: {e}"


def test_every_field_has_a_probe():
    missing = [n for n in ALL_FIELDS if n not in PROBES]
    assert not missing, f"fields without a probe (add one to PROBES): {missing}"
    assert not set(PROBES) - set(ALL_FIELDS), set(PROBES) - set(ALL_FIELDS)


@pytest.mark.parametrize("name", ALL_FIELDS)
def test_field_acts(name):
    value, base, observe = PROBES[name]
    group, key = name.split(".")
    assert value != SCHEMA[group][key].default, f"{name}: the probe must set a non-default value"
    before, after = base(), base()
    _set(after, name, value)
    before, after = validate(before), validate(after)
    assert _get(before, name) != value
    assert name not in inactive_fields(after), f"{name} is listed inactive on its probe's run: {inactive_fields(after)}"
    assert observe(before) != observe(after), f"{name}={value!r} changed nothing"


def test_observers_are_deterministic():
    """Unchanged runs observe the same (so a difference above is the field's doing)."""
    for observe, base in ((step_jaxpr, TOKEN), (iteration_jaxpr, TOKEN), (logits, TOKEN_MEM), (rows, TEXT),
                          (checkpointing, TOKEN)):
        observe = getattr(observe, "__wrapped__", observe)
        assert observe(validate(base())) == observe(validate(base())), observe.__name__


# ------------------------------------------------------------------------------------------------ inactive fields

def test_inactive_fields_name_schema_fields():
    for base in (TOKEN, TOKEN_MEM, TEXT, GYM, HF_MODEL, PRESET, _mesh_fsdp,
                 with_(TEXT, reward__verifier="math", data__schema="gsm8k", data__template="chat")):
        off = inactive_fields(validate(base()))
        assert set(off) <= set(ALL_FIELDS) and all(off.values())


def base_for(base, name, value):
    c = base()
    _set(c, name, value)
    return validate(c)


@pytest.mark.parametrize("name,value", [("model.param_dtype", "bfloat16"), ("model.remat", True)])
def test_hf_models_take_param_dtype_and_remat(name, value):
    """A loaded checkpoint honours model.param_dtype and model.remat as a built one does."""
    after = base_for(HF_MODEL, name, value)
    assert name not in inactive_fields(after)
    assert hf_policy(validate(HF_MODEL())) != hf_policy(after)


@pytest.mark.parametrize("name,value,base,observe", [
    ("rollout.prompt_buckets", "8,64", TOKEN, iteration_jaxpr),  # token prompts are not bucketed
    ("memory.tilt_order", "temperature_then_tilt", TOKEN_MEM, logits),  # temperature 1: same logits
    ("algo.pass_k", 2, TOKEN, advantages),  # grpo reads no pass_k
    ("algo.clip_cov_ratio", 0.01, TOKEN, step_jaxpr),  # ppo_clip selects no tokens
    ("algo.kl_cov_coef", 0.5, with_(TOKEN, algo__policy_loss="clip_cov"), step_jaxpr),
    ("algo.dual_clip", 3.0, with_(TOKEN, algo__policy_loss="gspo"), step_jaxpr),
    ("algo.entropy_coef_delta", 0.01, TOKEN, step_jaxpr),  # fixed coefficient
    ("model.lora_alpha", 32.0, TOKEN, step_jaxpr),  # lora_rank=0: no adapters to scale
    ("rollout.top_k", 3, with_(TOKEN, rollout__temperature=0.0),  # greedy: the argmax passes every filter
     lambda c: np.argmax(np.frombuffer(logits(c), np.float32).reshape(_Z.shape), -1).tobytes()),
])
def test_inactive_field_really_does_nothing(name, value, base, observe):
    before, after = validate(base()), base()
    _set(after, name, value)
    after = validate(after)
    assert name in inactive_fields(after)
    assert observe(before) == observe(after)
    with pytest.raises(ConfigError, match=rf"^config\.{re.escape(name)}: .* has no effect here \(.+\)$"):
        refuse_inactive(after)


def test_refusal_names_the_field_and_why():
    c = TEXT()
    c.model.hidden_size = 128  # a GGUF run brings its own shape
    with pytest.raises(ConfigError, match=r"^config\.model\.hidden_size: 128 has no effect here "
                                          r"\(only model\.source='embedded' builds from these; 'gguf' .*\)$"):
        refuse_inactive(validate(c))
    refuse_inactive(validate(TEXT()))  # defaults are never refused
    c = TEXT()
    c.eval.every = 5
    refuse_inactive(validate(c))  # a text run with a held-out slice evaluates
    c.data.eval_size = 0
    assert set(TEXT_EVAL_FIELDS) <= set(inactive_fields(validate(c)))
    with pytest.raises(ConfigError, match=r"config\.eval\.every: 5 has no effect here \(no eval set"):
        refuse_inactive(c)
    c.data.eval_size = 1
    validate(c)  # never part of validate: rlvr-compile plans what it is given


def test_print_config_leaves_out_inactive_fields():
    c = validate(TEXT())
    lines = []
    with mock.patch.object(console, "log", lines.append):
        console.print_config(c)
    text = "\n".join(lines)
    assert "hidden_size" not in text and "pretrain_steps" not in text and "source='gguf'" in text
    assert f"({len(inactive_fields(c))} fields that do not act on this run left out)" in lines[0]
    lines.clear()
    with mock.patch.object(console, "log", lines.append):
        console.print_config(validate(TOKEN()))
    assert "hidden_size=16" in "\n".join(lines)
