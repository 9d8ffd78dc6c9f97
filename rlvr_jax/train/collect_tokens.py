"""The token-task collector: whole RL iterations on device for an embedded task (sample, the task's
jittable verifier, advantages, update), `train.iterations_per_call` of them fused per call, evaluated
with the exact correct-mode instruments of `evaluate.TaskEvaluator`. The loop (`loop.py`) does the rest.
"""
from __future__ import annotations

import jax
import numpy as np

from rlvr_jax.config import int_list
from rlvr_jax.sampling import SamplingConfig
from rlvr_jax.train import evaluate as evaluation
from rlvr_jax.train.console import log
from rlvr_jax.train.iteration import make_iteration, make_multi_iteration, query_pool
from rlvr_jax.train.pretrain import pretrain
from rlvr_jax.train.program import train_program, updates_per_run


class TokenCollector:
    """On-device iterations of an embedded token task (see the module doc); one call runs up to K steps."""

    eval_sets = ("heldout",)
    synchronous = False  # calls are dispatched ahead; their metrics are read one call late

    def __init__(self, cfg, built, mesh):
        self.cfg, self.task = cfg, built.task
        policy, _ = pretrain(built.policy, self.task, cfg, log=log)  # the base policy of the demo (warm-up)
        self.program = train_program(cfg, policy, built.memory, mesh, updates_per_run(cfg),
                                     prompt_len=self.task.prompt_len)
        self._state0 = self.program.init_state(policy, built.memory)  # born on its shardings
        pg, mg, shardings = self.program.policy_graphdef, self.program.memory_graphdef, self.program.state_shardings
        self.pool = query_pool(self.task.sample(np.random.default_rng(cfg.train.seed), cfg.data.size))
        scfg = SamplingConfig.from_config(cfg, stop_token_ids=built.stop_token_ids, pad_id=built.pad_id)
        self.steps_per_call = cfg.train.iterations_per_call
        iteration = make_iteration(self.task, cfg, pg, mg, self.program.step, scfg, mesh=mesh,
                                   sampling_policy=self.program.sampling_policy)
        self._run = {k: jax.jit(make_multi_iteration(iteration, k), donate_argnums=0, out_shardings=(shardings, None))
                     for k in sorted({self.steps_per_call, 1})}
        self.rows = cfg.rollout.prompts_per_step * cfg.rollout.group_size
        self.ks = int_list(cfg.eval.ks, "eval.ks")
        self.evaluator = evaluation.TaskEvaluator(self.task, cfg, built.stop_token_ids, built.pad_id)
        self.evaluator.set_reference(*self.program.sampling_policy(self._state0))  # the over-sharpening index
        # compares to the base
        self.title = f"{cfg.data.task} ({cfg.algo.variant or cfg.algo.estimator})"

    def initial_state(self):
        state, self._state0 = self._state0, None
        return state

    def data_state(self):
        return None  # queries are drawn on device from the state's RNG

    def restore_data(self, data_state) -> None:
        del data_state

    def collect_and_update(self, state, step: int, n: int):
        """n on-device iterations in one call; -> (state, fetch) with fetch() the n metric dicts (read late)."""
        del step
        state, met = self._run[n](state, self.pool)

        def fetch():
            got = jax.device_get(met)
            out = []
            for i in range(n):
                m = {k: float(np.asarray(v)[i]) for k, v in got.items()}
                m["tokens"] = m["response_len_mean"] * self.rows
                out.append(m)
            return out
        return state, fetch

    def samples(self) -> list[dict]:
        return []  # rollouts stay on device inside the fused iteration; log.samples is inactive here

    def evaluate(self, state) -> dict:
        return self.evaluator(*self.program.sampling_policy(state))

    def by_set(self, res: dict) -> dict:
        return {"heldout": res}

    def headline(self, res: dict) -> dict:
        return evaluation.headline(res, self.ks)

    def table(self, before: dict, after: dict) -> str:
        ks = self.ks
        rows = [f"{'metric':<22}{'before':>10}{'after':>10}"]
        for k in ks:
            rows.append(f"{'pass@' + str(k):<22}{before['pass@k'][str(k)]['mean']:>10.3f}"
                        f"{after['pass@k'][str(k)]['mean']:>10.3f}")
        rows.append(f"{'distinct correct':<22}{before['distinct_correct_mean']:>10.2f}"
                    f"{after['distinct_correct_mean']:>10.2f}")
        for name, label in (("mass_correct", "P(correct)"), ("coverage_rel", "coverage (rel 1%)"),
                            ("entropy_norm", "entropy over correct"), ("tv", "over-sharpening TV")):
            b = before.get("modes", {}).get(name, {}).get("mean")
            a = after.get("modes", {}).get(name, {}).get("mean")
            if a is not None:
                rows.append(f"{label:<22}{(b if b is not None else float('nan')):>10.3f}{a:>10.3f}")
        return "\n".join(rows)

    def summary_extra(self, state) -> dict:
        return {"nonfinite_updates": int(state.nonfinite)}

    def close(self) -> None:
        pass

