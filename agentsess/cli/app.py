"""The typer application: every command but the hot paths parsed in :mod:`agentsess.cli.entry`."""

import typer

app = typer.Typer(
    name="agentsess",
    help="Give every AI-agent run its own session identity: scoped short-lived credentials, "
    "supervision, revocation, and tamper-evident receipts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


FAST_HELP = {
    "run": "Run a command as a supervised agent run (see `agentsess run --help`).",
    "token": "Verify an agentsess token: `agentsess token verify [TOKEN|-] [--scope S]... [--json]`.",
    "check": "Inside a run: may it act with SCOPE now? Records the decision (`agentsess check --help`).",
    "hook": "Claude Code hook handler: `agentsess hook claude-code --run RUN` (fails closed).",
    "exec": "Run a command unchanged and record it as an action.exec receipt of the current run.",
}


def _passthrough(name: str, help_text: str) -> None:
    """Commands parsed in :mod:`agentsess.cli.entry` (hot paths) still show in `--help`."""

    def command(ctx: typer.Context) -> None:
        from agentsess.cli.entry import FAST

        module, attr = FAST[name]
        fn = getattr(__import__(module, fromlist=[attr]), attr)
        raise typer.Exit(fn(list(ctx.args)))

    app.command(name, context_settings=PASSTHROUGH, add_help_option=False, help=help_text)(command)


def _register() -> None:
    for name, help_text in FAST_HELP.items():
        _passthrough(name, help_text)
    from agentsess.cli import audit, credentials, exporting, inspect, settings

    app.command("runs")(inspect.runs)
    app.command("show-run")(inspect.show_run)
    app.command("verify")(audit.verify)
    app.command("revoke")(audit.revoke)
    app.command("jwks")(credentials.jwks)
    app.add_typer(credentials.key_app, name="key")
    app.add_typer(credentials.secret_app, name="secret")
    app.add_typer(settings.config_app, name="config")
    app.command("doctor")(settings.doctor)
    app.command("mcp-proxy", context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "allow_interspersed_args": False})(__import__("agentsess.cli.mcp", fromlist=["mcp_proxy"]).mcp_proxy)
    app.command("export")(exporting.export)
    app.command("prune")(exporting.prune)


_register()


def _click_errors() -> tuple:
    """(exit, usage error, abort) classes of the click that typer uses: its own vendored copy
    since typer 0.29 (where Exit and Abort are typer's), else click itself."""
    try:
        from typer._click import ClickException

        return (typer.Exit,), ClickException, (typer.Abort,)
    except ImportError:  # typer < 0.29
        import click

        return (typer.Exit, click.exceptions.Exit), click.ClickException, (typer.Abort, click.exceptions.Abort)


def run_app(argv: list[str]) -> int:
    exits, usage, aborts = _click_errors()
    try:
        result = app(args=argv, prog_name="agentsess", standalone_mode=False)
    except exits as exc:
        return exc.exit_code
    except usage as exc:
        from agentsess.cli.entry import error

        ctx = getattr(exc, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        error(exc.format_message() + where)
        return exc.exit_code
    except aborts:
        return 130
    return result if isinstance(result, int) else 0
