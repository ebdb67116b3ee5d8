"""Streaming secret redaction: agentsess.core.guard.masking.

The expected encodings and the expected masked output are computed here independently
(stdlib base64/urllib and a naive leftmost-longest replacement), then compared with the
streaming masker fed in random chunks, with both search backends.
"""

import base64
import contextlib
import os
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agentsess.core.guard import masking
from agentsess.core.guard.masking import Masker, encodings, mask_text

# "tiny groups" splits the keys over many automata, so that matches from several
# searches must be merged.
BACKENDS = ["ahocorasick_rs", "ahocorasick_rs, tiny groups", "bytes.find"]


@contextlib.contextmanager
def backend_ctx(backend):
    """Build maskers with the given search backend."""
    if backend.startswith("ahocorasick_rs"):
        pytest.importorskip("ahocorasick_rs")
        saved = masking._GROUP
        if backend.endswith("tiny groups"):
            masking._GROUP = 3
        try:
            yield
        finally:
            masking._GROUP = saved
        return
    saved = masking._finders
    masking._finders = lambda keys: ((masking._find_keys(keys), 0),)
    try:
        yield
    finally:
        masking._finders = saved


def make(secrets, backend):
    with backend_ctx(backend):
        return Masker(secrets)


# ---------------------------------------------------------------- the oracle


def b64_inner(value: bytes, k: int, urlsafe: bool) -> bytes:
    """Characters of base64(k other bytes + value) that depend on value's bits only."""
    enc = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(b"\xff" * k + value)
    first = next(j for j in range(len(enc)) if 6 * j >= 8 * k)
    last = max(j for j in range(len(enc)) if 6 * j + 6 <= 8 * k + 8 * len(value))
    return enc[first : last + 1]


def expected_encodings(value: bytes) -> list:
    out = [value]
    if len(value) >= 8:
        for k in range(3):
            out += [b64_inner(value, k, False), b64_inner(value, k, True)]
        out.append("".join("%%%02X" % b for b in value).encode())
        out.append("".join("%%%02x" % b for b in value).encode())
        out.append(quote(value, safe="").encode())
        out.append(quote(value).encode())
        out.append(quote_plus(value).encode())
        out.append(quote(value, safe="!*'()").encode())  # JavaScript encodeURIComponent
        out.append(value.hex().encode())
        out.append(value.hex().upper().encode())
    return list(dict.fromkeys(out))


def noise_spans(data: bytes) -> list:
    """(start, end) of each noise unit: CR, LF, a CSI sequence, ESC ( or ) and a letter.
    Written as a byte-by-byte state machine, independently of the masker's expression."""
    spans, i, n = [], 0, len(data)
    while i < n:
        c = data[i]
        if c in (10, 13):
            spans.append((i, i + 1))
            i += 1
            continue
        if c == 0x1B and i + 1 < n and data[i + 1] == ord("["):
            j, params, inter = i + 2, 0, 0
            while j < n and 0x30 <= data[j] <= 0x3F and params < 32:
                j, params = j + 1, params + 1
            while j < n and 0x20 <= data[j] <= 0x2F and inter < 8:
                j, inter = j + 1, inter + 1
            if j < n and 0x40 <= data[j] <= 0x7E:
                spans.append((i, j + 1))
                i = j + 1
                continue
        if c == 0x1B and i + 2 < n and data[i + 1] in b"()" and chr(data[i + 2]).isalnum() and data[i + 2] < 128:
            spans.append((i, i + 3))
            i += 3
            continue
        i += 1
    return spans


def strip_noise(data: bytes):
    """(data without noise, the index in data of each byte kept)."""
    noisy = set()
    for s, e in noise_spans(data):
        noisy.update(range(s, e))
    kept = [i for i in range(len(data)) if i not in noisy]
    return bytes(data[i] for i in kept), kept, noisy


def reference_mask(data: bytes, secrets: dict) -> bytes:
    """Leftmost-longest replacement over the data with noise removed; a replaced stretch
    becomes its marker followed by the noise bytes inside it."""
    table = {}
    for name, value in secrets.items():
        if value:
            for p in expected_encodings(value):
                p = strip_noise(p)[0]
                if p:
                    table.setdefault(p, b"[masked:%s]" % name.encode())
    patterns = sorted(table, key=len, reverse=True)
    norm, kept, noisy = strip_noise(data)
    out, i, pos = [], 0, 0
    while i < len(norm):
        for p in patterns:
            if norm.startswith(p, i):
                a, b = kept[i], kept[i + len(p) - 1] + 1
                out.append(data[pos:a])
                out.append(table[p])
                out.append(bytes(data[j] for j in range(a, b) if j in noisy))
                pos = b
                i += len(p)
                break
        else:
            i += 1
    out.append(data[pos:])
    return b"".join(out)


