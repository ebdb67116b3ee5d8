"""The guard's commands, paid on every tool call: `check`, `hook AGENT`, `exec`.

The spellings agentsess itself writes (``check SCOPE``, ``hook AGENT --run RUN``, ``exec
[--source NAME] [--subagents] -c COMMAND``, ``exec [--source NAME] -- CMD…``) take the fast
path: no argument parser, one fast frame to the run's supervisor, which decides, records and
renders the answer (see :mod:`agentsess.edges.control`). Any other spelling (help, errors) is
parsed by :class:`agentsess.cli.parsing.Parser` (argparse; no typer or rich).
"""

import os
import sys
import time

from agentsess.errors import CHECK_FAILED, USAGE, AgentsessError

TYPE_CHECKING = False  # not typing's (5 ms of every hook)
if TYPE_CHECKING:
    from agentsess.cli.parsing import Parser

CHECK = """Checks that the run is live (not revoked, not expired) and holds SCOPE, writes an
action.checked receipt, and exits 0 (allowed) or 1 with the reason on stderr. With -- CMD,
runs CMD only when allowed and exits with its code."""

HOOK = """An agent's hook: reads the hook's JSON on stdin, applies the run's rules, writes receipts,
and answers in that agent's format. Claude Code and Codex: PreToolUse, PostToolUse,
PostToolUseFailure (Claude), PermissionRequest, SessionStart, SessionEnd. Gemini CLI:
BeforeTool, AfterTool, SessionStart, SessionEnd. Fails closed: on any error it exits 2 with
the reason on stderr, which blocks the tool call in all three. agentsess run writes the
settings that call it; you do not normally run it yourself."""

EXEC = """Runs CMD (or, with -c, COMMAND in bash) unchanged and records it as an action.exec
receipt of the current run: command, cwd, exit code, duration. Everything after -- (or from
CMD on) is the command's own. Used as Claude Code's CLAUDE_CODE_SHELL_PREFIX. Exits with
the command's exit code."""


def check_parser() -> "Parser":
    from agentsess.cli.parsing import Parser

    p = Parser("check", CHECK, usage="agentsess check SCOPE [--tool NAME] [--json] [-- CMD [ARGS...]]")
    p.add_argument("scope", metavar="SCOPE", help="the scope to check, e.g. github:pr:create")
    p.add_argument("--tool", metavar="NAME", help="the tool asking, recorded in the receipt (default: check)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the decision as JSON on stdout")
    return p


def hook_parser() -> "Parser":
    from agentsess.cli.parsing import Parser

    p = Parser("hook", HOOK, usage="agentsess hook claude-code|codex|gemini [--run RUN]")
    p.add_argument("agent", metavar="AGENT", help="the agent whose hook this is: claude-code, codex or gemini")
    p.add_argument("--run", metavar="RUN", help="the run's id (default: $AGENTSESS_RUN_ID)")
    return p


def exec_parser() -> "Parser":
    from agentsess.cli.parsing import Parser

    p = Parser("exec", EXEC, usage="agentsess exec [--source NAME] [-c COMMAND | -- CMD [ARGS...]]", with_command=True)
    p.add_argument("-c", dest="shell_command", metavar="COMMAND", help="run COMMAND with bash -c (sh where there is no bash)")
    p.add_argument("--source", default="exec", metavar="NAME", help="who ran it, recorded in the receipt (default: exec)")
    p.add_argument("--subagents", action="store_true",
                   help="the run has sub-agents: ask whether this is one's command (set by Claude Code's shell prefix)")
    return p


def _shown(words: list[str]) -> list[str]:
    """The words as recorded: a byte that is not UTF-8 becomes ``\\xff`` (it would otherwise
    make the receipt unwritable, and the command unrecorded)."""
    return [os.fsencode(w).decode("utf-8", "backslashreplace") for w in words]


