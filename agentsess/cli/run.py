"""`agentsess run [OPTIONS] -- CMD [ARGS...]`: parsed with argparse (typer costs 50 ms here)."""

import argparse

from agentsess.errors import RUN_FAILED, AgentsessError

DESCRIPTION = """Run CMD as a supervised agent run: its own run id and short-lived scoped token,
the human's credentials scrubbed from its environment, its output teed (masked) into the
run's log, and receipts for everything. Exits with CMD's exit code (128+N when killed by
signal N; 124 when agentsess stopped it after revocation or expiry; 125 when agentsess
failed or refused; 126 not executable; 127 not found)."""

EPILOG = """examples:
  agentsess run -- claude
  agentsess run --profile claude --scope github:pr:create --ttl 30m -- claude -p "fix the tests"
  agentsess run --no-pty --name ci-agent -- ./agent.sh > out.txt"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise AgentsessError(f"run: {message} (see `agentsess run --help`)", RUN_FAILED)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="agentsess run",
        usage="agentsess run [OPTIONS] -- CMD [ARGS...]",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--name", help="agent name for this run (default: the command's basename)")
    p.add_argument("--profile", "-p", help="profile from the config (default: the built-in 'default')")
    p.add_argument("--scope", "-s", action="append", default=[], metavar="SCOPE",
                   help="scope to grant (repeatable); must be within the profile's ceiling")
    p.add_argument("--ttl", help="credential lifetime, e.g. 90s, 15m, 4h (default: the profile's ttl)")
    tty = p.add_mutually_exclusive_group()
    tty.add_argument("--pty", dest="use_pty", action="store_true", default=None,
                     help="give the child a pty (default: when stdin and stdout are terminals)")
    tty.add_argument("--no-pty", dest="use_pty", action="store_false", help="use pipes")
    p.add_argument("--pass-env", action="append", default=[], metavar="NAME",
                   help="let this scrubbed variable through (repeatable)")
    p.add_argument("--keep-env", action="store_true", help="do not scrub the human's credential variables")
    p.add_argument("--isolate-home", action="store_true", default=None,
                   help="give the agent its own HOME and XDG folders (kept per agent)")
    p.add_argument("--no-mask-terminal", dest="mask_terminal", action="store_false", default=None,
                   help="show secrets unmasked on the terminal (the log is always masked)")
    p.add_argument("--capture-shell", action="store_true", default=None,
                   help="record each command non-interactive bash runs (best effort)")
    p.add_argument("--agent", dest="integration", choices=["auto", "none", "claude-code", "codex", "gemini"],
                   help="agent integration (default: detected from the command name)")
    return p


TAKES_VALUE = {"--name", "--profile", "-p", "--scope", "-s", "--ttl", "--pass-env", "--agent"}


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """(our options, the command): at ``--``, or else at the first word that is not ours (like `env`)."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-"):
            break
        i += 2 if word in TAKES_VALUE else 1
    return argv[:i], argv[i:]


def main(argv: list[str]) -> int:
    options, command = split_command(argv)
    args, rest = parser().parse_known_args(options)
    if rest:
        raise AgentsessError(f"run: unknown option {rest[0]} (see `agentsess run --help`)", RUN_FAILED)
    if not command:
        raise AgentsessError("run: no command given: put it after --, e.g. `agentsess run -- claude`", RUN_FAILED)
    from agentsess.core.runs.start import Request, start_run

    request = Request(
        command,
        name=args.name,
        use_pty=args.use_pty,
        profile=args.profile,
        scopes=args.scope,
        ttl=args.ttl,
        pass_env=args.pass_env,
        keep_env=args.keep_env,
        isolate_home=args.isolate_home,
        mask_terminal=args.mask_terminal,
        capture_shell=args.capture_shell,
        integration=args.integration,
    )
    try:
        return start_run(request)
    except AgentsessError as exc:
        if exc.exit_code not in (126, 127):
            exc.exit_code = RUN_FAILED  # `run` keeps 1..124 for the child's own codes
        raise
