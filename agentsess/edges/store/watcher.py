"""A live run's watch on the shared store: revocations from any machine, and reachability.

:class:`RevocationWatcher` is a thread with its own autocommit connection (TCP keepalives,
``tcp_user_timeout``): it ``LISTEN``s, *then* reads the revocation list (a notification sent
while it was disconnected is lost, the list is not), and re-reads it on every notification
or every 0.5 s. A broken connection is retried with backoff (0.1 s doubling to 2 s). Each
change (revoked, unreachable, reachable again) writes a byte to a pipe, so a caller can
``select`` on :meth:`RevocationWatcher.fileno`, and calls ``on_change`` from the thread.
The connection is psycopg's; the thread waits in a ``select`` on its socket (``conn.fileno()``)
and its stop pipe, and a notification is taken in by psycopg during the re-read that follows
(a notify handler counts it), so none piles up in the connection.

A supervisor whose store is the store agent's client (:mod:`.agent`) watches through the agent
instead (:class:`~agentsess.edges.store.agent.AgentWatcher`, the same state, fed by the agent's
one LISTEN connection); the agent's own loop is this class too (:mod:`.agentserver`).

:class:`FleetWatch` is what a supervisor holds (``store.watch_run(...)``): its
:meth:`FleetWatch.tick`, called from the supervisor's own periodic check in the main thread,
writes the ``run.revoked`` receipt that confirms the stop to the machine that revoked, and
applies the profile's ``on_store_unreachable`` (``keep``: warn, and record the outage when
the store is back; ``stop``: stop the run) once the store has been unreachable for
``store_unreachable_after`` seconds. The store answers ``revocation(run_id)`` for a watched
run from the watcher's state, without a query, so the supervisor never blocks on the network.
"""

import os
import select
import threading
import time
from collections.abc import Callable

from agentsess.edges.store import NOTIFY_CHANNEL
from agentsess.errors import AgentsessError

POLL = 0.5
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0


