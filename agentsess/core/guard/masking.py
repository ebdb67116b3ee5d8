"""Streaming redaction of secret values in a run's output.

Every byte the child writes passes through a :class:`Masker` on its way to the terminal
and the output log. Each secret value is replaced by ``[masked:NAME]`` wherever it
appears raw or, for values of 8 bytes or more, in a common encoding (see
:func:`encodings`).

Line breaks and escape sequences do not hide a secret. Matching ignores *noise*: ``\\r``,
``\\n``, CSI escape sequences (``ESC [ … final``: colours from ``grep --color=always``,
erase-line, cursor moves of a TUI) and charset selections (``ESC ( B``). So a PEM key
shown through a pty (``\\n`` becomes ``\\r\\n``), ``base64`` wrapped at 76 columns, ``xxd -p``
hex wrapped at 60, a token wrapped by a TUI or coloured in the middle are all masked. The
noise inside a masked stretch is kept after the marker (line breaks and colour resets
still reach the terminal): ``[masked:NAME]`` then the noise bytes, in order (so the line
breaks of a multi-line secret itself stay visible, not its text).

What this is for: secrets shown by accident or by tools (logs, ``env``, ``cat``, encoders,
pagers, TUIs). A child that holds a secret and wants it seen can always spell it in a way
no masker knows (reversed, one character per cursor move); against that, the agent should
hold placeholders, not secrets (the broker).

Streaming: :meth:`Masker.feed` returns what can be emitted now. It holds back only bytes
that could be the start of a secret (a prefix of a pattern, noise aside) and an escape
sequence cut off at the end, so a secret split across reads is still caught, and output
whose tail cannot start a secret (a prompt without a newline) passes at once.

When the child pauses, the supervisor calls :meth:`Masker.release` (the idle flush): it
lets out what is held only when that is shorter than 4 bytes (noise aside). A held tail of
4 bytes or more of a pattern waits until later bytes rule it out, or the stream ends
(:meth:`Masker.flush`). What an idle release lets out stays in view: a secret that
continues it is still masked, so a child that writes a secret in pieces with pauses shows
at most its first 3 bytes. A held stretch that grows beyond :data:`HOLD_CAP` bytes (a
prefix followed by endless noise) is let out as if the stream ended, so output never
stalls without bound.

Fed in any chunks and flushed only at the end, the output is exactly :meth:`Masker.mask`
of the whole stream, except where escape sequences make the raw and the noise-free readings
of it overlap: there the stream may come out with one marker more.

Matching is leftmost-longest over the stream with noise removed: at the first position
where any pattern starts, the longest pattern there is replaced, and scanning resumes after
it.

Speed: noise is removed with ``bytes.replace`` when the data holds no escape byte (a
regular expression otherwise); candidate positions are found by the first 16 bytes
("keys") of every pattern, with ``ahocorasick_rs`` (a vectorised multi-substring search, at
most 64 keys per automaton so its SIMD prefilter stays on) when it is installed, else with
``bytes.find`` per key; each candidate is then checked against its full patterns. Positions
map back to the raw stream only where something matched or is held.
"""

import re
from bisect import bisect_right

_KEY = 16  # a candidate is an occurrence of the first _KEY bytes of a pattern
_GROUP = 64  # keys per automaton: beyond 64 the SIMD prefilter of ahocorasick_rs is off
_MIN_ENCODED = 8  # values at least this long are also masked in their encodings
HOLD_MIN = 4  # an idle release keeps a held prefix of a pattern this long or longer
HOLD_CAP = 1 << 16  # a held stretch longer than this is let out (see the module docstring)

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_LINE_BREAKS = b"\r\n"
_NOT_BREAKS = bytes(b for b in range(256) if b not in _LINE_BREAKS)
# noise: line breaks, CSI sequences (bounded: an endless one is no escape sequence), ESC ( B
_NOISE = re.compile(rb"(?:[\r\n]|\x1b\[[0-?]{0,32}[ -/]{0,8}[@-~]|\x1b[()][0-9A-Za-z])+")
# an escape sequence cut off at the end of a read: it may yet become noise
_CUT_ESCAPE = re.compile(rb"\x1b(?:\[[0-?]{0,32}[ -/]{0,8}|[()])?\Z")
_ESC_TAIL = 48  # a cut-off escape sequence is at most this long


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



