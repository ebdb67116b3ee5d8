"""`agentsess approvals`, `agentsess approve`, `agentsess deny`: a person answers the calls a
run holds for them (profile ``approval = "human"``). All three are refused inside a run."""

import typer

from agentsess.cli import render


def approvals(
    run: str = typer.Argument(None, help="only this run's requests (id, unique prefix, or 'last')"),
    as_json: bool = typer.Option(False, "--json", help="a JSON list, one object per waiting request"),
) -> None:
    """Lists the calls held for a person's answer, oldest first: run, request id, tool, what
    it would do (masked), and how long it still waits before it is denied. Answer one with
    `agentsess approve RUN REQ` or `agentsess deny RUN REQ --reason TEXT`."""
    from agentsess.core.guard.approvals import list_pending

    items = list_pending(run)
    if as_json:
        render.print_json(items)
        return
    out = render.console()
    if not items:
        from agentsess.core.guard.approvals import run_note

        out.print(render.text(run_note(run) or "no calls are waiting for approval"))
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("RUN", "REQUEST", "TOOL", "WHAT", "LEFT"):
        table.add_column(name, no_wrap=name != "WHAT", overflow="fold")
    from agentsess.core.durations import format_duration

    for item in items:
        table.add_row(render.text(item["run"]), render.text(item["request"]), render.text(item["tool"]),
                      render.text(item["summary"]), format_duration(item["seconds_left"]) if item["seconds_left"] else "0s")
    out.print(table)


def approve(
    run: str = typer.Argument(..., help="the run (id, unique prefix, or 'last')"),
    request: str = typer.Argument(..., help="the request id `agentsess approvals` lists"),
    for_: str = typer.Option(None, "--for", metavar="DURATION",
                             help="also allow this exact call (same tool, same arguments) in this run for DURATION, e.g. 10m"),
    as_json: bool = typer.Option(False, "--json", help="print what was approved as JSON"),
) -> None:
    """Approves one held call: that call, with exactly those arguments, once (or, with --for,
    the same call again until then). Recorded in the run as approval.granted with who (user@host),
    when and for how long. Exit 2 for a request the run does not have, 1 for one no longer waiting."""
    from agentsess.core.guard.approvals import approve as approve_request

    result = approve_request(run, request, for_)
    _show(result, as_json)


def deny(
    run: str = typer.Argument(..., help="the run (id, unique prefix, or 'last')"),
    request: str = typer.Argument(..., help="the request id `agentsess approvals` lists"),
    reason: str = typer.Option(None, "--reason", help="why: the agent is told, and the receipt keeps it"),
    as_json: bool = typer.Option(False, "--json", help="print what was denied as JSON"),
) -> None:
    """Denies one held call; the agent gets the reason. Recorded as approval.denied. Exit 2 for a
    request the run does not have, 1 for one no longer waiting."""
    from agentsess.core.guard.approvals import deny as deny_request

    result = deny_request(run, request, reason)
    _show(result, as_json)


def _show(result: dict, as_json: bool) -> None:
    if as_json:
        render.print_json(result)
        return
    out = render.console()
    line = f"{result['decision']} {result['run']} {result['request']}: {result['tool']}: {result['summary']}"
    if result.get("until"):
        line += f" (this exact call until {render.short_time(result['until'])})"
    out.print(render.text(line))
