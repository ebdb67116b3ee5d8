"""The TOML config file: reading it (with a cache of the validated result), and writing it.

What a profile is, and the validation of what the file holds, is :mod:`agentsess.core.profiles`.

The file lives at :func:`agentsess.edges.paths.config_file` (``AGENTSESS_CONFIG`` overrides it)
and is read with ``tomllib`` and written with ``tomli_w``. A missing file is not an error: the
built-in profile ``default`` is used. Schema::

    [defaults]                  # any profile key; applies to every profile that does not set it
    [profiles.NAME]             # NAME: [a-z0-9][a-z0-9_-]*, at most 64 characters
    agent = "claude"            # the run's agent identity; default: the profile's name
                                # (for the profile "default": none, meaning the command's basename)
    scopes = ["github:*"]       # the ceiling; absent = no ceiling
    default_scopes = []         # granted when no --scope is given; must be within scopes
    ttl = "1h"                  # default lifetime of a run's credentials; at most max_ttl
    max_ttl = "12h"
    max_depth = 8               # how deep sub-agents may nest
    revoke_grace = "5s"         # between SIGTERM and SIGKILL when a run is stopped
    on_revoke = "stop"          # stop|keep: what happens to the process tree on revocation
    on_expiry = "keep"          # keep|stop: what happens to it when the credentials expire
    expiry_warning = "2m"       # warn this long before expiry
    scrub_env = []              # extra fnmatch patterns (case-sensitive) of variables to scrub
    pass_env = []               # variable names let through scrubbing
    keep_env = false            # turn scrubbing off
    isolate_home = false        # give the agent its own HOME
    home_files = [".gitconfig"] # files (relative to HOME) carried over when isolating
    mask_terminal = true        # redact secrets in the terminal output
    capture_shell = false
    integration = "auto"        # auto|none|claude-code|codex|gemini (auto: from the command name)
    git_name = "..."            # optional: commits inside a run are authored as the agent
    git_email = "..."
    default_decision = "observe" # observe|allow|deny|ask, for tool calls no rule matches
    [profiles.NAME.env]         # VAR = "literal value" | { secret = "secret-name" }
    [[profiles.NAME.rules]]     # tool = "Bash" (exact, or an fnmatch glob like "mcp:github:*"),
                                # args = "git push*" (optional glob, or a list of globs, over the
                                # call's main argument; a shell command per simple command),
                                # scope = "git:push" (optional), decision = "allow"|"deny"|"ask",
                                # reason = "..." (optional)

Durations are strings (``90s``, ``15m``, ``4h``, ``1h30m``) held as seconds once loaded.

This module sits on the ``run`` path: ``tomllib``, ``tomli_w``, ``re`` and ``difflib`` are
imported only inside the functions that need them, and a load whose file is byte-for-byte the
one last validated takes its profiles from ``<data root>/config.cache`` without parsing.
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
from agentsess.errors import USAGE, AgentsessError

# --- loading -----------------------------------------------------------------------------


def load_config(path: str | None = None) -> Config:
    """Read and validate the config file; a missing file gives the built-in ``default``."""
    if path is None:
        path = paths.config_file()
    raw = _read(path)
    if raw is None:
        return Config(path, False, {DEFAULT_PROFILE: Profile(DEFAULT_PROFILE)})
    cached = _cache_read(path, raw)
    if cached is not None:
        return Config(path, True, {name: Profile.from_dict(d) for name, d in cached.items()})
    profiles = check_document(path, _parse_document(path, raw))
    _cache_write(path, raw, profiles)
    return Config(path, True, profiles)


# Importing tomllib costs ~12 ms, a quarter of `run`'s start-up budget, on every run. So the
# validated profiles are kept in <data root>/config.cache (0600) with the exact bytes of the
# file they came from and the stamps of the modules that validated them; a load whose file
# bytes and modules match uses them, anything else parses again. marshal is already loaded
# at interpreter start-up, so a hit costs a read and a loads.
_CACHE_FORMAT = 1


def _cache_file() -> str:
    return os.path.join(paths.data_root(), "config.cache")


def _cache_stamp() -> tuple:
    import sys

    names = (__name__, "agentsess.core.profiles", "agentsess.core.credentials.scopes", "agentsess.core.durations")
    stamps = []
    for name in names:
        st = os.stat(sys.modules[name].__file__)
        stamps.append((st.st_mtime_ns, st.st_size))
    return (_CACHE_FORMAT, tuple(stamps))


def _cache_read(path: str, raw: bytes):
    import marshal

    try:
        with open(_cache_file(), "rb") as f:
            stamp, cached_path, cached_raw, profiles = marshal.loads(f.read())
        if cached_path == path and cached_raw == raw and stamp == _cache_stamp():
            return profiles
    except Exception:  # absent, unreadable, another format: parse the file instead
        pass
    return None


def _cache_write(path: str, raw: bytes, profiles: dict) -> None:
    import marshal

    try:
        cache = _cache_file()
        if not os.path.isdir(os.path.dirname(cache)):
            return  # the data root is created by the store; not by reading the config
        data = {name: profile.to_dict() for name, profile in profiles.items()}
        paths.write_private(cache, marshal.dumps((_cache_stamp(), path, raw, data)))
    except Exception:  # a cache that cannot be written only costs the next load its speed
        pass


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

STARTER_HEADER = """\
# agentsess config. Each [profiles.NAME] is one kind of agent: `agentsess run -p NAME -- CMD`.
# [defaults] holds keys that apply to every profile that does not set them itself.
#
# Keys (any of them also in [defaults]):
#   agent            the run's identity (default: the profile name)
#   scopes           the ceiling: no run of this profile gets a scope outside it
#   default_scopes   what a run gets when no --scope is given (within scopes)
#   ttl, max_ttl     credential lifetime ("90s", "15m", "4h", "1h30m") and its limit
#   max_depth        how deep sub-agents may nest
#   revoke_grace     time between SIGTERM and SIGKILL when a run is stopped
#   on_revoke        stop|keep the process tree when the run is revoked
#   on_expiry        keep|stop the process tree when its credentials expire
#   expiry_warning   warn this long before expiry
#   scrub_env        extra patterns of variables removed from the agent's environment
#   pass_env         variables let through anyway (the agent's own API key)
#   keep_env         true turns scrubbing off
#   isolate_home     give the agent its own HOME; home_files are copied into it
#   mask_terminal    redact secrets in terminal output
#   capture_shell    record shell commands run inside the agent
#   integration      auto|none|claude-code|codex|gemini
#   git_name, git_email   author commits made inside a run as the agent
#   default_decision observe (no decision: the agent's own prompt decides)|allow|deny|ask
#                    for tool calls that no rule matches
#   [profiles.NAME.env]     VAR = "value" or VAR = { secret = "name" } (see `agentsess secret set`)
#   [[profiles.NAME.rules]] tool, args (glob or list of globs; a shell command is matched per
#                    simple command, after quotes, wrappers and paths), scope, decision, reason
#
# Change a key with `agentsess config set profiles.claude.ttl 2h`;
# see what every profile resolves to with `agentsess config show`.

