"""Engine-benchmark worker: rlvr_jax's static `Sampler` and `ContinuousEngine` on the same weights.

Variants: "static" (all rows in one lock-step batch), "continuous" (`--slots` decode slots, the CPU decode
kernels that rollout.matmul=auto picks here) and "continuous_xla" (the same with XLA's matmuls).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from engine_workload import requests, worker_parser, workload  # noqa: E402
from sampler_worker_common import PROMPT_BUCKET, left_pad  # noqa: E402


def main():
    ap = worker_parser()
    ap.add_argument("--slots", type=int, required=True)
    ap.add_argument("--chunk", type=int, default=16)
    a = ap.parse_args()
    t0 = time.perf_counter()
    from rlvr_jax.models.hf_io import from_pretrained
    from rlvr_jax.sampling import SamplingConfig, Sampler
    from rlvr_jax.sampling.engine import ContinuousEngine, kv_bytes
    policy = from_pretrained(a.folder)
    plist, lens = workload(a.requests, a.group, a.limit)
    ids, mask = left_pad(plist, PROMPT_BUCKET)
    cfg = SamplingConfig(max_new_tokens=a.limit, temperature=1.0, num_samples=a.group, prompt_buckets=(PROMPT_BUCKET,))
    static, engine = Sampler(), ContinuousEngine(a.slots, a.chunk)
    rows = a.requests * a.group
    info = {"framework": "rlvr_jax", "jax": jax.__version__, "load_seconds": time.perf_counter() - t0,
            "useful_tokens": int(lens.sum()), "max_length": int(lens.max())}
    print(json.dumps({"ready": True, **info}), flush=True)
    for calls, req in requests():
        key = jax.random.key(calls)
        t = time.perf_counter()
        if req["variant"] == "static":
            ro = static(policy, ids, mask, key, cfg, limits_B=lens)
            extra = {"kv_bytes": kv_bytes(policy.cfg, rows, PROMPT_BUCKET + a.limit)}
        else:
            ecfg = cfg.replace(matmul="xla") if req["variant"] == "continuous_xla" else cfg
            ro = engine(policy, ids, mask, key, ecfg, limits_B=lens)
            extra = {k: engine.stats[k] for k in ("kv_bytes", "decode_steps", "dispatches", "occupancy", "slots")}
        got = np.asarray(ro.lengths_B)
        dt = time.perf_counter() - t
        assert (got == lens).all(), "lengths differ from the workload"
        print(json.dumps({**req, "seconds": dt, "tokens": int(got.sum()), **extra}), flush=True)


if __name__ == "__main__":
    main()
