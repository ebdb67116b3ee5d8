"""`agentsess export` and `agentsess prune`: take a run's record out, and forget old runs."""

import typer

from agentsess.cli import render
from agentsess.errors import USAGE, AgentsessError

FORMATS = ("asciicast", "jsonl", "bundle")


def export(
    run: str = typer.Argument(..., help="run id, unique prefix, or 'last'"),
    fmt: str = typer.Option(
        "asciicast", "--format",
        help="asciicast (v2, for `asciinema play`), jsonl (the receipt stream as is) or bundle (the stream, its seal and the JWKS in one JSON file)",
    ),
    output: str = typer.Option(None, "--output", "-o", help="write to FILE (created 0600) instead of stdout"),
) -> None:
    """The asciicast replays the masked output with its timing (`asciinema play FILE`); the
    JSON Lines are the receipt stream byte for byte, which `agentsess verify` checks; a
    bundle verifies on another machine with `agentsess verify FILE --jwks FILE`."""
    import os
    import sys

    from agentsess.core.receipts import export as exporter
    from agentsess.core.runs.history import resolve
    from agentsess.edges import paths

    if fmt not in FORMATS:
        raise AgentsessError(f"unknown export format '{fmt}': expected asciicast, jsonl or bundle", USAGE)
    run_id = resolve(run)

    def write(fh):
        if fmt == "asciicast":
            return exporter.asciicast(run_id, fh)
        if fmt == "bundle":
            return exporter.bundle(run_id, fh)
        return exporter.jsonl(run_id, fh)

    if output is None or output == "-":
        out = sys.stdout.buffer
        write(out)
        out.flush()
        return
    try:
        fd = paths.open_private(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    except OSError as exc:
        raise AgentsessError(f"cannot write {output}: {exc.strerror or exc}", USAGE) from None
    with os.fdopen(fd, "wb") as fh:
        write(fh)
    render.console(stderr=True).print(render.text(f"wrote {output} ({fmt}, run {run_id})"))


def prune(
    older_than: str = typer.Option(..., "--older-than", help="delete finished runs that ended longer ago than this, e.g. 30d"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be deleted; delete nothing"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object: count, pruned ids, orphaned children"),
) -> None:
    """A running run is never pruned, nor a revoked one whose process still lives. Kept
    sub-agent runs of a pruned parent are named. Each prune is logged in the data root's
    prune.log."""
    from agentsess.core.durations import parse_duration
    from agentsess.core.runs.pruning import prune as do_prune

    seconds = parse_duration(older_than, "--older-than")
    result = do_prune(seconds, dry_run)
    if as_json:
        render.print_json(result.as_dict())
        return
    out = render.console()
    verb = "would prune" if dry_run else "pruned"
    noun = "run" if result.count == 1 else "runs"
    out.print(render.text(f"{verb} {result.count} {noun} that ended before {render.short_time(result.before)}"))
    if dry_run:
        for run_id in result.pruned:
            out.print(render.text(f"  {run_id}"))
    if result.orphaned:
        out.print(
            render.text(f"{len(result.orphaned)} kept sub-agent run(s) now name a pruned parent: " + " ".join(result.orphaned))
        )
    if result.failed:
        err = render.console(stderr=True)
        for f in result.failed:
            err.print(render.text(f"agentsess: error: {f['error']}"))
        raise typer.Exit(1)
