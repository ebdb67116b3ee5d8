"""Profiles: the schema of a profile, its built-in values, and validation of a parsed config.

Pure: the file itself (reading, caching, writing) is :mod:`agentsess.edges.config`; the
schema is described once, in the comments of ``agentsess/data/starter.toml``. Precedence is
key by key: the profile's own value, else ``[defaults]``, else the built-in; ``env``,
``rules``, ``services``, ``network`` and ``providers`` are each one key, so a profile that sets them
replaces the defaults'. Durations are held as seconds.

Every problem is an ``AgentsessError(USAGE)`` with a one-line message naming the file, the key
path and what was expected: ``config.toml: profiles.claude.ttl: expected a duration like 90s,
15m, 4h, 2d or 1h30m, got 'soon'``. Literal env values are never echoed in messages.
"""

from __future__ import annotations

from agentsess.core.credentials.scopes import excess, parse_scope
from agentsess.core.durations import format_duration, parse_duration
from agentsess.errors import STATE, USAGE, AgentsessError

TYPE_CHECKING = False  # not typing's: this module is on `run`'s path, typing costs 2-5 ms
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PROFILE = "default"

# Every profile key with its built-in value (durations in seconds).
BUILTIN: dict[str, Any] = {
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
    "store_unreachable_after": 30,  # fleet: a shared store unreachable this long ...
    "on_store_unreachable": "keep",  # ... keeps the run going (warn, record when back) or stops it
    "scrub_env": [],
    "pass_env": [],
    "keep_env": False,
    "env_mode": "scrub",
    "env_notice": True,
    "isolate_home": False,
    "home_files": [".gitconfig"],
    "mask_terminal": True,
    "capture_shell": False,
    "contain": True,
    "hide": [],
    "unhide": [],
    "on_exit": "stop",
    "integration": "auto",
    "git_name": None,
    "git_email": None,
    "default_decision": "observe",
    "approval": "agent",
    "approval_timeout": 300,
    "env": {},
    "rules": [],
    "services": {},
    "network": {},
    "providers": {},
    "subagents": {},
}
PROFILE_KEYS = tuple(BUILTIN)
RULE_KEYS = ("tool", "args", "scope", "decision", "reason")
TOP_KEYS = ("defaults", "profiles", "store")

_DURATIONS = frozenset(("ttl", "max_ttl", "revoke_grace", "expiry_warning", "store_unreachable_after",
                        "approval_timeout"))
_BOOLS = frozenset(("keep_env", "env_notice", "isolate_home", "mask_terminal", "capture_shell", "contain"))
_ENUMS = {
    "on_revoke": ("stop", "keep"),
    "env_mode": ("scrub", "allow"),
    "on_expiry": ("keep", "stop"),
    "on_exit": ("stop", "keep"),
    "on_store_unreachable": ("keep", "stop"),
    "integration": ("auto", "none", "claude-code", "codex", "gemini"),
    "default_decision": ("observe", "allow", "deny", "ask"),
    "approval": ("agent", "human"),
}
DECISIONS = ("allow", "deny", "ask")
LIST_KEYS = frozenset(("scopes", "default_scopes", "scrub_env", "pass_env", "home_files", "hide", "unhide"))

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
_UPPER = _LOWER.upper()
_PROFILE_FIRST = frozenset(_LOWER + _DIGITS)
_PROFILE_REST = frozenset(_LOWER + _DIGITS + "_-")
_AGENT_FIRST = frozenset(_LOWER + _UPPER + _DIGITS)
_AGENT_REST = frozenset(_LOWER + _UPPER + _DIGITS + "._@-")
_VAR_FIRST = frozenset(_LOWER + _UPPER + "_")
_VAR_REST = frozenset(_LOWER + _UPPER + _DIGITS + "_")
BARE_KEY_CHARS = frozenset(_LOWER + _UPPER + _DIGITS + "_-")


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


