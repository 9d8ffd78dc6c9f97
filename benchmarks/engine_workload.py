"""The engine benchmark's workload, shared by its workers (any venv; numpy only).

R requests of G samples with prompts of 8..24 token ids (`sampler_worker_common.prompts`); each row's
response length is drawn from a log-normal with mean limit / 6 and sigma 1, capped at the limit, and is
realised as a per-row cap on new tokens (EOS never occurs), so every engine does the same useful work.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from sampler_worker_common import prompts

SIGMA = 1.0


def lengths(rows: int, limit: int, seed: int = 0) -> np.ndarray:
    """int32 [rows] response lengths in [1, limit]: log-normal, mean limit / 6 before the cap."""
    mean = limit / 6.0
    mu = np.log(mean) - SIGMA ** 2 / 2
    x = np.random.RandomState(seed + 1).lognormal(mu, SIGMA, size=rows)
    return np.clip(np.round(x), 1, limit).astype(np.int32)


def workload(requests: int, group: int, limit: int, seed: int = 0):
    """(prompts: list of token-id lists [requests], lengths [requests * group], row i*G + j = sample j of i)."""
    return prompts(requests, seed=seed), lengths(requests * group, limit, seed)


def worker_parser() -> argparse.ArgumentParser:
    """The arguments every engine worker takes: the weights folder and the workload's sizes."""
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    for name in ("--requests", "--group", "--limit"):
        ap.add_argument(name, type=int, required=True)
    return ap


def requests():
    """(call number from 1, request dict) for each JSON line the coordinator writes to the worker's stdin."""
    calls = 0
    for line in sys.stdin:
        if line.strip():
            calls += 1
            yield calls, json.loads(line)
