"""`agentsess verify` and `agentsess revoke`: is the record intact, and stop a run now."""

import typer

from agentsess.cli import render
from agentsess.errors import CHECK_FAILED, USAGE, AgentsessError


def verify(
    run: str = typer.Argument(None, help="run id, unique prefix, or 'last'"),
    all_runs: bool = typer.Option(False, "--all", help="verify every run in the store and every run folder"),
    as_json: bool = typer.Option(False, "--json", help="a JSON list, one result per run"),
) -> None:
    """A run whose supervisor died is marked abandoned first; a live run's stream is intact
    but unsealed. Exit 0 when every run passes, 1 when any fails."""
    from agentsess.core.runs.history import verify_runs

    if bool(run) == all_runs:
        raise AgentsessError("verify: give one RUN or --all", USAGE)
    results = verify_runs(None if all_runs else run)
    if as_json:
        render.print_json(results)
    else:
        out = render.console()
        for r in results:
            from rich.text import Text

            line = Text()
            line.append(r["result"], style="bold green" if r["ok"] else "bold red")
            line.append(f"  {r['run']}  {r['records']} receipts")
            if r["seq_range"]:
                line.append(f", seq {r['seq_range'][0]}..{r['seq_range'][1]}")
            if r["time_range"]:
                line.append(f", {render.short_time(r['time_range'][0])} → {render.short_time(r['time_range'][1])}")
            line.append(", sealed" if r["sealed"] else ", unsealed")
            if r.get("mirror") == "agrees":
                line.append(", from the store's mirror" if r["source"] == "mirror" else ", mirror agrees")
            if r["failure"]:
                line.append(f"\n      {r['failure']}", style="red")
            out.print(line)
        failed = sum(1 for r in results if not r["ok"])
        if len(results) > 1:
            out.print(f"{len(results) - failed} passed, {failed} failed", markup=False)
    if any(not r["ok"] for r in results):
        raise typer.Exit(CHECK_FAILED)


def revoke(
    run: str = typer.Argument(..., help="run id, unique prefix, or 'last'"),
    reason: str = typer.Option(None, "--reason", help="why, recorded in the receipt"),
    only: bool = typer.Option(False, "--only", help="revoke just this run, not its descendants"),
    as_json: bool = typer.Option(False, "--json", help="a JSON list, one object per revoked run"),
) -> None:
    """Marks the run and its descendants revoked in one transaction (their tokens stop
    verifying at once), writes a run.revoked receipt for each, and stops their processes per
    the profile's on_revoke, waiting up to the grace period."""
    from agentsess.core.runs.revocation import revoke_run

    results = revoke_run(run, reason, only)
    if as_json:
        render.print_json(results)
        return
    from rich.tree import Tree

    out = render.console()
    nodes: dict = {}
    root = None
    for r in results:
        confirmed = {True: "; confirmed by its supervisor", False: "; not confirmed by its supervisor yet"}
        label = render.text(
            f"{r['id']}  {r['name']}  on {r['host']}  "
            + ("revoked" if r["newly_revoked"] else "already revoked")
            + f"; process: {r['process']}"
            + confirmed.get(r["confirmed"], "")
        )
        parent = nodes.get(r["parent_id"])
        node = parent.add(label) if parent is not None else Tree(label)
        if root is None:
            root = node
        nodes[r["id"]] = node
    out.print(root)
