"""Which config fields act on the configured run, and the refusal of those that do not.

Paths: token tasks (data.source='embedded': whole iterations on device, train/collect_tokens.py) and text
tasks (every other data.source: train/collect_text.py), both driven by train/loop.py. A field listed by
`inactive_fields` is read by no code on this run: `print_config` leaves it out, and `refuse_inactive` (run
by rlvr-train and rlvr-eval) refuses it when it is set to anything but its default.
"""
from __future__ import annotations

import ml_collections

from rlvr_jax.config import SCHEMA, ConfigError
from rlvr_jax.data import readers

# evaluation on text data (train/collect_text.py text_evaluator over data/sources.py make_eval_sets) runs when the
# run has an eval set
TEXT_EVAL_FIELDS = ("eval.every", "eval.num_samples", "eval.ks", "eval.temperature")

# the fields of algo.* each built-in advantage estimator reads (an estimator registered elsewhere may read any)
ESTIMATOR_FIELDS = {"grpo": ("std_ddof", "adv_eps"), "reinforce_pp": ("adv_eps",), "dr_grpo": (), "rloo": (),
                    "passk": (), "pass_at_k": ("pass_k",), "pkpo": ("pass_k",), "w_reinforce": ("positive_weight",),
                    "psr": (), "nsr": (), "qae": ("std_ddof", "adv_eps", "qae_quantile")}
# the algo.* fields only some estimators read (an unknown estimator counts as reading them all)
ESTIMATOR_ONLY = tuple(sorted({k for ks in ESTIMATOR_FIELDS.values() for k in ks}))
_POOL_FIELDS = ("workers", "item_timeout_s", "batch_timeout_s", "worker_address_space_mb")
_FILE_FIELDS = ("schema", "prompt_key", "answer_key", "on_bad_row")  # how dataset files are read