class _View:
    """``buf`` with noise removed (``norm``), and the way back to positions in ``buf``.

    ``final`` false: an escape sequence cut off at the end counts as noise (it may
    complete with the next read); ``cut`` is where it starts (``len(buf)`` when there is
    none)."""

    __slots__ = ("_cum", "_pos", "_runs", "buf", "cut", "norm")

    def __init__(self, buf: bytes, final: bool):
        self.buf = buf
        n = len(buf)
        self.cut = n
        self._runs = None
        if buf.find(b"\x1b") < 0:
            # bytes.replace (memchr and memcpy) is several times faster than translate here
            if buf.find(b"\r") >= 0:
                buf = buf.replace(b"\r", b"")
            self.norm = buf.replace(b"\n", b"") if buf.find(b"\n") >= 0 else buf
            return
        runs = [m.span() for m in _NOISE.finditer(buf)]
        if not final:
            m = _CUT_ESCAPE.search(buf, max(0, n - _ESC_TAIL))
            if m is not None:
                self.cut = m.start()
                if runs and runs[-1][1] == m.start():
                    runs[-1] = (runs[-1][0], n)
                else:
                    runs.append((m.start(), n))
        pieces = []
        pos = []  # norm position of each run: it sits just before that norm byte
        cum = [0]  # bytes removed by the runs before it
        last = 0
        for s, e in runs:
            pieces.append(buf[last:s])
            pos.append(s - cum[-1])
            cum.append(cum[-1] + e - s)
            last = e
        pieces.append(buf[last:])
        self.norm = b"".join(pieces)
        self._runs, self._pos, self._cum = runs, pos, cum

    def orig(self, i: int) -> int:
        """The position in ``buf`` of byte ``i`` of ``norm`` (``len(buf)`` for the end)."""
        buf, norm = self.buf, self.norm
        if norm is buf:
            return i
        if i >= len(norm):
            return len(buf)
        if self._runs is not None:
            return i + self._cum[bisect_right(self._pos, i)]
        # line breaks only: count them, from the nearer end
        n = len(buf)
        if i < len(norm) // 2:
            x, c, upto = i, 0, 0
            while True:
                c += buf.count(b"\n", upto, x) + buf.count(b"\r", upto, x)
                upto = x
                if i + c == x:
                    break
                x = i + c
            while buf[x] in _LINE_BREAKS:
                x += 1
            return x
        r = len(norm) - i  # norm bytes from i to the end
        x, c, upto = n - r, 0, n
        while True:
            c += buf.count(b"\n", x, upto) + buf.count(b"\r", x, upto)
            upto = x
            if n - r - c == x:
                return x
            x = n - r - c

    def noise(self, a: int, b: int) -> bytes:
        """The noise bytes of ``buf[a:b]``, in order."""
        if self.norm is self.buf or a >= b:
            return b""
        if self._runs is None:
            return self.buf[a:b].translate(None, _NOT_BREAKS)
        out = []
        for s, e in self._runs:
            if s >= b:
                break
            if s >= a and e <= b:  # only whole runs: a run cut by the stretch may hold secret bytes
                out.append(self.buf[s:e])
        return b"".join(out)


def normalize(data: bytes) -> bytes:
    """``data`` without noise (line breaks, CSI and charset escape sequences)."""
    return _View(bytes(data), True).norm


