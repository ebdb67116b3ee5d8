"""The TOML config file: profiles, their defaults, and validation with messages that say where.

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
    integration = "auto"        # auto|none|claude-code (auto: detect from the command name)
    git_name = "..."            # optional: commits inside a run are authored as the agent
    git_email = "..."
    default_decision = "allow"  # allow|deny|ask, for tool calls no rule matches
    [profiles.NAME.env]         # VAR = "literal value" | { secret = "secret-name" }
    [[profiles.NAME.rules]]     # tool = "Bash" (exact, or an fnmatch glob like "mcp:github:*"),
                                # args = "git push*" (optional glob over the call's main argument),
                                # scope = "git:push" (optional), decision = "allow"|"deny"|"ask",
                                # reason = "..." (optional)

Durations are strings (``90s``, ``15m``, ``4h``, ``1h30m``) held as seconds once loaded.
Precedence is key by key: the profile's own value, else ``[defaults]``, else the built-in;
``env`` and ``rules`` are each one key, so a profile that sets them replaces the defaults'.

Every problem is an ``AgentsessError(USAGE)`` with a one-line message naming the file, the key
path and what was expected: ``config.toml: profiles.claude.ttl: expected a duration like 90s,
15m, 4h, 2d or 1h30m, got 'soon'``. Literal env values are never echoed in messages.

This module sits on the ``run`` path: ``tomllib``, ``tomli_w``, ``re`` and ``difflib`` are
imported only inside the functions that need them, and a load whose file is byte-for-byte the
one last validated takes its profiles from ``<data root>/config.cache`` without parsing.
"""

import os

from agentsess.core.durations import format_duration, parse_duration
from agentsess.core.scopes import excess, parse_scope
from agentsess.edges import paths
from agentsess.errors import STATE, USAGE, AgentsessError

DEFAULT_PROFILE = "default"

# Every profile key with its built-in value (durations in seconds).
BUILTIN = {
    "agent": None,
    "scopes": None,
    "default_scopes": [],
    "ttl": 3600,
    "max_ttl": 12 * 3600,
    "max_depth": 8,
    "revoke_grace": 5,
    "on_revoke": "stop",
    "on_expiry": "keep",
    "expiry_warning": 120,
    "scrub_env": [],
    "pass_env": [],
    "keep_env": False,
    "isolate_home": False,
    "home_files": [".gitconfig"],
    "mask_terminal": True,
    "capture_shell": False,
    "integration": "auto",
    "git_name": None,
    "git_email": None,
    "default_decision": "allow",
    "env": {},
    "rules": [],
}
PROFILE_KEYS = tuple(BUILTIN)
RULE_KEYS = ("tool", "args", "scope", "decision", "reason")
TOP_KEYS = ("defaults", "profiles")

_DURATIONS = frozenset(("ttl", "max_ttl", "revoke_grace", "expiry_warning"))
_BOOLS = frozenset(("keep_env", "isolate_home", "mask_terminal", "capture_shell"))
_ENUMS = {
    "on_revoke": ("stop", "keep"),
    "on_expiry": ("keep", "stop"),
    "integration": ("auto", "none", "claude-code"),
    "default_decision": ("allow", "deny", "ask"),
}
DECISIONS = ("allow", "deny", "ask")
_LIST_KEYS = frozenset(("scopes", "default_scopes", "scrub_env", "pass_env", "home_files"))

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
_UPPER = _LOWER.upper()
_PROFILE_FIRST = frozenset(_LOWER + _DIGITS)
_PROFILE_REST = frozenset(_LOWER + _DIGITS + "_-")
_AGENT_FIRST = frozenset(_LOWER + _UPPER + _DIGITS)
_AGENT_REST = frozenset(_LOWER + _UPPER + _DIGITS + "._@-")
_VAR_FIRST = frozenset(_LOWER + _UPPER + "_")
_VAR_REST = frozenset(_LOWER + _UPPER + _DIGITS + "_")
_BARE_KEY = frozenset(_LOWER + _UPPER + _DIGITS + "_-")


def _is_name(text, first, rest, limit: int) -> bool:
    return (
        isinstance(text, str)
        and 0 < len(text) <= limit
        and text[0] in first
        and rest.issuperset(text)
    )


def is_profile_name(name) -> bool:
    """True if ``name`` is a valid profile name: ``[a-z0-9][a-z0-9_-]*``, at most 64 chars."""
    return _is_name(name, _PROFILE_FIRST, _PROFILE_REST, 64)


def _copy(value):
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


