"""Durations as typed by people, as shown to them, and --since values."""

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentsess.core.durations import MAX_SECONDS, format_duration, parse_duration, parse_since
from agentsess.errors import USAGE, AgentsessError


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90s", 90),
        ("15m", 900),
        ("4h", 14400),
        ("2d", 172800),
        ("1w", 604800),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1d2h3m4s", 93784),
        (" 2H ", 7200),
        ("0h5m", 300),
    ],
)
def test_parse_duration_examples(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text, hint",
    [
        ("soon", ""),
        ("", ""),
        ("90", "a unit is required"),
        ("0s", "longer than zero"),
        ("0h0m", "longer than zero"),
        ("-5m", "longer than zero"),
        ("1.5h", "whole numbers"),
        ("30m1h", "largest unit first"),
        ("1h1h", "largest unit first"),
        ("h", ""),
        ("1x", ""),
        ("99999999999999999999d", "too long"),
        ("36501d", "too long"),
    ],
)
def test_parse_duration_refuses_with_what_is_expected(text, hint):
    with pytest.raises(AgentsessError) as info:
        parse_duration(text)
    message = info.value.message
    assert info.value.exit_code == USAGE
    assert message.startswith("expected a duration like 90s, 15m, 4h")
    assert f"got {text!r}" in message
    assert hint in message


def test_parse_duration_names_the_option():
    with pytest.raises(AgentsessError, match=r"^--ttl: expected a duration"):
        parse_duration("soon", "--ttl")


@pytest.mark.parametrize("value", [None, 3600, 1.5, ["1h"]])
def test_parse_duration_refuses_non_strings(value):
    with pytest.raises(AgentsessError, match="expected a duration"):
        parse_duration(value)


@given(st.text(max_size=20))
def test_random_text_is_a_positive_duration_or_agentsess_error(text):
    try:
        seconds = parse_duration(text)
    except AgentsessError as e:
        assert "\n" not in e.message
    else:
        assert 0 < seconds <= MAX_SECONDS


@given(
    st.integers(0, 50), st.integers(0, 6), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)
)
def test_parse_duration_sums_its_parts(w, d, h, m, s):
    text = "".join(f"{n}{u}" for n, u in zip((w, d, h, m, s), "wdhms") if n)
    total = w * 604800 + d * 86400 + h * 3600 + m * 60 + s
    if total == 0:
        return
    assert parse_duration(text) == total


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0s"),
        (1, "1s"),
        (59, "59s"),
        (60, "1m"),
        (90, "1m 30s"),
        (3600, "1h"),
        (5400, "1h 30m"),
        (5430, "1h 30m"),  # two parts by default: the seconds are dropped
        (86400, "1d"),
        (86700, "1d 5m"),
        (-90, "-1m 30s"),
        (12.9, "12s"),
        (14 * 86400, "14d"),
    ],
)
def test_format_duration_examples(seconds, text):
    assert format_duration(seconds) == text


@given(st.integers(1, MAX_SECONDS))
def test_format_duration_with_every_part_reads_back(seconds):
    assert parse_duration(format_duration(seconds, parts=4)) == seconds


@given(st.integers(1, MAX_SECONDS))
def test_short_format_never_overstates(seconds):
    shown = parse_duration(format_duration(seconds))
    assert shown <= seconds


NOW = 1_700_000_000.0


def test_parse_since_duration_counts_back_from_now():
    assert parse_since("2h", NOW) == NOW - 7200
    assert parse_since("1h 30m", NOW) == NOW - 5400


def test_parse_since_defaults_now_to_the_clock():
    import time

    before = time.time()
    since = parse_since("1h")
    assert before - 3600 <= since <= time.time() - 3600


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
        ("2024-05-01T12:30", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        ("2024-05-01 12:30:05", datetime(2024, 5, 1, 12, 30, 5, tzinfo=timezone.utc)),
        ("2024-05-01T12:30Z", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        ("2024-05-01T14:30+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
    ],
)
def test_parse_since_iso_dates_naive_means_utc(text, expected):
    assert parse_since(text, NOW) == expected.timestamp()


@pytest.mark.parametrize("text", ["yesterday", "", "  ", "2024-13-01", "-2h", "2h ago", None])
def test_parse_since_refuses_with_both_forms_named(text):
    with pytest.raises(AgentsessError) as info:
        parse_since(text, NOW)
    assert "2h" in info.value.message
    assert "2024-05-01" in info.value.message


def test_parse_since_zero_duration_is_refused():
    with pytest.raises(AgentsessError, match="longer than zero"):
        parse_since("0m", NOW)