class RevocationWatcher:
    """Watches the revocation list for ``run_ids`` (a run and its ancestors)."""

    def __init__(self, target, run_ids: list[str], on_change: Callable[[], None] | None = None,
                 poll: float = POLL):
        self.target = target
        self.run_ids = list(run_ids)
        self.on_change = on_change
        self.poll = poll
        self.revoked: dict | None = None  # the revocation row that applies, once seen
        self.connected = False
        self.last_ok = time.monotonic()  # the last successful read of the list
        self.down_since: float | None = None  # wall time the store was first missed
        self.outages: list[tuple[float, float]] = []  # (from, to) wall times, once back
        self.reads = 0
        self.notified = 0  # notifications received (each only prompts a re-read)
        self._stop = threading.Event()
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._main, name="agentsess-fleet-watch", daemon=True)
        self._conn = None
        self._conn_lock = threading.Lock()  # _conn is closed only under it (see stop)

    # -- the caller's side ----------------------------------------------------------------

    def fileno(self) -> int:
        """Readable when something changed; :meth:`drain` it after looking."""
        return self._r

    def drain(self) -> None:
        try:
            while os.read(self._r, 256):
                pass
        except (BlockingIOError, OSError):
            pass

    def start(self) -> "RevocationWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the thread, at once wherever it is: waiting (the stop pipe wakes it), connecting
        (the connect watches the pipe too) or blocked in a query on a silent peer (its socket is
        shut down, so psycopg's wait returns and the query fails). No thread may be left inside
        psycopg or libpq when the process exits: OpenSSL's exit handlers would pull its state
        from under it (a crash, and `run` losing its exit code)."""
        self._stop.set()
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass
        with self._conn_lock:
            if self._conn is not None:
                _interrupt(self._conn)
        if self._thread.is_alive():
            self._thread.join(5.0)
        if self._thread.is_alive():
            return  # keep the pipes: the thread still holds their numbers
        for fd in (self._r, self._w, self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def unreachable_for(self) -> float:
        """Seconds since the list was last read, when that is more than two polls ago; else 0."""
        gap = time.monotonic() - self.last_ok
        return gap if gap > 2 * self.poll + 0.5 else 0.0

    # -- the thread -----------------------------------------------------------------------

    def _changed(self) -> None:
        try:
            os.write(self._w, b"!")
        except OSError:
            pass
        if self.on_change is not None:
            try:
                self.on_change()
            except OSError:
                pass

    def _read(self, conn) -> None:
        rows = conn.execute(
            "SELECT run_id, revoked_at, revoked_by, reason, cause FROM revocations WHERE run_id = ANY($1)",
            (list(self.run_ids),),
        ).fetchall()
        self._seen(rows)

    def _seen(self, rows) -> None:
        """The revocation list was read (``rows``: those of ``run_ids``): the store is reachable."""
        self.reads += 1
        self.last_ok = time.monotonic()
        if self.down_since is not None:
            self.outages.append((self.down_since, time.time()))
            self.down_since = None
            self._changed()
        if rows and self.revoked is None:
            found = {r["run_id"]: r for r in rows}
            for rid in self.run_ids:  # the run's own row first, then the nearest ancestor's
                if rid in found:
                    row = dict(found[rid])
                    if rid != self.run_ids[0]:
                        row["cause"] = f"ancestor {rid}"
                    self.revoked = row
                    break
            self._changed()

    def _notified(self, _notify) -> None:
        self.notified += 1

    def _down(self, since: float | None = None) -> None:
        """The store is out of reach (since ``since``, default now)."""
        if self.down_since is None:
            self.down_since = since if since is not None else time.time()
            self._changed()

    # -- the connection followed: a LISTEN connection here, the store agent's in AgentWatcher --

    def _connect(self):
        return self.target.connect(cancel_fd=self._stop_r)

    def _subscribe(self, conn) -> None:
        conn.add_notify_handler(self._notified)
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self._read(conn)

    def _take(self, conn, ready: bool) -> None:
        # a notification (taken in by this query) or the poll: read the list now
        self._read(conn)

    def _main(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                with self._conn_lock:
                    self._conn = conn
                if self._stop.is_set():
                    break
                self._subscribe(conn)
                self.connected = True
                backoff = BACKOFF_FIRST
                while not self._stop.is_set():
                    # something to read, the poll interval, or stop(): whichever comes first
                    ready, _, _ = select.select([conn.fileno(), self._stop_r], [], [], self.poll)
                    if self._stop_r in ready:
                        break
                    self._take(conn, bool(ready))
            except Exception:  # noqa: BLE001 - any failure is an outage; the loop must live on
                if self._stop.is_set():
                    break
                self.connected = False
                self._down()
            finally:
                with self._conn_lock:
                    self._conn = None
                    if conn is not None:
                        try:
                            conn.close()
                        except Exception:  # noqa: BLE001, S110 - closing a broken connection
                            pass
            if self._stop.is_set():
                break
            select.select([self._stop_r], [], [], backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)


def _interrupt(conn) -> None:
    """From another thread: make a call blocked on ``conn`` return at once (its socket is shut
    down; the connection is then broken). The caller keeps ``conn`` from being closed meanwhile."""
    import _socket  # not socket: a run's supervisor must not pay for it (tests/test_startup.py)

    try:
        sock = conn.fileno()
        dup = _socket.socket(fileno=os.dup(sock))
    except Exception:  # noqa: BLE001 - already closed or lost: nothing is blocked on it
        return
    try:
        dup.shutdown(_socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        dup.close()


class FleetWatch:
    """A supervisor's view of the shared store for its run (see the module docstring)."""

    def __init__(self, store, run_id: str, profile, wake: Callable[[], None] | None = None):
        self.store = store
        self.run_id = run_id
        self.on_unreachable = getattr(profile, "on_store_unreachable", "keep")
        self.unreachable_after = float(getattr(profile, "store_unreachable_after", 30))
        self.confirmed = False
        self.warned = False
        self.acted = False
        self.recorded_outages = 0
        store.supervise(run_id)
        row = store.known_row(run_id) or {}
        ids = [run_id] + (store.ancestors(run_id) if row.get("parent_id") else [])
        self.watcher = store.revocation_watcher(ids, wake)
        store.watched[run_id] = self

    def start(self) -> "FleetWatch":
        self.watcher.start()
        return self

    def stop(self) -> None:
        """When the child is gone: a revocation the watcher has not seen yet (the run ended
        first, e.g. stopped by its revoked parent's supervisor) is still confirmed."""
        self.store.watched.pop(self.run_id, None)
        unreachable = self.watcher.unreachable_for() > 0
        self.watcher.stop()
        if unreachable:
            self.store.offline.add(self.run_id)  # the run's last writes wait on this machine
        elif not self.confirmed and self.watcher.revoked is None:
            try:
                found = self.store.revocations_of(self.watcher.run_ids)
            except AgentsessError:
                found = {}
            for rid in self.watcher.run_ids:
                if rid in found:
                    row = dict(found[rid])
                    if rid != self.run_id:
                        row["cause"] = f"ancestor {rid}"
                    self.watcher.revoked = row
                    break
        self._confirm()

    def _confirm(self) -> None:
        """The run.revoked receipt, written by this supervisor: the revoking machine's confirmation."""
        from agentsess.core.receipts import recording
        from agentsess.edges import host
        from agentsess.edges.streams import ReceiptError
        from agentsess.timefmt import rfc3339

        row = self.watcher.revoked
        if row is None or self.confirmed:
            return
        self.confirmed = True
        cause = row["cause"] or "direct"
        ancestor = cause.split(" ", 1)[1] if cause.startswith("ancestor ") else None
        try:
            recording.record(
                self.store, self.run_id, "run.revoked",
                {"cause": "ancestor" if ancestor else "direct", "ancestor": ancestor,
                 "by": row["revoked_by"], "reason": row["reason"], "at": rfc3339(row["revoked_at"]),
                 "confirmed_by": f"supervisor {os.getpid()}@{host.hostname()}"},
            )
        except ReceiptError:
            pass

    def fileno(self) -> int:
        return self.watcher.fileno()

    def revocation(self) -> tuple[float | None, str | None]:
        row = self.watcher.revoked
        return (None, None) if row is None else (row["revoked_at"], row["cause"])

    def tick(self, watch, sup) -> None:
        """From the supervisor's periodic check (main thread): confirm, warn, apply the policy."""
        from agentsess.core.receipts import recording
        from agentsess.edges.streams import ReceiptError
        from agentsess.timefmt import rfc3339

        self.watcher.drain()
        self._confirm()
        down = self.watcher.unreachable_for()
        if down and not self.warned:
            self.warned = True
            _notice(f"the shared store {self.store.location} is unreachable; retrying "
                    f"(on_store_unreachable = {self.on_unreachable} after {int(self.unreachable_after)}s)")
        if down >= self.unreachable_after and not self.acted:
            self.acted = True
            if self.on_unreachable == "stop" and not watch.stopped:
                _notice(f"the shared store has been unreachable for {int(down)}s; stopping run "
                        f"{self.run_id} (on_store_unreachable = stop)")
                watch.stopped = True
                recording.record(self.store, self.run_id, "store.unreachable",
                                 {"for": round(down, 3), "policy": "stop", "action": "stopped"})
                sup.stop(getattr(watch.profile, "revoke_grace", 5))
            else:
                _notice(f"the shared store has been unreachable for {int(down)}s; run {self.run_id} "
                        "goes on (on_store_unreachable = keep)")
        outages = self.watcher.outages
        if len(outages) > self.recorded_outages:
            began, ended = outages[self.recorded_outages][0], outages[-1][1]
            self.recorded_outages = len(outages)
            self.warned = False
            if not watch.stopped:
                self.acted = False
            try:
                recording.record(
                    self.store, self.run_id, "store.reachable",
                    {"unreachable_from": rfc3339(began), "unreachable_to": rfc3339(ended),
                     "seconds": round(ended - began, 3), "policy": self.on_unreachable},
                )
                self.store.sync_mirror(self.run_id)
            except ReceiptError:
                pass
            except Exception as exc:  # noqa: BLE001 - gone again: that outage is recorded when it ends
                _notice(f"the shared store: {getattr(exc, 'message', exc)}")
                return
            _notice(f"the shared store is reachable again after {round(ended - began, 1)}s; recorded")


def _notice(text: str) -> None:
    """Through the run's terminal (held while a full-screen program is up), else stderr."""
    from agentsess.edges.supervisor import notice

    notice(text)