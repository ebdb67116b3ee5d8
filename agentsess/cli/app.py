"""The typer application: the commands of the table that are not hot paths.

Built per invocation with only the command being run (its module is the only one imported);
the top-level help is the table's own (:func:`agentsess.cli.commands.top_help`). A command's
one-line summary comes from the table, the rest of its help from its docstring.
"""

import inspect

import typer

from agentsess.cli.commands import ABOUT, BY_NAME, COMMANDS, Command

SETTINGS = {"help_option_names": ["-h", "--help"]}


def _help(command: Command, fn) -> str:
    more = inspect.getdoc(fn) or ""
    return command.summary + ("\n\n" + more if more else "")


def add(app: typer.Typer, command: Command) -> None:
    """Register ``command`` of the table on ``app``."""
    target = command.load()
    if command.group:
        app.add_typer(target, name=command.name, help=command.summary, no_args_is_help=True)
    elif command.passthrough:
        app.command(
            command.name,
            help=_help(command, target),
            short_help=command.summary,
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "allow_interspersed_args": False},
        )(target)
    else:
        app.command(command.name, help=_help(command, target), short_help=command.summary)(target)


def build(names=None) -> typer.Typer:
    """The typer app with the named commands of the table (default: every typer command)."""
    app = typer.Typer(
        name="agentsess",
        help=ABOUT,
        add_completion=False,
        pretty_exceptions_enable=False,  # tracebacks with locals would print tokens
        rich_markup_mode=None,
        context_settings=SETTINGS,
    )
    app.callback()(lambda: None)  # a group even with one command: `agentsess NAME ...`
    for command in COMMANDS:
        if not command.hot and (names is None or command.name in names):
            add(app, command)
    return app


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
    """Run the typer command ``argv[0]`` (a name from the table) with ``argv[1:]``."""
    exits, usage, aborts = _click_errors()
    app = build([argv[0]] if argv and argv[0] in BY_NAME else None)
    try:
        result = app(args=argv, prog_name="agentsess", standalone_mode=False)
    except exits as exc:
        return exc.exit_code
    except usage as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            # a group without a subcommand: its help, as `agentsess key --help` prints it
            import sys

            sys.stdout.write(ctx.get_help() + "\n")
            return 0
        from agentsess.cli.entry import error

        # worded as the hot commands' parser words its errors: `CMD: no such option: --x (see …)`
        message = exc.format_message().rstrip(".")
        message = message[:1].lower() + message[1:]
        if ctx is not None:
            name = ctx.command_path.removeprefix("agentsess").strip()
            message = (f"{name}: " if name else "") + message + f" (see `{ctx.command_path} --help`)"
        error(message)
        return exc.exit_code
    except aborts:
        return 130
    return result if isinstance(result, int) else 0
