"""Codex CLI: hooks registered for one invocation, and Codex's side of the hook protocol.

`agentsess run -- codex …` puts, right after ``codex``, config overrides that exist only for
that invocation (Codex's ``-c key=value`` "session flags" layer; nothing in the user's
CODEX_HOME is written):

- ``hooks.PreToolUse``, ``hooks.PostToolUse``, ``hooks.PermissionRequest``,
  ``hooks.SessionStart``, ``hooks.SessionEnd``, ``hooks.SubagentStart`` and
  ``hooks.SubagentStop`` calling
  ``agentsess hook codex --run RUN``;
- ``features.hooks=true``, so a config file the agent edits cannot switch hooks off (the
  session flags outrank the user's and the project's config);
- ``--dangerously-bypass-hook-trust``.

The trade-off: Codex runs a non-managed hook only once its exact definition is trusted, and
it records trust only in the user's own config (a trust entry among the session flags is
ignored), so a hook that exists for one invocation can be run only with Codex's
invocation-wide trust bypass, which would run *every* enabled hook untrusted. So before the
run starts agentsess asks Codex itself (``codex app-server``, ``hooks/list``, the API Codex's
own hook browser uses) which hooks this invocation would load, and refuses the run when any
hook other than its own is enabled and not trusted: the bypass then adds trust to nothing
but agentsess's hooks. (A hook the agent adds mid-session would run untrusted too; it runs
as the agent, inside the same run, and can do nothing the agent's own commands cannot.)

Codex speaks Claude Code's hook protocol, with two differences handled here: it has no
``ask`` (it would run the call), so ``ask`` is answered ``deny`` with the reason; and the
receipts name the source ``codex``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from agentsess.core.guard.agents.claude import mcp_name
from agentsess.errors import RUN_FAILED, AgentsessError

SOURCE = "codex"
HOOK_EVENTS = ("PreToolUse", "PostToolUse", "PermissionRequest", "SessionStart", "SessionEnd", "SubagentStart",
               "SubagentStop")
EVENTS = {"PreToolUse": "pre", "PostToolUse": "post", "PermissionRequest": "permission",
          "SessionStart": "session_start", "SessionEnd": "session_end", "SubagentStart": "subagent_start",
          "SubagentStop": "subagent_stop"}
LIST_TIMEOUT = 20


def tool_name(name: str, event: dict | None = None) -> str:
    return mcp_name(name)


def pre_answer(decision) -> dict | None:
    if decision.decision == "observe":
        return None
    if decision.decision == "ask":
        reason = f"agentsess: {decision.reason} (the rule asks for a person's approval, which Codex cannot ask for: denied)"
        verdict = "deny"
    else:
        reason = f"agentsess: {decision.reason}"
        verdict = decision.decision
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": verdict,
                                   "permissionDecisionReason": reason}}


def result_of(kind: str, event: dict):
    response = event.get("tool_response")
    error = None
    if isinstance(response, dict) and response.get("error"):
        error = response.get("error")
    return response, error


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def overrides(hook: str) -> list[str]:
    """The ``-c`` arguments that register agentsess's hooks for one invocation."""
    handler = f"{{type=\"command\",command={_toml_string(hook)},timeout=60}}"
    out = []
    for event in HOOK_EVENTS:
        out += ["-c", f"hooks.{event}=[{{hooks=[{handler}]}}]"]
    out += ["-c", "features.hooks=true"]
    return out


