"""The `agentsess` entry point and its one error boundary.

Reads the command table (:mod:`agentsess.cli.commands`): hot commands, paid on every agent
action, run without importing typer or rich; every other command goes through the typer app
in :mod:`agentsess.cli.app`. Plain `agentsess` and `agentsess --help` print the table.
"""

import os
import sys

from agentsess.cli.commands import BY_NAME, top_help
from agentsess.errors import RUN_FAILED, USAGE, AgentsessError

# what an unexpected error exits with, by command (the rest: 1)
UNEXPECTED = {"run": RUN_FAILED, "hook": 2}


# commands that change agentsess's own state (or answer the run's own approval requests):
# refused inside a run, whatever the run can reach
REFUSED_INSIDE = {("config", "set"), ("config", "init"), ("key", "rotate"), ("secret", "set"), ("secret", "rm"),
                  ("prune",), ("approvals",), ("approve",), ("deny",)}
# commands that would open the store, the receipt files or the keys to read them: a command
# inside a run opens none of them (it would find a hidden, empty data root, or, in an advisory
# run, one it was never told about), so these are refused there too; `whoami` answers instead
READ_INSIDE = {("runs",), ("show-run",), ("verify",), ("export",), ("jwks",), ("key", "list"), ("secret", "list"),
               ("doctor",)}


def refused_inside(argv: list[str]) -> str | None:
    words = [a for a in argv[:2] if not a.startswith("-")]
    for size in (1, 2):
        if tuple(words[:size]) in REFUSED_INSIDE or tuple(words[:size]) in READ_INSIDE:
            return " ".join(words[:size])
    return None


def debugging(argv: list[str]) -> bool:
    return os.environ.get("AGENTSESS_DEBUG") == "1" or "--debug" in argv[:1]


def error(message: str) -> None:
    from agentsess.cli.render import safe

    # a message may quote what the user typed or an agent chose (a run id, a file name): its
    # control characters are shown escaped, never sent to the terminal
    text = safe(" ".join(str(message).splitlines())) or "failed"
    try:
        sys.stderr.write(f"agentsess: error: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def guarded(fn, argv: list[str], debug: bool, unexpected_code: int) -> int:
    """Call ``fn(argv)``; expected failures become one line on stderr and their exit code."""
    try:
        return fn(argv) or 0
    except AgentsessError as exc:
        if debug:
            raise
        error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = None  # nothing more can be written
        except Exception:
            pass
        return 1
    except Exception as exc:
        if debug:
            raise
        error(f"unexpected {type(exc).__name__}: {exc} (set AGENTSESS_DEBUG=1 for a traceback)")
        return unexpected_code


def _top(argv: list[str]) -> int:
    """`agentsess` with no command, or with only a top-level option."""
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(top_help())
        return 0
    if argv[0] in ("-V", "--version"):
        from agentsess import __version__

        sys.stdout.write(f"agentsess {__version__}\n")
        return 0
    if argv[0] in ("--show-completion", "--install-completion", "--complete"):
        from agentsess.cli import completion

        action = {"--show-completion": completion.show, "--install-completion": completion.install,
                  "--complete": completion.complete}[argv[0]]
        return action(argv)
    what = "option" if argv[0].startswith("-") else "command"
    raise AgentsessError(f"unknown {what} '{argv[0]}' (see `agentsess --help`)", USAGE)


def argv0_is_entry(argv: list[str]) -> bool:
    """True when this process is the command itself (the console script or ``python -m``)."""
    return sys.argv[1:] == argv


def leave(code: int):
    """End the process now, without the interpreter's teardown.

    `run` pays ~10 ms (a tenth of its start-up) for freeing modules and objects the process
    is about to drop, and for a last collection. By the time `run` returns, everything it
    wrote is written and closed (store, receipts, output log; the control socket and the
    broker are shut): only the standard streams are flushed here.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code & 0xFF if isinstance(code, int) else 1)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debugging(argv)
    if argv[:1] == ["--debug"]:
        argv = argv[1:]
        os.environ["AGENTSESS_DEBUG"] = "1"
    command = BY_NAME.get(argv[0]) if argv else None
    if command is None:
        return guarded(_top, argv, debug, 1)
    if command.hot:
        code = guarded(_refusing_inside(argv, lambda args: command.load()(args[1:])), argv, debug,
                       UNEXPECTED.get(command.name, 1))
        if command.name == "run" and argv0_is_entry(argv):
            leave(code)
        return code
    from agentsess.cli.app import run_app

    return guarded(_refusing_inside(argv, run_app), argv, debug, 1)


def _refusing_inside(argv: list[str], call):
    """``call``, or, for a command refused inside a run, ``call`` behind that refusal."""
    refused = refused_inside(argv)
    if refused is None or "--help" in argv or "-h" in argv:
        return call
    from agentsess.cli.inside import refuse_inside

    def checked(args: list[str]) -> int:
        refuse_inside(f"agentsess {refused}", reading=tuple(refused.split()) in READ_INSIDE)
        return call(args)

    return checked
