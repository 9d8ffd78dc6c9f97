"""Evaluation: sample-based metrics (pass@k, avg@k, maj@k with bootstrap CIs), teacher-forced
over-sharpening instruments (modes), mechanism probes, the toy experiment, plots and reports.

Import the submodules directly (`from rlvr_jax.eval import passk, modes, probes, toy, plots, report`);
the names below are the ones the CLI and trainer use most.
"""
from rlvr_jax.eval.passk import (  # noqa: F401
    bootstrap_ci, evaluate_benchmarks, evaluate_correctness, majority_correct, pass_at_k, pass_at_k_curve)
