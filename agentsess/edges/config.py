"""The TOML config file: reading it, and writing it.

What a profile is, and the validation of what the file holds, is :mod:`agentsess.core.profiles`.

The file lives at :func:`agentsess.edges.paths.config_file` (``AGENTSESS_CONFIG`` overrides it)
and is read with ``tomllib`` and written with ``tomli_w``. A missing file is not an error: the
built-in profile ``default`` is used. The schema is written once, as the comments of the
starter config ``agentsess/data/starter.toml`` that ``agentsess config init`` writes.

Durations are strings (``90s``, ``15m``, ``4h``, ``1h30m``) held as seconds once loaded.

This module sits on the ``run`` path: ``tomllib``, ``tomli_w``, ``re`` and ``difflib`` are
imported only inside the functions that need them.

Nothing derived from the file is cached: every load parses and validates the file itself.
(Earlier versions kept the validated profiles in ``<data root>/config.cache``; a cache an
agent can write is a way to widen its profile while config.toml is unchanged, and binding it
to the file's digest does not help, since the agent can read the file too. Parsing costs
~5 ms of a run's start-up, measured; a leftover ``config.cache`` is ignored.)
"""

import os

from agentsess.core.profiles import (  # noqa: F401 - the profile names are part of this module's API
    BARE_KEY_CHARS,
    BUILTIN,
    DECISIONS,
    DEFAULT_PROFILE,
    LIST_KEYS,
    PROFILE_KEYS,
    RULE_KEYS,
    TOP_KEYS,
    Config,
    Profile,
    check_document,
    config_error,
    copy_value,
    is_profile_name,
    key_text,
    show_value,
)
from agentsess.edges import paths
from agentsess.errors import STATE, USAGE, AgentsessError

# --- loading -----------------------------------------------------------------------------


def load_config(path: str | None = None) -> Config:
    """Read and validate the config file; a missing file gives the built-in ``default``."""
    if path is None:
        path = paths.config_file()
    raw = _read(path)
    if raw is None:
        return Config(path, False, {DEFAULT_PROFILE: Profile(DEFAULT_PROFILE)})
    return Config(path, True, check_document(path, _parse_document(path, raw)))


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise AgentsessError(f"{path}: is a directory, expected the config file", USAGE) from None
    except OSError as e:
        raise AgentsessError(
            f"{path}: cannot read the config file: {e.strerror or e}", USAGE
        ) from None


