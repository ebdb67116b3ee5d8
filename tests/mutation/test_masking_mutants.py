"""Masking of whole strings and cut-off summaries (`Masker.mask_text`, `Masker.mask_cut`),
in-process: what receipts, `show-run` and `export` show of a run's secrets. These paths are
otherwise reached only inside `python -m agentsess` processes, which mutmut cannot see; see
docs/mutation-testing.md."""

import pytest

from agentsess.core.guard import masking
from agentsess.core.guard.masking import Masker

SECRET = b"hunter2-very-secret"


@pytest.fixture
def masker():
    return Masker({"DB": SECRET})


def test_a_secret_in_a_string_is_replaced_by_its_name(masker):
    assert masker.mask_text("pw=hunter2-very-secret ok") == "pw=[masked:DB] ok"
    assert masking.mask_text("pw=hunter2-very-secret ok", {"DB": SECRET}) == "pw=[masked:DB] ok"
    assert masking.mask_text("pw=hunter2-very-secret ok", masker) == "pw=[masked:DB] ok"


def test_text_without_secrets_comes_back_as_it_was(masker):
    text = "nothing to see"
    assert masker.mask_text(text) is text
    assert masker.mask_text("") == ""
    assert Masker({}).mask_text("hunter2-very-secret") == "hunter2-very-secret"
    assert Masker({}).mask_text("hunter2-very-secret", cut=True) == "hunter2-very-secret"


def test_bytes_that_are_not_utf8_survive_masking(masker):
    assert masker.mask_text("x\udcff hunter2-very-secret \udc80") == "x\udcff [masked:DB] \udc80"
    assert masker.mask_text("é hunter2-very-secret") == "é [masked:DB]"


@pytest.mark.parametrize(
    "text, whole, cut",
    [
        ("pw=hunter2-v", "pw=hunter2-v", "pw=[masked]"),  # 9 bytes of the secret at the cut
        ("pw=hunt", "pw=hunt", "pw=[masked]"),  # 4 bytes: HOLD_MIN
        ("pw=hun", "pw=hun", "pw=hun"),  # 3 bytes give nothing away
        ("pw=hunter2-very-secret and hunter", "pw=[masked:DB] and hunter", "pw=[masked:DB] and [masked]"),
        ("hunter2-very-secret", "[masked:DB]", "[masked:DB]"),
        ("abc", "abc", "abc"),
    ],
)
def test_a_cut_summary_never_ends_in_four_bytes_of_a_secret(masker, text, whole, cut):
    assert masker.mask_text(text) == whole
    assert masker.mask_text(text, cut=True) == cut
    assert masker.mask_cut(text.encode()) == cut.encode()
    assert masker.mask(text.encode()) == whole.encode()


@pytest.mark.parametrize(
    "data, cut",
    [
        (b"pw=\x1b[31mhunt", b"pw=\x1b[31m[masked]"),  # colour before the prefix stays
        (b"pw=hun\x1b[31m", b"pw=[masked]"),  # noise after 3 bytes: the cut may hide more
        (b"pw=hu\x1b[", b"pw=[masked]"),  # an escape cut off after the prefix
        (b"pw=h\x1b[", b"pw=h\x1b["),  # too short to give anything away
        (b"pw=h\x1b[3", b"pw=[masked]"),  # 4 bytes with an escape: HOLD_MIN
        (b"pw=\x1b[3", b"pw=\x1b[3"),
        (b"pw=h\x1b[m", b"pw=[masked]"),  # 1 byte and a colour reset: 4 bytes at the cut
        (b"", b""),
    ],
)
def test_a_cut_summary_with_escape_sequences(masker, data, cut):
    assert masker.mask_cut(data) == cut
    assert Masker({}).mask_cut(data) == data


def test_masking_a_bytearray_gives_bytes(masker):
    assert masker.mask(bytearray(b"a hunter2-very-secret")) == b"a [masked:DB]"
    assert masker.mask_cut(bytearray(b"a hunter2-very-secret")) == b"a [masked:DB]"


