"""Claude Code: its settings file for the run, its shell prefix, and its hook events.

`agentsess run -- claude …` gives Claude one ``--settings JSON`` (Claude keeps only the last
``--settings`` on its command line, and settings given that way outrank user, project and
local settings). They are given inline, so the agent has no file to rewrite mid-session
(a copy is kept as ``claude-settings.json`` in the run folder). They:

- installs ``agentsess hook claude-code --run RUN`` on PreToolUse, PostToolUse,
  PostToolUseFailure, PermissionRequest (all tools), SessionStart, SessionEnd, SubagentStart
  and SubagentStop (a sub-agent's calls carry its ``agent_id``: each sub-agent gets a child
  run, see :mod:`agentsess.core.runs.subagents`);
- sets ``disableAllHooks: false``, so a settings file the agent edits mid-session cannot
  switch agentsess off;
- holds the user's own ``--settings`` (a file or inline JSON), merged: their keys kept,
  their hooks kept beside agentsess's; their ``env`` is set in Claude's environment instead,
  so a key in it never lands on a command line. A ``--settings`` that cannot be read is
  refused.

``--bare`` and ``--safe-mode`` (and ``CLAUDE_CODE_SIMPLE``/``CLAUDE_CODE_SAFE_MODE``) make
Claude skip hooks: refused. ``CLAUDE_CODE_SHELL_PREFIX`` names a per-run script through
which Claude runs every Bash command *and* every hook command: the script hands hook
commands straight to ``sh`` and records only the Bash tool's commands (``agentsess exec``).
Claude wraps the model's command (``source <snapshot> … && eval '<cmd>' < /dev/null && pwd
-P >| /tmp/claude-…-cwd``); :func:`unwrap` takes the model's command back out, so the exec
receipt holds what the model asked for and links, by the command's hash, to the
``action.checked`` of the same tool call (its ``tool_use_id``).
"""

from __future__ import annotations

import json
import os
import shlex

from agentsess.errors import RUN_FAILED, AgentsessError

SOURCE = "claude-code"
HOOK_EVENTS = ("PreToolUse", "PostToolUse", "PostToolUseFailure", "PermissionRequest", "SessionStart", "SessionEnd",
               "SubagentStart", "SubagentStop")
REFUSED_FLAGS = {
    "--bare": "Claude Code's --bare skips hooks",
    "--safe-mode": "Claude Code's --safe-mode disables hooks",
}
REFUSED_ENV = {
    "CLAUDE_CODE_SIMPLE": "CLAUDE_CODE_SIMPLE (what --bare sets) skips hooks",
    "CLAUDE_CODE_SAFE_MODE": "CLAUDE_CODE_SAFE_MODE (what --safe-mode sets) disables hooks",
}


EVENTS = {"PreToolUse": "pre", "PostToolUse": "post", "PostToolUseFailure": "failure",
          "PermissionRequest": "permission", "SessionStart": "session_start", "SessionEnd": "session_end",
          "SubagentStart": "subagent_start", "SubagentStop": "subagent_stop"}


def tool_name(name: str, event: dict | None = None) -> str:
    """Claude's ``mcp__server__tool`` as agentsess's ``mcp:server:tool``; other names unchanged."""
    return mcp_name(name)


def mcp_name(name: str) -> str:
    if name.startswith("mcp__"):
        parts = name[5:].split("__", 1)
        if len(parts) == 2 and parts[0] and parts[1]:
            return f"mcp:{parts[0]}:{parts[1]}"
    return name


def _user_settings(argv: list[str]) -> tuple[list[str], list[dict]]:
    """(argv without its ``--settings``, the settings each one gave, in order)."""
    out: list[str] = [argv[0]]
    given: list[dict] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out += argv[i:]
            break
        value = None
        if arg == "--settings":
            if i + 1 >= len(argv):
                raise AgentsessError("run: claude --settings needs a value (a file or a JSON string)", RUN_FAILED)
            value = argv[i + 1]
            i += 2
        elif arg.startswith("--settings="):
            value = arg.split("=", 1)[1]
            i += 1
        else:
            flag = arg.split("=", 1)[0]
            if flag in REFUSED_FLAGS:
                raise AgentsessError(
                    f"run: {REFUSED_FLAGS[flag]}, so agentsess could not check its tool calls; "
                    "drop it, or run with --agent none to run Claude unguarded", RUN_FAILED)
            out.append(arg)
            i += 1
            continue
        given.append(_read_settings(value))
    return out, given