class Profile:
    """One resolved profile: an attribute per key of the schema, plus ``name``.

    Durations are seconds; ``scopes`` is None for "no ceiling"; ``env`` maps a variable to a
    literal string or ``{"secret": name}``; ``rules`` is a list of dicts with keys ``tool``,
    ``args``, ``scope``, ``decision``, ``reason`` (None when absent) and ``index`` (0-based
    position in the profile's rule list).
    """

    __slots__ = ("name",) + PROFILE_KEYS

    def __init__(self, name: str, values: dict | None = None):
        self.name = name
        values = values or {}
        for key, builtin in BUILTIN.items():
            setattr(self, key, _copy(values[key] if key in values else builtin))
        if "agent" not in values and name != DEFAULT_PROFILE:
            self.agent = name

    def to_dict(self, redact_env: bool = False) -> dict:
        """A JSON-able snapshot (durations as seconds); :meth:`from_dict` restores it.

        With ``redact_env`` the literal env values become None (secret references stay): the
        form to keep in the store or a receipt, where a literal the user thought harmless
        should not land. Such a snapshot restores everything but those values.
        """
        out = {"name": self.name}
        for key in PROFILE_KEYS:
            out[key] = _copy(getattr(self, key))
        if redact_env:
            out["env"] = {
                var: (value if isinstance(value, dict) else None)
                for var, value in out["env"].items()
            }
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Profile":
        """Restore a snapshot made by :meth:`to_dict`; keys it lacks get built-in values."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise AgentsessError("stored profile snapshot is not readable", STATE)
        return cls(data["name"], {k: data[k] for k in PROFILE_KEYS if k in data})

    def __eq__(self, other):
        if not isinstance(other, Profile):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None

    def __repr__(self) -> str:
        # env values are left out: a literal may be something the user would not want shown
        return f"Profile({self.name!r}, agent={self.agent!r}, scopes={self.scopes!r})"


class Config:
    """The loaded config: its ``path``, whether it ``exists``, and its resolved profiles."""

    __slots__ = ("path", "exists", "_profiles")

    def __init__(self, path: str, exists: bool, profiles: dict):
        self.path = path
        self.exists = exists
        self._profiles = profiles

    def profile_names(self) -> list[str]:
        """Every profile's name, sorted; always includes ``default``."""
        return sorted(self._profiles)

    def profile(self, name: str | None = None) -> Profile:
        """The named profile (``None`` means ``default``); AgentsessError(USAGE) if unknown."""
        if name is None:
            name = DEFAULT_PROFILE
        found = self._profiles.get(name)
        if found is None:
            hint = f"; define [profiles.{name}] in {self.path}" if is_profile_name(name) else ""
            raise AgentsessError(
                f"unknown profile {_show(name)} (profiles: {', '.join(self.profile_names())})"
                f"{hint}",
                USAGE,
            )
        return found

    def to_dict(self) -> dict:
        """The effective config: every profile resolved, JSON-able."""
        return {
            "path": self.path,
            "exists": self.exists,
            "profiles": {name: self._profiles[name].to_dict() for name in self.profile_names()},
        }


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
    profiles = _check_document(path, _parse_document(path, raw))
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

    names = (__name__, "agentsess.core.scopes", "agentsess.core.durations")
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


def _fail(path: str, keypath: str, message: str) -> AgentsessError:
    return AgentsessError(f"{path}: {keypath}: {message}", USAGE)