def feed_in_chunks(masker, data, cuts):
    out = []
    bounds = [0, *sorted(cuts), len(data)]
    for a, b in zip(bounds, bounds[1:]):
        out.append(masker.feed(data[a:b]))
        assert masker.pending <= masker.max_pending + len(strip_noise(data)[2])
    out.append(masker.flush())
    assert masker.pending == 0
    return b"".join(out)


# ---------------------------------------------------------------- strategies

# A masked value cannot stop output from spelling "[masked:NAME]" around itself, so the
# generated values leave out the marker's brackets and colon; everything else is fair.
_raw_byte = st.integers(0, 255).filter(lambda b: b not in b"[]:")
random_value = st.lists(_raw_byte, min_size=8, max_size=40).map(bytes)
# Values made of characters that URL quoting encodes (and some it keeps).
urlish_value = (
    st.text(alphabet="abcXYZ019-._~ /+=%&?!*'()é", min_size=8, max_size=40)
    .map(lambda s: s.encode())
    .filter(lambda b: 8 <= len(b) <= 40)
)
secret_value = st.one_of(random_value, urlish_value)


@st.composite
def scenarios(draw):
    values = draw(st.lists(secret_value, min_size=1, max_size=5))
    secrets = {f"s{i}": v for i, v in enumerate(values)}
    pieces = []
    for _ in range(draw(st.integers(0, 6))):
        pieces.append(draw(st.binary(max_size=40)))
        value = draw(st.sampled_from(values))
        enc = draw(st.sampled_from(expected_encodings(value)))
        if draw(st.integers(0, 4)) == 0:  # now and then only the start of one
            enc = enc[: draw(st.integers(0, len(enc)))]
        pieces.append(enc)
    pieces.append(draw(st.binary(max_size=40)))
    data = b"".join(pieces)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return secrets, data, cuts


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(scenario=scenarios())
def test_streamed_output_holds_no_secret_in_any_encoding(backend, scenario):
    secrets, data, cuts = scenario
    masker = make(secrets, backend)
    out = feed_in_chunks(masker, data, cuts)
    for value in secrets.values():
        for enc in expected_encodings(value):
            assert enc not in out
    # Exactly the naive leftmost-longest replacement, whatever the chunking.
    assert out == reference_mask(data, secrets)
    assert masker.mask(data) == out


@st.composite
def crowded(draw):
    """Secrets and output over a 2-3 letter alphabet: occurrences overlap, keys (the
    first 16 bytes of a pattern) occur without their pattern, values are prefixes of
    one another."""
    alphabet = draw(st.sampled_from([b"ab", b"abc", b"a\n", b"%2"]))
    letters = [bytes([c]) for c in alphabet]
    word = lambda lo, hi: st.lists(st.sampled_from(letters), min_size=lo, max_size=hi).map(b"".join)
    values = draw(st.lists(word(1, 24), min_size=1, max_size=6))
    secrets = {f"s{i}": v for i, v in enumerate(values)}
    pieces = []
    for _ in range(draw(st.integers(0, 8))):
        pieces.append(draw(word(0, 6)))
        value = draw(st.sampled_from(values))
        enc = draw(st.sampled_from(expected_encodings(value)))
        pieces.append(enc[: draw(st.integers(0, len(enc)))] if draw(st.booleans()) else enc)
    data = b"".join(pieces)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return secrets, data, cuts


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=crowded())
def test_overlapping_patterns_are_resolved_leftmost_longest(backend, scenario):
    secrets, data, cuts = scenario
    masker = make(secrets, backend)
    expected = reference_mask(data, secrets)
    assert masker.mask(data) == expected
    assert feed_in_chunks(masker, data, cuts) == expected


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(
    values=st.lists(secret_value, min_size=1, max_size=4),
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=20),
)
def test_output_without_secrets_passes_byte_identical(backend, values, data, cuts):
    secrets = {f"s{i}": v for i, v in enumerate(values)}
    assume(not any(e in data for v in values for e in expected_encodings(v)))
    masker = make(secrets, backend)
    assert feed_in_chunks(masker, data, [c for c in cuts if c <= len(data)]) == data
    assert masker.mask(data) == data


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(value=secret_value, prefix=st.binary(max_size=2))
def test_value_inside_a_base64_blob_is_masked(backend, value, prefix):
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        blob = encode(prefix + value + b"tail")
        out = make({"token": value}, backend).mask(b"Authorization: Basic " + blob)
        assert b"[masked:token]" in out
        assert b64_inner(value, len(prefix), encode is base64.urlsafe_b64encode) not in out


