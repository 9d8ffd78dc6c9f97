"""Row converters: a raw dataset row -> (question, answer) for the common schemas or configured keys.

Schemas: deepscaler (problem/answer), math (problem/solution, answer = last \\boxed{} of the
solution), gsm8k (question/answer, answer = text after the last '####'), aime (problem/answer).
A bad row raises `BadRow(reason)`; the reader adds the file:line and applies `data.on_bad_row`.
"""
from __future__ import annotations

from typing import Any, Callable

from rlvr_jax.rewards.math import extract_answer


class BadRow(ValueError):
    """A malformed row; the message is the reason (the caller adds where it is)."""


class DataError(ValueError):
    """A user-facing data error: one line naming the file:line (or the config field) and the problem."""


def _text(value: Any, key: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadRow(f"field {key!r} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if isinstance(value, bool) or value is None:
        raise BadRow(f"field {key!r} is {value!r}, expected text")
    if isinstance(value, int):
        value = str(value)
    elif isinstance(value, float):  # AIME-style numeric answers
        value = str(int(value)) if value.is_integer() else repr(value)
    if not isinstance(value, str):
        raise BadRow(f"field {key!r} has type {type(value).__name__}, expected text")
    if "\ufffd" in value:
        raise BadRow(f"field {key!r} holds U+FFFD replacement characters (text was not valid UTF-8)")
    if not value.strip():
        raise BadRow(f"field {key!r} is empty")
    return value


def get_field(row: Any, key: str) -> Any:
    """row[key], else a case-insensitive match; BadRow naming the key and the row's keys if absent."""
    if not isinstance(row, dict):
        raise BadRow(f"row is a {type(row).__name__}, expected an object with fields")
    if key in row:
        return row[key]
    folded = {str(k).lower(): k for k in row}
    if key.lower() in folded:
        return row[folded[key.lower()]]
    raise BadRow(f"missing key {key!r} (row has: {', '.join(map(str, row)) or 'nothing'})")


def _keys(prompt_key: str, answer_key: str) -> Callable[[dict], tuple[str, str]]:
    def convert(row):
        q = _text(get_field(row, prompt_key), prompt_key)
        return q, _text(get_field(row, answer_key), answer_key).strip()

    return convert


def _math(row):
    q = _text(get_field(row, "problem"), "problem")
    solution = _text(get_field(row, "solution"), "solution")
    ans = extract_answer(solution, "none")
    if ans is None:
        raise BadRow("field 'solution' has no \\boxed{...} answer")
    return q, ans


def _gsm8k(row):
    q = _text(get_field(row, "question"), "question")
    full = _text(get_field(row, "answer"), "answer")
    if "####" not in full:
        raise BadRow("field 'answer' has no '####' final answer")
    ans = full.rsplit("####", 1)[1].strip().replace(",", "")
    if not ans:
        raise BadRow("field 'answer' is empty after '####'")
    return q, ans


SCHEMAS = ("", "deepscaler", "math", "gsm8k", "aime")


def make_converter(schema: str, prompt_key: str = "prompt", answer_key: str = "answer") -> Callable[[Any], tuple]:
    """Row -> (question, answer) for `schema` (empty: the configured keys); raises BadRow on a bad row."""
    if schema in ("deepscaler", "aime"):
        return _keys("problem", "answer")
    if schema == "math":
        return _math
    if schema == "gsm8k":
        return _gsm8k
    if schema == "":
        return _keys(prompt_key, answer_key)
    raise DataError(f"config.data.schema: {schema!r} is not one of {', '.join(map(repr, SCHEMAS))}")
