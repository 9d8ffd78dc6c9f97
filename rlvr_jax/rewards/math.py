"""Math answers: extraction of the final answer (last \\boxed{...}) and math-verify equivalence.

`extract_answer` is plain linear-time string scanning, safe on any model output. `verify_math`
calls math-verify (sympy) and is meant to run *inside a VerifierPool worker* (its time limit
uses SIGALRM in the worker's main thread); in the training process use `VerifierPool`.
"""
from __future__ import annotations

import functools
import logging
import re
import signal
from typing import Any

from rlvr_jax.rewards.base import CORRECT, ERROR, TIMEOUT, UNPARSABLE, WRONG, Verdict

FALLBACKS = ("none", "last_number", "last_line")
_BOX_MARKERS = ("\\boxed", "\\fbox")
_MAX_BOX_TRIES = 8  # bound on how many unclosed \boxed{ we step back over (keeps extraction linear)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def _braced(text: str, start: int) -> str | None:
    """Content of the {...} group opening at text[start], honouring nesting and \\{ \\}; None if unclosed."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
        i += 1
    return None


def _last_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...} (or \\fbox{...}, or `\\boxed 5`)."""
    end = len(text)
    for _ in range(_MAX_BOX_TRIES):
        pos = max(text.rfind(m, 0, end) for m in _BOX_MARKERS)
        if pos < 0:
            return None
        j = pos + (len("\\boxed") if text.startswith("\\boxed", pos) else len("\\fbox"))
        k = j
        while k < len(text) and text[k] == " ":
            k += 1
        if k < len(text) and text[k] == "{":
            inner = _braced(text, k)
            if inner is not None:
                return inner
        elif k > j:  # "\boxed 5": the next whitespace-delimited token
            tok = re.match(r"[^\s$]+", text[k:k + 256])
            if tok:
                return tok.group(0)
        end = pos
    return None


def extract_answer(text: str, fallback: str = "last_number") -> str | None:
    """The final answer of a response: the last \\boxed{...}, else the fallback rule; None if none."""
    if fallback not in FALLBACKS:
        raise ValueError(f"extract_answer: fallback {fallback!r} is not one of {', '.join(FALLBACKS)}")
    if not isinstance(text, str):
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip() or None
    if fallback == "last_number":
        last = None
        for last in _NUMBER.finditer(text):
            pass
        return last.group(0).replace(",", "") if last else None
    if fallback == "last_line":
        for line in reversed(text.strip().splitlines()):
            line = line.strip().strip("$").strip()
            if line:
                return line
    return None


# ----------------------------------------------------------------------------- worker side


class ItemTimeout(BaseException):
    """Raised by the worker's interval timer; a BaseException so library `except Exception` can't eat it."""


def _on_alarm(signum, frame):
    raise ItemTimeout()


class time_limit:
    """Context manager: raise ItemTimeout after `seconds` (SIGALRM; main thread of the worker only)."""

    def __init__(self, seconds: float):
        self.seconds = max(float(seconds), 1e-3)

    def __enter__(self):
        self._old = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old)
        return False


def _quiet_math_verify():
    for name in ("math_verify", "math_verify.grader", "math_verify.parser", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _as_latex(answer: str) -> str:
    return answer if any(m in answer for m in _BOX_MARKERS) else "\\boxed{" + answer + "}"


@functools.lru_cache(maxsize=4096)
def _parse_gold(reference: str):
    from math_verify import parse  # noqa: PLC0415  (worker process only)

    return parse(_as_latex(reference), parsing_timeout=None)


def verify_math(response: str, reference: Any, budget_s: float, fallback: str = "last_number") -> Verdict:
    """math-verify equivalence of the response's extracted answer to the reference, within budget_s.

    Must run in a worker process's main thread (SIGALRM); the pool also hard-kills overruns.
    """
    from math_verify import parse, verify  # noqa: PLC0415

    _quiet_math_verify()
    try:
        with time_limit(budget_s):
            answer = extract_answer(response, fallback)
            if answer is None:
                return UNPARSABLE
            gold = _parse_gold(str(reference).strip())
            if not gold:
                return ERROR  # the reference itself is unusable: a data problem, surfaced as `error`
            pred = parse(_as_latex(answer), parsing_timeout=None)
            if verify(gold, pred, timeout_seconds=None):
                return CORRECT
            # only the raw-string fallback came back: math-verify could not read the answer
            return WRONG if any(not isinstance(x, str) for x in pred) else UNPARSABLE
    except ItemTimeout:
        return TIMEOUT
    except MemoryError:
        return ERROR
    except Exception:  # noqa: BLE001  (anything sympy throws is a verifier failure, not a crash)
        return ERROR