def _parse_document(path: str, raw: bytes) -> dict:
    import tomllib

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AgentsessError(
            f"{path}: not UTF-8 text (bad byte at offset {e.start})", USAGE
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's messages carry the line and column, never the file's content
        raise AgentsessError(f"{path}: invalid TOML: {e}", USAGE) from None


# --- writing -----------------------------------------------------------------------------

def _target(path: str) -> str:
    """Where to write ``path``: through a symlink to its target; parent created 0700 if missing."""
    real = os.path.realpath(path)
    parent = os.path.dirname(real)
    if not os.path.isdir(parent):
        # create it private; an existing folder (the user's own choice of place) is left alone
        paths.ensure_dir(parent)
    return real


def _write(path: str, data: bytes) -> None:
    """Replace the config file ``path``; a folder that cannot be written is one line, code 4."""
    try:
        paths.write_private(_target(path), data)
    except OSError as exc:
        raise AgentsessError(
            f"cannot write the config file {path} ({exc.strerror or exc}); set AGENTSESS_CONFIG "
            "to a file in a writable folder",
            STATE,
        ) from None


def init_config(path: str | None = None, force: bool = False) -> str:
    """Write the starter config (0600); refuse to replace an existing file unless ``force``."""
    if path is None:
        path = paths.config_file()
    if os.path.lexists(path) and not force:
        raise AgentsessError(
            f"{path} already exists; not overwriting it (use --force to replace it)", USAGE
        )
    with open(paths.starter_config(), "rb") as fh:
        starter = fh.read()
    _write(path, starter)
    return path


def _parse_value(key: str, text: str):
    """``text`` as a TOML value when it is one (``8``, ``true``, ``["a"]``), else the string.

    Returns (value, toml_text): the text to write after ``key =``, or None to render ``value``.
    """
    import tomllib

    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        parsed = None
    if parsed is not None and list(parsed) == ["v"]:
        value = parsed["v"]
        if type(value).__module__ != "datetime":  # a date is never a config value; keep text
            return value, text.strip()
    if key in LIST_KEYS:
        # `config set profiles.x.scopes github:*,fs:read` -> ["github:*", "fs:read"]
        return text.replace(",", " ").split(), None
    return text, None


def set_value(key: str, value_text: str, path: str | None = None) -> str:
    """Set the dotted ``key`` (``profiles.claude.ttl``, ``defaults.ttl``) to ``value_text``.

    The value is read as TOML when it parses (``["a","b"]``, ``true``, ``8``), else taken as a
    string. The rest of the file is kept (its text too, where the edit can be made in place);
    the whole result is validated before anything is written. Returns the file's path.
    """
    import tomllib

    if path is None:
        path = paths.config_file()
    parts = key.split(".") if isinstance(key, str) else []
    if len(parts) < 2 or not all(parts) or parts[0] not in TOP_KEYS:
        raise AgentsessError(
            f"bad key {show_value(key)}: expected a dotted key like profiles.claude.ttl or defaults.ttl",
            USAGE,
        )
    raw = _read(path)
    text = "" if raw is None else raw.decode("utf-8", "replace")
    data = {} if raw is None else _parse_document(path, raw)
    value, value_toml = _parse_value(parts[-1], value_text)

    new = copy_value(data)
    node = new
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(key_text(p) for p in parts[: i + 1])
            raise config_error(path, where, f"is {show_value(child)}, not a table: cannot set {key} inside it")
        node = child
    node[parts[-1]] = value
    check_document(path, new)

    out = _edit_in_place(text, parts, value, value_toml)
    if out is None or _loads_or_none(tomllib, out) != new:
        import tomli_w

        out = _leading_comments(text) + tomli_w.dumps(new)
    _write(path, out.encode("utf-8"))
    return path


def _loads_or_none(tomllib, text: str):
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def _leading_comments(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if line.strip() and not line.lstrip().startswith("#"):
            break
        lines.append(line)
    out = "".join(lines)
    if out and not out.endswith("\n"):
        out += "\n"
    return out


def _edit_in_place(text: str, parts: list, value, value_toml) -> str | None:
    """``text`` with the one key changed, keeping every other line; None when unsure.

    The caller checks the result parses to exactly the intended document, and rewrites the
    whole file otherwise, so this only has to handle the plain layouts it recognises.
    """
    import re

    import tomli_w

    if not all(BARE_KEY_CHARS.issuperset(p) for p in parts):
        return None
    if value_toml is None:
        items = value if isinstance(value, list) else [value]
        rendered = []
        for item in items:
            one = tomli_w.dumps({"v": item})
            if not one.startswith("v = ") or one.count("\n") != 1:
                return None
            rendered.append(one[4:-1])
        value_toml = f"[{', '.join(rendered)}]" if isinstance(value, list) else rendered[0]
    table, leaf = parts[:-1], parts[-1]
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    header = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(#.*)?$")
    assign = re.compile(r"(\s*)" + re.escape(leaf) + r"\s*=")
    start = end = None
    for i, line in enumerate(lines):
        m = header.match(line)
        if m is None:
            continue
        if start is not None:
            end = i
            break
        name = [p.strip() for p in m.group(2).split(".")]
        if m.group(1) == "[" and name == table:
            start = i
    if start is None:
        if lines and lines[-1].strip():
            lines.append("\n")
        lines.append(f"[{'.'.join(table)}]\n{leaf} = {value_toml}\n")
        return "".join(lines)
    if end is None:
        end = len(lines)
    last = start
    for i in range(start + 1, end):
        stripped = lines[i].strip()
        m = assign.match(lines[i])
        if m:
            lines[i] = f"{m.group(1)}{leaf} = {value_toml}\n"
            return "".join(lines)
        if stripped and not stripped.startswith("#"):
            last = i
    lines.insert(last + 1, f"{leaf} = {value_toml}\n")
    return "".join(lines)