def _help_if_bare(argv: list[str], parser: "Parser") -> bool:
    """Bare `check`, `hook` or `exec` prints the help, but exits 2: it did nothing it was asked."""
    if argv:
        return False
    sys.stdout.write(parser.format_help())
    return True


def _signals():
    """The signal functions without the ``signal`` module's enums (1-2 ms of every exec)."""
    import _signal  # type: ignore[import-not-found]  # typeshed has no stubs for it

    return _signal


def _become(argv: list[str], shell: str | None) -> None:
    """In a forked child: become the command (``shell -c argv[0]`` with a shell); never returns."""
    _signal = _signals()
    try:
        _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
        if shell is not None:
            os.execv(shell, [shell, "-c", argv[0]])
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"agentsess: {argv[0]}: {exc.strerror}\n".encode())
        os._exit(127 if exc.errno == 2 else 126)
    os._exit(127)


def _run(argv: list[str], shell: str | None = None) -> tuple[int, float]:
    """Run a command with our stdio, like system(3); returns (exit code as a shell reports it, seconds)."""
    _signal = _signals()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _become(argv, shell)
    old = [_signal.signal(s, _signal.SIG_IGN) for s in (_signal.SIGINT, _signal.SIGQUIT)]
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    finally:
        _signal.signal(_signal.SIGINT, old[0])
        _signal.signal(_signal.SIGQUIT, old[1])
    code = os.waitstatus_to_exitcode(status)
    return (128 - code if code < 0 else code), time.monotonic() - started


def _frame(words: list[str], body: bytes, blocked: int) -> tuple[int, bytes, bytes]:
    """One fast frame to the run's supervisor: (exit code, stdout, stderr) as it rendered them;
    ``blocked`` is the exit code of the AgentsessError raised when it cannot be reached."""
    from agentsess.cli.inside import NOT_INSIDE
    from agentsess.edges.control import find_socket, request_fast

    path = find_socket()
    if path is None:
        raise AgentsessError(NOT_INSIDE, blocked)
    try:
        return request_fast(path, words, body)
    except OSError as exc:
        raise AgentsessError(f"cannot reach the run's supervisor at {path}: {exc.strerror or exc}", blocked) from None


def _fast(words: list[str], body: bytes, blocked: int) -> int:
    """One frame to the run's supervisor, which decides, records and renders the answer;
    ``blocked`` is the exit code when the supervisor cannot be reached."""
    code, out, err = _frame(words, body, blocked)
    if out:
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
    if err:
        sys.stderr.buffer.write(err)
    return code


def _plain_word(word: str) -> bool:
    """A scope or run id as agentsess writes them: safe in a fast frame as it is."""
    return 0 < len(word) <= 256 and word.isascii() and word.isprintable() and " " not in word and not word.startswith("-")


def check_main(argv: list[str]) -> int:
    if len(argv) == 1 and _plain_word(argv[0]):  # `check SCOPE`, the common call: no parser
        return _fast(["check", argv[0]], b"", USAGE)
    parser = check_parser()
    if _help_if_bare(argv, parser):
        return USAGE
    args, command = parser.parse(argv)
    if command is not None and not command:
        parser.fail("no command after --")
    from agentsess.cli.inside import ask

    shown = None if command is None else _shown(command)
    answer = ask("check", scope=args.scope, tool=args.tool, command=shown)
    if args.as_json:
        import json

        sys.stdout.write(json.dumps({"run": answer["run"], "decision": answer["decision"], "reason": answer["reason"], "scope": answer["scope"]}) + "\n")
    if not answer["allowed"]:
        sys.stderr.write(f"agentsess: denied: {answer['reason']}\n")
        return CHECK_FAILED
    if command:
        sys.stdout.flush()
        return _run(command)[0]
    return 0


AGENTS = ("claude-code", "codex", "gemini")