def copy_value(value):
    if isinstance(value, list):
        return [copy_value(v) for v in value]
    if isinstance(value, dict):
        return {k: copy_value(v) for k, v in value.items()}
    return value


class Profile:
    """One resolved profile: an attribute per key of the schema, plus ``name``.

    Durations are seconds; ``scopes`` is None for "no ceiling"; ``env`` maps a variable to a
    literal string or ``{"secret": name}``; ``rules`` is a list of dicts with keys ``tool``,
    ``args``, ``scope``, ``decision``, ``reason`` (None when absent) and ``index`` (0-based
    position in the profile's rule list).
    """

    __slots__ = ("name",) + PROFILE_KEYS

    name: str
    agent: str | None
    scopes: list[str] | None
    default_scopes: list[str]
    ttl: int
    max_ttl: int
    max_depth: int
    revoke_grace: int
    on_revoke: str
    on_expiry: str
    expiry_warning: int
    scrub_env: list[str]
    pass_env: list[str]
    keep_env: bool
    env_mode: str
    env_notice: bool
    services: dict[str, Any]
    network: dict[str, Any]
    isolate_home: bool
    home_files: list[str]
    mask_terminal: bool
    capture_shell: bool
    contain: bool
    hide: list[str]
    unhide: list[str]
    on_exit: str
    integration: str
    git_name: str | None
    git_email: str | None
    default_decision: str
    approval: str  # who answers a rule's ask: "agent" (its own prompt) or "human" (agentsess approve)
    approval_timeout: int  # seconds a held call waits for `agentsess approve`; then it is denied
    env: dict[str, Any]
    rules: list[dict[str, Any]]
    providers: dict[str, Any]
    # sub-agents the agent spawns inside itself (Claude Code's agent_id, Codex's SubagentStart):
    # {"scopes": [...] or absent (the parent's), "types": {agent_type: [...]}}; see subagents.py
    subagents: dict[str, Any]

    def __init__(self, name: str, values: dict | None = None):
        self.name = name
        values = values or {}
        for key, builtin in BUILTIN.items():
            setattr(self, key, copy_value(values[key] if key in values else builtin))
        if "agent" not in values and name != DEFAULT_PROFILE:
            self.agent = name

    def to_dict(self, redact_env: bool = False) -> dict:
        """A JSON-able snapshot (durations as seconds); :meth:`from_dict` restores it.

        With ``redact_env`` the literal env values become None (secret references stay): the
        form to keep in the store or a receipt, where a literal the user thought harmless
        should not land. Such a snapshot restores everything but those values.
        """
        out: dict[str, Any] = {"name": self.name}
        for key in PROFILE_KEYS:
            out[key] = copy_value(getattr(self, key))
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

    __hash__ = None  # type: ignore[assignment]  # equal by content, and mutable

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
                f"unknown profile {show_value(name)} (profiles: {', '.join(self.profile_names())})"
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


def config_error(path: str, keypath: str, message: str) -> AgentsessError:
    return AgentsessError(f"{path}: {keypath}: {message}", USAGE)


def show_value(value) -> str:
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


def key_text(name) -> str:
    """``name`` as it would be written in a TOML key path."""
    if isinstance(name, str) and name and BARE_KEY_CHARS.issuperset(name):
        return name
    return '"' + str(name).encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def _unknown_key(path: str, keypath: str, key: str, valid) -> AgentsessError:
    import difflib

    close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.6)
    if close:
        return config_error(path, keypath, f"unknown key (did you mean {' or '.join(close)}?)")
    return config_error(path, keypath, f"unknown key (valid keys: {', '.join(valid)})")