class Masker:
    """Replace secret values (and their encodings) in a byte stream by ``[masked:NAME]``.

    ``secrets`` maps a name to its value (``str`` values are taken as UTF-8). Empty values
    (and values made only of noise) are ignored; any other value is masked however short,
    so register only real secrets. Where two secrets share a pattern, the first name wins.
    With no secrets the masker is a passthrough: :meth:`feed` returns the very object it
    was given.
    """

    __slots__ = ("_alts", "_finders", "_held", "_maxlen", "_names", "_short", "_shown")

    def __init__(self, secrets: dict):
        self._held = b""
        self._shown = 0  # leading bytes of _held already emitted (by an idle release)
        self._finders = ()
        table: dict[bytes, bytes] = {}  # pattern (noise removed) -> replacement
        names = []
        for name, value in secrets.items():
            if isinstance(value, str):
                value = value.encode("utf-8", "surrogateescape")
            if not value:
                continue
            rep = b"[masked:" + name.encode("utf-8", "replace") + b"]"
            added = False
            for pattern in encodings(bytes(value)):
                pattern = normalize(pattern)
                if pattern:
                    table.setdefault(pattern, rep)
                    added = True
            if added:
                names.append(name)
        self._names = tuple(names)
        self._maxlen = max(map(len, table), default=0)
        if not table:
            return
        by_key: dict[bytes, list] = {}
        for pattern, rep in table.items():
            by_key.setdefault(pattern[:_KEY], []).append((pattern, rep))
        keys = list(by_key)
        # Every key found at a position is a prefix of the longest one found there, so a
        # candidate is checked against the patterns of its key and of all its prefixes.
        alts = []
        short = set()
        for key in keys:
            cands: list = []
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
        return f"Masker(names={list(self._names)!r}, pending={self.pending})"

    @property
    def names(self) -> tuple:
        """Names of the secrets being masked."""
        return self._names

    @property
    def pending(self) -> int:
        """Bytes held back (not emitted yet) because they could start a secret."""
        return len(self._held) - self._shown

    @property
    def max_pending(self) -> int:
        """The most bytes other than noise that :meth:`feed` holds back: the longest pattern
        less one byte (plus a cut-off escape sequence)."""
        return max(self._maxlen - 1, 0) + _ESC_TAIL

    @property
    def releasable(self) -> bool:
        """Whether :meth:`release` (the idle flush) would let held bytes out now: they are
        held, and shorter than :data:`HOLD_MIN` bytes of a pattern, noise aside."""
        held = self._held
        if len(held) == self._shown:
            return False
        view = _View(held, False)
        if len(view.norm) >= HOLD_MIN:
            return False
        # an escape sequence may have swallowed the first bytes of a secret: count those too
        return view._runs is None or len(held) - self._find(held, False)[1] < HOLD_MIN

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
        out = self._step(buf, False)
        if len(self._held) > HOLD_CAP:
            out += self.flush()
        return out

    def release(self) -> bytes:
        """The idle flush: emit the held bytes unless they are :data:`HOLD_MIN` bytes or more
        of a pattern (see :attr:`releasable`). They stay in view, so a secret that goes on
        from them is still masked."""
        if not self.releasable:
            return b""
        held = self._held
        spans, _ = self._spans(_View(held, True), True)  # a short secret may be complete in them
        out, _ = _assemble(_View(held, True), spans, len(held), self._shown)
        self._shown = len(held)
        return out

    def flush(self) -> bytes:
        """The end of the stream: emit everything held, masking any complete secret in it."""
        buf = self._held
        if len(buf) == self._shown:
            self._held, self._shown = b"", 0
            return b""
        return self._step(buf, True)

    def mask(self, data: bytes) -> bytes:
        """Mask one whole piece of data (independent of the stream state)."""
        if not self._finders or not data:
            return data
        data = bytes(data)
        view = _View(data, True)
        spans, _ = self._spans(view, True)
        if not spans:
            return data
        return _assemble(view, spans, len(data), 0)[0]

    def mask_cut(self, data: bytes) -> bytes:
        """Mask ``data`` that was cut off (a summary capped at N characters): also a tail that
        is :data:`HOLD_MIN` bytes or more of a pattern, noise aside, becomes ``[masked]``."""
        if not self._finders or not data:
            return data
        data = bytes(data)
        view = _View(data, False)
        spans, h = self._spans(view, False)
        tail = data[h:]
        if len(normalize(tail)) < HOLD_MIN and (b"\x1b" not in tail or len(tail) < HOLD_MIN):
            h = len(data)  # too short to give a secret away: kept as it is
        if not spans and h == len(data):
            return data
        out, end = _assemble(view, spans, h, 0)
        return out + (b"[masked]" if max(h, end) < len(data) else b"")

    def mask_text(self, text: str, cut: bool = False) -> str:
        """Mask a whole string (UTF-8; undecodable bytes kept via surrogateescape); ``cut``:
        it was cut off, see :meth:`mask_cut`."""
        if not self._finders or not text:
            return text
        data = text.encode("utf-8", "surrogateescape")
        out = self.mask_cut(data) if cut else self.mask(data)
        if out is data:
            return text
        return out.decode("utf-8", "surrogateescape")

    def _step(self, buf: bytes, final: bool) -> bytes:
        """Mask ``buf`` (held bytes, then new ones); keep what must wait; return the rest."""
        shown = self._shown
        view = _View(buf, final)
        spans, h = self._spans(view, final)
        if not spans and h == len(buf):
            self._held, self._shown = b"", 0
            return buf[shown:] if shown else buf
        out, end = _assemble(view, spans, h, shown)
        self._held = buf[h:]
        self._shown = max(0, end - h)
        return out

    def _spans(self, view: "_View", final: bool):
        """(the stretches of ``view.buf`` to mask as sorted, disjoint (start, end, marker),
        where the bytes to hold begin). Matching is over the data with noise removed; where
        the data holds escape sequences, also over the raw bytes, since an escape byte the
        child writes just before a secret could otherwise swallow its first bytes."""
        buf = view.buf
        matches, hold = self._find(view.norm, final)
        spans = [(view.orig(q), view.orig(e - 1) + 1, rep) for q, e, rep in matches]
        h = min(view.orig(hold), view.cut)
        if view._runs is not None:
            raw, raw_hold = self._find(buf, final)
            if raw:
                spans = _union(spans, raw)
            h = min(h, raw_hold)  # may lie inside a masked stretch: see _assemble
        return spans, h

    def _find(self, buf: bytes, final: bool):
        """Matches in ``buf`` (noise removed) as (start, end, replacement), and where the
        bytes to hold begin (``len(buf)``: none). ``final``: nothing follows."""
        n = len(buf)
        finders: tuple = self._finders
        lists: list = [find(buf, 0) for find, _ in finders]
        # Where the end of the data is a proper prefix of a key, a pattern may start that
        # no search reports yet (its key is cut off).
        tails = []
        if not final:
            short = self._short
            tails = [q for q in range(max(0, n - _KEY + 1), n) if buf[q:] in short]
        matches = []
        hold = n
        if any(lists):
            alts = self._alts
            idx = [0] * len(finders)
            at = 0  # next candidate at or after this position
            while True:
                best: tuple | None = None
                for g, (find, offset) in enumerate(finders):
                    lst = lists[g]
                    i = idx[g]
                    while i < len(lst) and lst[i][1] < at:
                        e = lst[i][2]
                        if e > at:
                            # `at` is inside a reported occurrence, which may hide others
                            # that start before its end: search that stretch again, up to
                            # the end of every listed occurrence it replaces (those hide
                            # others too, even past `e`)
                            j = i + 1
                            while j < len(lst) and lst[j][1] < e:
                                e = max(e, lst[j][2])
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
                    matches.append((q, q + matched[0], matched[1]))
                    at = q + matched[0]
                else:
                    at = q + 1
                while tails and tails[0] < at:
                    del tails[0]
        if tails and tails[0] < hold:
            hold = tails[0]
        return matches, hold


