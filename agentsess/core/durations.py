"""Durations as people type them (``90s``, ``15m``, ``4h``, ``2d``, ``1h30m``) and as we show them.

A duration is one or more ``<whole number><unit>`` parts, largest unit first, each unit at
most once; units are ``w`` (weeks), ``d``, ``h``, ``m``, ``s``. Spaces between parts are
allowed, so ``format_duration``'s ``1h 30m`` reads back. Zero and negative durations are
refused: every duration agentsess takes (ttl, grace, warning, age) must be positive.

On the hot path of ``run``: imports nothing at module level.
"""

from agentsess.errors import USAGE, AgentsessError

UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_UNIT_SECONDS = dict(UNITS)
_UNIT_RANK = {unit: i for i, (unit, _) in enumerate(UNITS)}
MAX_SECONDS = 100 * 365 * 86400  # a century: beyond this a duration is a typo
EXPECTED = "expected a duration like 90s, 15m, 4h, 2d or 1h30m"


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(text, what, detail: str = "") -> AgentsessError:
    prefix = f"{what}: " if what else ""
    return AgentsessError(f"{prefix}{EXPECTED}, got {_shown(text)}{detail}", USAGE)


def parse_duration(text: str, what: str | None = None) -> int:
    """Seconds in ``text``; raise AgentsessError(USAGE) saying what is expected.

    ``what`` (e.g. ``"--ttl"``) prefixes the error message.
    """
    if not isinstance(text, str):
        raise _bad(text, what)
    s = text.strip().lower()
    total = 0
    rank = -1
    i = 0
    n = len(s)
    if n == 0:
        raise _bad(text, what)
    if s[0] == "-":
        raise _bad(text, what, " (it must be longer than zero)")
    while i < n:
        if s[i] == " ":
            i += 1
            continue
        start = i
        while i < n and "0" <= s[i] <= "9":
            i += 1
        if i == start or i == n:
            # no number, or a number without a unit
            detail = " (a unit is required: s, m, h, d or w)" if i == n and i > start else ""
            raise _bad(text, what, detail)
        if i - start > 12:
            raise _bad(text, what, " (too long)")
        unit = s[i]
        if unit not in _UNIT_RANK:
            raise _bad(text, what, " (whole numbers only)" if unit in ".," else "")
        if _UNIT_RANK[unit] <= rank:
            raise _bad(text, what, " (largest unit first, each unit once)")
        rank = _UNIT_RANK[unit]
        total += int(s[start:i]) * _UNIT_SECONDS[unit]
        i += 1
    if total <= 0:
        raise _bad(text, what, " (it must be longer than zero)")
    if total > MAX_SECONDS:
        raise _bad(text, what, " (too long)")
    return total


def format_duration(seconds, parts: int = 2) -> str:
    """Short text for ``seconds``: ``1h 30m``, ``45s``, ``2d 3h``.

    Shows the ``parts`` largest non-zero units (``1d 5m``), dropping (not rounding) the rest;
    fractions of a second are dropped. Zero is ``0s``; negative durations get a leading ``-``.
    """
    seconds = int(seconds)
    if seconds < 0:
        return "-" + format_duration(-seconds, parts)
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in UNITS:
        if unit == "w":
            continue  # weeks are accepted on input but read worse than days on output
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            out.append(f"{count}{unit}")
            if len(out) >= parts:
                break
    return " ".join(out)


def parse_since(text: str, now: float | None = None) -> float:
    """Epoch seconds for a ``--since``-style value.

    A duration means that long before ``now`` (``2h`` = two hours ago); otherwise an ISO 8601
    date or date-time (``2024-05-01``, ``2024-05-01T12:30``, ``...Z``, ``...+02:00``), taken as
    UTC when it carries no offset.
    """
    if now is None:
        import time

        now = time.time()
    if not isinstance(text, str) or not text.strip():
        raise _since_error(text)
    s = text.strip()
    if s[0].isdigit() and s[-1].lower() in _UNIT_SECONDS and "-" not in s and ":" not in s:
        return now - parse_duration(s)
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(s)
    except ValueError:
        raise _since_error(text) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _since_error(text) -> AgentsessError:
    return AgentsessError(
        "expected a duration like 2h or 3d, or an ISO date like 2024-05-01 or "
        f"2024-05-01T12:30, got {_shown(text)}",
        USAGE,
    )
