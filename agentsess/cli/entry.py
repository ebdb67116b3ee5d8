"""The `agentsess` entry point and its one error boundary.

Commands paid on every agent action (`run`, `check`, `hook`, `exec`, `token verify`) are
dispatched here without importing typer or rich; every other command goes through the typer
app in :mod:`agentsess.cli.app`.
"""

import os
import sys

from agentsess.errors import RUN_FAILED, AgentsessError

FAST = {
    "run": ("agentsess.cli.run", "main"),
    "token": ("agentsess.cli.token", "main"),
    "check": ("agentsess.cli.guard", "check_main"),
    "hook": ("agentsess.cli.guard", "hook_main"),
    "exec": ("agentsess.cli.guard", "exec_main"),
    "whoami": ("agentsess.cli.whoami", "main"),
}


# commands that change agentsess's own state: refused inside a run, whatever the run can reach
REFUSED_INSIDE = {("config", "set"), ("config", "init"), ("key", "rotate"), ("secret", "set"), ("secret", "rm"),
                  ("prune",)}


def refused_inside(argv: list[str]) -> str | None:
    words = [a for a in argv[:2] if not a.startswith("-")]
    for size in (1, 2):
        if tuple(words[:size]) in REFUSED_INSIDE:
            return " ".join(words[:size])
    return None


def debugging(argv: list[str]) -> bool:
    return os.environ.get("AGENTSESS_DEBUG") == "1" or "--debug" in argv[:1]


def error(message: str) -> None:
    text = " ".join(str(message).splitlines()) or "failed"
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
            sys.stdout = None
        except Exception:
            pass
        return 1
    except Exception as exc:
        if debug:
            raise
        error(f"unexpected {type(exc).__name__}: {exc} (set AGENTSESS_DEBUG=1 for a traceback)")
        return unexpected_code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debugging(argv)
    if argv[:1] == ["--debug"]:
        argv = argv[1:]
        os.environ["AGENTSESS_DEBUG"] = "1"
    if argv and argv[0] in FAST:
        module, name = FAST[argv[0]]
        fn = getattr(__import__(module, fromlist=[name]), name)
        unexpected = {"run": RUN_FAILED, "hook": 2}.get(argv[0], 1)
        return guarded(fn, argv[1:], debug, unexpected)
    from agentsess.cli.app import run_app

    command = refused_inside(argv)
    if command is not None and "--help" not in argv:
        from agentsess.cli.inside import refuse_inside

        def checked(args: list[str]) -> int:
            refuse_inside(f"agentsess {command}")
            return run_app(args)

        return guarded(checked, argv, debug, 1)
    return guarded(run_app, argv, debug, 1)