def test_overlapping_stretches_merge_and_the_first_marker_wins():
    # the raw reading and the noise-free reading of a stream can find overlapping stretches
    union = masking._union
    assert union([(0, 5, "A")], [(3, 8, "B")]) == [(0, 8, "A")]
    assert union([(3, 8, "B")], [(0, 5, "A")]) == [(0, 8, "A")]
    assert union([(0, 5, "A")], [(5, 8, "B")]) == [(0, 5, "A"), (5, 8, "B")]  # touching: both kept
    assert union([(0, 8, "A")], [(2, 4, "B")]) == [(0, 8, "A")]  # inside: dropped
    assert union([(2, 4, "B")], [(2, 8, "A")]) == [(2, 8, "A")]  # same start: the longest first
    assert union([(0, 8, "A")], [(2, 4, "B"), (3, 9, "C")]) == [(0, 9, "A")]
    assert union([(0, 1, "Y"), (2, 3, "Z"), (4, 6, "A")], [(5, 8, "B")]) == [(0, 1, "Y"), (2, 3, "Z"), (4, 8, "A")]
    assert union([], []) == []


def test_a_secret_after_overlapping_matches_in_another_automaton_is_masked(monkeypatch):
    # found by test_masking's hypothesis run under mutmut: a re-searched stretch dropped a listed
    # occurrence that reached past it, and with it a secret inside that occurrence
    pytest.importorskip("ahocorasick_rs")
    monkeypatch.setattr(masking, "_GROUP", 3)  # three keys per automaton, as 64 are past 64 keys
    secrets = {"s0": b"bb", "s1": b"abab", "s2": b"a", "s3": b"baba"}
    out = Masker(secrets).mask(b"bbabababa")
    assert out == b"[masked:s0][masked:s1][masked:s2]b[masked:s2]"  # today: ...[masked:s2]ba


# -- the end of the data is the end: an escape cut off there is part of the secret -----------------


def test_a_whole_piece_ending_in_an_escape_byte_of_a_secret_hides_it():
    # mask() has the whole data: a trailing ESC cannot become a colour any more, so a secret
    # that ends in one is masked with it (a stream would wait for the next read)
    masker = Masker({"s": b"cab\x1b"})
    assert masker.mask(b"x cab\x1b") == b"x [masked:s]"
    assert masker.mask_text("x cab\x1b") == "x [masked:s]"


def test_an_idle_release_reads_what_it_holds_as_complete():
    # held: a secret that a longer one continues, ending in a cut-off escape; the release
    # lets it out masked, without the escape bytes that belong to the secret
    masker = Masker({"s1": b"b\x1b[", "s2": b"b\x1b[3"})
    assert (masker.feed(b"b\x1b["), masker.pending, masker.releasable) == (b"", 3, True)
    assert masker.release() == b"[masked:s1]"
    assert masker.flush() == b""
    # the same with a line break inside: only the noise-free reading sees that secret
    masker = Masker({"s1": b"b\x1b[", "s2": b"b\x1b[3"})
    assert (masker.feed(b"b\r\n\x1b["), masker.pending, masker.releasable) == (b"", 5, True)
    assert masker.release() == b"[masked:s1]\r\n"
    assert masker.flush() == b""


def test_without_ahocorasick_rs_the_plain_search_masks_the_same(monkeypatch):
    # a platform without its wheel: the import fails and bytes.find searches instead
    import sys

    monkeypatch.setitem(sys.modules, "ahocorasick_rs", None)  # `import` now raises ImportError
    secrets = {"s0": b"bb", "s1": b"abab", "s2": b"a", "s3": b"baba", "TOKEN": b"hunter2-very-secret"}
    masker = Masker(secrets)
    ((find, offset),) = masker._finders
    assert offset == 0
    assert masker.mask(b"bbabababa") == b"[masked:s0][masked:s1][masked:s2]b[masked:s2]"
    assert masker.mask(b"pw=hunter2-very-secret;") == b"pw=[masked:TOKEN];"
    assert masker.feed(b"x bab") == b"x " and masker.feed(b"a!") == b"[masked:s3]!"


def _backends():
    out = [pytest.param(masking._find_keys, id="bytes.find")]
    try:
        import ahocorasick_rs  # noqa: F401
    except ImportError:
        return out
    return out + [pytest.param(lambda keys: masking._finders(keys)[0][0], id="ahocorasick_rs")]


