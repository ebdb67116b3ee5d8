"""Sub-agents an agent spawns inside itself: a child run per sub-agent, in its parent's supervisor.

Claude Code marks a hook event fired from within a sub-agent (its Task/Agent tool) with
``agent_id`` and ``agent_type``, and sends ``SubagentStart``/``SubagentStop``; Codex sends
the same events. The orchestrator's planning loop stays in the parent run; the first tool
call of a new sub-agent creates a child run of the run whose hook it is (planned, minted and
recorded as a nested run is, by :func:`agentsess.core.runs.start.launch_subagent`): its own
run id, receipt stream and token (whose ``act`` claim carries the delegation chain), scopes
= the parent's narrowed by the profile's ``[profiles.P.subagents]`` table, expiry no later
than the parent's. Every later call of that sub-agent is decided against and recorded in its
run. ``SubagentStop``, a revocation of the sub-agent's run, or the parent's end ends it and
seals its stream; a later call with that id is denied, unless a new ``SubagentStart`` resumes
a sub-agent that stopped (a new run); a revoked or expired one is never given a run again.

What the hook can trust. The agent's process tree is the adversary, and a sub-agent and its
orchestrator are one process (Claude Code), so no process boundary tells them apart: the
``agent_id`` in a hook event is Claude's word, believed only from a caller of the parent
run itself (Claude Code's hooks). A command a sub-agent runs (the Bash tool, through the
run's shell prefix, ``agentsess exec``) is bound to the sub-agent's run for as long as it
runs: its processes and their children are callers of the *sub-agent's* run on the control
socket (``check``, ``hook``, ``whoami``, nested runs), hold the sub-agent's run id and
scopes instead of the orchestrator's token, and cannot name the parent run or another
sub-agent; what it leaves running (adopted by the exec, a subreaper, and bound when the
exec reports the end) stays the sub-agent's. A command is the sub-agent's when its text is
that of a shell call the sub-agent's hook let through (the oldest one waiting); a command
no hook saw runs as the orchestrator's, and bypass detection flags it. Hook events with an ``agent_id`` that is not a plain id (control characters,
over :data:`MAX_ID` characters) or an ``agent_type`` that changes mid-way are refused.
"""

from __future__ import annotations

import _thread
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from agentsess.errors import USAGE, AgentsessError

MAX_ID = 128
MAX_TYPE = 64
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")
_TYPE_CHARS = _ID_CHARS | frozenset("@/ +")
START_EVENTS = ("SubagentStart",)
STOP_EVENTS = ("SubagentStop",)
WATCH_INTERVAL = 0.2
PENDING_PER_COMMAND = 64  # sub-agent calls waiting to run one command text
PENDING_COMMANDS = 4096  # command texts waiting
MAX_SUBAGENTS = 1000  # sub-agents one run may have: each is a run in the store


def _shown(text, limit: int = 60) -> str:
    text = str(text)
    return text if len(text) <= limit and text.isprintable() else repr(text[:limit])


def check_id(value) -> str:
    """The sub-agent id of a hook event, or AgentsessError naming what is wrong with it."""
    if not isinstance(value, str) or not value:
        raise AgentsessError("hook: agent_id is not a non-empty string", USAGE)
    if len(value) > MAX_ID:
        raise AgentsessError(f"hook: agent_id is {len(value)} characters long (at most {MAX_ID})", USAGE)
    if not _ID_CHARS.issuperset(value):
        raise AgentsessError(f"hook: agent_id {_shown(value)} holds characters a sub-agent id never has", USAGE)
    return value


def check_type(value) -> str:
    if value is None:
        return "subagent"
    if not isinstance(value, str) or not value or len(value) > MAX_TYPE or not _TYPE_CHARS.issuperset(value):
        raise AgentsessError(f"hook: agent_type {_shown(value)} is not a sub-agent type name "
                             f"(letters, digits, ._:-@/+ and spaces, at most {MAX_TYPE})", USAGE)
    return value


def narrowed(parent: list[str], table: dict | None, agent_type: str) -> list[str]:
    """A sub-agent's scopes: the parent's, narrowed by the profile's ``subagents`` table (its
    ``types`` entry for ``agent_type``, else its ``scopes``); a wanted scope the parent does
    not hold is cut down to what the parent holds below it, or dropped."""
    from agentsess.core.credentials.scopes import covers

    table = table or {}
    wanted = (table.get("types") or {}).get(agent_type)
    if wanted is None:
        wanted = table.get("scopes")
    if wanted is None:
        return list(parent)
    out: dict[str, None] = {}
    for scope in wanted:
        if any(covers(p, scope) for p in parent):
            out[scope] = None
        else:
            for p in parent:
                if covers(scope, p):
                    out[p] = None
    return list(out)