@given(value=st.binary(min_size=8, max_size=60), k=st.integers(0, 2))
def test_encodings_match_the_standard_library(value, k):
    encs = encodings(value)
    assert encs[0] == value
    assert set(encs) == set(expected_encodings(value))
    # The base64 parts really are inside any blob that carries the value at alignment k.
    for other in (b"\x00" * k, b"\xff" * k, os.urandom(k)):
        for tail in (b"", b"\x00", b"\xff\xff", b"xyz"):
            assert b64_inner(value, k, False) in base64.b64encode(other + value + tail)
            assert b64_inner(value, k, True) in base64.urlsafe_b64encode(other + value + tail)


# ---------------------------------------------------------------- behaviour


def test_empty_masker_is_identity():
    for secrets in ({}, {"token": b""}):
        masker = Masker(secrets)
        data = os.urandom(1000)
        assert masker.feed(data) is data
        assert masker.pending == 0
        assert masker.flush() == b""
        assert masker.mask(data) is data
        assert masker.mask_text("héllo") == "héllo"


@pytest.mark.parametrize("backend", BACKENDS)
def test_secret_split_byte_by_byte_is_caught(backend):
    token = b"eyJhbGciOiJFZERTQSJ9.c2VjcmV0.sig-nature_x"
    masker = make({"token": token}, backend)
    data = b"export T=" + token + b"\n"
    out = []
    for i in range(len(data)):
        out.append(masker.feed(data[i : i + 1]))
        assert masker.pending <= masker.max_pending
    out.append(masker.flush())
    assert b"".join(out) == b"export T=[masked:token]\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_prompt_without_newline_is_not_held(backend):
    masker = make({"token": b"s3cr3t-value-0123456789", "db": b"hunter2hunter2"}, backend)
    assert masker.feed(b"Password: ") == b"Password: "
    assert masker.pending == 0
    # The start of a secret is held, and only that.
    assert masker.feed(b"ok s3cr") == b"ok "
    assert masker.pending == len(b"s3cr")
    assert masker.feed(b"3t-value-0123456789 done") == b"[masked:token] done"
    assert masker.pending == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_complete_secret_at_end_of_read_is_emitted_masked_at_once(backend):
    masker = make({"pw": b"correct horse battery"}, backend)
    assert masker.feed(b"pw=correct horse battery") == b"pw=[masked:pw]"
    assert masker.pending == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_end_of_stream_flush_emits_held_bytes_but_an_idle_release_does_not(backend):
    masker = make({"token": b"abcdefgh-12345678"}, backend)
    assert masker.feed(b"x abcdefgh") == b"x "
    assert masker.pending == 8
    assert masker.release() == b""  # 8 bytes of a pattern: held through a pause
    assert masker.feed(b"-12345678\n") == b"[masked:token]\n"
    assert masker.feed(b"y abcdefgh") == b"y "
    assert masker.flush() == b"abcdefgh"  # the stream ended: nothing can follow
    assert masker.pending == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_longest_match_wins_and_names_appear(backend):
    secrets = {"short": b"password1", "long": b"password1234", "other": b"zzzzzzzz"}
    masker = make(secrets, backend)
    out = masker.mask(b"a password1234 b password1 c zzzzzzzz")
    assert out == b"a [masked:long] b [masked:short] c [masked:other]"


