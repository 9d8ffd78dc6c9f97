"""Evaluation used by the loop and `rlvr-eval`: sample n responses per held-out query, verify,
pass@k / avg@k with CIs, and for embedded tasks the exact correct-mode instruments (coverage,
over-sharpening index against the base policy) from teacher-forced answer probabilities."""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rlvr_jax.config import ConfigError, int_list
from rlvr_jax.eval import modes, passk
from rlvr_jax.sampling import SamplingConfig, sample_core


@functools.partial(jax.jit, static_argnames=("graphdef", "scfg", "verify"))
def _sample_verify(graphdef, params, prompts, mask, params_QxK, key, scfg, verify):
    r = sample_core(graphdef, params, prompts, mask, key, scfg)
    n = scfg.num_samples
    correct = jax.vmap(verify)(jnp.repeat(params_QxK, n, 0), r.tokens_BxN, r.mask_BxN.astype(bool))
    return correct.reshape(prompts.shape[0], n), r.tokens_BxN.reshape(prompts.shape[0], n, -1), \
        r.mask_BxN.reshape(prompts.shape[0], n, -1), r.lengths_B


class TaskEvaluator:
    """Held-out queries of an embedded task, with their full answer sets, evaluated the same way every time."""

    def __init__(self, task, cfg, stop_token_ids, pad_id, *, seed: int = 12345, num_queries: int | None = None):
        self.task = task
        self.ks = int_list(cfg.eval.ks, "eval.ks")
        self.n = cfg.eval.num_samples
        nq = num_queries if num_queries is not None else cfg.data.eval_size
        self.batch = task.sample(np.random.default_rng(seed), nq)
        self.prompts = jnp.asarray(self.batch.prompts_BxP, jnp.int32)
        self.mask = self.prompts != pad_id
        self.params = jnp.asarray(self.batch.params_BxK, jnp.int32)
        self.scfg = SamplingConfig(max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.eval.temperature,
                                   stop_token_ids=tuple(stop_token_ids), pad_id=pad_id, num_samples=self.n,
                                   matmul=cfg.rollout.matmul)
        # every candidate answer of every query (correct ones flagged), for the exact instruments
        A = max(len(task.answer_space(q)) for q in self.batch.queries)
        L = task.max_answer_len
        self.cand = np.zeros((nq, A, L), np.int32)
        self.cand_mask = np.zeros((nq, A, L), bool)
        self.correct = np.zeros((nq, A), bool)
        tok = task.tokenizer
        for i, q in enumerate(self.batch.queries):
            good = set(task.answers(q))
            for j, a in enumerate(task.answer_space(q)):
                ids = tok.encode(a) + [tok.eos_id]
                self.cand[i, j, :len(ids)] = ids
                self.cand_mask[i, j, :len(ids)] = True
                self.correct[i, j] = a in good
        self.ref_logp = None
        self.seed = seed

    def answer_logprobs(self, graphdef, params) -> np.ndarray:
        model = nnx.merge(graphdef, params)
        return modes.sequence_logprobs(model, np.asarray(self.prompts), np.asarray(self.mask), self.cand,
                                       self.cand_mask)

    def set_reference(self, graphdef, params):
        """The base policy: the over-sharpening index compares against it."""
        self.ref_logp = self.answer_logprobs(graphdef, params)

    def __call__(self, graphdef, params, key=None, *, modes_too: bool = True) -> dict:
        key = jax.random.key(self.seed) if key is None else key
        correct, toks, tmask, lengths = _sample_verify(graphdef, params, self.prompts, self.mask, self.params, key,
                                                       self.scfg, self.task.verify_tokens)
        correct = np.asarray(correct) > 0.5
        res = passk.evaluate_correctness(correct, self.ks, seed=0, num_boot=200)
        toks, tmask = np.asarray(toks), np.asarray(tmask)
        distinct = []
        for i in range(correct.shape[0]):
            seen = {tuple(toks[i, j][tmask[i, j]]) for j in range(correct.shape[1]) if correct[i, j]}
            distinct.append(len(seen))
        res["distinct_correct_mean"] = float(np.mean(distinct))
        res["response_len_mean"] = float(np.mean(np.asarray(lengths)))
        if modes_too:
            logp = self.answer_logprobs(graphdef, params)
            per_q = modes.correct_mode_metrics(logp, self.correct, self.ref_logp,
                                               candidate_QxA=self.cand_mask.any(-1), full_space=True)
            res["modes"] = modes.summarize_metrics(per_q, num_boot=200)
        return res