def _show(value) -> str:
    """A short one-line rendering of a config value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 60 else repr(value[:50] + "...")
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(name) -> str:
    """``name`` as it would be written in a TOML key path."""
    if isinstance(name, str) and name and _BARE_KEY.issuperset(name):
        return name
    return '"' + str(name).encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def _unknown_key(path: str, keypath: str, key: str, valid) -> AgentsessError:
    import difflib

    close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.6)
    if close:
        return _fail(path, keypath, f"unknown key (did you mean {' or '.join(close)}?)")
    return _fail(path, keypath, f"unknown key (valid keys: {', '.join(valid)})")


def _check_document(path: str, data: dict) -> dict:
    """Validate a parsed config document; return the resolved profiles by name."""
    for key in data:
        if key not in TOP_KEYS:
            raise _unknown_key(path, _key(key), key, TOP_KEYS)
    defaults_raw = data.get("defaults", {})
    if not isinstance(defaults_raw, dict):
        raise _fail(
            path, "defaults", f"expected a table of profile keys, got {_show(defaults_raw)}"
        )
    defaults = _check_table(path, "defaults", defaults_raw)
    profiles_raw = data.get("profiles", {})
    if not isinstance(profiles_raw, dict):
        raise _fail(path, "profiles", f"expected a table of profiles, got {_show(profiles_raw)}")

    tables = dict(profiles_raw)
    tables.setdefault(DEFAULT_PROFILE, None)  # the built-in default, if the file has none
    profiles = {}
    for name, table in tables.items():
        keypath = f"profiles.{_key(name)}"
        if not is_profile_name(name):
            raise _fail(
                path,
                keypath,
                "bad profile name: expected lowercase letters, digits, '_' and '-', "
                "starting with a letter or digit",
            )
        if table is None:
            table = {}
        elif not isinstance(table, dict):
            raise _fail(path, keypath, f"expected a table of profile keys, got {_show(table)}")
        own = _check_table(path, keypath, table)
        origin = {key: f"defaults.{key}" for key in defaults}
        origin.update({key: f"{keypath}.{key}" for key in own})
        values = {**defaults, **own}
        _check_profile(path, values, origin)
        profiles[name] = Profile(name, values)
    return profiles


def _check_profile(path: str, values: dict, origin: dict) -> None:
    scopes = values.get("scopes")
    default_scopes = values.get("default_scopes", [])
    over = excess(scopes, default_scopes)
    if over:
        where = origin.get("default_scopes") or origin["scopes"]
        ceiling = " ".join(scopes) if scopes else "(empty)"
        raise _fail(
            path, where, f"{' '.join(over)} not within scopes {ceiling}; widen scopes or drop it"
        )
    ttl = values.get("ttl", BUILTIN["ttl"])
    max_ttl = values.get("max_ttl", BUILTIN["max_ttl"])
    if ttl > max_ttl:
        where = origin.get("ttl") or origin["max_ttl"]
        raise _fail(
            path,
            where,
            f"ttl {format_duration(ttl, 5)} is longer than max_ttl {format_duration(max_ttl, 5)}",
        )


def _check_table(path: str, keypath: str, table: dict) -> dict:
    out = {}
    for key, value in table.items():
        kp = f"{keypath}.{_key(key)}"
        if key not in BUILTIN:
            raise _unknown_key(path, kp, key, PROFILE_KEYS)
        out[key] = _check_value(path, kp, key, value)
    return out


def _check_value(path: str, kp: str, key: str, value):
    if key in _DURATIONS:
        if not isinstance(value, str):
            raise _fail(path, kp, f"expected a duration like 90s, 15m, 4h, got {_show(value)}")
        try:
            return parse_duration(value)
        except AgentsessError as e:
            raise _fail(path, kp, e.message) from None
    if key in _BOOLS:
        if type(value) is not bool:
            raise _fail(path, kp, f"expected true or false, got {_show(value)}")
        return value
    if key in _ENUMS:
        choices = _ENUMS[key]
        if value not in choices or not isinstance(value, str):
            raise _fail(path, kp, f"expected one of {', '.join(choices)}, got {_show(value)}")
        return value
    if key in ("scopes", "default_scopes"):
        items = _list(path, kp, value, "a list of scopes like [\"github:*\"]")
        out: dict[str, None] = {}
        for i, item in enumerate(items):
            try:
                out[parse_scope(item)] = None
            except AgentsessError as e:
                raise _fail(path, f"{kp}[{i}]", e.message) from None
        return list(out)
    if key == "max_depth":
        if type(value) is not int or value < 0:
            raise _fail(path, kp, f"expected a whole number, 0 or more, got {_show(value)}")
        return value
    if key == "agent":
        if not _is_name(value, _AGENT_FIRST, _AGENT_REST, 64):
            raise _fail(
                path,
                kp,
                "expected an agent name (letters, digits and ._@-, starting with a letter or "
                f"digit, at most 64 characters), got {_show(value)}",
            )
        return value
    if key in ("git_name", "git_email"):
        if not isinstance(value, str) or not value.strip() or not value.isprintable():
            raise _fail(path, kp, f"expected a non-empty single-line string, got {_show(value)}")
        return value
    if key == "scrub_env":
        items = _list(path, kp, value, "a list of patterns like [\"*_TOKEN\"]")
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item or "=" in item or "\0" in item:
                raise _fail(
                    path, f"{kp}[{i}]", f'expected a pattern like "*_TOKEN", got {_show(item)}'
                )
        return items
    if key == "pass_env":
        items = _list(path, kp, value, "a list of variable names like [\"GH_TOKEN\"]")
        for i, item in enumerate(items):
            if not _is_name(item, _VAR_FIRST, _VAR_REST, 256):
                raise _fail(
                    path, f"{kp}[{i}]", f"expected a variable name like GH_TOKEN, got {_show(item)}"
                )
        return items
    if key == "home_files":
        items = _list(path, kp, value, "a list of paths relative to HOME like [\".gitconfig\"]")
        for i, item in enumerate(items):
            if (
                not isinstance(item, str)
                or not item
                or "\0" in item
                or item.startswith(("/", "~"))
                or ".." in item.replace("\\", "/").split("/")
            ):
                raise _fail(
                    path,
                    f"{kp}[{i}]",
                    f"expected a path inside HOME like \".gitconfig\" (relative, no '..'), "
                    f"got {_show(item)}",
                )
        return items
    if key == "env":
        return _check_env(path, kp, value)
    if key == "rules":
        items = _list(path, kp, value, "a list of rules ([[...rules]] tables)")
        return [_check_rule(path, f"{kp}[{i}]", rule, i) for i, rule in enumerate(items)]
    raise AssertionError(key)  # pragma: no cover - every key of BUILTIN is handled above


def _list(path: str, kp: str, value, expected: str) -> list:
    if not isinstance(value, list):
        raise _fail(path, kp, f"expected {expected}, got {_show(value)}")
    return list(value)


def _check_env(path: str, kp: str, value) -> dict:
    if not isinstance(value, dict):
        raise _fail(
            path,
            kp,
            f'expected a table of VAR = "value" or {{ secret = "name" }}, got {_show(value)}',
        )
    out = {}
    for var, item in value.items():
        ikp = f"{kp}.{_key(var)}"
        if not _is_name(var, _VAR_FIRST, _VAR_REST, 256):
            raise _fail(path, ikp, "expected a variable name like GH_TOKEN")
        if var.startswith("AGENTSESS_"):
            raise _fail(path, ikp, "AGENTSESS_* variables are set by agentsess itself")
        if isinstance(item, str):
            if "\0" in item:
                raise _fail(path, ikp, "a variable's value cannot contain a NUL character")
            out[var] = item
        elif isinstance(item, dict):
            secret = item.get("secret")
            if set(item) != {"secret"} or not isinstance(secret, str) or not secret.strip():
                raise _fail(path, ikp, 'expected { secret = "secret-name" }, with no other keys')
            out[var] = {"secret": secret}
        else:
            # the value is not echoed: a literal env value may be sensitive
            kind = "a list" if isinstance(item, list) else type(item).__name__
            raise _fail(path, ikp, f'expected a string or {{ secret = "name" }}, got {kind}')
    return out


def _check_rule(path: str, kp: str, rule, index: int) -> dict:
    if not isinstance(rule, dict):
        raise _fail(path, kp, f"expected a table with tool and decision, got {_show(rule)}")
    for key in rule:
        if key not in RULE_KEYS:
            raise _unknown_key(path, f"{kp}.{_key(key)}", key, RULE_KEYS)
    out = {"index": index}
    tool = rule.get("tool")
    if tool is None:
        raise _fail(
            path, kp, 'missing tool (a tool name like "Bash", or a glob like "mcp:github:*")'
        )
    if not isinstance(tool, str) or not tool.strip():
        raise _fail(path, f"{kp}.tool", f'expected a tool name like "Bash", got {_show(tool)}')
    decision = rule.get("decision")
    if decision is None:
        raise _fail(path, kp, "missing decision (allow, deny or ask)")
    if decision not in DECISIONS or not isinstance(decision, str):
        raise _fail(
            path, f"{kp}.decision", f"expected one of allow, deny, ask, got {_show(decision)}"
        )
    args = rule.get("args")
    if args is not None and not isinstance(args, str):
        raise _fail(path, f"{kp}.args", f'expected a glob like "git push*", got {_show(args)}')
    scope = rule.get("scope")
    if scope is not None:
        try:
            scope = parse_scope(scope)
        except AgentsessError as e:
            raise _fail(path, f"{kp}.scope", e.message) from None
    reason = rule.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise _fail(path, f"{kp}.reason", f"expected a string, got {_show(reason)}")
    out.update(tool=tool, args=args, scope=scope, decision=decision, reason=reason)
    return {k: out[k] for k in ("tool", "args", "scope", "decision", "reason", "index")}


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
#   integration      auto|none|claude-code
#   git_name, git_email   author commits made inside a run as the agent
#   default_decision allow|deny|ask for tool calls that no rule matches
#   [profiles.NAME.env]     VAR = "value" or VAR = { secret = "name" } (see `agentsess secret set`)
#   [[profiles.NAME.rules]] tool, args (glob), scope, decision (allow|deny|ask), reason
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
        "default_decision": "allow",
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
                    "args": "rm -rf /*",
                    "decision": "deny",
                    "reason": "deleting from the filesystem root is never part of a task",
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
    if key in _LIST_KEYS:
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
            f"bad key {_show(key)}: expected a dotted key like profiles.claude.ttl or defaults.ttl",
            USAGE,
        )
    raw = _read(path)
    text = "" if raw is None else raw.decode("utf-8", "replace")
    data = {} if raw is None else _parse_document(path, raw)
    value, value_toml = _parse_value(parts[-1], value_text)

    new = _copy(data)
    node = new
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(_key(p) for p in parts[: i + 1])
            raise _fail(path, where, f"is {_show(child)}, not a table: cannot set {key} inside it")
        node = child
    node[parts[-1]] = value
    _check_document(path, new)

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

    if not all(_BARE_KEY.issuperset(p) for p in parts):
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
