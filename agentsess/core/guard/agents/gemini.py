"""Gemini CLI: hooks for one run, and Gemini's side of the hook protocol.

Where Gemini reads hooks: its settings files. The system settings and system defaults
(``GEMINI_CLI_SYSTEM_SETTINGS_PATH``, ``GEMINI_CLI_SYSTEM_DEFAULTS_PATH``) are skipped
unless the file and every folder above it belong to root, and the workspace settings are
the project's own files; so agentsess uses the one per-process switch Gemini has,
``GEMINI_CLI_HOME`` (the folder Gemini takes for the home that holds ``.gemini``), pointed at
``<run folder>/gemini-home``. Nothing is moved: its ``.gemini`` holds

- ``settings.json``: the user's own ``~/.gemini/settings.json``, with agentsess's hooks added
  beside the user's (BeforeTool and AfterTool for every tool, SessionStart, SessionEnd) and
  ``hooksConfig.enabled`` forced on, agentsess's hook taken off ``hooksConfig.disabled``;
- a symbolic link to every other entry of the user's ``~/.gemini`` (credentials, accounts,
  history, trusted folders, extensions, sessions …), and to the usual credential and state
  files even before they exist, so a login or a session during the run lands in the user's
  own ``~/.gemini``.

What the user loses: a change Gemini makes to ``settings.json`` during the run (a ``/settings``
edit) stays in the run's copy. A workspace ``.gemini/settings.json`` in a trusted folder still
outranks user settings and can switch hooks off (``hooksConfig.enabled = false``) for the
sessions that read it; agentsess refuses to start when the folder's settings already do.

The hook command carries the run id and agentsess's data root (``--run RUN``, and
``AGENTSESS_HOME`` when set): with ``GITHUB_SHA`` set Gemini strips ``AGENTSESS_*`` from the
environment of its hooks.

Gemini's protocol: BeforeTool/AfterTool events (no tool_use_id), an answer
``{"decision": "allow"|"deny", "reason": …}`` on stdout, exit 2 blocks with stderr as the
reason. ``ask`` becomes ``deny`` (a hook cannot ask); observing gives no answer. The shell tool
``run_shell_command`` is checked as ``Bash`` (so one rule covers every agent), an MCP tool as
``mcp:SERVER:TOOL``; receipts keep Gemini's own name as ``agent_tool``.
"""

from __future__ import annotations

import json
import os
import re
import shlex

from agentsess.errors import RUN_FAILED, AgentsessError

SOURCE = "gemini"
HOOK_NAME = "agentsess"
HOOK_EVENTS = ("BeforeTool", "AfterTool", "SessionStart", "SessionEnd")
EVENTS = {"BeforeTool": "pre", "AfterTool": "post", "SessionStart": "session_start", "SessionEnd": "session_end"}
SHELL_TOOLS = {"run_shell_command": "Bash"}
# folders of ~/.gemini linked (and created) even before they exist, so the run writes them
# where they belong; the files are paths.GEMINI_KNOWN_FILES
KNOWN_FOLDERS = ("tmp", "history", "extensions", "commands", "skills", "agents", "policies", "antigravity")


def tool_name(name: str, event: dict | None = None) -> str:
    if name in SHELL_TOOLS:
        return SHELL_TOOLS[name]
    context = (event or {}).get("mcp_context")
    if isinstance(context, dict) and isinstance(context.get("server_name"), str):
        server = context["server_name"]
        tool = context.get("tool_name")
        if not isinstance(tool, str) or not tool:
            prefix = f"mcp_{server}_"
            tool = name.removeprefix(prefix)
        return f"mcp:{server}:{tool}"
    return name


def pre_answer(decision) -> dict | None:
    if decision.decision == "observe":
        return None
    if decision.decision == "allow":
        return {"decision": "allow", "reason": f"agentsess: {decision.reason}"}
    reason = f"agentsess: {decision.reason}"
    if decision.decision == "ask":
        reason += " (the rule asks for a person's approval, which a Gemini hook cannot ask for: denied)"
    return {"decision": "deny", "reason": reason}


_EXIT = re.compile(r"^Exit Code: (-?\d+)$", re.MULTILINE)


def result_of(kind: str, event: dict):
    """(the result, its error or None). Gemini reports a shell command that failed only in the
    text for the model (``Exit Code: N``), not as an error: that counts as one."""
    response = event.get("tool_response")
    error = None
    if isinstance(response, dict):
        if response.get("error"):
            error = response.get("error")
        elif event.get("tool_name") in SHELL_TOOLS and isinstance(response.get("llmContent"), str):
            codes = _EXIT.findall(response["llmContent"])
            if codes and codes[-1] != "0":
                error = f"exit code {codes[-1]}"
    return response, error


