"""Rendering helpers shared by the commands: JSON to stdout, rich to the terminal."""

import json
import sys


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def console(stderr: bool = False):
    import os

    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 200  # piped into a file or grep: do not cut run ids at 80 columns
    return out


def text(value):
    """User-supplied strings are never markup (`[bold]` in a command line stays as typed)."""
    from rich.text import Text

    return Text("" if value is None else str(value))


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
    return Text(status, style=style)


def short_time(iso: str | None) -> str:
    if not iso:
        return "-"
    return iso[:19].replace("T", " ")


def duration_text(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    from agentsess.core.durations import format_duration

    return format_duration(int(seconds))
