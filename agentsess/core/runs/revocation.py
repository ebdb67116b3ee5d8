"""Revocation: mark a run's credentials dead, stop its process tree, cascade to descendants.

The store is the revocation list: ``token verify`` and the guard refuse any token whose run
or ancestor has ``revoked_at`` set (or is abandoned). Each revoked run's stream gets a
``run.revoked`` receipt; a finished run's stream is sealed again after it. Live supervisors
on this machine are told at once with SIGUSR1 (they also poll the store); they stop the
child's process group per the profile's ``on_revoke``.

With a shared (PostgreSQL) store the same transaction notifies every machine. A running
run's ``run.revoked`` receipt is then written by its own supervisor, wherever it runs,
when it sees the revocation: that receipt, mirrored in the store, is its confirmation, and
``revoke`` waits a few seconds for it (``confirmed`` in each result).
"""

import os
import signal
import time

from agentsess.core.receipts import recording
from agentsess.core.runs.abandonment import kill_tree, reap_abandoned, supervisor_alive
from agentsess.edges import host
from agentsess.edges.streams import ReceiptError
from agentsess.timefmt import rfc3339


def revoked_in(store, run_ids):
    """For token verification: the first revoked run among ``run_ids`` as (id, why)."""
    row = store.revoked_among(list(run_ids))
    if row is None:
        return None
    return row["id"], row.get("revoke_reason") or row["status"]


def _cause(row: dict, run_id: str) -> str:
    return "direct" if row["id"] == run_id else f"ancestor {run_id}"


def revoke(store, ref: str, reason: str | None = None, only: bool = False, wait: float | None = None,
           on_wait=None) -> list[dict]:
    """Revoke run ``ref`` (and its descendants unless ``only``); one result dict per run.
    ``on_wait(run_ids, grace)`` is told once when runs are still up half a second after TERM."""
    reap_abandoned(store)
    run_id = store.resolve(ref)
    root = store.get_run(run_id)
    targets = [root] + ([] if only else store.descendants(run_id))
    by = f"{host.user()}@{host.hostname()}"
    now = time.time()
    # mark the whole tree first, in one transaction, so no run in it can exit unrevoked meanwhile
    newly = store.mark_revoked({row["id"]: _cause(row, run_id) for row in targets}, now, by, reason)
    shared = getattr(store, "shared", False)
    here = host.hostname()
    results = []
    for row in targets:
        result = {
            "id": row["id"],
            "name": row["name"],
            "parent_id": row.get("parent_id"),
            "status_before": row["status"],
            "newly_revoked": newly[row["id"]],
            "cause": _cause(row, run_id) if newly[row["id"]] else row.get("revoke_cause"),
            "process": "not running",
            "host": row.get("host"),
            "confirmed": None,
        }
        # a shared store: a running run's own supervisor writes (and so confirms) run.revoked
        by_supervisor = shared and row["status"] == "running"
        if newly[row["id"]] and shared and not by_supervisor and row.get("host") != here:
            result["receipt_error"] = f"its receipt stream is on {row.get('host')}; the store holds the revocation"
        elif newly[row["id"]] and not by_supervisor:
            try:
                direct = row["id"] == run_id
                recording.record(
                    store,
                    row["id"],
                    "run.revoked",
                    {"cause": "direct" if direct else "ancestor", "ancestor": None if direct else run_id,
                     "by": by, "reason": reason, "at": rfc3339(now)},
                )
                if row["status"] != "running":
                    recording.seal(store, row["id"])
            except ReceiptError as exc:
                result["receipt_error"] = exc.message
        if row["status"] == "running" and supervisor_alive(row):
            keep = (row.get("policy") or {}).get("on_revoke") == "keep"
            result["process"] = "kept running (on_revoke = keep)" if keep else "stopping"
            if by_supervisor and newly[row["id"]]:
                result["confirmed"] = False
        results.append(result)
    # tell live supervisors on this machine at once, the deepest first
    for result, row in reversed(list(zip(results, targets, strict=True))):
        if result["process"] != "not running" and newly[row["id"]] and row.get("host") == host.hostname():
            try:
                os.kill(row["supervisor_pid"], signal.SIGCONT)  # a stopped supervisor cannot stop its run
                os.kill(row["supervisor_pid"], signal.SIGUSR1)
            except (ProcessLookupError, PermissionError):
                pass
    stopping = [r for r in results if r["process"] == "stopping"]
    unconfirmed = {r["id"]: r for r in results if r["confirmed"] is False}
    if stopping or unconfirmed:
        grace = max([(store.get_run(r["id"]).get("policy") or {}).get("revoke_grace", 5) for r in stopping] or [0])
        deadline = time.monotonic() + (grace + 2 if wait is None else wait)
        pending = {r["id"]: r for r in stopping}
        told_at: float | None = time.monotonic() + 0.5
        while (pending or unconfirmed) and time.monotonic() < deadline:
            if on_wait is not None and pending and told_at is not None and time.monotonic() >= told_at:
                on_wait(list(pending), grace)
                told_at = None
            for rid in list(pending):
                row = store.get_run(rid)
                if row.get("ended_at") is not None or not supervisor_alive(row):
                    pending.pop(rid)["process"] = "stopped"
            for rid in list(unconfirmed):
                if any(rec["data"].get("confirmed_by") for rec in store.mirrored_types(rid, "run.revoked")):
                    unconfirmed.pop(rid)["confirmed"] = True
            if pending or unconfirmed:
                time.sleep(0.05)
        # a supervisor that did not act in time (stopped, wedged): kill the run's processes ourselves
        for rid, r in list(pending.items()):
            if kill_tree(store.get_run(rid)):
                r["process"] = "killed (its supervisor did not answer)"
                pending.pop(rid)
        for r in pending.values():
            r["process"] = "still running"
    return results


def revoke_run(ref: str, reason: str | None = None, only: bool = False, on_wait=None) -> list[dict]:
    """`agentsess revoke`: :func:`revoke` with its own store connection."""
    from agentsess.edges.store import Store

    with Store() as store:
        return revoke(store, ref, reason, only, on_wait=on_wait)
