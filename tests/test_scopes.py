"""Scope grammar and algebra: examples for the documented edges, hypothesis for the laws."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentsess.core.credentials.scopes import (
    MAX_LENGTH,
    attenuate,
    covers,
    excess,
    parse_scope,
    parse_scopes,
    within,
)
from agentsess.errors import DENIED, USAGE, AgentsessError

# --- strategies ----------------------------------------------------------------------------

SEGMENT_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789._-/@"


def scopes_from(segment):
    """Valid scopes built from ``segment``: a:b, a:b:*, or a bare *."""
    plain = st.lists(segment, min_size=1, max_size=4).map(":".join)
    return st.one_of(
        plain,
        plain.map(lambda s: s + ":*"),
        st.just("*"),
    )


any_scope = scopes_from(st.text(SEGMENT_ALPHABET, min_size=1, max_size=8))
# A tiny alphabet so that random scopes often cover each other (the laws get exercised).
small_scope = scopes_from(st.sampled_from(["a", "b"]))


def reference_covers(granted: str, requested: str) -> bool:
    """Coverage written independently, segment by segment, as the docstring states it."""
    if granted == "*" or granted == requested:
        return True
    g = granted.split(":")
    r = requested.split(":")
    if g[-1] != "*":
        return False
    prefix = g[:-1]
    return len(r) > len(prefix) and r[: len(prefix)] == prefix


# --- grammar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope",
    ["fs:write", "github:pr:create", "github:*", "*", "github:repo/acme@main:*", "a", "v1.2_x-y"],
)
def test_valid_scopes_parse_to_themselves(scope):
    assert parse_scope(scope) == scope


@pytest.mark.parametrize(
    "text, reason",
    [
        ("GitHub:x", "'G' is not allowed"),
        ("github::x", "empty segment"),
        (":github", "empty segment"),
        ("github:", "empty segment"),
        ("", "cannot be empty"),
        ("*:x", "only as the last segment"),
        ("a:*:b", "only as the last segment"),
        ("gh*", "whole segment"),
        ("gh:p*", "whole segment"),
        ("gh:**", "whole segment"),
        ("gh pr", "' ' is not allowed"),
        ("gh:pr\n", "'\\n' is not allowed"),
        ("x" * (MAX_LENGTH + 1), "longer than 200"),
    ],
)
def test_bad_scopes_say_what_is_wrong_and_what_is_expected(text, reason):
    with pytest.raises(AgentsessError) as info:
        parse_scope(text)
    message = info.value.message
    assert info.value.exit_code == USAGE
    assert reason in message
    assert "lowercase letters, digits and ._-/@" in message
    assert "\n" not in message
    assert message.startswith("bad scope ")


def test_bad_scope_message_names_the_scope():
    with pytest.raises(AgentsessError, match=r"^bad scope 'GitHub:x': "):
        parse_scope("GitHub:x")


def test_long_bad_scope_is_shortened_in_the_message():
    with pytest.raises(AgentsessError) as info:
        parse_scope("A" * 5000)
    assert len(info.value.message) < 300


def test_max_length_is_inclusive():
    scope = "a" * MAX_LENGTH
    assert parse_scope(scope) == scope


@pytest.mark.parametrize("value", [None, 42, b"github:*", ["github:*"]])
def test_non_strings_are_refused_with_agentsess_error(value):
    with pytest.raises(AgentsessError, match="expected a string"):
        parse_scope(value)


@given(any_scope)
def test_parsed_scope_round_trips(scope):
    assert parse_scope(scope) == scope
    assert parse_scope(parse_scope(scope)) == scope
    assert parse_scopes(" ".join([scope, scope])) == [scope]


@given(st.text(max_size=60))
def test_random_text_parses_or_raises_agentsess_error(text):
    try:
        parsed = parse_scope(text)
    except AgentsessError as e:
        assert e.exit_code == USAGE
        assert "\n" not in e.message
    else:
        assert parsed == text


@given(st.text(alphabet=SEGMENT_ALPHABET + ":*Z ", max_size=30))
def test_near_miss_text_parses_or_raises_and_parse_agrees_with_the_grammar(text):
    segments = text.split(":")
    expected_ok = text == "*" or (
        0 < len(text) <= MAX_LENGTH
        and all(s and set(s) <= set(SEGMENT_ALPHABET) for s in segments[:-1])
        and len(segments) >= 1
        and (
            (segments[-1] and set(segments[-1]) <= set(SEGMENT_ALPHABET))
            or (segments[-1] == "*" and len(segments) > 1)
        )
    )
    try:
        parse_scope(text)
        ok = True
    except AgentsessError:
        ok = False
    assert ok == expected_ok


def test_parse_scopes_dedupes_keeping_order():
    assert parse_scopes(["b", "a:*", "b", "a:*", "c"]) == ["b", "a:*", "c"]


def test_parse_scopes_accepts_a_space_or_comma_separated_string():
    assert parse_scopes("fs:read, git:*  github:pr:create,fs:read") == [
        "fs:read",
        "git:*",
        "github:pr:create",
    ]
    assert parse_scopes("") == []


def test_parse_scopes_names_the_bad_one():
    with pytest.raises(AgentsessError, match="bad scope 'Fs:read'"):
        parse_scopes(["fs:write", "Fs:read"])


# --- coverage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "granted, requested, expected",
    [
        ("github:*", "github:pr:create", True),
        ("github:*", "github:pr:*", True),
        ("github:*", "github:*", True),
        ("github:*", "github", False),  # a wildcard covers what lies below, not the name
        ("github:*", "githubx:pr", False),
        ("github:*", "git:push", False),
        ("github:pr:*", "github:*", False),
        ("github:pr", "github:pr:create", False),
        ("github:pr:create", "github:pr", False),
        ("*", "github", True),
        ("*", "github:*", True),
        ("*", "*", True),
        ("github:*", "*", False),
        ("fs:write", "fs:write", True),
        ("fs:write", "fs:read", False),
    ],
)
def test_covers_examples(granted, requested, expected):
    assert covers(granted, requested) is expected


@given(any_scope, any_scope)
def test_covers_agrees_with_segment_reference(granted, requested):
    assert covers(granted, requested) == reference_covers(granted, requested)


@given(small_scope, small_scope)
def test_covers_agrees_with_reference_on_dense_scopes(granted, requested):
    assert covers(granted, requested) == reference_covers(granted, requested)


@given(any_scope)
def test_covers_is_reflexive(scope):
    assert covers(scope, scope)


@settings(max_examples=500)
@given(small_scope, small_scope, small_scope)
def test_covers_is_transitive(a, b, c):
    if covers(a, b) and covers(b, c):
        assert covers(a, c)


def test_transitivity_on_a_chain():
    chain = ["*", "a:*", "a:b:*", "a:b:c:*", "a:b:c:d"]
    for i, wider in enumerate(chain):
        for narrower in chain[i:]:
            assert covers(wider, narrower)
        for wider_still in chain[:i]:
            assert not covers(wider, wider_still)


# --- ceilings ------------------------------------------------------------------------------


def test_no_ceiling_allows_everything():
    assert within(None, ["anything:at:all", "*"])
    assert excess(None, ["*"]) == []
    assert attenuate(None, ["b", "a", "b"]) == ["b", "a"]


def test_empty_ceiling_allows_nothing_but_the_empty_request():
    assert within([], [])
    assert not within([], ["fs:read"])
    assert excess([], ["fs:read"]) == ["fs:read"]


def test_excess_lists_exactly_the_uncovered_scopes_in_order():
    ceiling = ["github:pr:*", "fs:read"]
    requested = ["fs:write", "github:pr:create", "github:*", "fs:read", "fs:write"]
    assert excess(ceiling, requested) == ["fs:write", "github:*"]
    assert not within(ceiling, requested)
    assert within(ceiling, ["github:pr:merge", "fs:read"])


def test_attenuate_refuses_with_the_exact_excess():
    with pytest.raises(AgentsessError) as info:
        attenuate(["github:*", "fs:read"], ["github:pr:create", "aws:s3:*", "fs:write"])
    assert info.value.exit_code == DENIED
    assert "aws:s3:* fs:write" in info.value.message
    assert "github:pr:create" not in info.value.message.split("(")[0]


def test_attenuate_validates_requested():
    with pytest.raises(AgentsessError) as info:
        attenuate(["*"], ["Bad"])
    assert info.value.exit_code == USAGE


@given(st.lists(any_scope, max_size=4), st.lists(any_scope, max_size=6))
def test_attenuation_never_widens(ceiling, requested):
    try:
        granted = attenuate(ceiling, requested)
    except AgentsessError as e:
        assert e.exit_code == DENIED
        over = excess(ceiling, requested)
        assert over
        for scope in over:
            assert scope in e.message
            assert not any(covers(c, scope) for c in ceiling)
    else:
        assert set(granted) == set(requested)
        for scope in granted:
            assert any(covers(c, scope) for c in ceiling)


@given(
    st.lists(small_scope, max_size=3),
    st.lists(small_scope, max_size=4),
    st.lists(small_scope, max_size=4),
)
def test_attenuation_down_a_chain_stays_inside_the_first_ceiling(ceiling, first, second):
    try:
        child = attenuate(ceiling, first)
        grandchild = attenuate(child, second)
    except AgentsessError:
        return
    for scope in grandchild:
        assert any(covers(c, scope) for c in ceiling)


@given(st.lists(small_scope, max_size=4), st.lists(small_scope, max_size=4))
def test_within_matches_excess(ceiling, requested):
    assert within(ceiling, requested) == (not excess(ceiling, requested))
    assert within(ceiling, requested) == all(
        any(reference_covers(c, r) for c in ceiling) for r in requested
    )
