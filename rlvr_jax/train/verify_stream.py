"""`GroupVerifier`: verifies a call's groups on a host thread as the rollout engine hands them over.

With the continuous engine a group reaches `put` as soon as its G rows have finished, so the process
pool checks it while later groups still decode; `result()` waits for the rest and returns the texts and
verdicts in row order. One thread calls the reward function, never two at once.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Sequence


class GroupVerifier:
    """put(i, tokens_GxN, mask_GxN) from the engine; result() -> (texts [B*G], verdicts [B*G])."""

    def __init__(self, reward_fn, decode: Callable[[Any, Any], list[str]], references: Sequence[Any], group: int):
        self.reward_fn, self.decode, self.refs, self.G = reward_fn, decode, list(references), group
        self.n = len(self.refs) // group
        self.texts: list = [None] * len(self.refs)
        self.verdicts: list = [None] * len(self.refs)
        self._q: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="group-verifier", daemon=True)
        self._thread.start()

    def put(self, i: int, tokens_GxN, mask_GxN) -> None:
        self._q.put((int(i), tokens_GxN, mask_GxN))

    def _work(self) -> None:
        for _ in range(self.n):
            i, toks, mask = self._q.get()
            if i < 0:
                return
            if self._error is not None:
                continue
            try:
                rows = slice(i * self.G, (i + 1) * self.G)
                texts = self.decode(toks, mask)
                self.texts[rows] = texts
                self.verdicts[rows] = self.reward_fn(texts, self.refs[rows])
            except BaseException as e:  # re-raised on the caller's thread by result()
                self._error = e

    def result(self) -> tuple[list[str], list]:
        """Waits for every group; re-raises the reward function's error, if any."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        missing = [i for i in range(self.n) if self.verdicts[i * self.G] is None]
        if missing:
            raise RuntimeError(f"GroupVerifier: groups {missing[:5]} were never handed over by the engine")
        return self.texts, self.verdicts

    def abort(self) -> None:
        """Stops the thread when the sampling call failed (groups never came)."""
        self._q.put((-1, None, None))
        self._thread.join()
