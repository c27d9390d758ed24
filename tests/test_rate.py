"""Rate strings and plans: what is accepted, and the errors for what is not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limify import Plan, parse_rate, parse_rates
from limify.core.plan import MAX_PERIOD_SECONDS
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
    "text",
    ["10 per fortnight", "10m", "minute/10", "0/s", "-1/s", "1.5/s", "", "10/fortnight", "/s", "10/",
     "10per minute", "10 perminute", "10/0m", "10 per 0 days", "per minute", "10 / / m"],
)  # fmt: skip
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
    assert plan.limit >= 1 and any(plan.period_seconds % unit == 0 for unit in set(UNITS.values()))


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


@pytest.mark.parametrize(
    ("text", "limit", "seconds"),
    [
        ("100 per day", 100, 86400), ("1 per 5 minutes", 1, 300), ("10/5m", 10, 300),
        ("10 per 5m", 10, 300), ("10 / 5 minutes", 10, 300), ("2 PER 3 Hours", 2, 10800),
        ("7 per second", 7, 1), ("5 per 2 secs", 5, 2), ("3/12hr", 3, 43200), ("1/1month", 1, 30 * 86400),
    ],
)  # fmt: skip
def test_the_forms_other_libraries_write_parse(text: str, limit: int, seconds: int) -> None:
    """limits' forms: "100 per day", "1 per 5 minutes", "10/5m" (a multiplier before the unit)."""
    plan = parse_rate(text)
    assert (plan.limit, plan.period_seconds) == (limit, seconds)


def test_a_month_is_a_calendar_month_and_takes_no_multiplier() -> None:
    """ "1000 per month" keeps the calendar month; "10/2months" is refused, saying what to write instead."""
    assert parse_rate("1000 per month").calendar == "month"
    with pytest.raises(ValueError, match="calendar month and takes no multiplier.*'10 per 60 days'"):
        parse_rate("10/2months")


@pytest.mark.parametrize("text", ["10/second, 1000/day", "10/second;1000/day", "10/second | 1000 per day"])
def test_compound_rates_take_commas_semicolons_and_bars(text: str) -> None:
    """A list pasted from limits ("10/second, 1000/day") is a compound rate, whatever the separator."""
    assert [(plan.limit, plan.period_seconds) for plan, _ in parse_rates(text)] == [(10, 1), (1000, 86400)]
    with pytest.raises(ValueError, match="empty limit between separators"):
        parse_rates("10/second,,1000/day")


def test_the_error_lists_the_accepted_forms() -> None:
    """The message of a bad rate shows each accepted form, so a user knows what to write."""
    with pytest.raises(ValueError) as info:
        parse_rate("10 a minute")
    for form in ("'<limit>/<unit>'", "'<limit> per <unit>'", "'1 per 5 minutes'", "'10/5m'", "','"):
        assert form in str(info.value)


_ALIASES = st.sampled_from(sorted(name for name in UNITS if name not in ("month", "months", "mo")))


@given(
    limit=st.integers(1, 10**12),
    multiplier=st.one_of(st.none(), st.integers(1, 400)),
    unit=_ALIASES,
    form=st.sampled_from(
        ["{l}/{n}{u}", "{l}/{n} {u}", "{l} per {n} {u}", "{l} per {n}{u}", " {l} / {n}{u} "]
    ),
    upper=st.booleans(),
)
def test_rate_grammar_round_trip(
    limit: int, multiplier: int | None, unit: str, form: str, upper: bool
) -> None:
    """Any limit, multiplier and unit written in any accepted form parses back to that limit and period."""
    text = form.format(l=limit, n="" if multiplier is None else multiplier, u=unit.upper() if upper else unit)
    seconds = UNITS[unit] * (multiplier or 1)
    if seconds > MAX_PERIOD_SECONDS:
        with pytest.raises(ValueError, match="period_seconds"):
            parse_rate(text)
        return
    plan = parse_rate(text)
    assert (plan.limit, plan.period_seconds, plan.calendar) == (limit, seconds, None)
    joined = ", ".join([text, f"{limit}/{seconds + 1}s"]) if seconds < MAX_PERIOD_SECONDS else text
    assert [p.period_seconds for p, _ in parse_rates(joined)][:1] == [seconds]