def _union(a: list, b: list) -> list:
    """Stretches covered by either list, merged where they overlap (the first marker wins)."""
    out: list = []
    for s, e, rep in sorted(a + b, key=lambda m: (m[0], -m[1])):
        if out and s < out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e, out[-1][2])
            continue
        out.append((s, e, rep))
    return out


def _assemble(view: _View, spans: list, h: int, shown: int):
    """(output, end): the raw bytes up to ``h`` with each span replaced by its marker and the
    noise inside it, nothing before ``shown`` (already emitted) again; ``end`` is where the
    output stops, past ``h`` when a span reaches beyond it (the bytes from ``h`` on are held
    and those before ``end`` count as shown)."""
    buf = view.buf
    pieces = []
    pos = shown
    for a, b, rep in spans:
        if b <= shown:
            continue  # masked already, by the idle release that emitted these bytes
        if a > pos:
            pieces.append(buf[pos:a])
        pieces.append(rep)
        noise = view.noise(max(a, shown), b)
        if noise:
            pieces.append(noise)
        pos = max(pos, b)
    if h > pos:
        pieces.append(buf[pos:h])
    return b"".join(pieces), max(pos, h)


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

    table = tuple(keys)
    memo: list = [None, [], []]  # buffer, starts, occurrences

    def find(buf, start=0, stop=None):
        if memo[0] is not buf:
            found = []
            for k, key in enumerate(table):
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
