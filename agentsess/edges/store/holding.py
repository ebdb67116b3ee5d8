"""A supervisor's writes to its own run while the shared store is out of reach.

A supervised run goes on when the shared store is unreachable (``on_store_unreachable =
keep``, or until ``stop`` takes effect): the writes to its own row are held and applied to
this process's copy of the row, so the run can still end, write ``run.exited`` and seal.
They reach the store at ``close()``, or, if it is still unreachable, are kept in
``<data root>/store-pending/`` and applied by the next agentsess command that opens it.

:class:`SupervisedWrites` is mixed into both shared-store clients: the direct one
(:class:`~agentsess.edges.store.postgres.PostgresStore`) and the store agent's
(:class:`~agentsess.edges.store.agent.AgentStore`). It wraps the next class's methods in the
MRO, and raises nothing of psycopg's: the next class turns an outage into
:class:`StoreUnreachable`.
"""

import json
import os

from agentsess.errors import AgentsessError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class StoreUnreachable(AgentsessError):
    """The shared store could not be reached (connection refused, cut, timed out)."""


class SupervisedWrites:
    """Held writes and a cached row for the runs this process supervises (see the module)."""

    location: str

    def _init_holding(self) -> None:
        self._mirror_lag: set[str] = set()
        self.watched: dict = {}  # run id -> FleetWatch: the live runs this process supervises
        self.supervised: set[str] = set()  # runs whose writes are held back while unreachable
        self._cache: dict[str, dict] = {}  # those runs' rows as this process last knew them
        self._held: dict[str, list] = {}  # their writes made while the store was unreachable
        self.offline: set[str] = set()  # runs whose watcher last saw the store unreachable

    def supervise(self, run_id: str) -> None:
        self.supervised.add(run_id)
        if run_id not in self._cache:
            row = super().get_run(run_id)  # type: ignore[misc]
            if row is not None:
                self._cache[run_id] = row

    def known_row(self, run_id: str) -> dict | None:
        """The run's row as this process last wrote or read it (no query; may be stale)."""
        row = self._cache.get(run_id)
        return None if row is None else dict(row)

    def _offline(self, run_id: str) -> bool:
        """Writes for this run are held: some already are, or its watcher misses the store
        (or missed it when it stopped: a silent partition would hang every query)."""
        if self._held.get(run_id) or run_id in self.offline:
            return True
        watch = self.watched.get(run_id)
        return watch is not None and watch.watcher.unreachable_for() > 0

    def _hold(self, run_id: str, op: list) -> bool:
        self._held.setdefault(run_id, []).append(op)
        return _apply(self._cache.setdefault(run_id, {"id": run_id}), op)

    def insert_run(self, row: dict) -> None:
        super().insert_run(row)  # type: ignore[misc]
        self._cache[row["id"]] = json.loads(json.dumps(row))

    def update_run(self, run_id: str, **fields) -> None:
        op = ["update", fields]
        if run_id in self.supervised:
            if self._offline(run_id):
                self._hold(run_id, op)
                return
            try:
                super().update_run(run_id, **fields)  # type: ignore[misc]
            except StoreUnreachable:
                self._hold(run_id, op)
                return
        else:
            super().update_run(run_id, **fields)  # type: ignore[misc]
        if run_id in self._cache:
            _apply(self._cache[run_id], op)

    def set_status_if(self, run_id: str, expected: str, **fields) -> bool:
        op = ["status_if", expected, fields]
        if run_id in self.supervised:
            if self._offline(run_id):
                return self._hold(run_id, op)
            try:
                done = super().set_status_if(run_id, expected, **fields)  # type: ignore[misc]
            except StoreUnreachable:
                return self._hold(run_id, op)
        else:
            done = super().set_status_if(run_id, expected, **fields)  # type: ignore[misc]
        if done and run_id in self._cache:
            _apply(self._cache[run_id], op)
        return done

    def get_run(self, run_id: str) -> dict | None:
        if run_id in self.supervised:
            if self._offline(run_id) and run_id in self._cache:
                return dict(self._cache[run_id])
            try:
                row = super().get_run(run_id)  # type: ignore[misc]
            except StoreUnreachable:
                if run_id in self._cache:
                    return dict(self._cache[run_id])
                raise
            if row is not None:
                self._cache[run_id] = dict(row)
            return row
        return super().get_run(run_id)  # type: ignore[misc]

    def record_receipt(self, run_id: str, rec: dict) -> None:
        """A supervised run's receipt while its store is out of reach: the mirror lags (the
        receipt is on disk already; the mirror is caught up from the stream when it is back)."""
        if run_id in self.supervised and self._offline(run_id):
            self._mirror_lag.add(run_id)
            return
        super().record_receipt(run_id, rec)  # type: ignore[misc]

    def open_approvals(self, run_id: str):
        """A run's unanswered requests; none while its writes are held (a silent partition would
        hang the query, and no answer can reach the run through the store then either)."""
        if self._offline(run_id):
            return []
        return super().open_approvals(run_id)  # type: ignore[misc]

    def revocation(self, run_id: str) -> tuple[float | None, str | None]:
        """A supervised run's revocation from its watcher (no query, never blocks); else the row's."""
        watch = self.watched.get(run_id)
        if watch is not None:
            return watch.revocation()
        return super().revocation(run_id)  # type: ignore[misc]

    def lagging(self) -> set[str]:
        return set(self._mirror_lag)

    def _flush(self) -> None:
        """Apply the held writes and catch the mirrors up; raises StoreUnreachable if it cannot."""
        from agentsess.edges.streams import ReceiptError

        for run_id in list(self._held):
            for op in self._held[run_id]:
                replay(self, op, run_id)
            del self._held[run_id]
        for run_id in list(self._mirror_lag):
            try:
                self.sync_mirror(run_id)  # type: ignore[attr-defined]
            except (ReceiptError, FileNotFoundError):
                self._mirror_lag.discard(run_id)

    def _flush_or_keep(self) -> None:
        from agentsess.edges import paths

        if not (self.offline & (set(self._held) | self._mirror_lag)):  # else a try could hang
            try:
                self._flush()
                return
            except StoreUnreachable:
                pass
        folder = paths.ensure_dir(paths.store_pending_dir())
        for run_id in set(self._held) | self._mirror_lag:
            ops = self._held.get(run_id, [])
            path = paths.store_pending_file(run_id, folder)
            try:
                with open(path, "rb") as fh:
                    ops = json.load(fh)["ops"] + ops
            except (OSError, ValueError, KeyError):
                pass
            paths.write_private(path, json.dumps({"run": run_id, "ops": ops}).encode())
            notice(f"the shared store {self.location} is unreachable: what run {run_id} wrote meanwhile "
                   "is kept on this machine and reaches the store with the next agentsess command here")
        self._held.clear()
        self._mirror_lag.clear()


