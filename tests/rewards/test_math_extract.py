"""Answer extraction: last \\boxed{...} with nested braces, fallbacks, linear time on huge inputs."""
import pytest

from rlvr_jax.rewards.math import extract_answer


@pytest.mark.parametrize("text,want", [
    ("so \\boxed{42}", "42"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not close the group
    ("\\boxed{a} and a broken \\boxed{b", "a"),  # an unclosed last box falls back to the previous one
    ("\\fbox{7}", "7"),
    ("\\boxed 5$", "5"),
    ("\\boxed { 3 }", "3"),
    ("$\\boxed{x^{2}}$.", "x^{2}"),
])
def test_last_boxed(text, want):
    assert extract_answer(text, "none") == want


def test_fallbacks():
    text = "We get 3 apples, then 1,250.5 more.\nFinal: -7"
    assert extract_answer(text, "last_number") == "-7"
    assert extract_answer("costs 1,250.5 dollars", "last_number") == "1250.5"
    assert extract_answer("ratio 3/4 overall", "last_number") == "3/4"
    assert extract_answer(text, "last_line") == "Final: -7"
    assert extract_answer(text, "none") is None
    assert extract_answer("no digits", "last_number") is None
    assert extract_answer("\\boxed{}", "last_number") is None  # an empty box is no answer
    assert extract_answer(None, "last_number") is None
    with pytest.raises(ValueError, match="fallback 'first'"):
        extract_answer("1", "first")


def test_huge_and_hostile_inputs_are_cheap():
    # many unclosed boxes, a megabyte of braces, a megabyte of digits: linear scans, no exceptions
    assert extract_answer("\\boxed{" * 200_000, "none") is None
    assert extract_answer("{" * 1_000_000 + "\\boxed{1}", "none") == "1"
    assert extract_answer("1" * 1_000_000 + " x", "last_number") == "1" * 1_000_000
    assert extract_answer("\\boxed{" + "{" * 500_000 + "}" * 500_000 + "}", "none").startswith("{{")
