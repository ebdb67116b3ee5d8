"""Streaming redaction of secret values in a run's output.

Every byte the child writes passes through a :class:`Masker` on its way to the terminal
and the output log. Each secret value is replaced by ``[masked:NAME]`` wherever it
appears raw or, for values of 8 bytes or more, in a common encoding (see
:func:`encodings`).

Streaming: :meth:`Masker.feed` returns what can be emitted now. It holds back only bytes
that could be the start of a secret (at most the longest pattern less one byte), so a
secret split across reads is still caught, and output whose tail cannot start a secret
(a prompt without a newline) passes at once. :meth:`Masker.flush` emits what is held;
the supervisor calls it when no data has arrived for a short while and at the end.
Fed in any chunks and flushed only at the end, the output is exactly
:meth:`Masker.mask` of the whole stream. A flush in the middle of a secret lets its
first part out and the rest is no longer recognised: the price of not stalling a prompt,
which is why only the idle timer flushes.

Matching is leftmost-longest: at the first position where any pattern starts, the longest
pattern there is replaced, and scanning resumes after it.

Speed: candidate positions are found by the first 16 bytes ("keys") of every pattern,
with ``ahocorasick_rs`` (a vectorised multi-substring search, at most 64 keys per
automaton so its SIMD prefilter stays on) when it is installed, else with ``bytes.find``
per key; each candidate is then checked against its full patterns.
"""

