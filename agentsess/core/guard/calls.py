"""The guard: where a tool call meets the run's policy (`check`, agent hooks, MCP proxy,
shell capture). Each entry finds its run in the store, asks :func:`policy.decide`, and writes
the decision as a receipt before answering.
"""

import os

from agentsess.core.guard import actions, approvals, policy
from agentsess.core.receipts import recording
from agentsess.digest import sha256_text
from agentsess.encoding import canonical_text
from agentsess.errors import USAGE, AgentsessError


def find_run(store, env: dict, run_id: str | None = None) -> dict:
    """The run a tool call belongs to: ``--run`` if given, else the token's, else AGENTSESS_RUN_ID."""
    token = env.get("AGENTSESS_TOKEN")
    row = None
    if run_id:
        row = store.get_run(run_id)
        if row is None:
            raise AgentsessError(f"no run {run_id} in this store", USAGE)
    elif token:
        found = store.find_by_token(sha256_text(token))
        if found is None:
            raise AgentsessError("AGENTSESS_TOKEN is not a token this agentsess minted for any run", USAGE)
        row = store.get_run(found)
    elif env.get("AGENTSESS_RUN_ID"):
        row = store.get_run(env["AGENTSESS_RUN_ID"])
        if row is None:
            raise AgentsessError(f"AGENTSESS_RUN_ID names run {env['AGENTSESS_RUN_ID']}, unknown to this store", USAGE)
    else:
        raise AgentsessError(
            "not inside a run: no AGENTSESS_TOKEN or AGENTSESS_RUN_ID; start one with `agentsess run -- CMD`",
            USAGE,
        )
    if token and row.get("token_sha256") and row["token_sha256"] != sha256_text(token) and not run_id:
        raise AgentsessError("AGENTSESS_TOKEN does not belong to the run in AGENTSESS_RUN_ID", USAGE)
    return row


def _refresh_liveness(store, row: dict) -> dict:
    """Treat a running run whose supervisor died as abandoned (its credentials are dead)."""
    if row["status"] == "running":
        from agentsess.core.runs.abandonment import supervisor_alive

        if not supervisor_alive(row):
            from agentsess.core.runs.abandonment import reap_abandoned

            reap_abandoned(store)
            row = store.get_run(row["id"])
    return row


def check(store, env: dict, scope: str, tool: str | None = None, command=None,
          say=None) -> tuple[dict, "policy.Decision"]:
    """`agentsess check SCOPE`: may this run act with ``scope`` now? Writes ``action.checked``.
    A rule's ``ask`` under ``approval = "human"`` is held until a person answers (``say``: the
    run's terminal notice)."""
    from agentsess.core.credentials.scopes import parse_scope

    scope = parse_scope(scope)
    row = _refresh_liveness(store, find_run(store, env))
    decision = policy.decide(row, tool or "check", command, scope=scope)
    extra = None
    if approvals.held(row, decision):
        decision, extra = approvals.settle(store, row, tool or "check", command, "check", decision, say)
    recording.record_action(store, row["id"], "action.checked",
                            actions.checked_receipt(decision, tool or "check", command, "check", extra))
    return row, decision


def agent_hook(store, run_id: str, agent: str, event, say=None) -> dict | None:
    """Handle one hook event of ``agent`` (``claude-code``, ``codex``, ``gemini``) in run
    ``run_id``: a tool call is decided and recorded (``action.checked``), its result or failure
    recorded (``action.result``), a permission request or session event recorded. Returns the
    JSON to print in that agent's own format, or None to print nothing. Raises on anything it
    cannot handle: the caller fails closed in the agent's blocking convention. A rule's ``ask``
    under ``approval = "human"`` is held until a person answers (``say``: the terminal notice)."""
    from agentsess.core.guard import agents

    protocol = agents.protocol(agent)
    if not isinstance(event, dict):
        raise AgentsessError("hook input is not a JSON object", USAGE)
    name = event.get("hook_event_name")
    if not isinstance(name, str):
        raise AgentsessError("hook input has no hook_event_name", USAGE)
    kind = protocol.EVENTS.get(name)
    if kind is None:
        raise AgentsessError(f"hook: {agent} event {name!r} is not one agentsess handles", USAGE)
    row = _refresh_liveness(store, find_run(store, {}, run_id))
    session = event.get("session_id")
    if session and row.get("session_id") != session:
        store.update_run(row["id"], session_id=session)
    source = protocol.SOURCE
    if kind in ("session_start", "session_end"):
        recording.record_action(store, row["id"], "agent.session", {
            "event": name, "session_id": session, "source": event.get("source") or event.get("reason"),
            "agent": source})
        return None
    native = event.get("tool_name")
    if not isinstance(native, str) or not native:
        raise AgentsessError(f"hook: {name} without a tool_name", USAGE)
    tool = protocol.tool_name(native, event)
    args = event.get("tool_input")
    base = {"session_id": session, "tool_use_id": event.get("tool_use_id")}
    if tool != native:
        base["agent_tool"] = native
    if kind == "pre":
        decision = policy.decide(row, tool, args, observe=True)
        extra = dict(base)
        if approvals.held(row, decision):
            decision, more = approvals.settle(store, row, tool, args, source, decision, say)
            extra.update(more)
        command = _command_of(args)
        if command is not None:
            extra["command_sha256"] = sha256_text(command)
        recording.record_action(store, row["id"], "action.checked",
                                actions.checked_receipt(decision, tool, args, source, extra))
        return protocol.pre_answer(decision)
    if kind == "permission":
        data = {"tool": tool, "source": source, **base}
        if args is not None:
            data["summary"], data["args_sha256"] = actions.summarise(args)
        recording.record_action(store, row["id"], "agent.permission", data)
        return None
    # a result (kind "post") or a failure (kind "failure")
    result, error = protocol.result_of(kind, event)
    data = {"tool": tool, "source": source, **base, "is_error": error is not None}
    if args is not None:
        data["args_sha256"] = actions.summarise(args)[1]
    if result is not None:
        data["result"], data["result_sha256"] = actions.summarise(result, actions.RESULT_CAP)
    if error is not None:
        data["error"] = actions.capped(error if isinstance(error, str) else canonical_text(error),
                                      actions.RESULT_CAP)
        for key in ("is_interrupt", "duration_ms"):
            if key in event:
                data[key] = event[key]
    recording.record_action(store, row["id"], "action.result", data)
    return None


