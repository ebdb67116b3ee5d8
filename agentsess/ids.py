"""Run ids: ``run_`` + a ULID in lowercase Crockford base32.

48 bits of milliseconds then 80 random bits: unique across machines and sortable by time,
so a prefix of a few characters is usually enough to name a run.
"""

import os
import re
import time

PREFIX = "run_"
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_FULL = re.compile(r"^run_[0-9a-hjkmnp-tv-z]{26}$")
_PARTIAL = re.compile(r"^(run_)?[0-9a-hjkmnp-tv-z]{1,26}$")


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_run_id(now: float | None = None) -> str:
    ms = int((time.time() if now is None else now) * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    return PREFIX + _encode(ms, 10) + _encode(rand, 16)


def is_run_id(text: str) -> bool:
    return bool(_FULL.match(text))


def normalise_prefix(text: str) -> str | None:
    """The id prefix a user typed, lowercased and with ``run_``; None if it cannot be one."""
    t = text.strip().lower()
    if t == PREFIX.rstrip("_") or t == PREFIX:
        return PREFIX
    if not _PARTIAL.match(t):
        return None
    return t if t.startswith(PREFIX) else PREFIX + t
