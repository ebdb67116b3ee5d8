"""The guard's commands, paid on every tool call: `check`, `hook claude-code`, `exec`.

Parsed by hand (no argparse, typer or rich) so each stays near the interpreter's own start-up.
"""

import json
import os
import sys
import time

from agentsess.errors import CHECK_FAILED, USAGE, AgentsessError

CHECK_HELP = """usage: agentsess check SCOPE [--tool NAME] [--json] [-- CMD [ARGS...]]

Inside a run: may this run act with SCOPE now? Checks that the run is live (not revoked,
not expired) and holds SCOPE, writes an action.checked receipt, and exits 0 (allowed) or 1
with the reason on stderr. With -- CMD, runs CMD only when allowed and exits with its code.
"""

HOOK_HELP = """usage: agentsess hook claude-code|codex|gemini --run RUN

An agent's hook: reads the hook's JSON on stdin, applies the run's rules, writes receipts,
and answers in that agent's format. Claude Code and Codex: PreToolUse, PostToolUse,
PostToolUseFailure (Claude), PermissionRequest, SessionStart, SessionEnd. Gemini CLI:
BeforeTool, AfterTool, SessionStart, SessionEnd. Fails closed: on any error it exits 2 with
the reason on stderr, which blocks the tool call in all three. agentsess run writes the
settings that call it; you do not normally run it yourself.
"""

EXEC_HELP = """usage: agentsess exec [-c COMMAND | -- CMD [ARGS...]]

Runs a command unchanged and records it as an action.exec receipt of the current run
(command, cwd, exit code, duration). Used as Claude Code's CLAUDE_CODE_SHELL_PREFIX.
"""


def _take(argv: list[str], flag: str) -> str | None:
    if flag in argv:
        i = argv.index(flag)
        if i + 1 >= len(argv):
            raise AgentsessError(f"{flag} needs a value", USAGE)
        value = argv[i + 1]
        del argv[i : i + 2]
        return value
    return None


def _split(argv: list[str]) -> tuple[list[str], list[str] | None]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, None


def _run(argv: list[str], shell: str | None = None) -> tuple[int, float]:
    """Run a command with our stdio, like system(3); returns (exit code as a shell reports it, seconds)."""
    import signal

    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            if shell is not None:
                os.execv(shell, [shell, "-c", argv[0]])
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"agentsess: {argv[0]}: {exc.strerror}\n".encode())
            os._exit(127 if exc.errno == 2 else 126)
    old = [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)]
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGQUIT, old[1])
    code = os.waitstatus_to_exitcode(status)
    return (128 - code if code < 0 else code), time.monotonic() - started


def check_main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(CHECK_HELP)
        return 0 if argv else USAGE
    options, command = _split(list(argv))
    tool = _take(options, "--tool")
    as_json = "--json" in options
    if as_json:
        options.remove("--json")
    if len(options) != 1 or options[0].startswith("-"):
        raise AgentsessError("check: expected exactly one SCOPE (see `agentsess check --help`)", USAGE)
    if command is not None and not command:
        raise AgentsessError("check: no command after --", USAGE)
    from agentsess.core.guard.calls import check
    from agentsess.edges.store import Store

    with Store() as store:
        row, decision = check(store, os.environ, options[0], tool, command)
    if as_json:
        sys.stdout.write(json.dumps({"run": row["id"], "decision": decision.decision, "reason": decision.reason, "scope": decision.scope}) + "\n")
    if not decision.allowed:
        sys.stderr.write(f"agentsess: denied: {decision.reason}\n")
        return CHECK_FAILED
    if command:
        sys.stdout.flush()
        return _run(command)[0]
    return 0


def hook_main(argv: list[str]) -> int:
    """Fails closed: every failure exits 2 (Claude Code blocks the call and shows stderr)."""
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(HOOK_HELP)
        return 0 if argv else 2
    try:
        argv = list(argv)
        agent = argv.pop(0)
        if agent not in ("claude-code", "codex", "gemini"):
            raise AgentsessError(f"hook: unknown agent '{agent}': expected claude-code, codex or gemini", 2)
        run_id = _take(argv, "--run") or os.environ.get("AGENTSESS_RUN_ID")
        if not run_id:
            raise AgentsessError("hook: no --run RUN and no AGENTSESS_RUN_ID", 2)
        raw = sys.stdin.buffer.read()
        try:
            event = json.loads(raw)
        except ValueError:
            raise AgentsessError("hook: the input on stdin is not JSON", 2) from None
        from agentsess.core.guard.calls import agent_hook
        from agentsess.edges.store import Store

        with Store() as store:
            answer = agent_hook(store, run_id, agent, event)
        if answer is not None:
            sys.stdout.write(json.dumps(answer) + "\n")
        return 0
    except AgentsessError as exc:
        sys.stderr.write(f"agentsess: denied: {exc.message}\n")
        return 2
    except Exception as exc:  # fail closed: exit 1 would let the call through
        sys.stderr.write(f"agentsess: denied: internal error in the hook: {type(exc).__name__}: {exc}\n")
        return 2


def exec_main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(EXEC_HELP)
        return 0 if argv else USAGE
    argv = list(argv)
    source = _take(argv, "--source") or "exec"
    if argv[0] == "-c":
        if len(argv) != 2:
            raise AgentsessError("exec: -c takes exactly one COMMAND string", USAGE)
        text = argv[1]
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
        code, took = _run([text], shell=shell)
    else:
        _, command = _split(argv)
        command = command if command is not None else argv
        if not command:
            raise AgentsessError("exec: no command given", USAGE)
        text = " ".join(command)
        code, took = _run(command)
    try:
        from agentsess.core.guard.calls import record_exec
        from agentsess.edges.store import Store

        with Store() as store:
            record_exec(store, os.environ, text, os.getcwd(), code, took, source)
    except AgentsessError as exc:
        sys.stderr.write(f"agentsess: could not record the command: {exc.message}\n")
    return code
