"""Planning a run: which profile, which scopes under which ceiling, how long, whose child.

Everything here is decided before anything starts; a request beyond the ceiling is refused
with the exact scopes that exceed it (:class:`Refused`), and the caller records the refusal.
"""

import os
import time

from agentsess.core.credentials import scopes as scope_algebra
from agentsess.core.durations import format_duration, parse_duration
from agentsess.errors import RUN_FAILED, AgentsessError


class Refused(AgentsessError):
    """The request exceeds what the profile or the parent run allows; recorded as denied."""

    def __init__(self, message: str, plan: "Plan"):
        super().__init__(message, RUN_FAILED)
        self.plan = plan


class Request:
    """What the user asked for on the command line."""

    __slots__ = (
        "argv", "name", "use_pty", "profile", "scopes", "ttl", "pass_env", "keep_env",
        "isolate_home", "mask_terminal", "capture_shell", "integration", "cwd", "env",
    )

    def __init__(self, argv, **kw):
        self.argv = list(argv)
        self.name = kw.get("name")
        self.use_pty = kw.get("use_pty")
        self.profile = kw.get("profile")
        self.scopes = list(kw.get("scopes") or [])
        self.ttl = kw.get("ttl")
        self.pass_env = list(kw.get("pass_env") or [])
        self.keep_env = bool(kw.get("keep_env"))
        self.isolate_home = kw.get("isolate_home")
        self.mask_terminal = kw.get("mask_terminal")
        self.capture_shell = kw.get("capture_shell")
        self.integration = kw.get("integration")
        self.cwd = kw.get("cwd") or os.getcwd()
        self.env = dict(os.environ if kw.get("env") is None else kw["env"])


class Plan:
    __slots__ = (
        "profile", "parent", "chain", "depth", "scopes", "ceiling", "ttl", "issued_at",
        "expires_at", "capped", "agent", "name",
    )

    def __init__(self):
        self.parent = None
        self.chain = []
        self.depth = 0
        self.capped = False


def find_parent(env: dict, store) -> dict | None:
    """The run this one is nested in, from the environment; refuses a dead parent."""
    from agentsess.core.credentials.verify import verify_in_store

    token = env.get("AGENTSESS_TOKEN")
    parent_id = env.get("AGENTSESS_RUN_ID")
    if not token and not parent_id:
        return None
    if token:
        verdict = verify_in_store(store, token)  # minted by this store, its run live
        if not verdict.valid:
            raise AgentsessError(
                f"cannot start a nested run: the parent run's token is not valid ({verdict.detail}); "
                "a sub-agent needs a live parent run",
                RUN_FAILED,
            )
        parent_id = verdict.claims["sid"]
        claims = verdict.claims
    else:
        claims = None
    row = store.get_run(parent_id)
    if row is None and claims is None:
        raise AgentsessError(
            f"AGENTSESS_RUN_ID names run {parent_id}, which this store does not know; "
            "unset AGENTSESS_RUN_ID to start a top-level run",
            RUN_FAILED,
        )
    if row is not None and (row["status"] != "running" or row.get("revoked_at")):
        raise AgentsessError(
            f"cannot start a nested run: the parent run {parent_id} is {row['status']}", RUN_FAILED
        )
    if row is not None and row.get("expires_at") and row["expires_at"] <= time.time():
        raise AgentsessError(f"cannot start a nested run: the parent run {parent_id} has expired", RUN_FAILED)
    if row is None:
        row = {
            "id": parent_id,
            "scopes": claims["scope"].split(),
            "expires_at": claims["exp"],
            "chain": claims.get("chain", []),
            "depth": len(claims.get("chain", [])),
            "profile": None,
        }
    return row


def revoked_in(store, run_ids):
    """For token verification: the first revoked run among ``run_ids`` as (id, why)."""
    row = store.revoked_among(list(run_ids))
    if row is None:
        return None
    return row["id"], row.get("revoke_reason") or row["status"]


def make_plan(request: Request, config, store, now: float | None = None) -> Plan:
    now = time.time() if now is None else now
    plan = Plan()
    parent = find_parent(request.env, store)
    profile_name = request.profile or (parent or {}).get("profile") or None
    profile = config.profile(profile_name)
    plan.profile = profile
    plan.name = request.name or os.path.basename(request.argv[0])
    plan.agent = profile.agent or plan.name
    plan.issued_at = now

    if parent is not None:
        plan.parent = parent
        plan.chain = list(parent.get("chain") or []) + [parent["id"]]
        plan.depth = len(plan.chain)

    requested = scope_algebra.parse_scopes(request.scopes) if request.scopes else None
    if requested is None:
        if profile.default_scopes:
            requested = list(profile.default_scopes)
        elif parent is not None:
            requested = list(parent.get("scopes") or [])
        else:
            requested = []
    plan.scopes = requested
    plan.ceiling = profile.scopes

    ttl = parse_duration(request.ttl) if request.ttl else profile.ttl
    plan.ttl = ttl
    plan.expires_at = now + ttl
    if parent is not None and parent.get("expires_at") and parent["expires_at"] < plan.expires_at:
        plan.expires_at = float(parent["expires_at"])
        plan.capped = True

    problems = []
    excess = scope_algebra.excess(profile.scopes, requested)
    if excess:
        problems.append(
            f"scope {', '.join(excess)} exceeds the ceiling of profile '{profile.name}' "
            f"({' '.join(profile.scopes) or 'no scopes'})"
        )
    if parent is not None:
        beyond = scope_algebra.excess(list(parent.get("scopes") or []), requested)
        if beyond:
            problems.append(
                f"scope {', '.join(beyond)} exceeds the parent run's scopes "
                f"({' '.join(parent.get('scopes') or []) or 'no scopes'})"
            )
    if ttl > profile.max_ttl:
        problems.append(
            f"ttl {format_duration(ttl)} exceeds the max_ttl {format_duration(profile.max_ttl)} "
            f"of profile '{profile.name}'"
        )
    if plan.depth > profile.max_depth:
        problems.append(f"nesting depth {plan.depth} exceeds max_depth {profile.max_depth}")
    if problems:
        raise Refused("refused: " + "; ".join(problems), plan)
    return plan