def delegation(store, chain: list[str], obo: str) -> dict:
    """The RFC 8693 ``act`` claim of a child run whose ancestors are ``chain`` (root first):
    acting for its parent, acting for … the root, acting for the human (``obo``)."""
    act: dict = {"sub": obo}
    for run_id in chain:  # root first: each one wraps the one it acts for
        row = store.get_run(run_id) or {}
        act = {"sub": f"agent:{row.get('agent') or '?'}", "sid": run_id, "act": act}
    return act


class SubAgent:
    """One sub-agent of a run, known to that run's authority."""

    __slots__ = ("parent", "agent_id", "agent_type", "run_id", "plan", "watch", "ended", "why", "source", "how")

    def __init__(self, parent: str, agent_id: str, agent_type: str, source: str):
        self.parent = parent
        self.agent_id = agent_id
        self.agent_type = agent_type
        self.source = source
        self.run_id: str | None = None
        self.plan: Any = None  # the run's Plan, once it has one
        self.watch: Any = None  # its supervise.Watch (what finish() records the end with)
        self.ended = False
        self.why: str | None = None  # why its calls are denied once it ended
        self.how: str | None = None  # how it ended: stopped, revoked, expired, parent, refused


class _NoLog:
    size = 0

    def digest(self) -> None:
        return None


