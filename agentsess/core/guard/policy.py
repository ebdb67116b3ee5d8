"""Policy at the tool call: the run's scopes and its profile's rules decide, and each
decision is an ``action.checked`` receipt.

This is paid on every tool call of an agent (Claude Code hooks, `check`, the MCP proxy,
shell capture), so it decides from the store alone: the run's row carries its status,
revocation, expiry, scopes and the snapshot of its profile taken at start (a config edited
during a run does not change that run). No token cryptography: a token presented here is
matched by its SHA-256 against the one the store recorded when the run minted it.

Rules are checked in order; the first whose ``tool`` (exact, or a glob such as
``mcp:github:*``) and ``args`` glob match decides. ``args`` matches the call's main
argument: a shell ``command`` is parsed and matched per simple command (see
:mod:`agentsess.core.guard.commands`), else ``file_path``, ``path``, ``url``, ``pattern``,
``query``, else the canonical JSON of the whole input. A matched rule's decision holds only
while the run is live and holds the rule's ``scope``; otherwise the call is denied. Calls no
rule matches get the profile's ``default_decision`` (``observe`` unless set: no decision).
"""

import time

from agentsess.core.credentials import scopes as scope_algebra
from agentsess.encoding import canonical_text

MAIN_ARGUMENT_KEYS = ("command", "file_path", "path", "url", "pattern", "query")


class Decision:
    """What the rules say about one tool call: ``allow``, ``deny``, ``ask`` or ``observe`` (no
    decision: the agent's own permission prompt decides), and why.

    ``rule`` is the 0-based index of the rule that decided (None: no rule did); ``scope`` the
    scope the decision rests on, if any; ``commands`` the normalised simple commands of a shell
    line the rules looked at. Immutable and complete when built, like the frozen
    dataclasses elsewhere; written out by hand because ``dataclasses`` imports ``inspect``,
    4-5 ms of every hook and check (the whole of a hook is ~23 ms).
    """

    __slots__ = ("commands", "decision", "reason", "rule", "scope")
    decision: str
    reason: str
    rule: int | None
    scope: str | None
    commands: tuple

    def __init__(self, decision: str, reason: str, rule: int | None = None, scope: str | None = None,
                 commands: tuple = ()):
        for name, value in (("decision", decision), ("reason", reason), ("rule", rule), ("scope", scope),
                            ("commands", tuple(commands))):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"Decision is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Decision is immutable: cannot delete {name}")

    def replace(self, **changes) -> "Decision":
        """A copy with ``changes`` (as :func:`dataclasses.replace` makes one)."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return Decision(**fields)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __hash__(self) -> int:
        return hash((self.decision, self.reason, self.rule, self.scope, self.commands))

    def __repr__(self) -> str:
        return f"Decision(decision={self.decision!r}, reason={self.reason!r}, rule={self.rule!r}, scope={self.scope!r})"

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"


def liveness(row: dict, now: float | None = None) -> str | None:
    """Why the run cannot act now (revoked, expired, ended), or None while it is live."""
    if row.get("revoked_at"):
        return f"run {row['id']} was revoked"
    if row["status"] == "abandoned":
        return f"run {row['id']} was abandoned (its supervisor died); its credentials are dead"
    if row["status"] != "running":
        return f"run {row['id']} is {row['status']}, not running"
    now = time.time() if now is None else now
    if row.get("expires_at") and row["expires_at"] <= now:
        return f"the credential of run {row['id']} expired"
    return None


def main_argument(args) -> str:
    """The argument rules match ``args`` against: its command, path, url, ..., else its canonical JSON."""
    if isinstance(args, dict):
        for key in MAIN_ARGUMENT_KEYS:
            value = args.get(key)
            if isinstance(value, str):
                return value
    if isinstance(args, str):
        return args
    return canonical_text(args)


def decide(row: dict, tool: str, args=None, scope: str | None = None, now: float | None = None,
           observe: bool = False) -> Decision:
    """The decision for ``tool`` called with ``args`` (or an explicit ``scope`` request) in run ``row``.

    Rules are matched by :func:`agentsess.core.guard.commands.match_rules` (shell commands
    per simple command). ``observe`` is for callers that can give no decision (an agent hook,
    whose own permission prompt then decides): only they get ``observe``; for the others
    (``check``, the MCP proxy) observing means letting the call through and recording it."""
    dead = liveness(row, now)
    if dead:
        return Decision("deny", dead, scope=scope)
    granted = row.get("scopes") or []

    def holds(wanted: str) -> bool:
        return any(scope_algebra.covers(g, wanted) for g in granted)

    if scope is not None and not holds(scope):
        return Decision("deny", f"run {row['id']} lacks scope {scope} (has: {' '.join(granted) or 'none'})", scope=scope)
    policy = row.get("policy") or {}
    from agentsess.core.guard import commands

    default = "allow" if scope is not None else (policy.get("default_decision") or "observe")
    if default == "observe" and not observe:
        default = "allow"
    argument = main_argument(args) if args is not None else ""
    verdict = commands.match_rules(policy.get("rules") or [], tool, argument, commands.shell_command(args),
                                   holds, row["id"], default)
    if verdict.rule is None and scope is not None and verdict.decision == "allow":
        return Decision("allow", f"run {row['id']} holds scope {scope}", scope=scope)
    return Decision(verdict.decision, verdict.reason, verdict.rule, verdict.scope or scope, verdict.commands)
