"""The text-task collector (reasoning-gym, JSONL / Parquet / HF / tfds data) for a real tokenizer.

Per step: draw prompts (a checkpointable grain iterator), sample G responses on device, decode, verify
in the host process pool (time-limited, statuses counted), advantages (+ IAC) on device, then PPO epochs
x mini-batches of the wired train step. DAPO dynamic sampling draws extra rounds of prompts until the
batch holds prompts_per_step groups with reward variance (or the round cap is hit). Each phase is timed
to the end of its work (the update blocks on the new state), so the phases add up to the step time.
The loop (`loop.py`) does the rest.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rlvr_jax import parallel
from rlvr_jax.algos.advantages import compute_advantages
from rlvr_jax.algos.unlikeliness import sequence_logp
from rlvr_jax.algos.groups import zero_std_groups
from rlvr_jax.config import ConfigError, int_list
from rlvr_jax.data.sources import make_eval_sets, make_source
from rlvr_jax.models.tokenizer import decode_responses, tokenize_prompts
from rlvr_jax.rewards.base import Status
from rlvr_jax.rewards.factory import make_reward_fn
from rlvr_jax.sampling import SamplingConfig
from rlvr_jax.sampling.rollouts import Rollouts
from rlvr_jax.train.iteration import overlong_shaping
from rlvr_jax.train.metrics import Timer
from rlvr_jax.train.program import train_program, updates_per_run
from rlvr_jax.train.step import batch_from_rollout
from rlvr_jax.train.text_eval import EvalSet, TextEvaluator, headline
from rlvr_jax.train.verify_stream import GroupVerifier


def text_evaluator(cfg, built, reward_fn) -> TextEvaluator | None:
    """The evaluator of a text run's held-out sets (`data.make_eval_sets`), or None when there are none."""
    sets = make_eval_sets(cfg, tokenizer=built.tokenizer, plain_template=cfg.data.plain_template)
    if not sets:
        return None
    ecfg = SamplingConfig.from_config(cfg, stop_token_ids=built.stop_token_ids, pad_id=built.pad_id).replace(
        temperature=float(cfg.eval.temperature), num_samples=int(cfg.eval.num_samples), dlc_mu=0.0,
        plausibility=0.0)
    es = [EvalSet(name, tuple(r["prompt"] for r in rows), tuple(r["reference"] for r in rows)) for name, rows in sets]
    return TextEvaluator(es, built.tokenizer, reward_fn, ecfg, int_list(cfg.eval.ks, "eval.ks"),
                         chat=cfg.data.template == "chat",
                         rows_per_call=cfg.rollout.prompts_per_step * cfg.rollout.group_size,
                         seed=cfg.train.seed + 12345)


