"""`agentsess mcp-proxy`: put a stdio MCP server behind the current run's tool-call policy."""

import typer


def mcp_proxy(
    ctx: typer.Context,
    name: str = typer.Option(None, "--name", help="the server's name in rules (mcp:SERVER:TOOL); default: CMD's basename"),
) -> None:
    """Usage: `agentsess mcp-proxy [--name SERVER] -- CMD [ARGS...]`.

    Use it as the command of an MCP server in the agent's config, inside `agentsess run`.
    Each tools/call is decided by the run's rules as tool mcp:SERVER:TOOL and recorded
    (action.checked, action.result); a denied call is answered with a JSON-RPC error
    (-32001) and never reaches the server. A line that cannot be parsed safely (not UTF-8,
    not JSON, duplicate or case-colliding keys) is refused; the server gets each message
    re-encoded as it was decided.
    Exits with the server's exit code.
    """
    from agentsess.cli.inside import ask
    from agentsess.core.guard.mcp import proxy

    command = list(ctx.args)
    if command[:1] == ["--"]:
        command = command[1:]
    raise typer.Exit(proxy(command, name, ask=ask))
