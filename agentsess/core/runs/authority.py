"""The run's authority: what a supervisor answers on its control socket.

Commands inside a run (`hook`, `check`, `exec`, `whoami`, `token verify`, the MCP proxy) do
not open the store, the receipt streams or the keys: they ask their supervisor, which
decides, writes the receipts and answers. The caller is the run whose supervisor is the
nearest of the caller's ancestors (its peer pid's parent chain, read in /proc): what the
caller says about itself (``--run``, ``AGENTSESS_RUN_ID``) can narrow that, never widen it.

Every answer is a dict with ``ok``; a refusal carries ``error`` (one line) and ``code`` (the
exit code the client leaves with).
"""

import os
import time

from agentsess.errors import USAGE, AgentsessError

# Ops a run may ask for; each is ``fn(authority, store, run_id, message) -> answer``.
OPS: dict = {}


def op(name: str):
    def register(fn):
        OPS[name] = fn
        return fn

    return register


def refused(error: str, code: int = USAGE) -> dict:
    return {"ok": False, "error": error, "code": code}


def ancestry(pid: int):
    """``pid`` and its ancestors, nearest first."""
    from agentsess.edges.host import ancestors

    yield pid
    yield from ancestors(pid)


class Authority:
    """Answers the control socket of run ``run_id``, whose supervisor is this process."""

    def __init__(self, run_id: str, containment: str):
        self.run_id = run_id
        self.containment = containment
        self.pid = os.getpid()

    def caller_run(self, pid: int) -> str | None:
        for anc in ancestry(pid):
            if anc == self.pid:
                return self.run_id
        return None

    def handle(self, message: dict, pid: int) -> dict:
        run_id = self.caller_run(pid)
        if run_id is None:
            return refused(f"process {pid} is not part of run {self.run_id}; only the run's own processes may ask it")
        claimed = message.get("run")
        if claimed and claimed != run_id:
            return refused(f"this process belongs to run {run_id}, not {claimed}; a run cannot act for another")
        fn = OPS.get(message.get("op"))
        if fn is None:
            return refused(f"unknown request {message.get('op')!r}")
        from agentsess.edges.store import Store

        try:
            with Store() as store:
                return fn(self, store, run_id, message)
        except AgentsessError as exc:
            return refused(exc.message, exc.exit_code)


def _env(run_id: str) -> dict:
    return {"AGENTSESS_RUN_ID": run_id}


@op("check")
def _check(auth: Authority, store, run_id: str, message: dict) -> dict:
    from agentsess.core.guard.calls import check

    scope = message.get("scope")
    if not isinstance(scope, str):
        return refused("check: expected exactly one SCOPE")
    command = message.get("command")
    row, decision = check(store, _env(run_id), scope, message.get("tool"), command)
    return {"ok": True, "run": row["id"], "decision": decision.decision, "reason": decision.reason,
            "scope": decision.scope, "allowed": decision.allowed}


@op("hook")
def _hook(auth: Authority, store, run_id: str, message: dict) -> dict:
    from agentsess.core.guard.calls import claude_code_hook

    agent = message.get("agent")
    if agent != "claude-code":
        return refused(f"hook: unknown agent '{agent}': expected claude-code")
    return {"ok": True, "answer": claude_code_hook(store, run_id, message.get("event"))}


@op("exec")
def _exec(auth: Authority, store, run_id: str, message: dict) -> dict:
    from agentsess.core.guard.calls import record_exec

    record_exec(store, _env(run_id), str(message.get("command", "")), str(message.get("cwd", "")),
                int(message.get("exit_code", 0)), float(message.get("duration", 0.0)),
                str(message.get("source", "exec")))
    return {"ok": True}


@op("whoami")
def _whoami(auth: Authority, store, run_id: str, message: dict) -> dict:
    return {"ok": True, "run": describe(store, run_id, auth.containment)}


@op("token_verify")
def _token_verify(auth: Authority, store, run_id: str, message: dict) -> dict:
    from agentsess.core.credentials.verify import verify_token

    token = message.get("token")
    if not isinstance(token, str):
        return refused("token verify: no token given")
    scopes = [s for s in message.get("scopes") or [] if isinstance(s, str)]
    verdict = verify_token(token, scopes)
    return {"ok": True, "verdict": verdict.as_dict(), "valid": bool(verdict.valid), "detail": verdict.detail,
            "reason": verdict.reason}


def describe(store, run_id: str, containment: str) -> dict:
    """`whoami`: who this run is, what it may do, for how long, inside whom."""
    from agentsess.timefmt import rfc3339

    row = store.get_run(run_id)
    chain = []
    parent = row.get("parent_id")
    while parent:
        up = store.get_run(parent)
        if up is None:
            break
        chain.append({"id": up["id"], "name": up["name"], "agent": up.get("agent")})
        parent = up.get("parent_id")
    expires = row.get("expires_at")
    return {
        "id": row["id"], "name": row["name"], "agent": row.get("agent"), "profile": row.get("profile"),
        "scopes": row.get("scopes") or [], "ceiling": (row.get("policy") or {}).get("scopes") or [],
        "expires_at": rfc3339(expires) if expires else None,
        "seconds_left": max(0, int(expires - time.time())) if expires else None,
        "parents": chain, "containment": containment, "status": row["status"],
        "revoked": row.get("revoked_at") is not None,
    }

