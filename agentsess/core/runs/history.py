"""Reading runs back: the stable JSON shape of a run, listings, one run in full, and the
verification of their receipts.

Each function the CLI calls opens the store itself (or uses the ``store`` it is given).
"""

import os
import time
from contextlib import contextmanager

from agentsess.timefmt import rfc3339


def credential_state(row: dict, now: float | None = None) -> str:
    if row.get("revoked_at") or row.get("status") == "revoked":
        return "revoked"
    if row.get("status") == "abandoned":
        return "revoked"
    if row.get("status") == "denied" or not row.get("expires_at"):
        return "none"
    if row.get("status") == "exited" or row.get("ended_at") is not None:
        return "ended"  # a token dies with its run, whatever its exp says
    now = time.time() if now is None else now
    return "expired" if row["expires_at"] <= now else "live"


def run_object(row: dict) -> dict:
    """The documented ``--json`` shape of a run (see README, "JSON output")."""
    ended = row.get("ended_at")
    started = row["started_at"]
    duration = None
    if ended is not None:
        duration = round(ended - started, 3)
    return {
        "id": row["id"],
        "name": row["name"],
        "status": row["status"],
        "exit_code": row.get("exit_code"),
        "signal": row.get("signal"),
        "parent_id": row.get("parent_id"),
        "command": row["command"],
        "cwd": row["cwd"],
        "host": row["host"],
        "user": row["user"],
        "profile": row.get("profile"),
        "agent": row.get("agent"),
        "on_behalf_of": row.get("obo"),
        "scopes": row.get("scopes") or [],
        "expires_at": rfc3339(row.get("expires_at")),
        "started_at": rfc3339(started, micro=True),
        "ended_at": rfc3339(ended, micro=True),
        "duration": duration,
        "mode": row.get("mode"),
        "depth": row.get("depth") or 0,
        "containment": row.get("containment"),
    }


# what a listing needs: not the profile snapshot, whose JSON would dominate a long listing
LIST_COLUMNS = (
    "id, name, status, exit_code, signal, parent_id, command, cwd, host, user, profile, agent, "
    "obo, scopes, expires_at, started_at, ended_at, mode, depth, containment"
)


@contextmanager
def _store(store=None):
    """``store``, or a connection opened (and closed) for this one call."""
    if store is not None:
        yield store
        return
    from agentsess.edges.store import Store

    with Store() as own:
        yield own


def resolve(ref: str, store=None) -> str:
    """The run id ``ref`` names: a full id, any unique prefix, or ``last``."""
    with _store(store) as store:
        return store.resolve(ref)


def status(run_id: str, store=None) -> str | None:
    """The run's status now, or None when the store does not know it."""
    with _store(store) as store:
        row = store.get_run(run_id)
    return None if row is None else row["status"]


def list_runs(status=None, name=None, since=None, parent=None, limit=None, store=None, host=None,
              unchecked: bool = False) -> list[dict]:
    """Run objects, newest first; ``parent`` is a run reference (id, prefix or ``last``);
    ``host``: only the runs supervised on that machine (a shared store holds every machine's);
    ``unchecked`` adds each run's count of unchecked actions (reads every stream)."""
    from agentsess.core.runs.abandonment import reap_abandoned

    with _store(store) as store:
        parent_id = store.resolve(parent) if parent else None
        if not store.readonly:  # evidence on read-only media is read as it is
            reap_abandoned(store)
        rows = store.list_runs(status, name, since, parent_id, limit, columns=LIST_COLUMNS, host=host)
        items = [run_object(r) for r in rows]
        if unchecked:
            from agentsess.core.receipts import unchecked as bypass

            for item in items:
                item["unchecked_actions"] = len(bypass.of_run(store.get_run(item["id"]) or item, store))
    return items


def tree(store, run_id: str) -> list[dict]:
    """The run's descendants as nested ``{"id", "name", "status", "children": [...]}``."""
    rows = store.descendants(run_id)
    nodes: dict[str, dict] = {run_id: {"children": []}}
    for r in rows:
        nodes[r["id"]] = {"id": r["id"], "name": r["name"], "status": r["status"], "children": []}
    for r in rows:
        nodes.get(r["parent_id"], nodes[run_id])["children"].append(nodes[r["id"]])
    return nodes[run_id]["children"]