def check_document(path: str, data: dict) -> dict:
    """Validate a parsed config document; return the resolved profiles by name."""
    for key in data:
        if key not in TOP_KEYS:
            raise _unknown_key(path, key_text(key), key, TOP_KEYS)
    store = data.get("store")
    if store is not None and not (
        isinstance(store, str) and (store in ("", "sqlite") or store.startswith(("postgresql://", "postgres://")))
    ):
        # the value is not echoed: it may hold a password
        raise config_error(path, "store", 'expected a postgresql:// URL, or "sqlite" for this machine\'s file')
    defaults_raw = data.get("defaults", {})
    if not isinstance(defaults_raw, dict):
        raise config_error(
            path, "defaults", f"expected a table of profile keys, got {show_value(defaults_raw)}"
        )
    defaults = _check_table(path, "defaults", defaults_raw)
    profiles_raw = data.get("profiles", {})
    if not isinstance(profiles_raw, dict):
        raise config_error(path, "profiles", f"expected a table of profiles, got {show_value(profiles_raw)}")

    tables = dict(profiles_raw)
    tables.setdefault(DEFAULT_PROFILE, None)  # the built-in default, if the file has none
    profiles = {}
    for name, table in tables.items():
        keypath = f"profiles.{key_text(name)}"
        if not is_profile_name(name):
            raise config_error(
                path,
                keypath,
                "bad profile name: expected lowercase letters, digits, '_' and '-', "
                "starting with a letter or digit",
            )
        if table is None:
            table = {}
        elif not isinstance(table, dict):
            raise config_error(path, keypath, f"expected a table of profile keys, got {show_value(table)}")
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
        raise config_error(
            path, where, f"{' '.join(over)} not within scopes {ceiling}; widen scopes or drop it"
        )
    ttl = values.get("ttl", BUILTIN["ttl"])
    max_ttl = values.get("max_ttl", BUILTIN["max_ttl"])
    if ttl > max_ttl:
        where = origin.get("ttl") or origin["max_ttl"]
        raise config_error(
            path,
            where,
            f"ttl {format_duration(ttl, 5)} is longer than max_ttl {format_duration(max_ttl, 5)}",
        )
    if values.get("approval_timeout", BUILTIN["approval_timeout"]) < 1:
        raise config_error(path, origin["approval_timeout"], "expected a duration of at least 1s (a held call "
                           "must give a person time to answer)")


def _check_table(path: str, keypath: str, table: dict) -> dict:
    out = {}
    for key, value in table.items():
        kp = f"{keypath}.{key_text(key)}"
        if key not in BUILTIN:
            raise _unknown_key(path, kp, key, PROFILE_KEYS)
        if key == "env" and isinstance(value, str) and value in _ENUMS["env_mode"]:
            # `env = "allow"` is short for env_mode = "allow" (with no literal variables)
            if table.get("env_mode", value) != value:
                raise config_error(path, kp, f"env = {value!r} disagrees with env_mode = {table['env_mode']!r}; "
                                   "keep one of them")
            out["env_mode"] = value
            continue
        out[key] = _check_value(path, kp, key, value)
    return out