def _plain_hook_call(argv: list[str]) -> tuple[str, str] | None:
    """(agent, run) when ``argv`` is exactly what agentsess writes into an agent's settings,
    ``AGENT --run RUN``: that call takes the fast path, without the argument parser; any other
    spelling goes through :func:`hook_parser` (help, errors)."""
    if len(argv) == 3 and argv[0] in AGENTS and argv[1] == "--run" and _plain_word(argv[2]):
        return argv[0], argv[2]
    return None


def hook_main(argv: list[str]) -> int:
    """Fails closed: every failure exits 2 (Claude Code blocks the call and shows stderr)."""
    try:
        plain = _plain_hook_call(argv)
        if plain is not None:
            return _fast(["hook", *plain], sys.stdin.buffer.read(), 2)
        parser = hook_parser()
        if _help_if_bare(argv, parser):
            return 2
        args, rest = parser.parse(argv)
        if rest is not None:
            parser.fail("takes no command after --")
        if args.agent not in AGENTS:
            raise AgentsessError(f"hook: unknown agent '{args.agent}': expected claude-code, codex or gemini", 2)
        run_id = args.run or os.environ.get("AGENTSESS_RUN_ID")
        if not run_id:
            raise AgentsessError("hook: no --run RUN and no AGENTSESS_RUN_ID", 2)
        import json

        raw = sys.stdin.buffer.read()
        try:
            event = json.loads(raw)
        except ValueError:
            raise AgentsessError("hook: the input on stdin is not JSON", 2) from None
        from agentsess.cli.inside import ask

        answer = ask("hook", agent=args.agent, run=run_id, event=event)["answer"]
        if answer is not None:
            sys.stdout.write(json.dumps(answer) + "\n")
        return 0
    except AgentsessError as exc:
        sys.stderr.write(f"agentsess: denied: {exc.message}\n")
        return 2
    except Exception as exc:  # fail closed: exit 1 would let the call through
        sys.stderr.write(f"agentsess: denied: internal error in the hook: {type(exc).__name__}: {exc}\n")
        return 2


def _bind_to_subagent(command: str, source: str) -> bool:
    """Ask the supervisor whether this command is a sub-agent's (its allowed tool call); if so
    it runs as the sub-agent's run (its id and scopes, not the orchestrator's token) below a
    keeper (:func:`_run_kept`) that the supervisor binds to the sub-agent's run. True if so.
    The answer (:meth:`Authority.fast`) is the sub-agent's run (``=RUN``), the variables to
    unset (``-NAME``), then to set (``+NAME=VALUE``), separated by NULs; nothing when the
    command is not a sub-agent's."""
    try:
        code, out, _ = _frame(["exec_start"], os.fsencode(source) + b"\0" + os.fsencode(command), USAGE)
    except AgentsessError:
        return False
    if code != 0 or not out:
        return False
    for item in out.split(b"\0"):
        text = os.fsdecode(item)
        if text[:1] == "-":
            os.environ.pop(text[1:], None)
        elif text[:1] == "+":
            name, _, value = text[1:].partition("=")
            os.environ[name] = value
    return True


