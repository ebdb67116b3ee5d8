"""Runs whose supervisor is gone: found when any command next looks, marked ``abandoned``.

A run is abandoned when its status says running but its supervisor's pid is gone or now
names another process (checked by start time). Its credentials are then treated as
revoked, what is left of its process group is stopped, and its stream gets a
``run.abandoned`` receipt and a seal.
"""

import os
import signal
import time

from agentsess.core.receipts import recording
from agentsess.edges import host
from agentsess.edges.streams import ReceiptError


def supervisor_alive(row: dict) -> bool:
    if row.get("host") and row["host"] != host.hostname():
        return True  # another machine's run: not ours to judge
    return host.same_process(row.get("supervisor_pid"), row.get("supervisor_started"))


def stop_leftovers(row: dict) -> bool:
    """KILL what is left of a dead supervisor's process group, if it is still that group.

    The group's leader is the run's child: alive with the recorded start time, or gone while
    the group lives on (the kernel does not reuse a pid that is still a live group's id).
    """
    pgid = row.get("child_pgid")
    if not pgid or (row.get("host") and row["host"] != host.hostname()):
        return False
    leader = host.process_start(pgid)
    if leader is not None and row.get("child_started") is not None and leader != int(row["child_started"]):
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _stop_marked(row: dict) -> bool:
    """KILL what a dead supervisor's run left outside its process group (a ``setsid``
    daemon of an advisory run) that still carries the run's id in its environment."""
    if (row.get("host") and row["host"] != host.hostname()) or row.get("child_pid") is None:
        return False
    return _kill(host.processes_of_run(row["id"]))


def _kill(pids) -> bool:
    """SIGKILL each of ``pids``; True when any was signalled."""
    hit = False
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            hit = True
        except (ProcessLookupError, PermissionError):
            pass
    return hit


def kill_tree(row: dict) -> bool:
    """KILL a live run's processes without its supervisor: the namespace of a contained run,
    the child's group, and every process below the supervisor (which stays: it is the run's
    authority and records the end once it runs again). True when anything was signalled."""
    if row.get("host") and row["host"] != host.hostname():
        return False
    from agentsess.edges.supervisor import descendants

    hit = stop_leftovers(row)
    targets = []
    sandbox = row.get("sandbox_pid")
    if sandbox:
        targets.append(sandbox)
    if supervisor_alive(row) and row.get("child_pid") is not None:
        # (a run with no child of its own, a sub-agent's, shares its parent's supervisor: its
        # descendants are the parent's processes, not this run's)
        targets.extend(descendants(row["supervisor_pid"]))
    return _kill(targets) or hit


def reap_abandoned(store) -> list[str]:
    """Mark every running run whose supervisor died as abandoned; returns their ids."""
    found = []
    for row in store.running():
        if supervisor_alive(row):
            continue
        now = time.time()
        if not store.set_status_if(row["id"], "running", status="abandoned", ended_at=now):
            continue
        found.append(row["id"])
        stopped = stop_leftovers(row)
        stopped = _stop_marked(row) or stopped
        if store.open_approvals(row["id"]):  # its held calls wait no more (issue 16)
            from agentsess.core.guard import approvals

            approvals.end_pending(store, row["id"], approvals.ABANDONED_REASON, record=recording.record)
        try:
            recording.record(
                store,
                row["id"],
                "run.abandoned",
                {
                    "supervisor_pid": row.get("supervisor_pid"),
                    "detected_by_pid": os.getpid(),
                    "leftover_processes_killed": stopped,
                    "credentials": "treated as revoked",
                },
            )
            recording.seal(store, row["id"])
        except ReceiptError:
            pass
    return found
