"""Held-out evaluation of a text policy: n samples per prompt of each named eval set, verified by the
run's reward function (the process pool for math / reasoning-gym), reported as unbiased pass@k and
avg@k with bootstrap intervals, plus response length, truncation and verifier statuses per set.

The same evaluator runs in the trainer (start, every `eval.every` steps, end) and in `rlvr-eval`, so
their numbers are comparable. Sampling uses per-call keys fixed by `seed`, so two evaluations of the
same parameters give the same samples.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np
from flax import nnx

from rlvr_jax.eval import passk
from rlvr_jax.models.tokenizer import decode_responses, tokenize_prompts
from rlvr_jax.rewards.base import Status
from rlvr_jax.sampling import SamplingConfig


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """One named held-out set: formatted prompts and the references the verifier checks against."""

    name: str
    prompts: tuple[str, ...]
    references: tuple


class TextEvaluator:
    """Evaluates (policy graphdef, params) on named `EvalSet`s; `__call__` -> {set name: result, ...}.

    Each result is `passk.evaluate_correctness` (pass@k / avg@k with CIs, the k = 1..n curve) plus
    `response_len_mean`, `truncated_frac` and `status/<name>` fractions; with several sets a `pooled`
    entry covers all their queries. `samples` keeps a few (prompt, completion, reward, status) rows.
    """

    def __init__(self, sets: Sequence[EvalSet], tokenizer, reward_fn, scfg: SamplingConfig, ks: Sequence[int], *,
                 chat: bool, rows_per_call: int, seed: int = 12345, keep_samples: int = 4):
        if not sets:
            raise ValueError("TextEvaluator: no eval sets")
        names = [s.name for s in sets]
        if len(set(names)) != len(names) or "pooled" in names:
            raise ValueError(f"TextEvaluator: eval set names must be distinct and not 'pooled': {names}")
        self.sets, self.tok, self.reward_fn, self.scfg = list(sets), tokenizer, reward_fn, scfg
        self.ks = tuple(ks)
        self.chat, self.seed, self.keep_samples = chat, seed, keep_samples
        self.prompts_per_call = max(1, rows_per_call // scfg.num_samples)

    def _one_set(self, sampler, policy, es: EvalSet, key):
        n = self.scfg.num_samples
        correct, lengths, truncated, statuses, samples = [], [], [], [], []
        for start in range(0, len(es.prompts), self.prompts_per_call):
            chunk = slice(start, start + self.prompts_per_call)
            toks, mask = tokenize_prompts(self.tok, es.prompts[chunk], chat=self.chat)
            ro = sampler(policy, toks, mask, jax.random.fold_in(key, start), self.scfg)
            texts = decode_responses(self.tok, ro.tokens_BxN, ro.mask_BxN)
            refs = [r for r in es.references[chunk] for _ in range(n)]
            verdicts = self.reward_fn(texts, refs)
            # correctness, not the shaped reward: a format bonus must not count as a solve
            correct.append(np.array([v.status == Status.CORRECT for v in verdicts]).reshape(-1, n))
            lengths.append(np.asarray(ro.lengths_B))
            truncated.append(np.asarray(ro.truncated_B))
            statuses += [Status(v.status).value for v in verdicts]
            for i in range(0, len(texts), n):  # the first sample of the first prompts
                if len(samples) < self.keep_samples:
                    samples.append({"set": es.name, "prompt": es.prompts[chunk][i // n], "completion": texts[i],
                                    "reward": float(verdicts[i].reward), "status": Status(verdicts[i].status).value})
        correct_QxN = np.concatenate(correct)
        extra = {"response_len_mean": float(np.mean(np.concatenate(lengths))),
                 "truncated_frac": float(np.mean(np.concatenate(truncated)))}
        for s in Status:
            extra[f"status/{s.value}"] = float(np.mean([x == s.value for x in statuses]))
        return correct_QxN, extra, samples

    def __call__(self, sampler, policy_graphdef, policy_params) -> dict:
        policy = nnx.merge(policy_graphdef, policy_params)
        key = jax.random.key(self.seed)
        correct, extras, self.samples = {}, {}, []
        for i, es in enumerate(self.sets):
            c, extra, samples = self._one_set(sampler, policy, es, jax.random.fold_in(key, i))
            correct[es.name], extras[es.name] = c, extra
            self.samples += samples
        if len(self.sets) == 1:
            name = self.sets[0].name
            out = {name: passk.evaluate_correctness(correct[name], self.ks, seed=0, num_boot=500)}
        else:
            out = passk.evaluate_benchmarks(correct, self.ks, seed=0, num_boot=500)
        for name, extra in extras.items():
            out[name].update(extra)
        return out


def headline(results: dict, ks: Sequence[int]) -> dict[str, float]:
    """Flat scalars for the metric sinks: eval/<set>/pass@k (mean, lo, hi), avg@1, length, truncation."""
    out = {}
    for name, res in results.items():
        for k in ks:
            st = res["pass@k"].get(str(k))
            if st is not None:
                out[f"eval/{name}/pass@{k}"] = st["mean"]
                out[f"eval/{name}/pass@{k}_lo"] = st["lo"]
                out[f"eval/{name}/pass@{k}_hi"] = st["hi"]
        first = res["avg@k"].get(str(min(ks)))
        if first is not None:
            out[f"eval/{name}/avg@1"] = first["mean"]
        for key in ("response_len_mean", "truncated_frac"):
            if key in res:
                out[f"eval/{name}/{key}"] = res[key]
    return out