def _run_kept(command: str, shell: str) -> tuple[int, float, int | None]:
    """Run a sub-agent's shell command below a keeper: a process of its own that is the
    subreaper of everything the command starts and lives until the last of it is gone, so
    that whatever the command leaves running (backgrounded, double-forked, forked later by a
    leftover) stays below it, and the supervisor binds the keeper to the sub-agent's run.
    The command stays in the agent's process group (the agent's kill reaches it); the keeper
    leaves it, and lets go of the command's stdio. Returns (exit code, seconds, keeper pid)."""
    from agentsess.edges.supervisor import become_subreaper

    _signal = _signals()
    started = time.monotonic()
    report_r, report_w = os.pipe()
    keeper = os.fork()
    if keeper == 0:
        os.close(report_r)
        try:
            become_subreaper()
            pid = os.fork()
            if pid == 0:
                os.close(report_w)
                _become([command], shell)
            os.setsid()  # out of the agent's process group: a kill of the command's group spares the keeper
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            while True:  # the command first, then whatever it left, until none is left
                try:
                    done, status = os.waitpid(-1, 0)
                except InterruptedError:
                    continue
                except ChildProcessError:
                    break
                if done == pid:
                    code = os.waitstatus_to_exitcode(status)
                    os.write(report_w, str(128 - code if code < 0 else code).encode())
                    os.close(report_w)
        finally:
            os._exit(0)
    os.close(report_w)
    old = [_signal.signal(s, _signal.SIG_IGN) for s in (_signal.SIGINT, _signal.SIGQUIT)]
    try:
        parts = []
        while True:
            try:
                part = os.read(report_r, 64)
            except InterruptedError:
                continue
            if not part:
                break
            parts.append(part)
    finally:
        os.close(report_r)
        _signal.signal(_signal.SIGINT, old[0])
        _signal.signal(_signal.SIGQUIT, old[1])
    text = b"".join(parts)
    # no report: the keeper was killed before the command ended (as a shell reports SIGKILL)
    code = int(text) if text.isdigit() else 128 + _signal.SIGKILL
    return code, time.monotonic() - started, keeper


def _plain_exec_call(argv: list[str]) -> tuple[str | None, list[str] | None, str, bool] | None:
    """(shell command, command, source, subagents) when ``argv`` is one of the spellings that
    take the fast path: ``[--source NAME] [--subagents]`` (each at most once, NAME a plain word)
    then ``-c COMMAND`` as the last two words (COMMAND not starting with ``-``, which the parser
    reads as an option) or ``-- CMD [ARGS…]``. Any other spelling goes through :func:`exec_parser`."""
    source, subagents, i = None, False, 0
    while i < len(argv):
        word = argv[i]
        if word == "--source" and source is None and i + 1 < len(argv) and _plain_word(argv[i + 1]):
            source, i = argv[i + 1], i + 2
        elif word == "--subagents" and not subagents:
            subagents, i = True, i + 1
        elif word == "-c" and i + 2 == len(argv) and not argv[i + 1].startswith("-"):
            return argv[i + 1], None, source or "exec", subagents
        elif word == "--" and i + 1 < len(argv):
            return None, argv[i + 1 :], source or "exec", subagents
        else:
            return None
    return None


def exec_main(argv: list[str]) -> int:
    plain = _plain_exec_call(argv)
    if plain is None:
        parser = exec_parser()
        if _help_if_bare(argv, parser):
            return USAGE
        args, command = parser.parse(argv)
        if args.shell_command is not None and command is not None:
            parser.fail("-c takes exactly one COMMAND string, and no CMD besides")
        if args.shell_command is None and not command:
            parser.fail("no command given: put it after --, e.g. `agentsess exec -- make test`")
        plain = args.shell_command, command, args.source, args.subagents
    return _exec(*plain)


def _exec(shell_command: str | None, command: list[str] | None, source: str, subagents: bool) -> int:
    """Run the command, then have the supervisor record it (one fast frame: ``exec CODE SECONDS
    KEEPER`` and the cwd, source and command, NUL-separated); exits with the command's code."""
    try:
        cwd = os.getcwd()  # where the command runs (it may remove the folder)
    except OSError:
        cwd = ""
    keeper = None
    if shell_command is not None:
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
        if subagents and _bind_to_subagent(shell_command, source):
            code, took, keeper = _run_kept(shell_command, shell)
        else:
            code, took = _run([shell_command], shell=shell)
        text = _shown([shell_command])[0]
    else:
        assert command
        code, took = _run(command)
        text = " ".join(_shown(command))
    body = b"\0".join((os.fsencode(cwd), _shown([source])[0].encode(), text.encode()))
    try:
        _, _, err = _frame(["exec", str(code), repr(took), "-" if keeper is None else str(keeper)], body, USAGE)
    except AgentsessError as exc:
        err = f"agentsess: could not record the command: {exc.message}\n".encode()
    if err:
        sys.stderr.buffer.write(err)
    return code
