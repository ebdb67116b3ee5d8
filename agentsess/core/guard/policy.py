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

import json
import time

from agentsess.core.credentials import scopes as scope_algebra
from agentsess.digest import sha256_hex

SUMMARY_CAP = 512
RESULT_CAP = 2048
REDACT_MARGIN = 8192
MAIN_ARGUMENT_KEYS = ("command", "file_path", "path", "url", "pattern", "query")


def token_digest(token: str) -> str:
    return sha256_hex(token.encode())


class Decision:
    __slots__ = ("commands", "decision", "reason", "rule", "scope")

    def __init__(self, decision: str, reason: str, rule=None, scope=None, commands=()):
        self.decision = decision
        self.reason = reason
        self.rule = rule
        self.scope = scope
        self.commands = commands

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
    if isinstance(args, dict):
        for key in MAIN_ARGUMENT_KEYS:
            value = args.get(key)
            if isinstance(value, str):
                return value
    if isinstance(args, str):
        return args
    return canonical_json(args)


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


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


def capped(text: str, cap: int = SUMMARY_CAP) -> str:
    """``text`` with credentials masked, cut to ``cap`` characters.

    Redaction reads only the part that can be kept (plus a margin), so a tool result of
    several MB costs no more to record than a small one.
    """
    from agentsess.core.guard.redaction import redact

    window = cap + REDACT_MARGIN
    rest = max(0, len(text) - window)
    text = redact(text[:window])
    if len(text) + rest > cap:
        text = text[:cap] + f"… [{len(text) + rest - cap} more characters]"
    return text


def summarise(args, cap: int = SUMMARY_CAP) -> tuple[str, str]:
    """(a masked, size-capped summary of ``args``, the SHA-256 of their full canonical JSON)."""
    full = canonical_json(args)
    digest = sha256_hex(full.encode())
    text = full
    if isinstance(args, dict) and any(isinstance(args.get(k), str) for k in MAIN_ARGUMENT_KEYS):
        text = main_argument(args)
    return capped(text, cap), digest


def checked_receipt(decision: Decision, tool: str, args, source: str, extra: dict | None = None) -> dict:
    data: dict = {"tool": tool, "source": source}
    if args is not None:
        data["summary"], data["args_sha256"] = summarise(args)
    data.update({"rule": decision.rule, "scope": decision.scope, "decision": decision.decision, "reason": decision.reason})
    if decision.commands and (len(decision.commands) > 1 or decision.commands[0] != data.get("summary")):
        data["commands"] = [capped(c, 256) for c in decision.commands[:32]]
    if extra:
        data.update(extra)
    return data


def exec_receipt(command: str, cwd: str, exit_code, duration, source: str, pid, shown: str | None = None) -> dict:
    """The data of an ``action.exec`` receipt: the command masked and capped (``shown``, when
    given, is a version already masked of exact secrets), and the hash of the full command."""
    return {
        "command": capped(command if shown is None else shown),
        "command_sha256": token_digest(command),
        "cwd": cwd,
        "exit_code": exit_code,
        "duration": None if duration is None else round(duration, 6),
        "source": source,
        "pid": pid,
    }
