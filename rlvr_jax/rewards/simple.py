"""Cheap host verifiers: exact match, numeric tolerance, and a format reward.

All are plain string scanning and `float()` of a strictly matched number: safe to run on model
output in the training process.
"""
from __future__ import annotations

import math
import re
from typing import Any

from rlvr_jax.rewards.base import CORRECT, ERROR, UNPARSABLE, WRONG, Verdict, from_bool
from rlvr_jax.rewards.math import extract_answer

_WS = re.compile(r"\s+")
_TEXT = re.compile(r"^\\(?:text|mathrm|textbf)\{(.*)\}$", re.DOTALL)
_NUM = re.compile(r"^[-+]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$")
_FRAC = re.compile(r"^([-+]?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$|^([-+]?)(\d+)/(\d+)$")


def normalize(text: str) -> str:
    """Whitespace-collapsed, $-stripped, \\text{}-unwrapped answer string."""
    t = _WS.sub(" ", str(text)).strip().strip("$").strip()
    m = _TEXT.match(t)
    return m.group(1).strip() if m else t


def parse_number(text: str) -> float | None:
    """A float from a plain number (`1,234.5`, `-3e2`, `45%`, `\\$7`, `3/4`, `\\frac{3}{4}`); None otherwise."""
    t = normalize(text).replace("\\$", "").replace("\\%", "%").replace("\\!", "").replace(" ", "")
    scale = 1.0
    if t.endswith("%"):
        t, scale = t[:-1], 0.01
    if len(t) > 64:
        return None
    if _NUM.match(t):
        return float(t.replace(",", "")) * scale
    m = _FRAC.match(t)
    if m:
        sign, a, b = (m.group(1), m.group(2), m.group(3)) if m.group(2) else (m.group(4), m.group(5), m.group(6))
        if int(b) == 0:
            return None
        return (-1.0 if sign == "-" else 1.0) * int(a) / int(b) * scale
    return None


def exact_match(response: str, reference: Any, fallback: str = "last_number") -> Verdict:
    """1 if the extracted answer equals the reference after whitespace/$ normalisation."""
    ans = extract_answer(response, fallback)
    if ans is None:
        return UNPARSABLE
    return from_bool(normalize(ans) == normalize(str(reference)))


def numeric_match(response: str, reference: Any, rel_tol: float = 1e-6, fallback: str = "last_number") -> Verdict:
    """1 if the extracted answer is a number within relative tolerance `rel_tol` of the reference."""
    ans = extract_answer(response, fallback)
    if ans is None:
        return UNPARSABLE
    got = parse_number(ans)
    if got is None:
        return UNPARSABLE
    want = reference if isinstance(reference, (int, float)) else parse_number(str(reference))
    if want is None:
        return ERROR  # the reference is not a number: a data problem
    want = float(want)
    if not (math.isfinite(got) and math.isfinite(want)):
        return from_bool(got == want)
    return from_bool(got == want or math.isclose(got, want, rel_tol=rel_tol, abs_tol=0.0))


def count_boxed(text: str) -> int:
    """How many \\boxed occurrences the text has (linear scan)."""
    return text.count("\\boxed") if isinstance(text, str) else 0


def format_reward(response: str, reference: Any = None) -> Verdict:
    """1 if the response has exactly one \\boxed{...} with balanced braces and non-empty content."""
    if count_boxed(response) != 1:
        return WRONG
    return CORRECT if extract_answer(response, "none") is not None else WRONG
