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


@app.command(
    "run",
    context_settings=PASSTHROUGH,
    add_help_option=False,
    help="Run a command as a supervised agent run (see `agentsess run --help`).",
)
def run_command(ctx: typer.Context) -> None:
    from agentsess.cli.run import main

    raise typer.Exit(main(list(ctx.args)))


def _register() -> None:
    from agentsess.cli import inspect

    app.command("runs")(inspect.runs)
    app.command("show-run")(inspect.show_run)


_register()


def run_app(argv: list[str]) -> int:
    import click

    try:
        app(args=argv, prog_name="agentsess", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 130
    return 0
