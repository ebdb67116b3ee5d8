"""Credential commands: a program of yours prints a service's secret (like AWS ``credential_process``).

``[profiles.P.providers.command.SERVICE] run = ["gh", "auth", "token"]``: the supervisor runs
it at run start (in its own environment, never the child's) and again when the value it
gave expires; the broker attaches the value to that service's upstream like any secret. The
program prints JSON, ``{"value": "...", "expires_at": "2026-12-01T12:00:00Z"}`` (``expires_at``
optional: RFC 3339 or UNIX seconds), or just the value on one line. Pure: parsing only.
"""

import calendar
import json
import time

from agentsess.core.credentials.services import SpecError, is_service_name

KEYS = ("run", "timeout")
TIMEOUT = 30


class OutputError(Exception):
    """The command's output is unusable; ``str()`` says why without quoting it."""


def check_table(value) -> dict:
    if not isinstance(value, dict):
        raise SpecError("", "expected tables like [profiles.P.providers.command.SERVICE] with run = [...]")
    out = {}
    for name, table in value.items():
        where = f".{name}" if is_service_name(name) else f".{name!r}"
        if not is_service_name(name) or not isinstance(table, dict):
            raise SpecError(where, "expected a table named after one of the profile's services")
        for key in table:
            if key not in KEYS:
                raise SpecError(f"{where}.{key}", f"unknown key (valid keys: {', '.join(KEYS)})")
        argv = table.get("run")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a and "\0" not in a for a in argv):
            raise SpecError(f"{where}.run", 'expected a command as a list like ["gh", "auth", "token"]')
        timeout = table.get("timeout", TIMEOUT)
        if type(timeout) is not int or not 0 < timeout <= 600:
            raise SpecError(f"{where}.timeout", "expected seconds, 1 to 600")
        out[name] = {"run": list(argv), "timeout": timeout}
    return out


def parse_output(stdout: bytes) -> tuple[str, float | None]:
    """(value, expires_at epoch or None) from what the command printed."""
    try:
        text = stdout.decode()
    except UnicodeDecodeError:
        raise OutputError("its output is not UTF-8") from None
    stripped = text.strip()
    if not stripped:
        raise OutputError("it printed nothing")
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            raise OutputError("its output is not valid JSON") from None
        value = data.get("value")
        if not isinstance(value, str) or not value:
            raise OutputError('its JSON has no "value" string')
        expires = data.get("expires_at")
        if expires is None:
            return _one_line(value), None
        if isinstance(expires, (int, float)) and not isinstance(expires, bool):
            return _one_line(value), float(expires)
        if isinstance(expires, str):
            for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
                try:
                    return _one_line(value), float(calendar.timegm(time.strptime(expires, fmt)))
                except ValueError:
                    continue
        raise OutputError('its "expires_at" is neither RFC 3339 (UTC, Z) nor UNIX seconds')
    if "\n" in stripped:
        raise OutputError("it printed more than one line and no JSON")
    return _one_line(stripped), None


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value or "\0" in value:
        raise OutputError("the value has a line break")
    return value