def _read_settings(value: str) -> dict:
    text = value.strip()
    where = "the JSON string given to --settings"
    if not text.startswith("{"):
        where = f"the settings file {value}"
        try:
            with open(os.path.expanduser(value), encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise AgentsessError(f"run: cannot read {where} ({exc.strerror}); agentsess merges it into "
                                 "the run's own settings", RUN_FAILED) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AgentsessError(f"run: {where} is not valid JSON ({exc.msg} at line {exc.lineno}); agentsess "
                             "merges it into the run's own settings and will not drop it", RUN_FAILED) from None
    if not isinstance(data, dict):
        raise AgentsessError(f"run: {where} is not a JSON object", RUN_FAILED)
    return data


def settings(run_id: str, hook: str, user: list[dict], held: int = 0) -> dict:
    """The run's Claude settings: the user's ``--settings`` merged in order, agentsess's hooks
    added beside theirs, ``disableAllHooks`` forced off. ``held``: how long a PreToolUse may be
    held for a person's approval (``approval_timeout`` under ``approval = "human"``): Claude
    waits that long plus a margin; a PreToolUse hook that times out or fails blocks the call
    (``onFailure: "block"``, Claude Code 2.1.295+) instead of letting it through."""
    merged: dict = {}
    user_hooks: dict[str, list] = {}
    for given in user:
        for key, value in given.items():
            if key == "hooks" and isinstance(value, dict):
                for event, entries in value.items():
                    if isinstance(entries, list):
                        user_hooks.setdefault(event, []).extend(entries)
            else:
                merged[key] = value
    entry = [{"type": "command", "command": hook, "timeout": 60}]
    pre = [{"type": "command", "command": hook, "timeout": max(60, held + 30), "onFailure": "block"}]
    hooks: dict[str, list] = {event: list(entries) for event, entries in user_hooks.items()}
    for event in HOOK_EVENTS:
        mine = pre if event == "PreToolUse" else entry
        ours = {"matcher": "*", "hooks": mine} if ("Tool" in event or "Permission" in event) else {"hooks": mine}
        hooks.setdefault(event, []).insert(0, ours)
    merged["hooks"] = hooks
    merged["disableAllHooks"] = False
    return merged


def prefix_script(run_id: str, agentsess: str, hook: str) -> str:
    """The CLAUDE_CODE_SHELL_PREFIX script. Claude calls it as ``PREFIX 'COMMAND'`` for hooks and
    the Bash tool alike; hooks (Claude marks them with ``AI_AGENT=…_harness``, and agentsess's
    own hook command is known) go straight to ``sh``, Bash tool commands through ``exec``
    (with ``--subagents`` once the run has a sub-agent, whose commands are bound to its run)."""
    from agentsess.edges import paths

    shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
    return (
        "#!/bin/sh\n"
        "# agentsess: records each Bash command of this Claude Code run, then runs it unchanged;\n"
        "# hook commands (Claude runs them through this prefix too) are not recorded as commands\n"
        f"if [ \"$#\" -eq 1 ] && [ \"$1\" = {shlex.quote(hook)} ]; then exec {shell} -c \"$1\"; fi\n"
        f"case \"${{AI_AGENT:-}}\" in *_harness) exec {shell} -c \"$*\";; esac\n"
        "# once the run has a sub-agent, each command asks whether it is a sub-agent's\n"
        f"if [ -e {shlex.quote(paths.subagents_marker(run_id))} ]; then\n"
        f"  AGENTSESS_RUN_ID={shlex.quote(run_id)} exec {agentsess} exec --source {SOURCE} --subagents -c \"$*\"\n"
        "fi\n"
        f"AGENTSESS_RUN_ID={shlex.quote(run_id)} exec {agentsess} exec --source {SOURCE} -c \"$*\"\n"
    )


def preflight(argv: list[str], env: dict, cwd: str) -> None:
    """Refuse flags and variables that make Claude skip hooks, and a ``--settings`` that cannot be read."""
    for name, why in REFUSED_ENV.items():
        if env.get(name) not in (None, "", "0"):
            raise AgentsessError(f"run: {why}, so agentsess could not check Claude's tool calls; unset it",
                                 RUN_FAILED)
    _user_settings(argv)


def setup(run_id: str, argv: list[str], env: dict, folder: str, agentsess: str, write_private,
          held: int = 0) -> tuple[list[str], dict, dict]:
    """(argv with the run's --settings, extra environment, facts for the receipt); ``held``: see
    :func:`settings`."""
    preflight(argv, env, os.getcwd())
    rest, user = _user_settings(argv)
    from agentsess.core.guard.agents import guarded

    hook = guarded(f"{agentsess} hook claude-code --run {run_id}")
    from agentsess.edges import paths

    path = paths.claude_settings(run_id)
    merged = settings(run_id, hook, user, held)
    # the user's settings `env` (which may hold keys) goes to Claude's environment, never onto a
    # command line or into the run folder's copy
    env_values = merged.pop("env", None)
    extra = {str(k): str(v) for k, v in env_values.items()} if isinstance(env_values, dict) else {}
    record = dict(merged, env=sorted(extra)) if extra else merged
    write_private(path, json.dumps(record, indent=2).encode())
    paths.ensure_dir(paths.run_bin_dir(run_id))
    prefix = paths.shell_prefix(run_id)
    write_private(prefix, prefix_script(run_id, agentsess, hook).encode())
    os.chmod(prefix, 0o700)
    # given inline, not as the file's path: Claude re-reads a settings file that changes, and the
    # agent could rewrite the file mid-session; the file stays as the record of what was given
    new_argv = [rest[0], "--settings", json.dumps(merged, separators=(",", ":")), *rest[1:]]
    facts = {"settings": path, "shell_prefix": prefix, "merged_user_settings": len(user)}
    return new_argv, {**extra, "CLAUDE_CODE_SHELL_PREFIX": prefix}, facts


def pre_answer(decision) -> dict | None:
    """PreToolUse's answer: Claude's ``permissionDecision``; none at all when observing (Claude's
    own permission rules and prompt then decide)."""
    if decision.decision == "observe":
        return None
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": decision.decision,
                                   "permissionDecisionReason": f"agentsess: {decision.reason}"}}