def _command_of(args) -> str | None:
    from agentsess.core.guard.commands import shell_command

    return shell_command(args)


def claude_code_hook(store, run_id: str, event: dict) -> dict | None:
    """Handle one Claude Code hook event; returns the JSON to print (PreToolUse) or None."""
    return agent_hook(store, run_id, "claude-code", event)


def record_exec(store, env: dict, command: str, cwd: str, exit_code: int, duration: float, source: str) -> None:
    """An ``action.exec`` receipt for a shell command the agent ran. A command Claude Code
    wrapped is recorded as the model's own command, linked (``tool_use_id``, ``checked``: the
    seq and hash of the receipt) to the ``action.checked`` of the tool call that ran it."""
    row = find_run(store, env)
    shown = command
    link: dict = {}
    if source != "claude-code":
        data = actions.exec_receipt(shown, cwd, exit_code, duration, source, os.getpid())
        recording.record_action(store, row["id"], "action.exec", data)
        return
    from agentsess.core.guard.agents import claude

    inner = claude.unwrap(command)
    if inner is not None:
        shown = inner
        link["wrapper_sha256"] = sha256_text(command)
    links = _links(row["id"])
    with links.lock:  # two execs at once never take the same check: each sees the other's link
        link.update(links.find(sha256_text(shown), source))
        data = actions.exec_receipt(shown, cwd, exit_code, duration, source, os.getpid())
        data.update(link)
        recording.record_action(store, row["id"], "action.exec", data)


def _checked_link(run_id: str, command_sha256: str, source: str) -> dict:
    """The newest allowed ``action.checked`` of ``source`` for this command not yet linked to an
    exec (by a later ``action.exec`` naming its ``tool_use_id``): ``{"tool_use_id": …,
    "checked": {"seq": …, "hash": …}}``, or ``{"checked": None}``."""
    links = _links(run_id)
    with links.lock:
        return links.find(command_sha256, source)


class _Links:
    """What :func:`_checked_link` needs of one run's stream, read once and kept: each
    allowed check's place by (source, command), and the place of the newest exec naming each
    ``tool_use_id``. The stream is read on from where it was read up to (another process may
    have appended: `revoke`), so a long run's execs cost what their own receipts cost, not the
    whole stream each (issue 18: a run of 3,000 commands re-read 6,000 receipts per command)."""

    def __init__(self, run_id: str):
        import _thread

        self.run_id = run_id
        self.lock = _thread.allocate_lock()
        self.ident: tuple[int, int] | None = None
        self.offset = 0
        self.place = 0  # records read
        # (source, command_sha256) -> [(place, key, tool_use_id, seq, hash)], oldest first
        self.checks: dict[tuple, list[tuple]] = {}
        self.linked: dict[tuple, int] = {}  # tool_use_id key -> place of the newest exec naming it

    def find(self, command_sha256: str, source: str) -> dict:
        self._read()
        checks = self.checks.get((source, command_sha256))
        while checks:
            place, key, tool_use_id, seq, digest = checks[-1]
            if key is not None and self.linked.get(key, -1) > place:
                checks.pop()  # linked by a later exec: for good (later execs only come later)
                continue
            return {"tool_use_id": tool_use_id, "checked": {"seq": seq, "hash": digest}}
        return {"checked": None}

    def _read(self) -> None:
        from agentsess.edges import streams

        ident, offset, records, restarted = streams.load_since(self.run_id, self.offset, self.ident)
        if restarted:
            self.place, self.checks, self.linked = 0, {}, {}
        self.ident, self.offset = ident, offset
        for rec in records:
            place, self.place = self.place, self.place + 1
            data = rec.get("data")
            if not isinstance(data, dict):
                continue
            rtype, tool_use_id = rec.get("type"), data.get("tool_use_id")
            if rtype == "action.exec" and tool_use_id:
                self.linked[_key(tool_use_id)] = place
            elif (rtype == "action.checked" and data.get("decision") != "deny"
                  and isinstance(data.get("command_sha256"), str) and isinstance(data.get("source"), str)):
                key = _key(tool_use_id) if tool_use_id else None
                self.checks.setdefault((data.get("source"), data["command_sha256"]), []).append(
                    (place, key, tool_use_id, rec.get("seq"), rec.get("hash")))


def _key(tool_use_id) -> tuple:
    """A tool_use_id as a key: the agent chose it, so it may be any JSON value."""
    if isinstance(tool_use_id, str):
        return ("s", tool_use_id)
    return ("j", canonical_text(tool_use_id))


_LINKS: dict[str, _Links] = {}


def _links(run_id: str) -> _Links:
    """The run's :class:`_Links`, one per receipt file (the data root is the environment's)."""
    from agentsess.edges import paths

    path = paths.receipts_file(run_id)
    links = _LINKS.get(path)
    if links is None:
        links = _LINKS.setdefault(path, _Links(run_id))
    return links