class TextCollector:
    """One RL step per call on a text task (see the module doc)."""

    steps_per_call = 1
    synchronous = True  # each step ends with its update done and its metrics on the host

    def __init__(self, cfg, built, mesh):
        if built.tokenizer is None:
            raise ConfigError("config.model.source: text tasks need a tokenizer (use model.source=hf or gguf)")
        self.cfg, self.tok = cfg, built.tokenizer
        self.G, self.n = cfg.rollout.group_size, cfg.rollout.prompts_per_step
        self.chat = cfg.data.template == "chat"
        self.source = make_source(cfg, tokenizer=self.tok, plain_template=cfg.data.plain_template,
                                  shard_index=jax.process_index(), shard_count=jax.process_count())
        self.it = self.source.iterator()
        self.program = train_program(cfg, built.policy, built.memory, mesh, updates_per_run(cfg))
        self._built = built
        self.scfg = SamplingConfig.from_config(cfg, stop_token_ids=built.stop_token_ids, pad_id=built.pad_id)
        self.sampler = Rollouts.from_config(cfg, mesh, parallel.rules_for("sample", cfg.mesh.sample_fsdp))
        self.adv_fn = jax.jit(lambda r, v, lp: compute_advantages(r, v, cfg.algo, lp))
        self.reward_fn = make_reward_fn(cfg)
        self.evaluator = text_evaluator(cfg, built, self.reward_fn)
        self.eval_sets = tuple(s.name for s in self.evaluator.sets) if self.evaluator else ()
        self.ks = int_list(cfg.eval.ks, "eval.ks")
        self._samples: list[dict] = []
        what = cfg.data.task if cfg.data.source == "reasoning_gym" else os.path.basename(cfg.data.path)
        self.title = f"{what} ({cfg.algo.variant or cfg.algo.estimator})"

    def initial_state(self):
        b, self._built = self._built, None
        return self.program.init_state(b.policy, b.memory)  # born on its shardings

    def data_state(self):
        return self.it.get_state()

    def restore_data(self, data_state) -> None:
        self.it.set_state(data_state)

    def _round(self, state, rows, key, timer):
        G = self.G
        prompts, mask = tokenize_prompts(self.tok, [r["prompt"] for r in rows], chat=self.chat)
        stream = GroupVerifier(self.reward_fn, lambda t, m: decode_responses(self.tok, t, m),
                               [r["reference"] for r in rows for _ in range(G)], G)
        with timer("sample"):  # with the continuous engine, finished groups are verified meanwhile
            policy = nnx.merge(*self.program.sampling_policy(state))
            memory = nnx.merge(self.program.memory_graphdef, state.memory) if state.memory is not None else None
            try:
                rollout = self.sampler(policy, prompts, mask, key, self.scfg, memory, on_group=stream.put)
            except BaseException:
                stream.abort()
                raise
        with timer("verify"):  # what is left of verification once sampling is done
            texts, verdicts = stream.result()
        return rollout, texts, verdicts

    def collect_and_update(self, state, step: int, n_steps: int):
        """One step: -> (state, fetch) with fetch() the step's metrics (already on the host)."""
        assert n_steps == 1
        cfg, G, n = self.cfg, self.G, self.n
        timer = Timer()
        key = jax.random.fold_in(jax.random.key(cfg.train.seed), step)
        kept, metrics, rounds = [], {}, 0
        while len(kept) < n and rounds <= (cfg.algo.max_extra_rounds if cfg.algo.dynamic_sampling else 0):
            rows = [next(self.it) for _ in range(n)]
            rollout, texts, verdicts = self._round(state, rows, jax.random.fold_in(key, rounds), timer)
            rewards = jnp.asarray(self.reward_fn.rewards(verdicts))
            rewards, valid = overlong_shaping(rewards, rollout.lengths_B, rollout.truncated_B, cfg.algo,
                                              self.scfg.max_new_tokens)
            if rounds == 0:
                metrics.update(self.reward_fn.metrics(verdicts))
                metrics["correct_mean"] = float(np.mean([v.status == Status.CORRECT for v in verdicts]))
                lengths = np.asarray(rollout.lengths_B)
                metrics["response_len_mean"] = float(lengths.mean())
                metrics["response_len_max"] = float(lengths.max())
                metrics["response_clip_ratio"] = float(np.mean(np.asarray(rollout.truncated_B)))
                metrics["tokens"] = float(lengths.sum())
                metrics["rollout_continuous"] = float(self.sampler.last == "continuous")
                for k in ("occupancy", "dispatches", "slots"):
                    if k in self.sampler.stats:
                        metrics[f"rollout_{k}"] = float(self.sampler.stats[k])
                self._samples = [{"prompt": rows[g]["prompt"], "completion": texts[g * G],
                                  "reference": str(rows[g].get("answer", "")), "reward": float(verdicts[g * G].reward),
                                  "status": Status(verdicts[g * G].status).value}
                                 for g in range(min(cfg.log.samples, n))]
            zero = np.asarray(zero_std_groups(rewards.reshape(n, G), valid.reshape(n, G)))
            keep_groups = range(n) if not cfg.algo.dynamic_sampling else np.flatnonzero(~zero)
            for g in keep_groups:
                if len(kept) < n:
                    kept.append((rollout, rewards, valid, g))
            rounds += 1
        if len(kept) < n:  # cap reached: fill with zero-variance groups (advantage 0)
            kept += [kept[-1] if kept else (rollout, rewards, valid, 0)] * (n - len(kept))
        parts = [(jax.tree.map(lambda x, g=g: x[g * G:(g + 1) * G], ro), rw[g * G:(g + 1) * G],
                  vd[g * G:(g + 1) * G]) for ro, rw, vd, g in kept]
        P = max(p[0].prompt_tokens_BxP.shape[1] for p in parts)

        def lpad(x):
            return jnp.pad(x, ((0, 0), (P - x.shape[1], 0)))
        ro = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[p[0].replace(
            prompt_tokens_BxP=lpad(p[0].prompt_tokens_BxP), prompt_mask_BxP=lpad(p[0].prompt_mask_BxP))
            for p in parts])
        rewards = jnp.concatenate([p[1] for p in parts])
        valid = jnp.concatenate([p[2] for p in parts])
        seq_logp = sequence_logp(ro.logp_policy_BxN, ro.mask_BxN).reshape(n, G)
        adv, adv_stats = self.adv_fn(rewards.reshape(n, G), valid.reshape(n, G), seq_logp)
        batch = batch_from_rollout(ro, adv.reshape(-1), rewards > cfg.algo.success_threshold, valid)
        with timer("update"):
            for e in range(cfg.algo.ppo_epochs):
                perm = np.random.default_rng([cfg.train.seed, step, e]).permutation(n)
                for mb_groups in np.array_split(perm, cfg.algo.mini_batches):
                    idx = (mb_groups[:, None] * G + np.arange(G)[None]).reshape(-1)
                    state, tm = self.program.update(state, jax.tree.map(lambda x: x[idx], batch))
            jax.block_until_ready(state.policy)  # the phase ends when the work does
        metrics.update({k: float(v) for k, v in adv_stats.items()})
        metrics.update({k: float(v) for k, v in tm.items()})
        metrics.update(timer.metrics())
        metrics["dynamic_rounds"] = rounds
        metrics.update(self.source.metrics())
        return state, (lambda: [metrics])

    def samples(self) -> list[dict]:
        return list(self._samples)

    def evaluate(self, state) -> dict:
        return self.evaluator(self.sampler, *self.program.sampling_policy(state))

    def by_set(self, res: dict) -> dict:
        return dict(res)

    def headline(self, res: dict) -> dict:
        return headline(res, self.ks)

    def table(self, before: dict, after: dict) -> str:
        w = 24  # "0.123 [0.05,0.20]" plus room: columns never run together
        rows = [f"{'set / metric':<28}{'before':>{w}}{'after':>{w}}"]
        for name in after:
            for k in after[name]["ks"]:
                b, a = before[name]["pass@k"][str(k)], after[name]["pass@k"][str(k)]
                rows.append(f"{name + ' pass@' + str(k):<28}{_ci(b):>{w}}{_ci(a):>{w}}")
            for key, label, fmt in (("response_len_mean", "response len", ".1f"), ("truncated_frac", "truncated", ".3f")):
                if key in after[name] and key in before[name]:
                    rows.append(f"{name + ' ' + label:<28}{before[name][key]:>{w}{fmt}}{after[name][key]:>{w}{fmt}}")
        return "\n".join(rows)

    def summary_extra(self, state) -> dict:
        return {"nonfinite_updates": int(state.nonfinite), "eval_samples_last": getattr(self.evaluator, "samples", [])}

    def close(self) -> None:
        self.reward_fn.close()


def _ci(st: dict) -> str:
    return f"{st['mean']:.3f} [{st['lo']:.2f},{st['hi']:.2f}]"
