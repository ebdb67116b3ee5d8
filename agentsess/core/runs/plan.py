"""Planning a run: which profile, which scopes under which ceiling, how long, whose child.

Everything here is decided before anything starts; a request beyond the ceiling is refused
with the exact scopes that exceed it (:class:`Refused`), and the caller records the refusal.
"""

from __future__ import annotations

import os
import time

from agentsess.core.credentials import scopes as scope_algebra
from agentsess.core.durations import format_duration, parse_duration
from agentsess.errors import RUN_FAILED, AgentsessError
from agentsess.values import Frozen

TYPE_CHECKING = False  # not typing's (5 ms); the profiles are imported by whoever makes a plan
if TYPE_CHECKING:
    from agentsess.core.profiles import Config, Profile


class Refused(AgentsessError):
    """The request exceeds what the profile or the parent run allows; recorded as denied."""

    def __init__(self, message: str, plan: Plan):
        super().__init__(message, RUN_FAILED)
        self.plan = plan


class Request(Frozen):
    """What the user asked for on the command line; None means "the profile decides"."""

    __slots__ = ("argv", "name", "use_pty", "profile", "scopes", "ttl", "pass_env", "keep_env", "isolate_home",
                 "mask_terminal", "capture_shell", "integration", "contain", "cwd", "env")
    argv: list[str]
    name: str | None
    use_pty: bool | None
    profile: str | None
    scopes: list[str]
    ttl: str | None
    pass_env: list[str]
    keep_env: bool
    isolate_home: bool | None
    mask_terminal: bool | None
    capture_shell: bool | None
    integration: str | None
    contain: bool | None
    cwd: str
    env: dict[str, str]

    def __init__(self, argv: list[str], name: str | None = None, use_pty: bool | None = None,
                 profile: str | None = None, scopes: list[str] | None = None, ttl: str | None = None,
                 pass_env: list[str] | None = None, keep_env: bool = False, isolate_home: bool | None = None,
                 mask_terminal: bool | None = None, capture_shell: bool | None = None,
                 integration: str | None = None, contain: bool | None = None, cwd: str | None = None,
                 env: dict[str, str] | None = None):
        self._set(argv=argv, name=name, use_pty=use_pty, profile=profile,
                  scopes=[] if scopes is None else scopes, ttl=ttl, pass_env=[] if pass_env is None else pass_env,
                  keep_env=keep_env, isolate_home=isolate_home, mask_terminal=mask_terminal,
                  capture_shell=capture_shell, integration=integration, contain=contain,
                  cwd=os.getcwd() if cwd is None else cwd, env=dict(os.environ) if env is None else env)


class Plan(Frozen):
    """Everything decided about a run before anything starts.

    ``expires_at`` is already the whole second the run's token will carry as ``exp``;
    ``capped`` says the parent's expiry cut it short. ``parent`` is the parent run's row
    (or what its token says, for a parent this store does not know), ``chain`` its
    ancestors' ids, root first.
    """

    __slots__ = ("profile", "name", "agent", "issued_at", "scopes", "ceiling", "ttl", "expires_at", "capped",
                 "parent", "chain", "depth", "profile_reason")
    profile: Profile
    name: str
    agent: str
    issued_at: float
    scopes: list[str]
    ceiling: list[str] | None
    ttl: int
    expires_at: float
    capped: bool
    parent: dict | None
    chain: list[str]
    depth: int
    profile_reason: str | None  # why this profile when none was asked for, to say so

    def __init__(self, profile: Profile, name: str, agent: str, issued_at: float, scopes: list[str],
                 ceiling: list[str] | None, ttl: int, expires_at: float, capped: bool = False,
                 parent: dict | None = None, chain: list[str] | None = None, depth: int = 0,
                 profile_reason: str | None = None):
        self._set(profile=profile, name=name, agent=agent, issued_at=issued_at, scopes=scopes, ceiling=ceiling,
                  ttl=ttl, expires_at=expires_at, capped=capped, parent=parent,
                  chain=[] if chain is None else chain, depth=depth, profile_reason=profile_reason)


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
        token_claims: dict = verdict.claims or {}  # a valid verdict has its claims
        parent_id = token_claims["sid"]
        claims: dict | None = token_claims
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
        assert claims is not None  # refused above: an unknown run and no token
        row = {
            "id": parent_id,
            "scopes": claims["scope"].split(),
            "expires_at": claims["exp"],
            "chain": claims.get("chain", []),
            "depth": len(claims.get("chain", [])),
            "profile": None,
        }
    return row


def make_plan(request: Request, config: Config, store, now: float | None = None) -> Plan:
    """The plan for ``request``, or :class:`Refused` (carrying the plan) naming every excess."""
    now = time.time() if now is None else now
    parent = find_parent(request.env, store)
    profile_name = request.profile or (parent or {}).get("profile") or None
    profile_reason = None
    command = os.path.basename(request.argv[0]) if request.argv else ""
    if profile_name is None and command != "default" and command in config.profile_names():
        profile_name = command  # `run -- claude` with a [profiles.claude]: that one, said so
        profile_reason = f"named after the command {command}"
    profile = config.profile(profile_name)
    name = request.name or os.path.basename(request.argv[0])
    chain = list(parent.get("chain") or []) + [parent["id"]] if parent is not None else []

    requested = scope_algebra.parse_scopes(request.scopes) if request.scopes else None
    if requested is None:
        if profile.default_scopes:
            requested = list(profile.default_scopes)
        elif parent is not None:
            requested = list(parent.get("scopes") or [])
        else:
            requested = []

    ttl = parse_duration(request.ttl) if request.ttl else profile.ttl
    expires_at = now + ttl
    capped = False
    if parent is not None and parent.get("expires_at") and parent["expires_at"] < expires_at:
        expires_at = float(parent["expires_at"])
        capped = True
    # the token counts whole seconds from int(now), and lives at least one
    expires_at = float(int(now) + max(1, int(expires_at) - int(now)))
    plan = Plan(
        profile=profile,
        name=name,
        agent=profile.agent or name,
        issued_at=now,
        scopes=requested,
        ceiling=profile.scopes,
        ttl=ttl,
        expires_at=expires_at,
        capped=capped,
        parent=parent,
        chain=chain,
        depth=len(chain),
        profile_reason=profile_reason,
    )

    problems = []
    excess = scope_algebra.excess(profile.scopes, requested)
    if excess:
        problems.append(
            f"scope {', '.join(excess)} exceeds the ceiling of profile '{profile.name}' "
            f"({' '.join(profile.scopes or []) or 'no scopes'})"
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
