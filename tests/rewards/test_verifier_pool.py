"""The math / reasoning-gym verifier pool: hand-checked equivalences, budgets on adversarial input,
stuck and crashed workers replaced while the pool keeps serving, nothing parsed in this process."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rlvr_jax.rewards.base import Status
from rlvr_jax.rewards.pool import VerifierPool

C, W, U, E, T = Status.CORRECT, Status.WRONG, Status.UNPARSABLE, Status.ERROR, Status.TIMEOUT
pytestmark = pytest.mark.serial  # its budgets are wall-clock: `make test` runs it with nothing alongside
BUDGET = 1.5  # per-item budget of the adversarial tests (seconds)
SLACK = 1.0  # scheduling slack on a shared 2-core machine


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(workers=2, item_timeout_s=20.0, batch_timeout_s=120.0) as p:
        yield p


HAND_CHECKED = [
    # fractions and decimals
    ("\\boxed{\\frac{1}{2}}", "0.5", C),
    ("so the answer is \\boxed{0.5}", "\\frac12", C),
    ("\\boxed{\\dfrac{3}{4}}", "3/4", C),
    ("\\boxed{0.333333}", "\\frac13", C),
    ("\\boxed{2.50}", "\\frac{5}{2}", C),
    ("\\boxed{\\frac{1}{3}}", "0.5", W),
    # percentages
    ("\\boxed{25\\%}", "0.25", C),
    ("\\boxed{50\\%}", "50", C),
    ("\\boxed{10\\%}", "0.2", W),
    # sets and intervals
    ("\\boxed{\\{1,2,3\\}}", "\\{3,2,1\\}", C),
    ("\\boxed{\\{1,2\\}}", "\\{1,2,3\\}", W),
    ("\\boxed{[0,1)}", "[0,1)", C),
    ("\\boxed{(-\\infty, 2]}", "(-\\infty,2]", C),
    ("\\boxed{[0,1]}", "[0,1)", W),
    # expressions
    ("\\boxed{x^2+2x+1}", "(x+1)^2", C),
    ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", C),
    ("\\boxed{\\pi/2}", "\\frac{\\pi}{2}", C),
    ("\\boxed{x^2+1}", "(x+1)^2", W),
    ("\\boxed{3.15}", "\\pi", W),
    ("\\boxed{x=3}", "3", C),
    # units and money
    ("\\boxed{5\\text{ cm}}", "5", C),
    ("\\boxed{12 \\text{ dollars}}", "12", C),
    ("\\boxed{\\$2.50}", "2.5", C),
    ("\\boxed{1,000}", "1000", C),
    # plain wrong, fallback, unparsable, bad reference
    ("\\boxed{5}", "6", W),
    ("I think it is 42.", "42", C),
    ("no answer here", "3", U),
    ("\\boxed{}", "3", U),
    ("\\boxed{@@}", "3", U),
    ("\\boxed{3}", "", E),
]


def test_hand_checked_cases(pool):
    verdicts = pool.verify_batch([r for r, _, _ in HAND_CHECKED], [g for _, g, _ in HAND_CHECKED])
    got = [(r, g, v.status) for (r, g, _), v in zip(HAND_CHECKED, verdicts)]
    assert got == [(r, g, s) for r, g, s in HAND_CHECKED]
    assert all(v.reward == (1.0 if v.status == C else 0.0) for v in verdicts)


ADVERSARIAL = {
    "huge_power": "\\boxed{9^{9^{9^{9}}}}",
    "huge_factorial": "\\boxed{(10^{1000000})!}",
    "nested_fracs": "\\boxed{" + "\\frac{1}{" * 300 + "2" + "}" * 300 + "}",
    "nested_parens": "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}",
    "megabyte_expr": "\\boxed{" + "+".join(["x"] * 500_000) + "}",
}


@pytest.mark.parametrize("name", ["huge_power", "megabyte_expr"])  # all five run together below
def test_adversarial_item_times_out_within_budget(pool, name):
    t0 = time.monotonic()
    (v,) = pool.verify_batch([ADVERSARIAL[name]], ["3"], item_timeout_s=BUDGET)
    elapsed = time.monotonic() - t0
    assert v.status == T and v.reward == 0.0
    assert elapsed <= BUDGET + SLACK, elapsed


def test_pool_keeps_serving_after_adversarial_items(pool):
    bad = list(ADVERSARIAL.values())
    good = ["\\boxed{7}", "\\boxed{\\frac{2}{4}}", "\\boxed{8}"]
    responses = bad[:2] + good[:1] + bad[2:] + good[1:] + ["x" * 1_000_000]  # a megabyte of text, no answer
    refs = ["3"] * 2 + ["7"] + ["3"] * 3 + ["1/2", "9", "1"]
    t0 = time.monotonic()
    verdicts = pool.verify_batch(responses, refs, item_timeout_s=BUDGET)
    elapsed = time.monotonic() - t0
    got = [v.status for v in verdicts]
    # nested_fracs (index 3) is 2 after 300 reciprocals: a warm worker answers WRONG in ~0.2 s, a cold
    # one (just replaced after a kill) can run out of budget; both are reward 0, neither may hang
    assert got[3] in (W, T) and verdicts[3].reward == 0.0, got[3]
    assert got[:3] + got[4:] == [T, T, C, T, T, C, W, U]
    assert elapsed <= 3 * BUDGET + 2 * SLACK, elapsed  # 5 timeouts over 2 workers: 3 rounds at most
    assert [v.status for v in pool.verify_batch(good, ["7", "0.5", "8"])] == [C, C, C]


def test_batch_budget(pool):
    t0 = time.monotonic()
    verdicts = pool.verify_batch([ADVERSARIAL["huge_power"]] * 6, ["3"] * 6, item_timeout_s=BUDGET,
                                 batch_timeout_s=2.0)
    assert time.monotonic() - t0 <= 2.0 + SLACK
    assert [v.status for v in verdicts] == [T] * 6
    assert [v.status for v in pool.verify_batch(["\\boxed{1}"], ["1"])] == [C]


def test_crashed_worker_is_replaced(pool):
    restarts, pids = pool.restarts, pool.worker_pids()
    os.kill(pids[1], signal.SIGKILL)
    time.sleep(0.2)
    verdicts = pool.verify_batch(["\\boxed{5}"] * 3, ["5"] * 3)
    assert [v.status for v in verdicts] == [C] * 3
    assert pool.restarts == restarts + 1


@pytest.mark.slow  # importing reasoning-gym in the workers takes ~10 s on a busy 2-core machine
def test_reasoning_gym_scorers_in_the_pool(pool):
    reasoning_gym = pytest.importorskip("reasoning_gym")
    responses, refs, want = [], [], []
    for name in ("gsm_symbolic", "countdown", "basic_arithmetic"):
        for entry in reasoning_gym.create_dataset(name, size=3, seed=11):
            responses += [f"thinking...\n<answer>{entry['answer']}</answer>", "<answer>-123456789</answer>", ""]
            refs += [entry] * 3
            want += [C, W, U]
    verdicts = pool.verify_batch(responses, refs, kind="reasoning_gym")
    assert [v.status for v in verdicts] == want
    assert all(v.reward == 1.0 for v, s in zip(verdicts, want) if s == C)
    assert all(v.reward < 1.0 for v, s in zip(verdicts, want) if s != C)
    (bad,) = pool.verify_batch(["<answer>1</answer>"], [{"no": "metadata"}], kind="reasoning_gym")
    assert bad.status == E


def test_bad_calls(pool):
    with pytest.raises(ValueError, match="kind 'sql'"):
        pool.verify_batch(["1"], ["1"], kind="sql")
    with pytest.raises(ValueError, match="2 responses but 1 references"):
        pool.verify_batch(["1", "2"], ["1"])
    assert pool.verify_batch([], []) == []
    with pytest.raises(ValueError, match="fallback 'first'"):
        VerifierPool(workers=1, fallback="first")  # rejected before any process starts


def test_math_reward_fn_never_parses_in_the_training_process(tmp_path):
    """A fresh process builds the reward fn from the config, verifies, and has never imported sympy."""
    script = textwrap.dedent("""
        import sys
        from rlvr_jax.config import base_config
        from rlvr_jax.rewards.factory import make_reward_fn
        if __name__ == "__main__":
            cfg = base_config()
            cfg.reward.verifier, cfg.reward.workers, cfg.reward.format_weight = "math", 1, 0.5
            with make_reward_fn(cfg) as fn:
                v = fn(["\\\\boxed{\\\\frac{1}{2}}", "\\\\boxed{1} \\\\boxed{2}", "nothing"], ["0.5", "1", "1"])
            print([(x.reward, x.status.value) for x in v])
            print(sorted(m for m in ("sympy", "math_verify", "latex2sympy2_extended") if m in sys.modules))
    """)
    path = tmp_path / "probe.py"
    path.write_text(script)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=180,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    # 1/2 boxed once: 1 + 0.5 format; two boxes: last one (2) is wrong, no format reward; no answer at all
    assert lines[-2] == "[(1.5, 'correct'), (0.0, 'wrong'), (0.0, 'unparsable')]"
    assert lines[-1] == "[]"


def test_stuck_worker_is_killed_and_replaced(pool):
    """A worker that ignores signals (SIGSTOP) hits the parent's hard deadline; the pool keeps serving."""
    pool.wait_ready()
    restarts, pids = pool.restarts, pool.worker_pids()
    os.kill(pids[0], signal.SIGSTOP)  # first idle worker gets the first item
    t0 = time.monotonic()
    verdicts = pool.verify_batch(["\\boxed{1}", "\\boxed{2}", "\\boxed{3}"], ["1", "2", "3"], item_timeout_s=BUDGET)
    assert time.monotonic() - t0 <= BUDGET + SLACK
    assert [v.status for v in verdicts] == [T, C, C]
    assert pool.restarts == restarts + 1 and pids[0] not in pool.worker_pids()
    assert [v.status for v in pool.verify_batch(["\\boxed{4}"] * 4, ["4"] * 4)] == [C] * 4


def test_worker_address_space_limits_the_workers(pool):
    """reward.worker_address_space_mb is each worker's RLIMIT_AS: 64 MB cannot even import numpy, so the pool
    fails to start with an error naming the field (fast: dead workers are counted, not waited for); the module
    pool, started with the default 4096 MB, serves."""
    from rlvr_jax.config import SCHEMA

    assert SCHEMA["reward"]["worker_address_space_mb"].default == pool.address_space_mb == 4096
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"keep dying during start-up.*64 MB of address space "
                                           r"\(reward\.worker_address_space_mb\)"):
        VerifierPool(workers=1, address_space_mb=64, start_timeout_s=60.0)
    assert time.monotonic() - t0 < 30.0
    assert [v.status for v in pool.verify_batch(["\\boxed{2}"], ["2"])] == [C]
