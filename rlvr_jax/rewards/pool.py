"""A process pool for verifiers that parse model output (sympy, reasoning-gym scorers).

Workers are spawn-context processes started once; each item has a wall-clock budget (a SIGALRM
timer inside the worker, and a hard kill from the parent if the worker does not answer in time)
and every batch has one too. A stuck or crashed worker is killed and replaced in the background,
its item gets status `timeout`/`error`, and the pool keeps serving. Model output never reaches
sympy in the training process.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import time
from collections import deque
from typing import Any, Sequence

from rlvr_jax.rewards.base import Status, Verdict
from rlvr_jax.rewards.math import FALLBACKS

KINDS = ("math", "reasoning_gym")
_MAX_START_FAILURES = 3
_SOFT_FRACTION = 0.8  # the worker's own timer fires at this fraction of the item budget


def _run_item(kind: str, response: str, reference: Any, budget_s: float, fallback: str) -> Verdict:
    if kind == "math":
        from rlvr_jax.rewards.math import verify_math  # noqa: PLC0415

        return verify_math(response, reference, budget_s, fallback)
    from rlvr_jax.rewards.gym import score_gym  # noqa: PLC0415

    return score_gym(response, reference, budget_s)


def _worker_main(conn, address_space_mb: int) -> None:
    """Worker loop: receive (key, kind, response, reference, budget, fallback), send (key, reward, status)."""
    if address_space_mb > 0:
        try:
            import resource  # noqa: PLC0415

            lim = address_space_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        except (ImportError, ValueError, OSError):
            pass
    from rlvr_jax.rewards.math import verify_math  # noqa: PLC0415

    verify_math("\\boxed{1/2}", "0.5", 30.0)  # warm-up: imports sympy/latex2sympy, fills caches
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if msg is None:
            return
        key, kind, response, reference, budget_s, fallback = msg
        try:
            v = _run_item(kind, response, reference, budget_s, fallback)
        except BaseException:  # noqa: BLE001  (a stray ItemTimeout or anything else: report, keep serving)
            v = Verdict(0.0, Status.ERROR)
        try:
            conn.send((key, float(v.reward), Status(v.status).value))
        except (OSError, ValueError):
            return


@dataclasses.dataclass
class _Worker:
    proc: Any
    conn: Any
    ready: bool = False
    item: tuple[int, int] | None = None  # (batch, index) being verified
    deadline: float = 0.0


class VerifierPool:
    """Process pool with per-item and per-batch wall-clock budgets; `verify_batch` -> list[Verdict]."""

    def __init__(self, workers: int = 2, item_timeout_s: float = 5.0, batch_timeout_s: float = 60.0, *,
                 fallback: str = "last_number", address_space_mb: int = 4096, start_timeout_s: float = 120.0):
        if workers <= 0 or item_timeout_s <= 0 or batch_timeout_s <= 0:
            raise ValueError("VerifierPool: workers, item_timeout_s and batch_timeout_s must be > 0 "
                             f"(got {workers}, {item_timeout_s}, {batch_timeout_s})")
        if fallback not in FALLBACKS:
            raise ValueError(f"VerifierPool: fallback {fallback!r} is not one of {', '.join(FALLBACKS)}")
        self.num_workers = workers
        self.item_timeout_s = float(item_timeout_s)
        self.batch_timeout_s = float(batch_timeout_s)
        self.fallback = fallback
        self.address_space_mb = address_space_mb  # RLIMIT_AS of each worker (0: no limit)
        self.restarts = 0  # workers killed and replaced (stuck or crashed)
        self._start_failures = 0
        self._batch = 0  # batch counter: items are keyed (batch, index)
        self._ctx = mp.get_context("spawn")
        self._closed = False
        self._workers = [self._spawn() for _ in range(workers)]
        self.wait_ready(start_timeout_s)  # start-up happens once, here

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Blocks until every worker has started (e.g. after replacements); RuntimeError after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while not all(w.ready for w in self._workers):
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise RuntimeError(f"VerifierPool: workers did not start within {timeout_s:.0f}s")
            self._poll([w for w in self._workers if not w.ready], min(left, 1.0), {})

    # ------------------------------------------------------------------ process management
    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(child, self.address_space_mb), daemon=True,
                                 name="rlvr-verifier")
        proc.start()
        child.close()
        return _Worker(proc=proc, conn=parent)

    def _replace(self, w: _Worker) -> None:
        """Kill a stuck/crashed worker and start a fresh one in its slot (ready later, asynchronously)."""
        try:
            w.proc.kill()
            w.proc.join(timeout=5)
        except (OSError, ValueError, AttributeError):
            pass
        try:
            w.conn.close()
        except OSError:
            pass
        self.restarts += 1
        self._workers[self._workers.index(w)] = self._spawn()

    def _poll(self, watch: list[_Worker], timeout: float, results: dict) -> None:
        """Wait up to `timeout` for messages from `watch`; record this batch's results and ready signals."""
        if not watch:
            time.sleep(max(timeout, 0))
            return
        by_conn = {w.conn: w for w in watch}
        for conn in mpc.wait(list(by_conn), timeout=max(timeout, 0)):
            w = by_conn[conn]
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the worker died
                if not w.ready:
                    self._start_failures += 1
                    if self._start_failures > _MAX_START_FAILURES:
                        self.close()
                        room = (f"each worker has {self.address_space_mb} MB of address space "
                                f"(reward.worker_address_space_mb), which must hold Python, numpy and sympy"
                                if self.address_space_mb > 0 else "workers have no address-space limit")
                        raise RuntimeError(
                            f"VerifierPool: verifier workers keep dying during start-up (exit code "
                            f"{w.proc.exitcode}); {room}; a script that builds the pool at import time must "
                            "guard it with `if __name__ == '__main__':` (workers use the spawn start method)") from None
                if w.item is not None and w.item[0] == self._batch:
                    results[w.item[1]] = Verdict(0.0, Status.ERROR)
                self._replace(w)
                continue
            if msg[0] == "ready":
                w.ready = True
                self._start_failures = 0
                continue
            key, reward, status = msg
            if key == w.item:
                if key[0] == self._batch:  # a late answer to an earlier batch only frees the worker
                    results[key[1]] = Verdict(reward, Status(status))
                w.item = None

    # ------------------------------------------------------------------ public API
    def verify_batch(self, responses: Sequence[str], references: Sequence[Any], kind: str = "math", *,
                     item_timeout_s: float | None = None, batch_timeout_s: float | None = None) -> list[Verdict]:
        """Verdicts for every (response, reference) pair, in order, within the item and batch budgets.

        The budgets default to the pool's; pass them to override for one call. Items still running
        at the batch deadline get `timeout`; their workers finish (or are killed at the item's
        deadline) in the background.
        """
        item_budget = float(item_timeout_s or self.item_timeout_s)
        batch_budget = float(batch_timeout_s or self.batch_timeout_s)
        if self._closed:
            raise RuntimeError("VerifierPool: verify_batch after close()")
        if kind not in KINDS:
            raise ValueError(f"VerifierPool: kind {kind!r} is not one of {', '.join(KINDS)}")
        if len(responses) != len(references):
            raise ValueError(f"VerifierPool: {len(responses)} responses but {len(references)} references")
        n = len(responses)
        self._batch += 1
        results: dict[int, Verdict] = {}
        pending = deque(range(n))
        batch_deadline = time.monotonic() + batch_budget
        soft = item_budget * _SOFT_FRACTION
        while len(results) < n:
            now = time.monotonic()
            for w in list(self._workers):  # dispatch
                if w.ready and w.item is None and pending:
                    if not w.proc.is_alive():  # died while idle: replace before giving it work
                        self._replace(w)
                        continue
                    idx = pending.popleft()
                    resp = responses[idx] if isinstance(responses[idx], str) else str(responses[idx])
                    key = (self._batch, idx)
                    try:
                        w.conn.send((key, kind, resp, references[idx], soft, self.fallback))
                    except (OSError, ValueError):
                        pending.appendleft(idx)
                        self._replace(w)
                        continue
                    w.item, w.deadline = key, now + item_budget
            self._kill_overdue(results)
            busy = [w for w in self._workers if w.item is not None]
            waiting = [w for w in self._workers if not w.ready]
            next_deadline = min([w.deadline for w in busy] + [batch_deadline])
            self._poll(busy + waiting, min(next_deadline - time.monotonic(), 0.5), results)
            self._kill_overdue(results)
            if time.monotonic() >= batch_deadline:  # whatever is left of the batch times out
                for idx in range(n):
                    results.setdefault(idx, Verdict(0.0, Status.TIMEOUT))
        return [results[i] for i in range(n)]

    def _kill_overdue(self, results: dict) -> None:
        """Hard per-item budget: a worker past its item's deadline is killed and replaced."""
        now = time.monotonic()
        for w in list(self._workers):
            if w.item is not None and now >= w.deadline:
                if w.item[0] == self._batch:
                    results.setdefault(w.item[1], Verdict(0.0, Status.TIMEOUT))
                self._replace(w)

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for monitoring and tests)."""
        return [w.proc.pid for w in self._workers]

    def close(self) -> None:
        """Stops every worker (idempotent); busy or still-starting workers are killed."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            if w.ready and w.item is None:
                try:
                    w.conn.send(None)
                except (OSError, ValueError):
                    pass
            else:
                w.proc.kill()
        for w in self._workers:
            w.proc.join(timeout=2)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=2)
            try:
                w.conn.close()
            except OSError:
                pass

    def __enter__(self) -> "VerifierPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
