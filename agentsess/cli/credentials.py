"""`agentsess jwks`, `agentsess key rotate|list`, `agentsess secret set|list|rm`."""

import sys

import typer

from agentsess.cli import render
from agentsess.errors import USAGE, AgentsessError

key_app = typer.Typer(no_args_is_help=True)
secret_app = typer.Typer(no_args_is_help=True)


def jwks() -> None:
    """Old keys stay listed after `key rotate`, so earlier tokens and seals still verify."""
    from agentsess.edges import keys

    keys.current_key()
    render.print_json(keys.jwks())


@key_app.command("rotate")
def key_rotate(as_json: bool = typer.Option(False, "--json", help="print the new key id as JSON")) -> None:
    """Make a new signing key; old public keys stay available for verification."""
    from agentsess.edges import keys

    kid = keys.rotate()
    if as_json:
        render.print_json({"kid": kid})
    else:
        print(f"new signing key {kid}; earlier keys still verify their tokens and seals")


@key_app.command("list")
def key_list(as_json: bool = typer.Option(False, "--json", help="a JSON list")) -> None:
    """List the signing keys (public halves only)."""
    from agentsess.edges import keys

    items = keys.key_list()
    if as_json:
        render.print_json(items)
        return
    for k in items:
        print(f"{k['kid']}  created {k.get('created_at')}{'  (current)' if k.get('current') else ''}")


@secret_app.command("set")
def secret_set(name: str = typer.Argument(..., help="secret name, e.g. github-agent")) -> None:
    """Store a secret: from a hidden prompt, or from stdin when piped (never from the command line)."""
    from agentsess.edges import keychain

    keychain.check_secret_name(name)
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value for {name}: ")
    else:
        value = sys.stdin.read()
        if value.endswith("\n"):
            value = value[:-1]
            if value.endswith("\r"):
                value = value[:-1]
    if not value:
        raise AgentsessError(f"secret set {name}: the value is empty; nothing stored", USAGE)
    keychain.set_secret(name, value)
    print(f"stored secret {name}", file=sys.stderr)


@secret_app.command("list")
def secret_list(as_json: bool = typer.Option(False, "--json", help="a JSON list")) -> None:
    """List secret names and when they were set (never values)."""
    from agentsess.edges import keychain

    items = [{"name": name, "set_at": at} for name, at in keychain.list_secrets()]
    if as_json:
        render.print_json(items)
        return
    if not items:
        print("no secrets yet: add one with `agentsess secret set NAME`")
    for item in items:
        print(f"{item['name']}  set {item.get('set_at')}")


@secret_app.command("rm")
def secret_rm(name: str = typer.Argument(..., help="secret name")) -> None:
    """Remove a secret."""
    from agentsess.edges import keychain

    if not keychain.remove_secret(name):
        raise AgentsessError(f"no secret named '{name}'; see `agentsess secret list`", USAGE)
    print(f"removed secret {name}", file=sys.stderr)