def result_of(kind: str, event: dict):
    """(the tool's result, its error or None) of a PostToolUse or PostToolUseFailure event."""
    if kind == "failure":
        return None, event.get("error") if event.get("error") is not None else "failed"
    return event.get("tool_response"), None


# --- the wrapper around the model's command ---

def unwrap(text: str) -> str | None:
    """The model's command inside Claude's wrapper (``… && eval 'CMD' < /dev/null && pwd -P
    >| …``), or None when ``text`` is not such a wrapper. Only an ``eval`` of the wrapper's own
    top-level list counts: one inside the model's command is part of the model's command.
    Parsed in another process, as every command line is (see :mod:`agentsess.core.guard.isolation`)."""
    if "eval" not in text:
        return None
    from agentsess.core.guard import commands
    from agentsess.core.guard.isolation import isolated

    ok, inner = isolated(_unwrap_here, text, prepare=commands._get_parser)
    return inner if ok and isinstance(inner, str) else None


def _unwrap_here(text: str) -> str | None:
    from agentsess.core.guard import commands

    try:
        tree = commands._get_parser().parse(text.encode("utf-8", "surrogateescape"))
    except Exception:  # noqa: BLE001 - an unparseable wrapper is simply not unwrapped
        return None
    root = tree.root_node
    if root.has_error:
        return None
    found = []

    def visit(node):
        if node.type in ("program", "list", "redirected_statement"):
            for child in node.children:
                visit(child)
        elif node.type == "command":
            name = node.child_by_field_name("name")
            if name is not None and commands._text(name) == "eval":
                found.append(node)

    visit(root)
    if len(found) != 1:
        return None
    words = [c for c in found[0].children if c.type not in ("command_name", "comment")]
    values = []
    for w in words:
        value = commands._word(w)
        if not value.static:
            return None
        values.append(value.text)
    return " ".join(values)
