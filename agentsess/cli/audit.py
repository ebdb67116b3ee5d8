"""`agentsess verify` and `agentsess revoke`: is the record intact, and stop a run now."""

import typer

from agentsess.cli import render
from agentsess.errors import CHECK_FAILED, USAGE, AgentsessError


def verify(
    run: str = typer.Argument(None, help="run id, unique prefix, 'last', or an exported FILE (jsonl or bundle)"),
    all_runs: bool = typer.Option(False, "--all", help="verify every run in the store and every run folder"),
    jwks: str = typer.Option(None, "--jwks", help="verify FILE offline against this JWKS file (`agentsess jwks`, or a bundle)"),
    as_json: bool = typer.Option(False, "--json", help="a JSON list, one result per run"),
    strict: bool = typer.Option(False, "--strict", help="also fail on unchecked actions (an exec or network "
                                "request no guard decision covers)"),
) -> None:
    """A run whose supervisor died is marked abandoned first; a live run's stream is intact
    but unsealed. An exported FILE (`export --format jsonl|bundle`) is verified without the
    store: every record's hash and link and a final seal signed by a key of --jwks (without
    --jwks: this machine's keys; a bundle's own JWKS is trusted only when named by --jwks).
    Every action.exec and net.request with no matching action.checked decision is listed
    as an unchecked action (hooks that did not fire, a command that never asked); --strict
    fails on them too. Exit 0 when every run passes, 1 when any fails."""
    from agentsess.core.runs.history import verify_runs

    if bool(run) == all_runs:
        raise AgentsessError("verify: give one RUN or FILE, or --all", USAGE)
    if jwks is not None or (run and _names_file(run)):
        results = [_verify_file(run, jwks)]
    else:
        results = verify_runs(None if all_runs else run)
    if as_json:
        render.print_json(results)
    else:
        out = render.console()
        for r in results:
            from rich.text import Text

            line = Text()
            line.append(r["result"], style="bold green" if r["ok"] else "bold red")
            line.append(render.safe(f"  {r['run']}  {r['records']} receipts"))
            if r["seq_range"]:
                line.append(f", seq {r['seq_range'][0]}..{r['seq_range'][1]}")
            if r["time_range"]:
                line.append(f", {render.short_time(r['time_range'][0])} → {render.short_time(r['time_range'][1])}")
            line.append(", sealed" if r["sealed"] else ", unsealed")
            if r.get("mirror") == "agrees":
                line.append(", from the store's mirror" if r["source"] == "mirror" else ", mirror agrees")
            if r.get("unchecked_actions"):
                line.append(f", {r['unchecked_actions']} unchecked action{'s' if r['unchecked_actions'] != 1 else ''}",
                            style="bold yellow")
            if r["failure"]:
                line.append("\n      " + render.safe(r["failure"]), style="red")
            for item in (r.get("unchecked") or [])[:10]:
                line.append("\n      " + render.safe(f"unchecked: seq {item['seq']} {item['type']} {item['what']}"))
            out.print(line)
        failed = sum(1 for r in results if not r["ok"])
        if len(results) > 1:
            out.print(f"{len(results) - failed} passed, {failed} failed", markup=False)
    if any(not r["ok"] for r in results) or (strict and any(r.get("unchecked_actions") for r in results)):
        raise typer.Exit(CHECK_FAILED)


def _names_file(ref: str) -> bool:
    """A run reference never holds a dot or a slash: a name with one is a file (one that is
    missing is then "cannot read the exported stream", not "not a run id")."""
    return "/" in ref or "." in ref


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise AgentsessError(f"cannot read the {what} {path}: {exc.strerror or exc}", USAGE) from None


def _verify_file(path: str, jwks_path: str | None) -> dict:
    import json

    from agentsess.core.receipts.verify import parse_bundle, verify_exported

    data = _read(path, "exported stream")
    jwks = None
    if jwks_path is not None:
        text = _read(jwks_path, "JWKS file")
        try:
            doc = parse_bundle(text) or json.loads(text)
        except (ValueError, RecursionError):
            raise AgentsessError(f"the JWKS file {jwks_path} is not JSON", USAGE) from None
        jwks = doc.get("jwks") if isinstance(doc, dict) and doc.get("format") else doc
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise AgentsessError(f"the JWKS file {jwks_path} holds no key set ({{\"keys\": [...]}})", USAGE)
    result = verify_exported(data, jwks)
    if jwks is None and not result["ok"] and "unknown key" in (result["failure"] or ""):
        # the usual case of a CI artefact checked on a laptop: the keys are the other machine's
        result["failure"] += " (made on another machine? verify it with --jwks and that machine's `agentsess jwks`)"
    return result


def revoke(
    run: str = typer.Argument(..., help="run id, unique prefix, or 'last'"),
    reason: str = typer.Option(None, "--reason", help="why, recorded in the receipt"),
    only: bool = typer.Option(False, "--only", help="revoke just this run, not its descendants"),
    as_json: bool = typer.Option(False, "--json", help="a JSON list, one object per revoked run"),
) -> None:
    """Marks the run and its descendants revoked in one transaction (their tokens stop
    verifying at once), writes a run.revoked receipt for each, and stops their processes per
    the profile's on_revoke, waiting up to the grace period. Inside a run, its supervisor
    revokes, and only the run's own descendants (its nested runs and sub-agents)."""
    import sys

    from agentsess.cli.inside import ask, socket_path
    from agentsess.core.runs.revocation import revoke_run

    def waiting(run_ids: list[str], grace) -> None:
        from agentsess.core.durations import format_duration

        which = ", ".join(run_ids[:3]) + (f" and {len(run_ids) - 3} more" if len(run_ids) > 3 else "")
        sys.stderr.write(
            f"agentsess: {which} still running after TERM: waiting up to {format_duration(grace)} before KILL\n"
        )
        sys.stderr.flush()

    if socket_path() is not None:  # inside a run: its supervisor decides, and reaches only descendants
        results = ask("revoke", target=run, reason=reason, only=only)["results"]
    else:
        results = revoke_run(run, reason, only, on_wait=waiting)
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
