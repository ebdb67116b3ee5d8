"""Pruning: forget finished runs that ended long ago (their folder and their store row).

A run is prunable when it has finished (status is not ``running`` and it has an end time,
or its supervisor is gone) and it ended before ``now - older_than``. A revoked run whose
supervisor still lives (``on_revoke = "keep"``, or during the stop grace) has no end time
yet and is kept. Runs are judged one by one: a parent can be pruned while its children
are kept, whose ``parent_id`` then names a run that no longer exists (``runs --tree`` shows
them at the top level; revocation cascades only through runs still in the store).

Each real prune appends one line to ``<data root>/prune.log`` (0600):
``<time> pruned=<count> older_than=<seconds>s before=<cutoff>``. A dry run changes nothing.
"""

import os
import time
from dataclasses import asdict, dataclass

from agentsess import ids
from agentsess.edges import paths
from agentsess.timefmt import rfc3339

COLUMNS = "id, parent_id, status, started_at, ended_at, revoked_at, host, supervisor_pid, supervisor_started"


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a prune did (or, with ``dry_run``, would do); :meth:`as_dict` is its ``--json``.

    ``pruned``: the run ids, oldest first; ``orphaned``: kept runs whose parent was pruned;
    ``failed``: ``{"id", "error"}`` of runs whose row is gone but whose folder could not be
    removed (remove it by hand).
    """

    dry_run: bool
    older_than: float
    before: str
    count: int
    pruned: list[str]
    orphaned: list[str]
    failed: list[dict]

    def as_dict(self) -> dict:
        return asdict(self)


def _ended_at(row: dict):
    """When the run finished, or None while it may still be running."""
    if row["status"] == "running":
        return None
    if row.get("ended_at") is not None:
        return row["ended_at"]
    from agentsess.core.runs.abandonment import supervisor_alive

    if supervisor_alive(row):
        return None
    return row.get("revoked_at") or row["started_at"]


def _log(now: float, count: int, seconds: int, cutoff: float) -> None:
    path = paths.prune_log()
    line = f"{rfc3339(now)} pruned={count} older_than={seconds}s before={rfc3339(cutoff)}\n"
    fd = paths.open_private(path)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def prune(older_than_seconds: float, dry_run: bool = False, now: float | None = None, store=None) -> Pruned:
    """Delete every finished run that ended more than ``older_than_seconds`` ago (with
    ``dry_run``, touch nothing and say what would go)."""
    if store is None:
        from agentsess.edges.store import Store

        with Store() as own:
            return prune(older_than_seconds, dry_run, now, own)
    if store.readonly and not dry_run:
        from agentsess.errors import STATE, AgentsessError

        raise AgentsessError(
            f"the data root {paths.data_root()} is read-only: prune cannot delete runs there "
            "(--dry-run lists what would go)",
            STATE,
        )
    now = time.time() if now is None else now
    cutoff = now - older_than_seconds
    rows = store.list_runs(columns=COLUMNS)
    doomed = []
    for row in rows:
        ended = _ended_at(row)
        if ended is not None and ended < cutoff:
            doomed.append(row["id"])
    doomed.reverse()  # oldest first
    gone = set(doomed)
    orphaned = [r["id"] for r in rows if r["id"] not in gone and r.get("parent_id") in gone]
    failed = []
    if not dry_run:
        import shutil

        store.delete_runs(doomed)
        for run_id in doomed:
            if not ids.is_run_id(run_id):
                continue  # not a name agentsess made: never a path to delete
            folder = paths.run_dir(run_id)
            try:
                shutil.rmtree(folder)
            except FileNotFoundError:
                pass
            except OSError as exc:
                failed.append({"id": run_id, "error": f"cannot remove {folder}: {exc.strerror or exc}"})
        _log(now, len(doomed), int(older_than_seconds), cutoff)
    return Pruned(
        dry_run=bool(dry_run),
        older_than=older_than_seconds,
        before=rfc3339(cutoff),
        count=len(doomed),
        pruned=doomed,
        orphaned=orphaned,
        failed=failed,
    )