def _check_value(path: str, kp: str, key: str, value):
    if key in _DURATIONS:
        if not isinstance(value, str):
            raise config_error(path, kp, f"expected a duration like 90s, 15m, 4h, got {show_value(value)}")
        try:
            return parse_duration(value)
        except AgentsessError as e:
            raise config_error(path, kp, e.message) from None
    if key in _BOOLS:
        if type(value) is not bool:
            raise config_error(path, kp, f"expected true or false, got {show_value(value)}")
        return value
    if key in _ENUMS:
        choices = _ENUMS[key]
        if value not in choices or not isinstance(value, str):
            raise config_error(path, kp, f"expected one of {', '.join(choices)}, got {show_value(value)}")
        return value
    if key in ("scopes", "default_scopes"):
        items = _list(path, kp, value, "a list of scopes like [\"github:*\"]")
        out: dict[str, None] = {}
        for i, item in enumerate(items):
            try:
                out[parse_scope(item)] = None
            except AgentsessError as e:
                raise config_error(path, f"{kp}[{i}]", e.message) from None
        return list(out)
    if key == "max_depth":
        if type(value) is not int or value < 0:
            raise config_error(path, kp, f"expected a whole number, 0 or more, got {show_value(value)}")
        return value
    if key == "agent":
        if not _is_name(value, _AGENT_FIRST, _AGENT_REST, 64):
            raise config_error(
                path,
                kp,
                "expected an agent name (letters, digits and ._@-, starting with a letter or "
                f"digit, at most 64 characters), got {show_value(value)}",
            )
        return value
    if key in ("git_name", "git_email"):
        if not isinstance(value, str) or not value.strip() or not value.isprintable():
            raise config_error(path, kp, f"expected a non-empty single-line string, got {show_value(value)}")
        return value
    if key == "scrub_env":
        items = _list(path, kp, value, "a list of patterns like [\"*_TOKEN\"]")
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item or "=" in item or "\0" in item:
                raise config_error(
                    path, f"{kp}[{i}]", f'expected a pattern like "*_TOKEN", got {show_value(item)}'
                )
        return items
    if key == "pass_env":
        items = _list(path, kp, value, "a list of variable names like [\"GH_TOKEN\"]")
        for i, item in enumerate(items):
            if not _is_name(item, _VAR_FIRST, _VAR_REST, 256):
                raise config_error(
                    path, f"{kp}[{i}]", f"expected a variable name like GH_TOKEN, got {show_value(item)}"
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
                raise config_error(
                    path,
                    f"{kp}[{i}]",
                    f"expected a path inside HOME like \".gitconfig\" (relative, no '..'), "
                    f"got {show_value(item)}",
                )
        return items
    if key in ("hide", "unhide"):
        items = _list(path, kp, value, "a list of absolute or ~ paths like [\"~/.config/gcloud\"]")
        for i, item in enumerate(items):
            if not isinstance(item, str) or "\0" in item or not item.startswith(("/", "~/")) or item in ("/", "~/"):
                raise config_error(
                    path, f"{kp}[{i}]", f"expected an absolute or ~/ path (not / itself), got {show_value(item)}"
                )
        return items
    if key == "env":
        return _check_env(path, kp, value)
    if key in ("services", "network"):
        from agentsess.core.credentials import services

        try:
            return services.check_services(value) if key == "services" else services.check_network(value)
        except services.SpecError as e:
            raise config_error(path, kp + e.where, e.message) from None
    if key == "providers":
        from agentsess.core.credentials import providers
        from agentsess.core.credentials.services import SpecError

        try:
            return providers.check_providers(value)
        except SpecError as e:
            raise config_error(path, kp + e.where, e.message) from None
    if key == "subagents":
        return _check_subagents(path, kp, value)
    if key == "rules":
        items = _list(path, kp, value, "a list of rules ([[...rules]] tables)")
        return [_check_rule(path, f"{kp}[{i}]", rule, i) for i, rule in enumerate(items)]
    raise AssertionError(key)  # pragma: no cover - every key of BUILTIN is handled above


SUBAGENT_KEYS = ("scopes", "types")


def _check_subagents(path: str, kp: str, value) -> dict:
    """``[profiles.NAME.subagents]``: ``scopes`` (every sub-agent's), ``types`` (per agent_type)."""
    if not isinstance(value, dict):
        raise config_error(path, kp, f"expected a table with scopes and types, got {show_value(value)}")
    out: dict[str, Any] = {}
    for key in value:
        if key not in SUBAGENT_KEYS:
            raise _unknown_key(path, f"{kp}.{key_text(key)}", key, SUBAGENT_KEYS)
    if "scopes" in value:
        out["scopes"] = _check_value(path, f"{kp}.scopes", "scopes", value["scopes"])
    if "types" in value:
        types = value["types"]
        if not isinstance(types, dict):
            raise config_error(path, f"{kp}.types", "expected a table of agent_type = [scopes], got "
                               f"{show_value(types)}")
        out["types"] = {}
        for name, scopes in types.items():
            where = f"{kp}.types.{key_text(name)}"
            if not name or len(name) > 64 or not name.isprintable():
                raise config_error(path, where, "expected an agent_type name (printable, at most 64 characters)")
            out["types"][name] = _check_value(path, where, "scopes", scopes)
    return out


def _list(path: str, kp: str, value, expected: str) -> list:
    if not isinstance(value, list):
        raise config_error(path, kp, f"expected {expected}, got {show_value(value)}")
    return list(value)


def _check_env(path: str, kp: str, value) -> dict:
    if not isinstance(value, dict):
        raise config_error(
            path,
            kp,
            f'expected a table of VAR = "value" or {{ secret = "name" }}, or "scrub" or "allow" (the '
            f'env_mode), got {show_value(value)}',
        )
    out: dict[str, str | dict[str, str]] = {}
    for var, item in value.items():
        ikp = f"{kp}.{key_text(var)}"
        if not _is_name(var, _VAR_FIRST, _VAR_REST, 256):
            raise config_error(path, ikp, "expected a variable name like GH_TOKEN")
        if var.startswith("AGENTSESS_"):
            raise config_error(path, ikp, "AGENTSESS_* variables are set by agentsess itself")
        if isinstance(item, str):
            if "\0" in item:
                raise config_error(path, ikp, "a variable's value cannot contain a NUL character")
            out[var] = item
        elif isinstance(item, dict):
            secret = item.get("secret")
            if set(item) != {"secret"} or not isinstance(secret, str) or not secret.strip():
                raise config_error(path, ikp, 'expected { secret = "secret-name" }, with no other keys')
            out[var] = {"secret": secret}
        else:
            # the value is not echoed: a literal env value may be sensitive
            kind = "a list" if isinstance(item, list) else type(item).__name__
            raise config_error(path, ikp, f'expected a string or {{ secret = "name" }}, got {kind}')
    return out


def _check_rule(path: str, kp: str, rule, index: int) -> dict:
    if not isinstance(rule, dict):
        raise config_error(path, kp, f"expected a table with tool and decision, got {show_value(rule)}")
    for key in rule:
        if key not in RULE_KEYS:
            raise _unknown_key(path, f"{kp}.{key_text(key)}", key, RULE_KEYS)
    out: dict[str, Any] = {"index": index}
    tool = rule.get("tool")
    if tool is None:
        raise config_error(
            path, kp, 'missing tool (a tool name like "Bash", or a glob like "mcp:github:*")'
        )
    if not isinstance(tool, str) or not tool.strip():
        raise config_error(path, f"{kp}.tool", f'expected a tool name like "Bash", got {show_value(tool)}')
    decision = rule.get("decision")
    if decision is None:
        raise config_error(path, kp, "missing decision (allow, deny or ask)")
    if decision not in DECISIONS or not isinstance(decision, str):
        raise config_error(
            path, f"{kp}.decision", f"expected one of allow, deny, ask, got {show_value(decision)}"
        )
    args = rule.get("args")
    if isinstance(args, list) and args and all(isinstance(a, str) for a in args):
        args = list(args)
    elif args is not None and not isinstance(args, str):
        raise config_error(
            path, f"{kp}.args", f'expected a glob like "git push*" or a list of globs, got {show_value(args)}'
        )
    scope = rule.get("scope")
    if scope is not None:
        try:
            scope = parse_scope(scope)
        except AgentsessError as e:
            raise config_error(path, f"{kp}.scope", e.message) from None
    reason = rule.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise config_error(path, f"{kp}.reason", f"expected a string, got {show_value(reason)}")
    out.update(tool=tool, args=args, scope=scope, decision=decision, reason=reason)
    return {k: out[k] for k in ("tool", "args", "scope", "decision", "reason", "index")}
