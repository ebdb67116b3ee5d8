"""`agentsess run [OPTIONS] -- CMD [ARGS...]`: parsed with argparse (typer costs 50 ms here)."""

from agentsess.cli.parsing import Parser
from agentsess.errors import RUN_FAILED, AgentsessError

DESCRIPTION = """CMD gets its own run id and short-lived scoped token, the human's credentials scrubbed
from its environment, its output teed (masked) into the run's log, and receipts for
everything. CMD starts after -- or at the first word that is not an option of run's.
Exits with CMD's exit code (128+N when killed by signal N; 124 when agentsess stopped it
after revocation or expiry; 125 when agentsess failed or refused; 126 not executable; 127
not found)."""

EPILOG = """examples:
  agentsess run -- claude
  agentsess run --profile claude --scope github:pr:create --ttl 30m -- claude -p "fix the tests"
  agentsess run --no-pty --name ci-agent -- ./agent.sh > out.txt"""


def parser() -> Parser:
    p = Parser(
        "run",
        DESCRIPTION,
        usage="agentsess run [OPTIONS] -- CMD [ARGS...]",
        epilog=EPILOG,
        usage_exit=RUN_FAILED,
        with_command=True,
        allow_abbrev=True,
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
    contain = p.add_mutually_exclusive_group()
    contain.add_argument("--contain", dest="contain", action="store_true", default=None,
                         help="contain the run (bubblewrap namespaces; the default where available): fail if it cannot be")
    contain.add_argument("--no-contain", dest="contain", action="store_false",
                         help="an advisory run: no namespaces (the agent can reach what you can)")
    p.add_argument("--agent", dest="integration", choices=["auto", "none", "claude-code", "codex", "gemini"],
                   help="agent integration (default: detected from the command name)")
    return p


def main(argv: list[str]) -> int:
    import gc

    # no collections while the run starts (~25 of them, 4-10 ms, over objects that all live on):
    # the supervisor turns the collector back on once the child runs (core.runs.supervise)
    gc.disable()
    args, command = parser().parse(argv)
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
        contain=args.contain,
    )
    try:
        return start_run(request)
    except AgentsessError as exc:
        if exc.exit_code not in (126, 127):
            exc.exit_code = RUN_FAILED  # `run` keeps 1..124 for the child's own codes
        raise
