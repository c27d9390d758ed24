"""Rate strings and plans: what is accepted, and the errors for what is not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limify import Plan, parse_rate
from limify.core.rate import UNITS


@pytest.mark.parametrize(
    ("text", "limit", "seconds"),
    [
        ("10/minute", 10, 60), ("10/minutes", 10, 60), ("10/min", 10, 60), ("10/m", 10, 60),
        ("5/second", 5, 1), ("5/seconds", 5, 1), ("5/sec", 5, 1), ("5/s", 5, 1),
        ("7/hour", 7, 3600), ("7/hours", 7, 3600), ("7/h", 7, 3600),
        ("1/day", 1, 86400), ("1/days", 1, 86400), ("1/d", 1, 86400),
        (" 3 / Minute ", 3, 60),
    ],
)  # fmt: skip
def test_every_unit_and_alias_parses(text: str, limit: int, seconds: int) -> None:
    """Each unit and alias of the seed maps to its number of seconds."""
    plan = parse_rate(text)
    assert (plan.limit, plan.period_seconds, plan.id) == (limit, seconds, "default")
    assert plan.period_us == seconds * 1_000_000


@pytest.mark.parametrize(
    "text", ["10 per minute", "10m", "minute/10", "0/s", "-1/s", "1.5/s", "", "10/fortnight", "/s", "10/"]
)
def test_invalid_rates_name_the_value_and_the_format(text: str) -> None:
    """A bad rate is a ValueError that quotes it and shows the accepted format."""
    with pytest.raises(ValueError) as info:
        parse_rate(text)
    assert repr(text) in str(info.value)
    assert "<limit>/<unit>" in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["\u0661\u0660/s", "\uff11\uff10/s", "\u0967\u0966/minute", "1\u0660/s", "10/s\u3000", "10\u2009/s"],
)
def test_only_ascii_digits_and_spaces_are_rates(text: str) -> None:
    """Digits and spaces of other scripts ("١٠/s", "１０/s") are not read as ASCII ones."""
    with pytest.raises(ValueError, match="<limit>/<unit>"):
        parse_rate(text)


@given(st.text(alphabet=st.characters(categories=["Nd"]), min_size=1, max_size=4))
def test_a_rate_parses_only_when_its_digits_are_ascii(digits: str) -> None:
    """A limit written in any Unicode decimal digits parses only when every digit is 0-9."""
    try:
        plan = parse_rate(f"{digits}/s")
    except ValueError:
        assert not (digits.isascii() and int(digits) >= 1)
        return
    assert digits.isascii() and plan.limit == int(digits)


@pytest.mark.parametrize("value", [None, 10, b"10/s", 1.5])
def test_non_string_rates_are_type_errors(value: object) -> None:
    """Only strings are rate strings."""
    with pytest.raises(TypeError, match="rate must be a str"):
        parse_rate(value)  # type: ignore[arg-type]


@given(st.text(max_size=30))
def test_parse_rate_raises_only_value_errors(text: str) -> None:
    """Any string either parses into a valid plan or raises ValueError, nothing else."""
    try:
        plan = parse_rate(text)
    except ValueError:
        return
    assert plan.limit >= 1 and plan.period_seconds in set(UNITS.values())


def test_plan_is_frozen_and_validated() -> None:
    """Plans are immutable and reject nonsense at construction."""
    plan = Plan("pro", 100, 60)
    with pytest.raises(AttributeError):
        plan.limit = 5  # type: ignore[misc]
    assert plan == Plan("pro", 100, 60.0)
    for bad, error in [
        (("", 1, 1), TypeError), (("p", 0, 1), ValueError), (("p", 1.5, 1), TypeError),
        (("p", True, 1), TypeError), (("p", 1, 0), ValueError), (("p", 1, -1), ValueError),
        (("p", 1, float("inf")), ValueError), (("p", 1, float("nan")), ValueError),
        (("p", 1, "60"), TypeError), (("p", 10**13, 1), ValueError), (("p", 1, 1e-9), ValueError),
    ]:  # fmt: skip
        with pytest.raises(error):
            Plan(*bad)  # type: ignore[arg-type]
