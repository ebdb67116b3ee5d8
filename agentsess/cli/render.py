"""Rendering helpers shared by the commands: JSON to stdout, rich to the terminal.

Everything an agent could have chosen (a run's name, its command line, its cwd, a receipt's
data, its output) is shown through :func:`text` or :func:`safe`: control characters,
escape sequences and bidirectional overrides appear as visible ``\\x1b``-style escapes,
never reach the terminal as instructions (no line erase, no OSC 52 clipboard write).
"""

import json
import sys

# Unicode format characters that reorder or hide text (Trojan Source, CVE-2021-42574), and
# the line and paragraph separators some terminals break lines on
_INVISIBLE = frozenset(
    [0x061C, 0x200B, 0x200E, 0x200F, 0x2028, 0x2029, 0xFEFF]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
)


def _escape(ch: str) -> str:
    n = ord(ch)
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}"


def safe(value, keep: str = "") -> str:
    """``value`` as a string with every C0/C1 control character (but those in ``keep``), DEL,
    lone surrogates and the invisible reordering characters spelled out as escapes."""
    s = "" if value is None else str(value)
    if s.isprintable() and not any(ord(c) in _INVISIBLE for c in s if ord(c) > 0x7F):
        return s  # the common case, at C speed
    out = []
    for ch in s:
        n = ord(ch)
        if ch in keep:
            out.append(ch)
        elif n < 0x20 or 0x7F <= n < 0xA0 or n in _INVISIBLE or 0xD800 <= n < 0xE000:
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)


def print_json(obj) -> None:
    # json.dumps escapes every control character (ensure_ascii=False keeps only printable text raw)
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    if not text.isascii() and safe(text, "\n") != text:
        text = json.dumps(obj, indent=2, ensure_ascii=True)  # C1 controls, bidi overrides: escaped
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def console(stderr: bool = False):
    import os

    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 200  # piped into a file or grep: do not cut run ids at 80 columns
    return out


def text(value, keep: str = ""):
    """User-supplied strings are never markup (`[bold]` in a command line stays as typed) and
    never terminal control (see :func:`safe`)."""
    from rich.text import Text

    return Text(safe(value, keep))


STATUS_STYLE = {
    "running": "cyan",
    "exited": "green",
    "revoked": "red",
    "abandoned": "yellow",
    "denied": "magenta",
}


def status_text(status: str, exit_code=None):
    from rich.text import Text

    style = STATUS_STYLE.get(status, "")
    if status == "exited" and exit_code not in (None, 0):
        style = "yellow"
    return Text(safe(status), style=style)


def short_time(iso: str | None, zone: bool = True) -> str:
    """An RFC 3339 UTC time as ``2026-12-01 09:45:03 UTC`` (``zone=False``: without the zone)."""
    if not iso:
        return "-"
    shown = safe(iso[:19].replace("T", " "))
    return f"{shown} UTC" if zone else shown


def clock(iso: str | None) -> str:
    """Only the time of day of an RFC 3339 UTC time: ``09:45:03`` (its column says UTC)."""
    return "-" if not iso else safe(iso[11:19])


def duration_text(seconds) -> str:
    """``0.1s``, ``12.4s``, then ``3m 20s``, ``2h 5m``: never six decimals."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "-" if seconds is None else safe(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    from agentsess.core.durations import format_duration

    return format_duration(int(seconds))
