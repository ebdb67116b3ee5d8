"""The one table of commands: where each lives, and the line `agentsess --help` shows for it.

Both the dispatcher (:mod:`agentsess.cli.entry`) and the typer app (:mod:`agentsess.cli.app`)
read it; a command's module is imported only when that command runs (pip's
``commands_dict``). ``hot`` commands, paid on every agent action, parse with
:mod:`agentsess.cli.parsing` (argparse) and never import typer or rich; the others are typer
commands (``group``: a typer app of subcommands). Importing this module costs nothing
beyond the interpreter's own start-up.
"""

import sys

ABOUT = (
    "Give every AI-agent run its own session identity: scoped short-lived credentials, "
    "supervision, revocation, and tamper-evident receipts."
)


class Command:
    """One row of the table: ``agentsess NAME`` runs ``MODULE.FUNCTION``."""

    __slots__ = ("name", "module", "function", "summary", "hot", "group", "passthrough")

    def __init__(
        self,
        name: str,
        module: str,
        function: str,
        summary: str,
        hot: bool = False,
        group: bool = False,
        passthrough: bool = False,
    ):
        self.name = name
        self.module = module
        self.function = function
        self.summary = summary
        self.hot = hot  # parsed by cli.parsing, without typer or rich
        self.group = group  # a typer app of subcommands
        self.passthrough = passthrough  # a typer command handed another command line as it is

    def load(self):
        """The command's function (or typer app, for a group), importing its module now."""
        __import__(self.module)
        return getattr(sys.modules[self.module], self.function)


_CLI = "agentsess.cli."

COMMANDS = (
    Command("run", _CLI + "run", "main", "Run a command as a supervised agent run, with its own scoped token.", hot=True),
    Command("runs", _CLI + "inspect", "runs_main", "List runs, newest first.", hot=True),
    Command("show-run", _CLI + "inspect", "show_run_main", "Show what the agent did in one run.", hot=True),
    Command("revoke", _CLI + "audit", "revoke", "Kill a run's credentials, stop its process tree, and cascade to its sub-agent runs."),
    Command("verify", _CLI + "audit", "verify", "Recompute receipt chains, seals and output digests; exit 1 if any run fails."),
    Command("export", _CLI + "exporting", "export", "Export a run's output as an asciicast v2 recording, or its receipts as JSON Lines."),
    Command("prune", _CLI + "exporting", "prune", "Delete finished runs (folders and store rows) that ended longer ago than --older-than."),
    Command("token", _CLI + "token", "main", "Verify an agentsess token: `agentsess token verify [TOKEN|-]`.", hot=True),
    Command("jwks", _CLI + "credentials", "jwks", "Print the public keys as a JWKS (RFC 7517), for verifying tokens offline."),
    Command("key", _CLI + "credentials", "key_app", "Signing keys for tokens and seals: rotate, list.", group=True),
    Command("secret", _CLI + "credentials", "secret_app", "The agent's own secrets, kept in the OS keyring: set, list, rm.", group=True),
    Command("config", _CLI + "settings", "config_app", "The config file (profiles, scopes, rules): path, show, init, set.", group=True),
    Command("check", _CLI + "guard", "check_main", "Inside a run: may it act with SCOPE now? Records the decision.", hot=True),
    Command("hook", _CLI + "guard", "hook_main", "Agent hook handler (`hook claude-code --run RUN`); fails closed.", hot=True),
    Command("exec", _CLI + "guard", "exec_main", "Run a command unchanged and record it as an action.exec receipt of the current run.", hot=True),
    Command("whoami", _CLI + "whoami", "main", "Inside a run: which run this is, its scopes, expiry and containment.", hot=True),
    Command("approvals", _CLI + "approvals", "approvals", "List the calls runs hold for a person's approval (approval = \"human\")."),
    Command("approve", _CLI + "approvals", "approve", "Approve one held call of a run: those exact arguments, once (or --for a while)."),
    Command("deny", _CLI + "approvals", "deny", "Deny one held call of a run, with a reason the agent is told."),
    Command("mcp-proxy", _CLI + "mcp", "mcp_proxy", "Put a stdio MCP server behind the current run's tool-call rules.", passthrough=True),
    Command("doctor", _CLI + "settings", "doctor", "Check the set-up: data root, store, keyring backend, signing key, config."),
    Command("help", _CLI + "topics", "main", "Read about a topic: scopes, rules, exit-codes, environment, receipts, completion.", hot=True),
)

BY_NAME = {command.name: command for command in COMMANDS}


def top_help() -> str:
    """What plain `agentsess` and `agentsess --help` print."""
    width = max(len(c.name) for c in COMMANDS) + 2
    lines = [
        "Usage: agentsess [--version] [--debug] COMMAND [ARGS...]",
        "",
        "  Give every AI-agent run its own session identity: scoped short-lived credentials,",
        "  supervision, revocation, and tamper-evident receipts.",
        "",
        "Commands:",
    ]
    lines += [f"  {c.name.ljust(width)}{c.summary}" for c in COMMANDS]
    lines += [
        "",
        "Options:",
        "  -h, --help     Show this message and exit.",
        "  -V, --version  print the version and exit",
        "  --show-completion SHELL     print the completion script for bash, zsh or fish",
        "  --install-completion SHELL  install it where SHELL looks for it",
        "  --debug        show tracebacks of unexpected errors (also AGENTSESS_DEBUG=1)",
        "",
        "Run `agentsess COMMAND --help` for a command's own options, `agentsess help` for topics.",
    ]
    return "\n".join(lines) + "\n"