def inactive_fields(cfg: ml_collections.ConfigDict) -> dict[str, str]:
    """{"group.key": why it does not act} for every field the run `cfg` (validated) ignores.

    The truth is where each field is read: models in train/build.py, prompts and eval sets in data/sources.py,
    rewards in rewards/factory.py, sampling in sampling/config.py, advantages in algos/, the loop and its two
    collectors in train/.
    """
    out: dict[str, str] = {}

    def off(names, reason):
        for name in (names,) if isinstance(names, str) else names:
            out.setdefault(name, reason)

    m, d, a, r, e = cfg.model, cfg.data, cfg.algo, cfg.reward, cfg.eval
    token = d.source == "embedded"
    files = d.source in readers.FILE_KINDS
    # text runs evaluate the sets of make_eval_sets: eval files, else an eval split, else a held-out slice
    text_eval = not token and bool(d.eval_files or d.eval_split or d.eval_size > 0)

    # model: train/build.py build_policy
    if m.source != "embedded":
        off([f"model.{k}" for k in ("family", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                                     "num_kv_heads")],
            f"only model.source='embedded' builds from these; {m.source!r} brings its own shape")
    if m.source not in ("hf", "gguf"):
        off("model.path", f"only model.source='hf' or 'gguf' reads a path (source is {m.source!r})")
    if m.source != "preset":
        off("model.preset", f"only model.source='preset' reads it (source is {m.source!r})")
    if m.source != "gguf":
        off("model.cache_dir", f"only model.source='gguf' converts into a cache (source is {m.source!r})")

    if not m.lora_rank:  # train/build.py build_policy adds the adapters
        off(("model.lora_alpha", "model.lora_targets", "model.lora_sampling", "model.lora_quant"),
            "model.lora_rank=0: no adapters")

    # memory: train/build.py build_memory, sampling/config.py from_config (text evaluation samples without it),
    # train/step.py (memory.window: the replay of train/replay.py, on both paths)
    if not cfg.memory.enabled:
        off([f"memory.{k}" for k in SCHEMA["memory"] if k != "enabled"], "memory.enabled is False")
    elif cfg.memory.mu == 0:
        off("memory.tilt_order", "memory.mu=0: no tilt to order")
    elif cfg.rollout.temperature in (0, 1):
        off("memory.tilt_order", f"rollout.temperature={cfg.rollout.temperature}: both orders give the same logits")

    # rollout: sampling/next_token.py, sampling/sampler.py (text evaluation samples with these rules too)
    if cfg.rollout.temperature == 0 and not (text_eval and e.temperature > 0):
        off(("rollout.top_p", "rollout.top_k", "rollout.min_p"),
            "rollout.temperature=0 is greedy: the most likely token passes every filter")
    if token:
        off("rollout.prompt_buckets", "token tasks sample their fixed-width prompts unpadded")
        off(("rollout.engine", "rollout.slots", "rollout.kv_budget_mb", "rollout.decode_chunk"),
            "token tasks sample inside the fused on-device iteration (the static sampler)")
    elif cfg.rollout.engine == "static":
        off(("rollout.slots", "rollout.kv_budget_mb", "rollout.decode_chunk"),
            "rollout.engine='static' has no decode slots")
    elif not (cfg.rollout.slots or cfg.rollout.kv_budget_mb):
        off("rollout.decode_chunk", "rollout.slots=0 and kv_budget_mb=0: auto always runs the static sampler")

    # algo: algos/advantages.py, calibration.py, objective.py, aggregation.py; train/iteration.py
    reads = ESTIMATOR_FIELDS.get(a.estimator, ESTIMATOR_ONLY)
    for k in ESTIMATOR_ONLY:
        if k not in reads:
            off(f"algo.{k}", f"algo.estimator={a.estimator!r} does not read it")
    if not a.iac:
        off(("algo.iac_alpha", "algo.iac_renorm"), "algo.iac is False")
    # policy loss: algos/policy_losses.py (ppo_clip and clip_cov clip per token; gspo clips the sequence ratio)
    if a.policy_loss != "clip_cov":
        off(("algo.clip_cov_ratio", "algo.clip_cov_lb", "algo.clip_cov_ub"),
            f"only algo.policy_loss='clip_cov' reads it (got {a.policy_loss!r})")
    if a.policy_loss != "kl_cov":
        off(("algo.kl_cov_ratio", "algo.kl_cov_coef"), f"only algo.policy_loss='kl_cov' reads it (got {a.policy_loss!r})")
    else:
        off(("algo.clip_eps_low", "algo.clip_eps_high"), "algo.policy_loss='kl_cov' does not clip")
    if a.policy_loss not in ("ppo_clip", "clip_cov"):
        off("algo.dual_clip", f"algo.policy_loss={a.policy_loss!r} has no dual clip")
    if a.entropy_target == 0:
        off("algo.entropy_coef_delta", "algo.entropy_target=0: the entropy coefficient is fixed")
    if a.kl_coef == 0:
        off("algo.kl_estimator", "algo.kl_coef=0: no KL term")
    if a.loss_agg != "seq_mean_token_sum_norm":
        off("algo.loss_norm_tokens", f"only loss_agg='seq_mean_token_sum_norm' reads it (got {a.loss_agg!r})")
    if not a.dynamic_sampling:
        off("algo.max_extra_rounds", "algo.dynamic_sampling is False")
    if a.overlong != "soft":
        off(("algo.overlong_buffer", "algo.overlong_penalty"), f"only algo.overlong='soft' reads it "
                                                                f"(got {a.overlong!r})")

    # train: train/collect_tokens.py, train/pretrain.py
    if token:
        if cfg.train.pretrain_steps == 0:
            off(("train.pretrain_lr", "train.pretrain_batch", "train.pretrain_correct_frac"),
                "train.pretrain_steps=0: no warm-up")
    else:
        off([f"train.{k}" for k in ("pretrain_steps", "pretrain_lr", "pretrain_batch", "pretrain_correct_frac",
                                     "iterations_per_call")],
            "only token tasks (data.source='embedded') use it")

    # reward: rewards/factory.py (token tasks verify on device with the task's own verifier)
    if token:
        off([f"reward.{k}" for k in SCHEMA["reward"]], "token tasks are verified on device by the task")
    else:
        pooled = r.verifier == "math" or (r.verifier == "task" and d.source == "reasoning_gym")
        if not pooled:
            off([f"reward.{k}" for k in _POOL_FIELDS], f"reward.verifier={r.verifier!r} runs no process pool")
        if r.verifier != "numeric":
            off("reward.numeric_tolerance", f"only reward.verifier='numeric' reads it (got {r.verifier!r})")
        if r.verifier == "task":
            off("reward.fallback", "the task's own scorer extracts answers")

    # data: data/sources.py make_source and make_eval_sets; train/collect_tokens.py reads task, size, eval_size
    if token:
        off([f"data.{k}" for k in ("path", "split", "template", "system_prompt", "plain_template", "eval_files",
                                    "eval_split", "task_params") + _FILE_FIELDS],
            "token tasks build their prompts from data.task")
    else:
        if files:
            off(("data.task", "data.size", "data.task_params"), f"data.source={d.source!r} reads a dataset file")
        else:
            off(("data.path", "data.split", "data.eval_split"), f"data.source={d.source!r} reads no file")
            if not d.eval_files:
                off([f"data.{k}" for k in _FILE_FIELDS], f"data.source={d.source!r} reads no file (and no "
                                                           "data.eval_files)")
            if d.source != "reasoning_gym":
                off("data.task_params", "only data.source='reasoning_gym' reads it")
        if d.source not in ("hf", "tfds"):
            off("data.split", f"data.source={d.source!r} has no splits")
        if d.schema:
            off(("data.prompt_key", "data.answer_key"), f"data.schema={d.schema!r} names the fields")
        if d.template != "chat":
            off("data.system_prompt", f"only data.template='chat' has a system message (got {d.template!r})")
        if d.template != "plain":
            off("data.plain_template", f"only data.template='plain' reads it (got {d.template!r})")
        if d.eval_files:
            off(("data.eval_split", "data.eval_size"), "data.eval_files are the eval sets")
        elif d.eval_split:
            off("data.eval_size", "data.eval_split is the eval set")
        if not text_eval:
            off(TEXT_EVAL_FIELDS, "no eval set (data.eval_size=0 and no data.eval_files / eval_split)")

    # log: train/loop.py writes sample completions of text steps only (token rollouts stay on device)
    if token:
        off(("log.samples", "log.print_samples"), "token tasks keep their rollouts on device")
    elif cfg.log.samples == 0:
        off("log.print_samples", "log.samples=0: no samples to print")

    # mesh: sampling keeps or drops the fsdp axis (sampling/core.py Constrain)
    if cfg.mesh.fsdp == 1:
        off("mesh.sample_fsdp", "mesh.fsdp=1: no fsdp axis to keep")
    return out


def refuse_inactive(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """ConfigError naming the first field that is set (not its default) but does not act on this run.

    Run by rlvr-train and rlvr-eval after `validate`; not part of `validate`, so rlvr-compile still plans
    configs whose fields act elsewhere."""
    for name, why in inactive_fields(cfg).items():
        group, key = name.split(".")
        value = cfg[group][key]
        if value != SCHEMA[group][key].default:
            raise ConfigError(f"config.{name}: {value!r} has no effect here ({why})")
    return cfg
