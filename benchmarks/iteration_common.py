"""Shared by the iteration-benchmark workers (any venv; stdlib only): settings, prompts, the verifier
and the JSON-lines gate that lets the coordinator drive one GRPO step at a time.

Two settings (`load_setting`): "matched" (the constants below: random weights, exactly 64 tokens, a
substring verifier) and "real" (a JSON file the coordinator writes: SmolLM2-135M-Instruct weights,
reasoning-gym prompts in the chat template, 160 new tokens ended by the real EOS, math-verify).

Protocol: a worker prints {"ready": true, ...} once loaded; then for each stdin line {"step": k} it runs
one full GRPO iteration (sample G completions for each of PROMPTS_PER_STEP prompts, decode, verify,
advantages, one optimiser step) on `step_rows(k)` and prints {"step": k, "seconds": wall, ...}.
Stdin closed: the worker exits. Trainers that own their loop (TRL, tunix) call `Gate.wait()` where
they fetch a step's data and `Gate.done()` where a step has finished.
"""
from __future__ import annotations

import json
import re
import sys
import time

G = 8  # completions per prompt
PROMPTS_PER_STEP = 2
NEW_TOKENS = 64  # every completion is exactly this long (EOS ignored, no stop tokens)
LEARNING_RATE = 1e-6
GRAD_CLIP = 1.0
TEMPERATURE = 1.0
MAX_PROMPT_TOKENS = 32  # prompt bucket / max prompt length (the prompts are 15-20 tokens)
MARK = "@@iteration@@ "  # prefixes protocol lines (trainers print dicts of their own)
_NUMBER = re.compile(r"-?\d+")


def problem(i: int) -> dict:
    """The i-th arithmetic question (deterministic) and its reference answer."""
    a, b = 17 + (i * 37) % 83, 5 + (i * 53) % 91
    return {"prompt": f"Question: What is {a} plus {b}? Give only the number.\nAnswer:", "answer": str(a + b)}


def step_rows(step: int, setting: dict | None = None) -> list[dict]:
    """The prompts of step `step` (every framework sees the same ones): the setting's rows in order, cycled,
    or (matched) PROMPTS_PER_STEP generated problems."""
    if setting is None or not setting.get("rows"):
        return [problem(step * PROMPTS_PER_STEP + j) for j in range(PROMPTS_PER_STEP)]
    rows, n = setting["rows"], setting["prompts_per_step"]
    return [rows[(step * n + j) % len(rows)] for j in range(n)]


MATCHED = {"name": "matched", "G": G, "prompts_per_step": PROMPTS_PER_STEP, "new_tokens": NEW_TOKENS,
           "stop_at_eos": False, "verifier": "contains", "learning_rate": LEARNING_RATE, "grad_clip": GRAD_CLIP,
           "temperature": TEMPERATURE, "max_prompt_tokens": MAX_PROMPT_TOKENS, "chat": False, "rows": []}


def load_setting(path: str | None) -> dict:
    """The setting a worker runs: the coordinator's JSON file, or MATCHED when no path is given."""
    if not path:
        return dict(MATCHED)
    with open(path) as f:
        return {**MATCHED, **json.load(f)}


def score(setting: dict, completion: str, reference: str) -> float:
    """The setting's verifier for peers: "contains" (`reward`) or "math" (math-verify's own extraction of
    the completion against the reference; rlvr_jax uses its process-pool math verifier instead)."""
    if setting["verifier"] == "contains":
        return reward(completion, reference)
    from math_verify import parse, verify  # noqa: PLC0415  (the peer's venv has it)
    try:
        return float(verify(parse(f"${reference}$"), parse(completion)))
    except Exception:  # noqa: BLE001  (an unparsable completion scores 0, as in rlvr_jax)
        return 0.0


def reward(completion: str, reference: str) -> float:
    """1.0 if the completion contains the reference number as a whole number, else 0.0 (all frameworks)."""
    return float(reference in _NUMBER.findall(completion))


class Gate:
    """Reads step requests from stdin and reports finished steps on stdout (one JSON line each)."""

    def __init__(self):
        self.step = None
        self.t0 = None
        self.extra: dict = {}

    def ready(self, **info):
        print(MARK + json.dumps({"ready": True, **info}), flush=True)

    def wait(self):
        """Blocks for the next request; returns its step index (None at end of input) and starts the clock."""
        for line in sys.stdin:
            if line.strip():
                self.step = json.loads(line)["step"]
                self.extra = {}
                self.t0 = time.perf_counter()
                return self.step
        self.step = None
        return None

    def done(self, **info):
        """Stops the clock of the pending step and reports it."""
        if self.step is None:
            return
        dt = time.perf_counter() - self.t0
        print(MARK + json.dumps({"step": self.step, "seconds": dt, **self.extra, **info}), flush=True)
        self.step = None