@pytest.mark.parametrize("backend", _backends())
def test_a_finder_lists_key_index_start_and_end_within_the_stretch_asked(backend):
    # the contract of _finders' find(buf, start=0, stop=None): occurrences in buf[start:stop] as
    # (key index, start, end) in buf's positions, sorted by start, longest first at equal starts
    keys = [b"ab", b"b", b"cab"]
    find = backend(keys)
    buf = b"ab-cab-b"
    full = find(buf)
    assert full == find(buf, 0) and full == find(buf, 0, None)
    assert full[0] == (0, 0, 2)  # from the very first byte
    assert [m for m in full if m[1] == 3] == [(2, 3, 6)]  # leftmost-longest: "cab", not the "ab" in it
    assert full[-1] == (1, 7, 8)
    assert all(e - s == len(keys[k]) for k, s, e in full)
    assert [s for _, s, _ in full] == sorted(s for _, s, _ in full)
    assert find(buf, 3) == [m for m in full if m[1] >= 3]  # nothing before start
    for start, stop, first in ((0, 2, (0, 0, 2)), (4, 6, (0, 4, 6)), (7, None, (1, 7, 8)), (3, 8, (2, 3, 6))):
        found = find(buf, start, stop)
        assert found[0] == first, (start, stop)  # a bytes.find backend also lists overlapping ones
        assert all(start <= s and e <= (stop or len(buf)) for _, s, e in found), (start, stop)


def test_the_end_of_the_stream_lets_out_every_held_byte():
    # held: a prefix of the secret with a colour inside, whose raw bytes also end in a byte that
    # could start it; at the end of the stream nothing can follow, so nothing stays held
    masker = Masker({"s": b"abXaZ"})
    assert (masker.feed(b"ab\x1b[mXa"), masker.pending) == (b"", 7)
    assert (masker.flush(), masker.pending) == (b"ab\x1b[mXa", 0)


def test_a_secret_starting_in_the_last_byte_of_a_longer_key_is_masked():
    # the 16-byte search key of "long" is found at 0 but "long" itself is not there; "short", a
    # prefix of it, is; the stretch searched again after it must reach the end of a 16-byte key
    # that starts in the last byte of the first one
    secrets = {"long": b"abcdefghijklmnopZ", "short": b"ab", "next": b"pqrstuvwxyz01234"}
    assert Masker(secrets).mask(b"abcdefghijklmnopqrstuvwxyz01234!") == b"[masked:short]cdefghijklmno[masked:next]!"


def test_a_read_that_starts_with_an_escape_sequence_is_read_without_its_noise():
    # a coloured line from the start of a read, and a colour change inside the secret
    masker = Masker({"s": b"hunter2"})
    assert masker.mask(b"\x1b[31mhun\x1b[0mter2") == b"\x1b[31m[masked:s]\x1b[0m"
    assert masking.normalize(b"\x1b[31mab\x1b[0m") == b"ab"
    assert masker.feed(b"\x1b[1mhun\x1b[mter2 ok") == b"\x1b[1m[masked:s]\x1b[m ok"


def test_the_search_goes_on_one_byte_after_a_key_that_is_no_secret():
    # "long"'s 16-byte key is there but "long" is not: the next byte may start another secret
    secrets = {"long": b"abcdefghijklmnopZ", "other": b"bcd"}
    assert Masker(secrets).mask(b"abcdefghijklmnop!") == b"a[masked:other]efghijklmnop!"


def test_an_escape_sequence_cut_off_at_the_start_of_a_read_is_held():
    # it may yet become a colour (noise) with the next read: held, as at any other position
    masker = Masker({"s": b"hunter2"})
    assert (masker.feed(b"\x1b[3"), masker.pending) == (b"", 3)
    assert masker.feed(b"1mhunter2 ok") == b"\x1b[31m[masked:s] ok"


def test_a_secret_read_from_the_environment_with_bytes_that_are_not_utf8_is_masked():
    # os.environ holds such bytes as lone surrogates (surrogateescape): masked as the bytes
    assert Masker({"s": "pw\udcff-secret"}).mask(b"x pw\xff-secret") == b"x [masked:s]"
    assert Masker({"n\udcff": b"hunter2"}).mask(b"hunter2") == b"[masked:n?]"  # a name like that too


def test_an_empty_secret_is_skipped_and_the_others_still_masked():
    masker = Masker({"empty": "", "also": b"", "s": b"hunter2", "t": "tiger-lily"})
    assert masker.names == ("s", "t")
    assert masker.mask(b"a hunter2 tiger-lily") == b"a [masked:s] [masked:t]"


def test_a_secret_made_only_of_noise_is_not_masked_or_named():
    masker = Masker({"nl": "\r\n", "csi": b"\x1b[0m", "s": b"hunter2"})
    assert masker.names == ("s",)
    assert repr(masker) == "Masker(names=['s'], pending=0)"
    assert Masker({"nl": "\r\n"}).feed(b"a\r\nb") == b"a\r\nb"
