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


# -- plain tables, without rich (`runs` and `show-run` start in less than rich's import) ------

_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "magenta": "35", "cyan": "36"}


def colour_on(stream=None) -> bool:
    """Colours only onto a terminal, and never with NO_COLOR set (https://no-color.org)."""
    import os

    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def paint(value: str, style: str | None, colour: bool) -> str:
    """``value`` in ``style`` ("bold red", "green", ...) when ``colour``; as it is otherwise."""
    if not colour or not style:
        return value
    codes = ";".join(_SGR[w] for w in style.split() if w in _SGR)
    return f"\x1b[{codes}m{value}\x1b[0m" if codes else value


def status_style(status: str, exit_code=None) -> str:
    if status == "exited" and exit_code not in (None, 0):
        return "yellow"
    return STATUS_STYLE.get(status, "")


def columns(rows: list, header: list | None = None, colour: bool = False, header_style: str = "bold",
            first_style: str | None = None) -> str:
    """Rows of cells aligned in columns two spaces apart. A cell is a string (made safe) or a
    ``(string, style)`` pair; the last column is not padded."""
    cells = [[c if isinstance(c, tuple) else (c, None) for c in row] for row in rows]
    cells = [[(safe(text), style) for text, style in row] for row in cells]
    if header:
        cells.insert(0, [(h, header_style) for h in header])
    if not cells:
        return ""
    count = max(len(r) for r in cells)
    widths = [max((len(r[i][0]) for r in cells if i < len(r)), default=0) for i in range(count)]
    lines = []
    for row in cells:
        parts = []
        for i, (text, style) in enumerate(row):
            if i == 0 and first_style and style is None:
                style = first_style
            pad = "" if i == len(row) - 1 else " " * (widths[i] - len(text))
            parts.append(paint(text, style, colour) + pad)
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"
