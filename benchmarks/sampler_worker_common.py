"""Shared by the sampler-benchmark workers (any venv; numpy only): the prompts and the JSON-lines loop.

Protocol: the worker prints {"ready": ...} once loaded, then for each stdin line
{"batch": B, "variant": name} it runs one generation of NEW_TOKENS tokens per row and prints
{"batch": B, "variant": name, "seconds": wall, "tokens": B * NEW_TOKENS}.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

NEW_TOKENS = 64
PROMPT_BUCKET = 32


def prompts(batch: int, vocab: int = 49152, seed: int = 0) -> list[list[int]]:
    """`batch` token-id prompts of 8..24 tokens (ids 3..vocab-1, no special ids), the same in every framework."""
    rng = np.random.RandomState(seed)
    lens = rng.randint(8, 25, size=batch)
    return [rng.randint(3, vocab, size=int(n)).tolist() for n in lens]


def left_pad(rows: list[list[int]], length: int = PROMPT_BUCKET, pad: int = 0):
    """(ids [B, length], mask [B, length]) left-padded."""
    ids = np.full((len(rows), length), pad, np.int64)
    mask = np.zeros((len(rows), length), np.int64)
    for i, r in enumerate(rows):
        ids[i, length - len(r):] = r
        mask[i, length - len(r):] = 1
    return ids, mask


def serve(run_fn, info: dict):
    """run_fn(batch, variant) -> None (blocks until the tokens exist); timed here."""
    print(json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        t0 = time.perf_counter()
        run_fn(req["batch"], req.get("variant", "plain"))
        dt = time.perf_counter() - t0
        print(json.dumps({**req, "seconds": dt, "tokens": req["batch"] * NEW_TOKENS}), flush=True)