@pytest.mark.parametrize("backend", BACKENDS)
def test_url_and_hex_forms_are_masked(backend):
    value = b"p@ss w/rd&more=1"
    masker = make({"api": value}, backend)
    for form in (
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        "".join("%%%02x" % b for b in value),
        value.hex().upper(),
    ):
        out = masker.mask(b"GET /cb?code=" + form.encode() + b"&x=1")
        assert out == b"GET /cb?code=[masked:api]&x=1", form


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_secrets_all_masked(backend):
    # More patterns than one automaton takes (64), so several are searched.
    values = {f"k{i}": os.urandom(12 + i) for i in range(30)}
    masker = make(values, backend)
    data = b"|".join(
        b"%d:" % i + v + b":" + v.hex().encode() for i, v in enumerate(values.values())
    )
    out = feed_in_chunks(masker, data, list(range(0, len(data), 997)))
    for i, value in enumerate(values.values()):
        assert value not in out and value.hex().encode() not in out
        assert out.count(b"[masked:k%d]" % i) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_chunks_with_secret_across_boundary(backend):
    # its base64 (40 characters, no padding) is all determined; no noise bytes inside
    token = bytes(b for b in os.urandom(90) if b not in b"\r\n\x1b")[:30]
    masker = make({"token": token}, backend)
    a, b, c = os.urandom(65530), os.urandom(65536), os.urandom(70000)
    stream = a + token + b + base64.b64encode(token) + c
    out = feed_in_chunks(masker, stream, [65536, 131072 + 30])
    assert out == a + b"[masked:token]" + b + b"[masked:token]" + c


def test_mask_text_and_reuse():
    secrets = {"token": "tök-en-1234567", "pw": b"hunter2hunter2"}
    assert mask_text("a tök-en-1234567 b hunter2hunter2 ü", secrets) == (
        "a [masked:token] b [masked:pw] ü"
    )
    masker = Masker(secrets)
    assert mask_text("nothing here", masker) == "nothing here"
    assert masker.mask_text("x=tök-en-1234567") == "x=[masked:token]"
    # Undecodable input survives the round trip.
    assert mask_text("bad \udcff byte", secrets) == "bad \udcff byte"


def test_repr_and_names_show_no_secret():
    masker = Masker({"token": b"super-secret-token-value"})
    masker.feed(b"super-sec")
    assert "super" not in repr(masker)
    assert "token" in repr(masker)
    assert masker.names == ("token",)
    assert not hasattr(masker, "__dict__")


@pytest.mark.parametrize("backend", BACKENDS)
def test_reused_read_buffer(backend):
    # The supervisor may read into one bytearray again and again.
    masker = make({"token": b"0123456789abcdef-token"}, backend)
    buf = bytearray(b"x 0123456789abcdef-token y")
    first = masker.feed(buf) + masker.flush()
    buf[:] = b"z 0123456789abcdef-token w"
    second = masker.feed(buf) + masker.flush()
    assert (first, second) == (b"x [masked:token] y", b"z [masked:token] w")
    assert isinstance(first, bytes)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(scenario=scenarios(), releases=st.lists(st.booleans(), max_size=14))
def test_idle_releases_never_let_a_whole_secret_out(backend, scenario, releases):
    """With idle releases anywhere between reads, no pattern of any secret (noise aside)
    appears in the output: what a release lets out is under 4 bytes of one, and the rest
    of it is masked afterwards."""
    secrets, data, cuts = scenario
    masker = make(secrets, backend)
    out = []
    bounds = [0, *sorted(cuts), len(data)]
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        out.append(masker.feed(data[a:b]))
        if i < len(releases) and releases[i]:
            out.append(masker.release())
    out.append(masker.flush())
    shown = strip_noise(b"".join(out))[0]
    for value in secrets.values():
        for enc in expected_encodings(value):
            norm = strip_noise(enc)[0]
            assert len(norm) < 4 or norm not in shown


def test_a_short_secret_complete_in_a_released_tail_is_masked():
    masker = Masker({"s0": b"ab", "s1": b"abcdef"})
    assert masker.feed(b"x ab") == b"x "
    assert masker.release() == b"[masked:s0]"
    assert masker.feed(b"cdef") == b"[masked:s1]"
    assert masker.feed(b" ab.") + masker.flush() == b" [masked:s0]."


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=crowded(), releases=st.lists(st.booleans(), max_size=14))
def test_idle_releases_with_overlapping_patterns(backend, scenario, releases):
    secrets, data, cuts = scenario
    masker = make(secrets, backend)
    out = []
    bounds = [0, *sorted(cuts), len(data)]
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        out.append(masker.feed(data[a:b]))
        if i < len(releases) and releases[i]:
            out.append(masker.release())
        assert masker.pending <= masker.max_pending + len(strip_noise(data)[2])
    out.append(masker.flush())
    assert masker.pending == 0
    shown = strip_noise(b"".join(out))[0]
    for value in secrets.values():
        for enc in expected_encodings(value):
            norm = strip_noise(enc)[0]
            assert len(norm) < 4 or norm not in shown
