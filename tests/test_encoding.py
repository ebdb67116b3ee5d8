"""The one canonical JSON and the one base64url: stable under any string an agent can send."""

import json

from hypothesis import given
from hypothesis import strategies as st

from agentsess.digest import sha256_text
from agentsess.encoding import b64url_decode, b64url_encode, canonical, canonical_text

# every code point, lone surrogates included (an argv byte that is not UTF-8, a \udcff escape)
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()))
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)


@given(JSONISH)
def test_canonical_bytes_are_utf8_and_parse_back_to_themselves(value):
    data = canonical(value)
    data.decode("utf-8")  # always valid UTF-8
    assert canonical(json.loads(data)) == data  # what is hashed is what is written and read back


def test_a_lone_surrogate_becomes_a_replacement_character():
    assert canonical({"command": "a\udcffb"}) == '{"command":"a\ufffdb"}'.encode()
    assert canonical_text({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


@given(ANY_TEXT)
def test_every_string_has_a_digest(text):
    assert len(sha256_text(text)) == 64


def test_argv_bytes_hash_as_themselves():
    import hashlib
    import os

    assert sha256_text(os.fsdecode(b"a\xffb")) == hashlib.sha256(b"a\xffb").hexdigest()


@given(st.binary(max_size=64))
def test_base64url_round_trips_and_is_canonical(data):
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data
