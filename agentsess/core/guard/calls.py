"""The guard: where a tool call meets the run's policy (`check`, agent hooks, MCP proxy,
shell capture). Each entry finds its run in the store, asks :func:`policy.decide`, and writes
the decision as a receipt before answering.
"""

import os

from agentsess.core.guard import actions, policy
from agentsess.core.receipts import recording
from agentsess.digest import sha256_text
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


def check(store, env: dict, scope: str, tool: str | None = None, command=None) -> tuple[dict, "policy.Decision"]:
    """`agentsess check SCOPE`: may this run act with ``scope`` now? Writes ``action.checked``."""
    from agentsess.core.credentials.scopes import parse_scope

    scope = parse_scope(scope)
    row = _refresh_liveness(store, find_run(store, env))
    decision = policy.decide(row, tool or "check", command, scope=scope)
    recording.record_action(store, row["id"], "action.checked", actions.checked_receipt(decision, tool or "check", command, "check"))
    return row, decision


def claude_code_hook(store, run_id: str, event: dict) -> dict | None:
    """Handle one Claude Code hook event; returns the JSON to print (PreToolUse) or None."""
    if not isinstance(event, dict):
        raise AgentsessError("hook input is not a JSON object", USAGE)
    name = event.get("hook_event_name")
    if not isinstance(name, str):
        raise AgentsessError("hook input has no hook_event_name", USAGE)
    row = _refresh_liveness(store, find_run(store, {}, run_id))
    session = event.get("session_id")
    if session and row.get("session_id") != session:
        store.update_run(row["id"], session_id=session)
    if name == "PreToolUse":
        tool = event.get("tool_name") or "?"
        args = event.get("tool_input")
        decision = policy.decide(row, tool, args)
        recording.record_action(
            store,
            row["id"],
            "action.checked",
            actions.checked_receipt(decision, tool, args, "claude-code", {"session_id": session, "tool_use_id": event.get("tool_use_id")}),
        )
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": decision.decision,
                "permissionDecisionReason": f"agentsess: {decision.reason}",
            }
        }
    if name == "PostToolUse":
        tool = event.get("tool_name") or "?"
        result = event.get("tool_response")
        summary, digest = actions.summarise(result, actions.RESULT_CAP)
        recording.record_action(
            store,
            row["id"],
            "action.result",
            {"tool": tool, "source": "claude-code", "session_id": session, "tool_use_id": event.get("tool_use_id"),
             "result": summary, "result_sha256": digest, "args_sha256": actions.summarise(event.get("tool_input"))[1]},
        )
        return None
    if name in ("SessionStart", "SessionEnd"):
        recording.record_action(
            store,
            row["id"],
            "agent.session",
            {"event": name, "session_id": session, "source": event.get("source") or event.get("reason")},
        )
        return None
    return None


def record_exec(store, env: dict, command: str, cwd: str, exit_code: int, duration: float, source: str) -> None:
    """An ``action.exec`` receipt for a shell command the agent ran."""
    row = find_run(store, env)
    data = actions.exec_receipt(command, cwd, exit_code, duration, source, os.getpid())
    recording.record_action(store, row["id"], "action.exec", data)


# -- one call each, for the CLI: the store is opened here, not in the command line ------------


def check_scope(env: dict, scope: str, tool: str | None = None, command=None) -> tuple[str, "policy.Decision"]:
    """:func:`check` with its own store connection: (the run's id, the decision)."""
    from agentsess.edges.store import Store

    with Store() as store:
        row, decision = check(store, env, scope, tool, command)
    return row["id"], decision


def answer_hook(run_id: str, event) -> dict | None:
    """:func:`claude_code_hook` with its own store connection."""
    from agentsess.edges.store import Store

    with Store() as store:
        return claude_code_hook(store, run_id, event)


def record_command(env: dict, command: str, cwd: str, exit_code: int, duration: float, source: str) -> None:
    """:func:`record_exec` with its own store connection."""
    from agentsess.edges.store import Store

    with Store() as store:
        record_exec(store, env, command, cwd, exit_code, duration, source)