def _list_hooks(executable: str, args: list[str], env: dict, cwd: str) -> list[dict]:
    """The hooks Codex would load for an invocation with ``args``, from ``codex app-server``."""
    try:
        proc = subprocess.Popen([executable, "app-server", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    except OSError as exc:
        raise AgentsessError(f"run: cannot ask Codex which hooks it would run ({exc.strerror})", RUN_FAILED) from None
    import select

    try:
        assert proc.stdin is not None and proc.stdout is not None
        for message in ({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                         "params": {"clientInfo": {"name": "agentsess", "version": "1"}}},
                        {"jsonrpc": "2.0", "method": "initialized"},
                        {"jsonrpc": "2.0", "id": 2, "method": "hooks/list", "params": {"cwds": [cwd]}}):
            proc.stdin.write((json.dumps(message) + "\n").encode())
        proc.stdin.flush()
        import time

        deadline = time.monotonic() + LIST_TIMEOUT
        buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                raise AgentsessError("run: Codex did not say which hooks it would run (codex app-server, "
                                     "hooks/list timed out)", RUN_FAILED)
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise AgentsessError("run: Codex did not say which hooks it would run (codex app-server exited)",
                                     RUN_FAILED)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("id") == 2:
                    if "error" in msg:
                        raise AgentsessError(f"run: Codex could not list its hooks: {msg['error'].get('message')}",
                                             RUN_FAILED)
                    hooks: list[dict] = []
                    for entry in (msg.get("result") or {}).get("data") or []:
                        hooks += entry.get("hooks") or []
                    return hooks
    finally:
        try:
            if proc.stdin:
                proc.stdin.close()
        except OSError:
            pass
        proc.kill()
        proc.wait()


def untrusted_others(hooks: list[dict]) -> list[str]:
    """The hooks, other than the session flags' own, that would run only because of the trust bypass."""
    out = []
    for h in hooks:
        if h.get("source") == "sessionFlags" or h.get("isManaged"):
            continue
        if h.get("enabled", True) and h.get("trustStatus") != "trusted":
            out.append(f"{h.get('command')!r} ({h.get('sourcePath')}, {h.get('eventName')})")
    return out


def _overrides_hooks(argv: list[str]) -> str | None:
    """A config override on the user's command line that would replace or switch off agentsess's hooks."""
    for i, arg in enumerate(argv[1:], 1):
        if arg == "--":
            break
        value = None
        if arg in ("-c", "--config") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-c") and len(arg) > 2:
            value = arg[2:]
        elif arg in ("--disable", "--enable") and i + 1 < len(argv) and argv[i + 1] in ("hooks", "codex_hooks"):
            return f"{arg} {argv[i + 1]}"
        if value is not None:
            key = value.split("=", 1)[0].strip().strip('"')
            if key == "hooks" or key.startswith(("hooks.", "features.hooks", "features.codex_hooks")) or (
                    key == "features" and "hooks" in value):
                return f"-c {value}"
    return None


def preflight(argv: list[str], env: dict, cwd: str) -> None:
    """Refuse the run when the user's own overrides would replace agentsess's hooks, or the trust
    bypass would run a hook of the user's that Codex does not trust."""
    clash = _overrides_hooks(argv)
    if clash:
        raise AgentsessError(f"run: `{clash}` on Codex's command line would replace or switch off agentsess's hooks; "
                             "put your hooks in a hooks.json Codex trusts, or run with --agent none", RUN_FAILED)
    executable = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
    others = untrusted_others(_list_hooks(executable, ["-c", "features.hooks=true"], env, cwd))
    if others:
        raise AgentsessError(
            "run: Codex would run these hooks untrusted, because agentsess registers its own with "
            f"--dangerously-bypass-hook-trust: {'; '.join(others[:5])}; trust or disable them in Codex "
            "(/hooks), or run with --agent none", RUN_FAILED)


def setup(run_id: str, argv: list[str], env: dict, folder: str, agentsess: str, write_private) -> tuple[list[str], dict, dict]:
    from agentsess.core.guard.agents import guarded

    hook = guarded(f"{agentsess} hook codex --run {run_id}")
    args = overrides(hook)
    new_argv = [argv[0], *args, "--dangerously-bypass-hook-trust", *argv[1:]]
    return new_argv, {}, {"hook": hook, "overrides": len(args) // 2, "hook_trust": "bypassed for agentsess's hooks only"}