def _apply(row: dict, op: list) -> bool:
    """Apply a held write to a cached row; for status_if, whether it applied."""
    if op[0] == "update":
        row.update(op[1])
        return True
    if op[0] == "status_if":
        if row.get("status") != op[1]:
            return False
        row.update(op[2])
        return True
    return False


# what a supervisor writes to its own row while the store is out of reach: a pending file
# (in the data root, which a contained run cannot see) may hold nothing else, so that even a
# forged one could never, say, clear a revocation
REPLAYABLE = frozenset(("child_pid", "child_pgid", "child_started", "sandbox_pid", "ended_at", "exit_code", "signal",
                        "output_bytes", "output_sha256", "error", "status"))


def replay(store, op: list, run_id: str, from_file: bool = False) -> None:
    """A held write, now (past the holding, to the store itself); one read back from a pending
    file only within REPLAYABLE."""
    direct: "Any" = super(SupervisedWrites, store)
    if op[0] == "update":
        if not from_file or set(op[1]) <= REPLAYABLE - {"status"}:
            direct.update_run(run_id, **op[1])
    elif op[0] == "status_if" and (
        not from_file or (op[1] == "running" and set(op[2]) <= REPLAYABLE and op[2].get("status") in ("exited", None))
    ):
        direct.set_status_if(run_id, op[1], **op[2])


def pending_exists() -> bool:
    from agentsess.edges import paths

    return os.path.isdir(paths.store_pending_dir())


def notice(text: str) -> None:
    """Through the run's terminal (held while a full-screen program is up), else stderr."""
    from agentsess.edges.supervisor import notice as say

    say(text)