def _strip_comments(text: str) -> str:
    """JSON with // and /* */ comments (Gemini reads its settings so) as plain JSON."""
    out = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        else:
            out.append(c)
        i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AgentsessError(f"run: cannot read {what} {path} ({exc.strerror})", RUN_FAILED) from None
    try:
        data = json.loads(_strip_comments(text)) if text.strip() else {}
    except ValueError as exc:
        raise AgentsessError(f"run: {what} {path} is not valid JSON ({exc}); agentsess merges it into the run's "
                             "Gemini settings and will not drop it", RUN_FAILED) from None
    if not isinstance(data, dict):
        raise AgentsessError(f"run: {what} {path} is not a JSON object", RUN_FAILED)
    return data


def settings(user: dict, hook: str) -> dict:
    merged = json.loads(json.dumps(user))
    hooks = merged.get("hooks") if isinstance(merged.get("hooks"), dict) else {}
    entry = {"type": "command", "command": hook, "name": HOOK_NAME, "timeout": 60000,
             "description": "agentsess: checks and records each tool call of this run"}
    for event in HOOK_EVENTS:
        ours = {"matcher": ".*", "hooks": [entry]} if event.endswith("Tool") else {"hooks": [entry]}
        current = hooks.get(event)
        hooks[event] = [ours, *(current if isinstance(current, list) else [])]
    merged["hooks"] = hooks
    config = merged.get("hooksConfig") if isinstance(merged.get("hooksConfig"), dict) else {}
    config["enabled"] = True
    if isinstance(config.get("disabled"), list):
        config["disabled"] = [d for d in config["disabled"] if d != HOOK_NAME]
    merged["hooksConfig"] = config
    return merged


def _workspace_disables_hooks(cwd: str) -> str | None:
    from agentsess.edges import paths

    path = paths.gemini_settings(os.path.join(cwd, ".gemini"))
    try:
        data = _read_json(path, "the workspace settings")
    except AgentsessError:
        return None
    config = data.get("hooksConfig")
    if isinstance(config, dict) and (config.get("enabled") is False or HOOK_NAME in (config.get("disabled") or [])):
        return path
    return None


def preflight(argv: list[str], env: dict, cwd: str) -> None:
    workspace = _workspace_disables_hooks(cwd)
    if workspace:
        raise AgentsessError(f"run: {workspace} switches Gemini's hooks off, so agentsess could not check its tool "
                             "calls; remove hooksConfig.enabled = false there, or run with --agent none", RUN_FAILED)
    human_home = env.get("GEMINI_CLI_HOME") or env.get("HOME") or os.path.expanduser("~")
    from agentsess.edges import paths

    _read_json(paths.gemini_settings(os.path.join(human_home, ".gemini")), "the Gemini settings")


def setup(run_id: str, argv: list[str], env: dict, folder: str, agentsess: str, write_private) -> tuple[list[str], dict, dict]:
    human_home = env.get("GEMINI_CLI_HOME") or env.get("HOME") or os.path.expanduser("~")
    user_dir = os.path.join(human_home, ".gemini")
    prefix = f"AGENTSESS_HOME={shlex.quote(env['AGENTSESS_HOME'])} " if env.get("AGENTSESS_HOME") else ""
    from agentsess.core.guard.agents import guarded

    hook = guarded(f"{prefix}{agentsess} hook gemini --run {run_id}")
    from agentsess.edges import paths

    home = paths.gemini_home(run_id)
    dot = os.path.join(home, ".gemini")
    os.makedirs(dot, mode=0o700, exist_ok=True)
    os.makedirs(user_dir, mode=0o700, exist_ok=True)
    user = _read_json(paths.gemini_settings(user_dir), "the Gemini settings")
    write_private(paths.gemini_settings(dot), json.dumps(settings(user, hook), indent=2).encode())
    names = set(os.listdir(user_dir)) | set(paths.GEMINI_KNOWN_FILES)
    for name in KNOWN_FOLDERS:
        target = os.path.join(user_dir, name)
        if not os.path.exists(target):
            os.makedirs(target, mode=0o700, exist_ok=True)
        names.add(name)
    linked = []
    for name in sorted(names - {paths.GEMINI_SETTINGS}):
        link = os.path.join(dot, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join(user_dir, name), link)
            linked.append(name)
    facts = {"gemini_cli_home": home, "settings": paths.gemini_settings(dot), "user_gemini_dir": user_dir,
             "linked": len(linked)}
    return list(argv), {"GEMINI_CLI_HOME": home}, facts