"""

STARTER = {
    "defaults": {
        "ttl": "1h",
        "max_ttl": "12h",
        "max_depth": 8,
        "revoke_grace": "5s",
        "on_revoke": "stop",
        "on_expiry": "keep",
        "expiry_warning": "2m",
        "mask_terminal": True,
        "default_decision": "observe",
    },
    "profiles": {
        "claude": {
            "agent": "claude-code",
            "integration": "claude-code",
            "scopes": ["fs:*", "git:*", "github:*", "shell:*", "mcp:*"],
            "default_scopes": ["fs:read", "fs:write", "git:read", "git:commit", "shell:exec"],
            "pass_env": ["ANTHROPIC_API_KEY"],
            "rules": [
                {
                    "tool": "Bash",
                    # rm of /, /*, //, /., ~, ~/, ~/* in any flag order (an unknown word, such
                    # as $HOME, could be any of them, so it is held too); not rm -rf /tmp/build
                    "args": ["rm * /", "rm * / *", "rm * /[*.]*", "rm * //*",
                             "rm * ~", "rm * ~ *", "rm * ~/", "rm * ~/ *", "rm * ~/[*]*"],
                    "decision": "deny",
                    "reason": "deleting the filesystem root or the home folder is never part of a task",
                },
                {
                    "tool": "Bash",
                    "args": "git push*",
                    "scope": "git:push",
                    "decision": "ask",
                    "reason": "a push leaves this machine",
                },
            ],
        },
        "codex": {
            "agent": "codex",
            "scopes": ["fs:*", "git:*", "shell:*"],
            "default_scopes": ["fs:read", "fs:write", "git:read", "git:commit", "shell:exec"],
            "pass_env": ["OPENAI_API_KEY"],
        },
        "aider": {
            "agent": "aider",
            "scopes": ["fs:*", "git:*"],
            "default_scopes": ["fs:read", "fs:write", "git:read", "git:commit"],
            "pass_env": ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"],
        },
    },
}


def _target(path: str) -> str:
    """Where to write ``path``: through a symlink to its target; parent created 0700 if missing."""
    real = os.path.realpath(path)
    parent = os.path.dirname(real)
    if not os.path.isdir(parent):
        # create it private; an existing folder (the user's own choice of place) is left alone
        paths.ensure_dir(parent)
    return real


def init_config(path: str | None = None, force: bool = False) -> str:
    """Write the starter config (0600); refuse to replace an existing file unless ``force``."""
    import tomli_w

    if path is None:
        path = paths.config_file()
    if os.path.lexists(path) and not force:
        raise AgentsessError(
            f"{path} already exists; not overwriting it (use --force to replace it)", USAGE
        )
    text = STARTER_HEADER + tomli_w.dumps(STARTER)
    paths.write_private(_target(path), text.encode("utf-8"))
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
    paths.write_private(_target(path), out.encode("utf-8"))
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