class SubAgents:
    """The sub-agents of the runs one authority answers for, keyed by (parent run, agent id)."""

    def __init__(self, pid: int, containment: str, socket: str = ""):
        self.pid = pid  # the authority's process: the sub-agents' runs' supervisor
        self.containment = containment
        self.socket = socket
        # _thread, not threading: every run builds this, and `run` never imports threading
        # until a sub-agent appears (the watcher's thread)
        self.lock = _thread.RLock()
        self.known: dict[tuple[str, str], SubAgent] = {}
        self.by_run: dict[str, SubAgent] = {}
        self.pending: dict[str, list[str]] = {}  # command sha256 -> sub-agent runs that allowed it
        self._watcher: Any = None  # a threading.Thread, from the first sub-agent on
        self._closed: Any = None  # its threading.Event: set when the parent ends
        self.on_stop: Any = None  # on_stop(run) -> {processes_killed, commands}: kill what its commands run

    # -- routing a hook event ----------------------------------------------------------

    def route(self, store, run_id: str, event: dict, source: str) -> tuple[str | None, dict | None]:
        """Where a hook event of run ``run_id`` (the caller's run) belongs: ``(run, None)``
        to decide and record it in that run, or ``(None, denial)``: the event concerns a
        sub-agent that cannot act (ended, revoked, refused), recorded in the parent."""
        name = event.get("hook_event_name")
        raw_id = event.get("agent_id")
        mine = self.by_run.get(run_id)
        if mine is not None:  # the caller is bound to a sub-agent's run (one of its commands)
            if raw_id is not None and raw_id != mine.agent_id:
                raise AgentsessError(f"hook: a command of sub-agent {mine.agent_id} (run {run_id}) cannot act "
                                     "as another sub-agent", USAGE)
            return run_id, None
        if raw_id is None and name not in START_EVENTS + STOP_EVENTS:
            return run_id, None
        try:
            agent_id = check_id(raw_id)
            agent_type = check_type(event.get("agent_type"))
        except AgentsessError as exc:
            if name not in START_EVENTS + STOP_EVENTS:
                raise  # a tool call: blocked, in the agent's own convention
            record_refusal(store, run_id, event, exc.message, source)  # an agent's own event: noted
            return None, {"answer": None}
        key = (run_id, agent_id)
        with self.lock:
            sub = self.known.get(key)
            if name in START_EVENTS:
                # a sub-agent that stopped may be resumed (Claude Code keeps its id): a new run;
                # one revoked, expired or refused stays dead
                resumed = sub is not None and sub.ended and sub.how == "stopped"
                if sub is None or resumed:
                    self.known[key] = sub = SubAgent(run_id, agent_id, agent_type, source)
                    self._record_parent(store, run_id, "subagent.started", sub, {"event": name, "resumed": resumed})
                    return None, {"answer": None}
                return self._refuse(store, sub, name, sub.why if sub.ended and sub.why else
                                    f"sub-agent {agent_id} already started")
            if name in STOP_EVENTS:
                if sub is None:
                    self.known[key] = sub = SubAgent(run_id, agent_id, agent_type, source)
                if not sub.ended:
                    self._end(store, sub, "stopped", f"sub-agent {agent_id} stopped (SubagentStop)")
                    self._record_parent(store, run_id, "subagent.stopped", sub, {"event": name})
                return None, {"answer": None}
            if sub is None:
                if sum(1 for k in self.known if k[0] == run_id) >= MAX_SUBAGENTS:
                    raise AgentsessError(f"hook: run {run_id} already has {MAX_SUBAGENTS} sub-agents; no more "
                                         "are given a run", USAGE)
                self.known[key] = sub = SubAgent(run_id, agent_id, agent_type, source)
            if sub.agent_type != agent_type:
                return self._refuse(store, sub, name, f"sub-agent {agent_id} was started as {_shown(sub.agent_type)}; "
                                    f"this call says {_shown(agent_type)}")
            if sub.ended:
                return self._refuse(store, sub, name, sub.why or f"sub-agent {agent_id} ended")
            if sub.run_id is None:
                try:
                    self._start(store, sub, event)
                except AgentsessError as exc:
                    sub.ended, sub.why, sub.how = True, f"sub-agent {agent_id} got no run: {exc.message}", "refused"
                    return self._refuse(store, sub, name, sub.why)
            return sub.run_id, None

    def _refuse(self, store, sub: SubAgent, name, reason: str) -> tuple[None, dict]:
        """A call of a sub-agent that cannot act: recorded in the parent, denied."""
        from agentsess.core.guard.policy import Decision

        self._record_parent(store, sub.parent, "subagent.refused", sub, {"event": name, "reason": reason})
        return None, {"deny": Decision("deny", reason), "reason": reason}

    def _record_parent(self, store, parent: str, kind: str, sub: SubAgent, data: dict) -> None:
        from agentsess.core.receipts import recording

        data = {"agent_id": sub.agent_id, "agent_type": sub.agent_type, "run": sub.run_id, "source": sub.source,
                **data}
        recording.record_action(store, parent, kind, data)

    def _start(self, store, sub: SubAgent, event: dict) -> None:
        from agentsess.core.receipts import recording
        from agentsess.core.runs.plan import Request
        from agentsess.core.runs.start import Caller, launch_subagent
        from agentsess.core.runs.supervise import Watch

        parent = store.get_run(sub.parent)
        if parent is None:
            raise AgentsessError(f"no run {sub.parent}", USAGE)
        policy = parent.get("policy") or {}
        scopes = narrowed(list(parent.get("scopes") or []), policy.get("subagents"), sub.agent_type)
        request = Request([f"{sub.source}:{sub.agent_type}"], name=f"{sub.agent_type}", use_pty=False,
                          profile=parent.get("profile"), scopes=scopes, isolate_home=False, capture_shell=False,
                          integration="none", cwd=str(event.get("cwd") or parent.get("cwd") or "/"),
                          env={"AGENTSESS_RUN_ID": sub.parent})
        plan, launch = launch_subagent(store, request, Caller(self.pid, self.socket, self.containment))
        sub.run_id, sub.plan = launch.run_id, plan
        from agentsess.edges import paths

        marker = paths.subagents_marker(sub.parent)
        if not os.path.exists(marker) and os.path.isdir(os.path.dirname(marker)):
            paths.write_private(marker, b"")  # the shell prefix asks from now on
        sub.watch = Watch(store, launch.run_id, plan, lambda _line: None)
        self.by_run[launch.run_id] = sub
        recording.record_action(store, launch.run_id, "subagent.started", {
            "agent_id": sub.agent_id, "agent_type": sub.agent_type, "source": sub.source, "parent": sub.parent,
            "session_id": event.get("session_id") if isinstance(event.get("session_id"), str) else None})
        self._watch()

    # -- ending ------------------------------------------------------------------------

    def _end(self, store, sub: SubAgent, how: str, why: str, error: str | None = None) -> None:
        from agentsess.core.runs.supervise import finish

        sub.ended, sub.why, sub.how = True, why, how
        if sub.run_id is None or sub.watch is None:
            return
        sub.watch.store = store
        row = store.get_run(sub.run_id) or {}
        if row.get("ended_at") is None:
            finish(store, sub.plan, sub.watch, _NoLog(), 0, None, error)  # it did not fail: it was ended
        with self.lock:
            for runs in self.pending.values():
                while sub.run_id in runs:
                    runs.remove(sub.run_id)

    def end_all(self, store, why: str) -> None:
        """The parent's end is its sub-agents' end."""
        if self._closed is not None:
            self._closed.set()
            self._watcher.join(5)  # not left inside the store's client when the process exits
        with self.lock:
            live = [s for s in self.known.values() if not s.ended]
            for sub in live:
                try:
                    self._end(store, sub, "parent", why, error=why)
                except Exception:
                    pass

    def _watch(self) -> None:
        if self._watcher is None:
            import threading

            self._closed = threading.Event()
            self._watcher = threading.Thread(target=self._watch_loop, name="agentsess-subagents", daemon=True)
            self._watcher.start()

    def _watch_loop(self) -> None:
        """Revocation and expiry of the live sub-agents' runs: a revoked one ends at once
        (``revoke`` waits for that), every later call of it denied with the reason."""
        from agentsess.edges.store import Store

        store = None
        while not self._closed.wait(WATCH_INTERVAL):
            try:
                if store is None:
                    store = Store()  # opened again after a failure: the watch never dies
                with self.lock:
                    live = [s for s in self.by_run.values() if not s.ended]
                for sub in live:
                    self._check(store, sub)
            except Exception:  # noqa: BLE001 - an unreachable store is tried again on the next turn
                if store is not None:
                    try:
                        store.close()
                    except Exception:  # noqa: BLE001
                        pass
                store = None
        if store is not None:
            store.close()

    def _check(self, store, sub: SubAgent) -> None:
        assert sub.run_id is not None and sub.plan is not None
        revoked_at, cause = store.revocation(sub.run_id)
        if revoked_at is not None:
            row = store.get_run(sub.run_id) or {}
            reason = row.get("revoke_reason")
            why = f"sub-agent {sub.agent_id}'s run {sub.run_id} was revoked" + (f": {reason}" if reason else "")
            sub.watch.revoked = True
            with self.lock:
                if not sub.ended:
                    self._end(store, sub, "revoked", why)
        elif sub.plan.expires_at <= time.time():
            with self.lock:
                if not sub.ended:
                    self._end(store, sub, "expired", f"the credential of sub-agent {sub.agent_id}'s run {sub.run_id} expired")
        else:
            return
        # its tool calls in flight stop too, as the profile says for a run's process tree (on_revoke,
        # on_expiry); outside the lock: kills take a while. On the parent's record either way
        profile = sub.plan.profile
        stop = (profile.on_revoke if sub.how == "revoked" else profile.on_expiry) == "stop"
        stopped = self.on_stop(sub.run_id) if stop and self.on_stop is not None else {}
        from agentsess.core.guard.actions import capped

        self._record_parent(store, sub.parent, "subagent.ended", sub, {
            "how": sub.how, "reason": sub.why, "processes_killed": stopped.get("processes_killed", 0),
            "commands": [capped(c, 256) for c in stopped.get("commands", [])[:16]]})  # masked, as summaries are

    # -- commands a sub-agent runs -------------------------------------------------------

    def allowed(self, run_id: str, command_sha256: str) -> None:
        """A sub-agent's shell call was let through: its command, when it runs, is the sub-agent's."""
        if run_id in self.by_run:
            with self.lock:
                waiting = self.pending.setdefault(command_sha256, [])
                waiting.append(run_id)
                # bounded (calls let through that never ran): the oldest are forgotten; never
                # by time, which would hand a slow-to-start command to the orchestrator's scopes
                del waiting[:-PENDING_PER_COMMAND]
                while len(self.pending) > PENDING_COMMANDS:
                    self.pending.pop(next(iter(self.pending)))

    def claim(self, command_sha256: str) -> SubAgent | None:
        """The sub-agent whose allowed call this command is (the oldest waiting), or None."""
        with self.lock:
            runs = self.pending.get(command_sha256)
            while runs:
                sub = self.by_run.get(runs.pop(0))
                if sub is not None and not sub.ended:
                    if not runs:
                        self.pending.pop(command_sha256, None)
                    return sub
            self.pending.pop(command_sha256, None)
        return None

    def after_call(self, run_id: str, event: dict, protocol, answer) -> None:
        """After a sub-agent's call was decided: a shell command let through waits for its run."""
        if protocol.EVENTS.get(event.get("hook_event_name")) != "pre" or _denied(answer):
            return
        from agentsess.core.guard.commands import shell_command
        from agentsess.digest import sha256_text

        command = shell_command(event.get("tool_input"))
        if command is not None:
            self.allowed(run_id, sha256_text(command))


def _denied(answer) -> bool:
    if not isinstance(answer, dict):
        return False
    inner = answer.get("hookSpecificOutput")
    verdict = inner.get("permissionDecision") if isinstance(inner, dict) else answer.get("decision")
    return verdict == "deny"


def record_refusal(store, run_id: str, event: dict, reason: str, source: str) -> None:
    """A hook event naming a sub-agent agentsess refuses (a malformed id or type): recorded in
    the caller's run, the id itself only as a capped, escaped sample."""
    from agentsess.core.receipts import recording

    raw = event.get("agent_id")
    recording.record_action(store, run_id, "subagent.refused", {
        "event": _shown(event.get("hook_event_name"), 40), "agent_id": _shown(raw, 40) if raw is not None else None,
        "agent_id_length": len(raw) if isinstance(raw, str) else None, "reason": reason, "source": source})