_KEY = 16  # a candidate is an occurrence of the first _KEY bytes of a pattern
_GROUP = 64  # keys per automaton: beyond 64 the SIMD prefilter of ahocorasick_rs is off
_MIN_ENCODED = 8  # values at least this long are also masked in their encodings

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def encodings(value: bytes) -> list:
    """The byte strings that reveal ``value`` in output, ``value`` itself first.

    For values of 8 bytes or more, also:

    - base64, standard and URL-safe alphabets, at each of the 3 alignments: the characters
      fully determined by ``value`` when 0, 1 or 2 other bytes precede it in the encoded
      stream (so the value is found inside a longer base64 blob, padded or not);
    - percent-encoding of every byte, ``%XX`` in upper and in lower case;
    - URL quoting that keeps the unreserved characters: Python's ``quote(v, safe="")``,
      ``quote(v)`` (keeps ``/``), ``quote_plus(v)`` and JavaScript's
      ``encodeURIComponent`` (also keeps ``!*'()``);
    - hex, lower and upper case.

    Duplicates are dropped; order is stable.
    """
    out = [value]
    if len(value) >= _MIN_ENCODED:
        from binascii import b2a_base64

        bits = 8 * len(value)
        for k in (0, 1, 2):
            enc = b2a_base64(b"\0" * k + value, newline=False)
            inner = enc[(8 * k + 5) // 6 : (8 * k + bits) // 6]
            out.append(inner)
            out.append(inner.translate(_URLSAFE))
        pct = "%" + value.hex("%")
        out.append(pct.upper().encode())
        out.append(pct.encode())
        out.extend(_quoted(value))
        hx = value.hex()
        out.append(hx.encode())
        out.append(hx.upper().encode())
    return list(dict.fromkeys(out))


def _quoted(value: bytes) -> list:
    if all(b in _UNRESERVED for b in value):
        return []  # every quoting leaves it as it is
    variants = []
    for safe, plus in ((b"", False), (b"/", False), (b"", True), (b"!*'()", False)):
        parts = []
        for b in value:
            if b in _UNRESERVED or b in safe:
                parts.append(chr(b))
            elif plus and b == 0x20:
                parts.append("+")
            else:
                parts.append(f"%{b:02X}")
        variants.append("".join(parts).encode())
    return variants


class Masker:
    """Replace secret values (and their encodings) in a byte stream by ``[masked:NAME]``.

    ``secrets`` maps a name to its value (``str`` values are taken as UTF-8). Empty values
    are ignored; any other value is masked however short, so register only real secrets.
    Where two secrets share a pattern, the first name wins. With no secrets the masker is
    a passthrough: :meth:`feed` returns the very object it was given.
    """

    __slots__ = ("_alts", "_finders", "_held", "_maxlen", "_names", "_short")

    def __init__(self, secrets: dict):
        self._held = b""
        self._finders = ()
        table = {}  # pattern -> replacement
        names = []
        for name, value in secrets.items():
            if isinstance(value, str):
                value = value.encode("utf-8", "surrogateescape")
            if not value:
                continue
            names.append(name)
            rep = b"[masked:" + name.encode("utf-8", "replace") + b"]"
            for pattern in encodings(bytes(value)):
                table.setdefault(pattern, rep)
        self._names = tuple(names)
        self._maxlen = max(map(len, table), default=0)
        if not table:
            return
        by_key = {}
        for pattern, rep in table.items():
            by_key.setdefault(pattern[:_KEY], []).append((pattern, rep))
        keys = list(by_key)
        # Every key found at a position is a prefix of the longest one found there, so a
        # candidate is checked against the patterns of its key and of all its prefixes.
        alts = []
        short = set()
        for key in keys:
            cands = []
            for r in range(1, len(key) + 1):
                cands.extend(by_key.get(key[:r], ()))
                if r < len(key):
                    short.add(key[:r])
            cands.sort(key=lambda pr: len(pr[0]), reverse=True)
            alts.append(tuple(cands))
        self._alts = alts
        self._short = frozenset(short)  # proper prefixes of keys: a pattern may start here
        self._finders = _finders(keys)

    def __repr__(self) -> str:
        return f"Masker(names={list(self._names)!r}, pending={len(self._held)})"

    @property
    def names(self) -> tuple:
        """Names of the secrets being masked."""
        return self._names

    @property
    def pending(self) -> int:
        """Bytes held back because they could start a secret."""
        return len(self._held)

    @property
    def max_pending(self) -> int:
        """The most :meth:`feed` ever holds back: the longest pattern less one byte."""
        return max(self._maxlen - 1, 0)

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes of the stream; return what may be emitted now.

        Other bytes-like objects (a reused read buffer) are copied to ``bytes`` first."""
        if not self._finders:
            return data
        if not data:
            return b""
        if type(data) is not bytes:
            data = bytes(data)
        buf = self._held + data if self._held else data
        out, self._held = self._scan(buf, False)
        return out

    def flush(self) -> bytes:
        """Emit the held bytes, masking any complete secret among them."""
        buf, self._held = self._held, b""
        if not buf:
            return b""
        return self._scan(buf, True)[0]

    def mask(self, data: bytes) -> bytes:
        """Mask one whole piece of data (independent of the stream state)."""
        if not self._finders or not data:
            return data
        return self._scan(bytes(data), True)[0]

    def mask_text(self, text: str) -> str:
        """Mask a whole string (UTF-8; undecodable bytes kept via surrogateescape)."""
        if not self._finders or not text:
            return text
        data = text.encode("utf-8", "surrogateescape")
        out = self._scan(data, True)[0]
        if out is data:
            return text
        return out.decode("utf-8", "surrogateescape")

    def _scan(self, buf: bytes, final: bool):
        """Mask ``buf``; return (output, bytes to hold). ``final``: nothing follows."""
        n = len(buf)
        finders = self._finders
        lists = [find(buf, 0) for find, _ in finders]
        # Where the end of the data is a proper prefix of a key, a pattern may start that
        # no search reports yet (its key is cut off).
        tails = []
        if not final:
            short = self._short
            tails = [q for q in range(max(0, n - _KEY + 1), n) if buf[q:] in short]
        pieces = []
        pos = 0  # emitted (or replaced) up to here
        hold = n
        if any(lists):
            alts = self._alts
            idx = [0] * len(finders)
            at = 0  # next candidate at or after this position
            while True:
                best = None
                for g, (find, offset) in enumerate(finders):
                    lst = lists[g]
                    i = idx[g]
                    while i < len(lst) and lst[i][1] < at:
                        e = lst[i][2]
                        if e > at:
                            # `at` is inside a reported occurrence, which may hide others
                            # that start before its end: search that stretch again.
                            j = i + 1
                            while j < len(lst) and lst[j][1] < e:
                                j += 1
                            win = find(buf, at, min(n, e + _KEY - 1))
                            lst[:j] = [m for m in win if m[1] < e]
                            i = 0
                            continue
                        i += 1
                    idx[g] = i
                    if i < len(lst):
                        k, s, e = lst[i]
                        if best is None or s < best[1] or (s == best[1] and e > best[2]):
                            best = (k + offset, s, e)
                if best is None:
                    break
                k, q, _ = best
                if tails and tails[0] < q:
                    break  # a cut-off pattern may start before this candidate
                rest = n - q
                matched = None
                partial = False
                for pattern, rep in alts[k]:  # longest first
                    lp = len(pattern)
                    if lp > rest:
                        if not final and not partial and pattern.startswith(buf[q:]):
                            partial = True  # may still complete with the next bytes
                    elif buf.startswith(pattern, q):
                        matched = (lp, rep)
                        break
                if not partial and tails and tails[0] == q:
                    partial = True  # a longer key, cut off, starts here too
                if partial:
                    hold = q  # a longer pattern may yet match here: decide next time
                    break
                if matched is not None:
                    pieces.append(buf[pos:q])
                    pieces.append(matched[1])
                    pos = at = q + matched[0]
                else:
                    at = q + 1
                while tails and tails[0] < at:
                    del tails[0]
        if tails and tails[0] < hold:
            hold = tails[0]
        if not pieces and hold == n:
            return buf, b""
        pieces.append(buf[pos:hold])
        return b"".join(pieces), buf[hold:]


def _finders(keys: list) -> tuple:
    """(find, offset) pairs covering ``keys``.

    ``find(buf, start=0, stop=None)`` lists occurrences of keys in ``buf[start:stop]`` as
    (key index, start, end), sorted by start, the longest first at equal starts. Every
    occurrence is listed or lies strictly inside a listed one (leftmost-longest,
    non-overlapping output satisfies this).
    """
    try:
        from ahocorasick_rs import BytesAhoCorasick, Implementation, MatchKind
    except ImportError:
        return ((_find_keys(keys), 0),)
    groups = -(-len(keys) // _GROUP)
    size = -(-len(keys) // groups)
    out = []
    for offset in range(0, len(keys), size):
        ac = BytesAhoCorasick(
            keys[offset : offset + size],
            matchkind=MatchKind.LeftmostLongest,
            implementation=Implementation.ContiguousNFA,
        )
        out.append((_ac_find(ac.find_matches_as_indexes), offset))
    return tuple(out)


def _ac_find(search):
    def find(buf, start=0, stop=None):
        if not start and stop is None:
            return search(buf)
        return [(k, s + start, e + start) for k, s, e in search(memoryview(buf)[start:stop])]

    return find


def _find_keys(keys: list):
    """The same search with ``bytes.find`` (used where ahocorasick_rs is missing).

    Lists every occurrence, overlapping ones included; the last buffer's list is kept so
    that searching a stretch of it again costs no new scan.
    """
    from bisect import bisect_left

    keys = tuple(keys)
    memo = [None, [], []]  # buffer, starts, occurrences

    def find(buf, start=0, stop=None):
        if memo[0] is not buf:
            found = []
            for k, key in enumerate(keys):
                j = buf.find(key)
                while j != -1:
                    found.append((j, -len(key), k))
                    j = buf.find(key, j + 1)
            found.sort()
            memo[:] = [buf, [j for j, _, _ in found], [(k, j, j - neg) for j, neg, k in found]]
        occ = memo[2][bisect_left(memo[1], start) :]
        if stop is not None:
            occ = [m for m in occ if m[2] <= stop]
        return occ

    return find


def mask_text(text: str, secrets) -> str:
    """Mask secrets in one whole string (a receipt field, a command line).

    ``secrets`` is a ``{name: value}`` dict or a :class:`Masker` (reuse one to mask many
    strings with the same secrets).
    """
    masker = secrets if isinstance(secrets, Masker) else Masker(secrets)
    return masker.mask_text(text)
