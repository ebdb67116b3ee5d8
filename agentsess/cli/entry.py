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
}


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
    if argv[:1] in (["--version"], ["-V"]):
        from agentsess import __version__

        sys.stdout.write(f"agentsess {__version__}\n")
        return 0
    if argv and argv[0] in FAST:
        module, name = FAST[argv[0]]
        fn = getattr(__import__(module, fromlist=[name]), name)
        unexpected = {"run": RUN_FAILED, "hook": 2}.get(argv[0], 1)
        return guarded(fn, argv[1:], debug, unexpected)
    from agentsess.cli.app import run_app

    return guarded(run_app, argv, debug, 1)