def headline(res: dict, ks) -> dict[str, float]:
    """Flat scalars for logging: pass@k means, coverage, over-sharpening index, entropy."""
    out = {f"eval/pass@{k}": res["pass@k"][str(k)]["mean"] for k in ks}
    out["eval/distinct_correct"] = res["distinct_correct_mean"]
    m = res.get("modes", {})
    for name in ("mass_correct", "coverage_rel", "coverage_abs", "entropy_norm", "tv", "kl_policy_ref"):
        if name in m and m[name]["mean"] is not None:
            out[f"eval/{name}"] = m[name]["mean"]
    return out


def _restore(path: str, state, shardings):
    """(step, state, extra) of the newest checkpoint in `path`, restored like `state` (its frozen LoRA base
    put back: checkpoints do not hold it)."""
    from rlvr_jax.train.checkpoint import Checkpointer, restore_with_base
    ck = Checkpointer(path, keep=1000, async_save=False)
    try:
        got = restore_with_base(ck, state, shardings, where=path)
    finally:
        ck.close()
    if got is None:
        raise ConfigError(f"--checkpoint: no complete checkpoint in {path}")
    return got


def _trainer_base_fingerprint(ckpt_path: str) -> str | None:
    """The base-policy fingerprint the trainer recorded in <run>/summary.json beside <run>/ckpt, if any."""
    import json
    path = os.path.join(os.path.dirname(os.path.abspath(os.path.normpath(ckpt_path))), "summary.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f).get("base_param_fingerprint")


def run(cfg, checkpoints=(), out=None):
    """rlvr-eval: the policy the trainer starts from ("initial") and each checkpoint, on the run's held-out
    sets (embedded tasks: the exact instruments too; text data: every eval set of the config, verified by
    the run's reward function); writes eval.json and one pass@k plot with every curve."""
    from rlvr_jax import parallel
    from rlvr_jax.eval.plots import plot_passk_curves
    from rlvr_jax.eval.report import write_report
    from rlvr_jax.train.build import build
    from rlvr_jax.train.checkpoint import param_fingerprint
    from rlvr_jax.train.program import train_program, updates_per_run

    built = build(cfg)
    out = out or os.path.join(cfg.log.dir, "eval")
    os.makedirs(out, exist_ok=True)
    mesh = parallel.make_mesh(cfg.mesh)
    closers = []
    if built.task is not None:  # the trainer's own warm-up (same seed, same steps): its base policy
        from rlvr_jax.train.pretrain import pretrain
        policy, _ = pretrain(built.policy, built.task, cfg)
        ev = TaskEvaluator(built.task, cfg, built.stop_token_ids, built.pad_id)
        program = train_program(cfg, policy, built.memory, mesh, updates_per_run(cfg))
        state0 = program.init_state(policy, built.memory)
        ev.set_reference(*program.sampling_policy(state0))
        evaluate = lambda st: {"heldout": ev(*program.sampling_policy(st))}  # noqa: E731
    else:
        from rlvr_jax.rewards.factory import make_reward_fn
        from rlvr_jax.sampling import Rollouts
        from rlvr_jax.train.collect_text import text_evaluator
        reward_fn = make_reward_fn(cfg)
        closers.append(reward_fn.close)
        ev = text_evaluator(cfg, built, reward_fn)
        if ev is None:
            raise ConfigError("config.data.eval_size: 0 and no data.eval_files / data.eval_split: nothing to evaluate")
        program = train_program(cfg, built.policy, built.memory, mesh, updates_per_run(cfg))
        state0 = program.init_state(built.policy, built.memory)
        sampler = Rollouts.from_config(cfg, mesh, parallel.rules_for("sample", cfg.mesh.sample_fsdp))
        evaluate = lambda st: ev(sampler, *program.sampling_policy(st))  # noqa: E731
    try:
        base_fp = param_fingerprint(program.policy_params(state0))
        results = {"initial": evaluate(state0)}
        for path in checkpoints:
            want = _trainer_base_fingerprint(path)
            if want is not None and want != base_fp:
                print(f"rlvr-eval: warning: 'initial' differs from the base policy the trainer of {path} recorded "
                      f"(fingerprint {base_fp[:12]} vs {want[:12]}): check the config matches the run's")
            step, st, _ = _restore(path, state0, program.state_shardings)
            results[f"{os.path.basename(os.path.normpath(path))}@{step}"] = evaluate(st)
    finally:
        for close in closers:
            close()
    paths = write_report(results, out, name="eval", plot=False)
    curves = {f"{name}" if len(res) == 1 else f"{name}: {s}": r
              for name, res in results.items() for s, r in res.items()}
    png = plot_passk_curves(curves, os.path.join(out, "passk.png"),
                            title=f"pass@k on {cfg.data.task if built.task is not None else cfg.data.source}")
    print(f"wrote {paths['json']} and {png}")
    return results