def show_run(ref: str, with_output_lines: int = 20, with_integrity: bool = True, store=None) -> dict:
    """Everything ``show-run`` shows: the run object, credential, receipts, children, integrity.

    ``with_integrity=False`` leaves out the verification (which reads the whole output log)
    so a caller can show the rest first; :func:`integrity` computes it.
    """
    from agentsess.core.receipts import mirror
    from agentsess.core.runs.abandonment import reap_abandoned
    from agentsess.edges import paths

    with _store(store) as store:
        if not store.readonly:  # evidence on read-only media is read as it is
            reap_abandoned(store)
        run_id = store.resolve(ref)
        row = store.get_run(run_id)
        children = tree(store, run_id)
        records, _ = mirror.records(store, run_id)  # a shared store's mirror when not on this machine
        checked = integrity(row, store) if with_integrity else None
        from agentsess.core.receipts import unchecked as bypass

        flagged = bypass.of_run(row, store)
        pending = []
        if row.get("status") == "running":  # calls held for a person's answer (issue 16)
            from agentsess.core.guard import approvals

            pending = approvals.pending(store, run_id)
    out = run_object(row)
    out["credential"] = {
        "state": credential_state(row),
        "scopes": row.get("scopes") or [],
        "ceiling": (row.get("policy") or {}).get("scopes"),
        "issued_at": rfc3339(row.get("issued_at")),
        "expires_at": rfc3339(row.get("expires_at")),
        "jti": row.get("jti"),
        "kid": row.get("kid"),
        "chain": row.get("chain") or [],
    }
    out["revocation"] = (
        {
            "revoked_at": rfc3339(row.get("revoked_at")),
            "revoked_by": row.get("revoked_by"),
            "reason": row.get("revoke_reason"),
            "cause": row.get("revoke_cause"),
        }
        if row.get("revoked_at")
        else None
    )
    out["error"] = row.get("error")
    out["output_bytes"] = row.get("output_bytes")
    out["output_sha256"] = row.get("output_sha256")
    out["children"] = children
    out["unchecked"] = flagged  # actions no guard decision covers (bypass detection)
    out["unchecked_actions"] = len(flagged)
    out["pending_approvals"] = pending  # as `agentsess approvals --json` lists them
    out["receipts"] = records
    out["integrity"] = checked
    tail, end = _tail(paths.output_log(run_id), with_output_lines)
    out["output_tail"] = tail.decode("utf-8", "replace")
    out["output_end"] = end  # where `show-run --follow` goes on from (not in --json)
    return out


def _tail(path: str, count: int, max_bytes: int = 1 << 16) -> tuple[bytes, int]:
    """The last ``count`` lines of a log (none for 0) and the offset its end had when read."""
    try:
        with open(path, "rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            if count <= 0:
                return b"", end
            start = max(0, end - max_bytes)
            fh.seek(start)
            data = fh.read(end - start)
    except FileNotFoundError:
        return b"", 0
    lines = data.splitlines(keepends=True)
    if start > 0 and lines:
        lines = lines[1:]
    return b"".join(lines[-count:]), end


def integrity(row_or_id, store=None) -> dict:
    """The run's verification summary (see `agentsess verify`), from its row or its id."""
    from agentsess.core.receipts import mirror

    with _store(store) as store:
        row = store.get_run(row_or_id) if isinstance(row_or_id, str) else row_or_id
        return mirror.verify(store, row)


def verify_runs(ref: str | None = None, store=None) -> list[dict]:
    """`agentsess verify`: the verification summary of run ``ref``, or of every run (None),
    and of every run folder the store has no row for. With a shared store each run is also
    checked against the store's mirror of its receipts (or from the mirror alone when its
    stream is on another machine)."""
    from agentsess.core.receipts import mirror, verify
    from agentsess.core.receipts import unchecked as bypass
    from agentsess.core.runs.abandonment import reap_abandoned

    with _store(store) as store:
        if not store.readonly:  # evidence on read-only media is read as it is
            reap_abandoned(store)
        # the folders first: a run's row is written before its folder (see verify.verify_all)
        folders = verify._run_folders() if ref is None else []
        rows = [store.get_run(store.resolve(ref))] if ref is not None else store.list_runs()
        results = []
        for row in rows:
            flagged = bypass.of_run(row, store)
            results.append({**mirror.verify(store, row), "unchecked_actions": len(flagged), "unchecked": flagged})
        if ref is None:
            results += [{**r.as_dict(), "unchecked_actions": 0, "unchecked": []}
                        for r in verify.unknown_folders(folders, {row["id"] for row in rows})]
        return results
