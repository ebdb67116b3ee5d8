"""`agentsess config path|show|init|set` and `agentsess doctor`."""

import typer

from agentsess.cli import render

config_app = typer.Typer(no_args_is_help=True)


@config_app.command("path")
def config_path() -> None:
    """Print the config file's path (AGENTSESS_CONFIG overrides it)."""
    from agentsess.edges import paths

    print(paths.config_file())


@config_app.command("show")
def config_show(
    profile: str = typer.Option(None, "--profile", "-p", help="show only this profile, resolved with [defaults]"),
) -> None:
    """Print the effective config as JSON (built-in defaults included)."""
    from agentsess.edges.config import load_config

    config = load_config()
    if profile:
        render.print_json(config.profile(profile).to_dict())
    else:
        render.print_json(config.to_dict())


@config_app.command("init")
def config_init(force: bool = typer.Option(False, "--force", help="overwrite an existing config file")) -> None:
    """Write a starter config with profiles for Claude Code, Codex and aider."""
    from agentsess.edges.config import init_config

    path = init_config(force=force)
    print(f"wrote {path}: profiles claude, codex, aider (see `agentsess config show`)")


@config_app.command("set")
def config_set(
    key: str = typer.Argument(..., help="dotted key, e.g. profiles.claude.ttl or defaults.on_expiry"),
    value: str = typer.Argument(..., help='a TOML value (30m, true, ["a:*","b"]) or a plain string'),
) -> None:
    """Set one key, keeping the rest of the file; the result is validated before it is written."""
    from agentsess.edges.config import set_value

    set_value(key, value)
    print(f"set {key}")


def doctor(as_json: bool = typer.Option(False, "--json", help="the report as JSON")) -> None:
    """Exit 0 when nothing failed (warnings allowed), 1 otherwise."""
    from agentsess.core.diagnosis import diagnose

    report = diagnose()
    if as_json:
        render.print_json(report)
    else:
        out = render.console()
        for item in report["checks"]:
            from rich.text import Text

            line = Text()
            line.append({"ok": "ok   ", "warn": "warn ", "fail": "FAIL "}[item["level"]],
                        style={"ok": "green", "warn": "yellow", "fail": "bold red"}[item["level"]])
            line.append(f"{item['name']}: {item['detail']}")
            out.print(line)
    if not report["ok"]:
        raise typer.Exit(1)
