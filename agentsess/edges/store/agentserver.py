"""The store agent: one long-lived process per user and PostgreSQL store, outside every run.

Started on demand by the client (:mod:`.agent`) as ``python -m agentsess.edges.store.agentserver
SOCKET`` (internal: not a command of the CLI), detached, in a new session, not dumpable (no
same-user process reads its memory or environment). It listens on ``SOCKET`` in the user's
control folder (0600, in a 0700 folder a contained run's child never sees), answers only
peers of its own uid (``SO_PEERCRED``), and serves the Store interface: each request is one
Store method, run on a :class:`~agentsess.edges.store.postgres.PostgresStore` of its small pool
(with that method's own transactions), its answer one frame. The DSN's password stays here
(read from the keyring or left to libpq's PGPASSFILE, as the direct store does); nothing
secret is on its command line or in its log (``<data root>/store-agent.log``).

Revocations: one LISTEN connection (:class:`_Listener`, the watcher's loop) re-reads the
revocation list of every subscribed run on each notification and every 0.5 s and pushes each
subscriber its rows; when the store is out of reach it pushes ``down`` (and, stuck on a silent
peer, says nothing, which the client counts as unreachable too).

It exits after ``AGENTSESS_STORE_AGENT_IDLE`` seconds (default 600) without a client, when its
socket file is removed or replaced, and on SIGTERM.
"""

import base64
import os
import select
import signal
import sys
import threading
import time
from typing import Any

from agentsess import __version__
from agentsess.edges.store.agent import AGENT, PROTOCOL, FrameError, key, peer_uid, recv, send
from agentsess.edges.store.holding import StoreUnreachable, pending_exists
from agentsess.edges.store.watcher import RevocationWatcher
from agentsess.errors import STATE, AgentsessError

IDLE = 600.0
POOL = 4  # idle connections kept
CALLS = frozenset((
    "insert_run", "update_run", "set_status_if", "set_head", "record_receipt", "get_run", "resolve", "list_runs",
    "children", "descendants", "ancestors", "revoked_among", "find_by_token", "revocation", "revocations_of",
    "mark_revoked", "running", "count", "delete_runs", "insert_approval", "get_approval", "answer_approval",
    "consume_approval", "pending_approvals", "open_approvals", "end_approval", "standing_grant", "mirrored",
    "mirrored_count", "mirrored_types", "applied_migrations", "sync_mirror",
))


def log(text: str) -> None:
    from agentsess.timefmt import rfc3339

    sys.stderr.write(f"{rfc3339(time.time())} store agent {os.getpid()}: {text}\n")
    sys.stderr.flush()


class _Listener(RevocationWatcher):
    """The agent's one LISTEN connection: the watcher's loop over every subscriber's ids."""

    def __init__(self, agent: "Agent"):
        super().__init__(agent.target, [], on_change=agent.down)
        self.agent = agent

    def _read(self, conn) -> None:
        ids = self.agent.watched_ids()
        rows = []
        if ids:
            rows = conn.execute(
                "SELECT run_id, revoked_at, revoked_by, reason, cause FROM revocations WHERE run_id = ANY($1)",
                (ids,),
            ).fetchall()
        self.reads += 1
        self.last_ok = time.monotonic()
        self.down_since = None
        self.agent.publish([dict(r) for r in rows])


class Agent:
    def __init__(self, path: str, url: str):
        from agentsess.edges.store.postgres import Target, _keyring_password

        self.path = path
        self.url = url
        self.key = key(url)
        self.target = Target(url, _keyring_password())
        self.idle = idle_seconds()
        self.lock = threading.Lock()
        self.pool: list = []
        self.clients = 0
        self.idle_since = time.monotonic()
        self.subscribers: dict = {}  # socket -> (ids, send lock)
        self.listener: _Listener | None = None
        self.sock: Any = None
        self.inode: int | None = None

    # -- the pool of stores -----------------------------------------------------------------

    def take(self):
        from agentsess.edges.store.postgres import PostgresStore

        with self.lock:
            if self.pool:
                return self.pool.pop()
        return PostgresStore(url=self.url)

    def give(self, store, broken: bool) -> None:
        if not broken:
            with self.lock:
                if len(self.pool) < POOL:
                    self.pool.append(store)
                    return
        try:
            store.close()
        except Exception:  # noqa: BLE001 - a broken connection closing
            pass

    def call(self, method: str, args: list, kwargs: dict) -> dict:
        from agentsess.edges.streams import ReceiptError

        broken = False
        store = self.take()
        try:
            if method == "replay_pending":
                result = None
                if pending_exists():
                    store.db  # noqa: B018 - opens (and replays once) if it had not
                    store._replay_pending()
            else:
                result = getattr(store, method)(*args, **kwargs)
            if method == "mirrored" and result is not None:
                result = [base64.b64encode(line).decode() for line in result]
            answer = {"r": result}
            if store._mirror_lag:
                answer["lag"] = sorted(store._mirror_lag)
                store._mirror_lag.clear()
            return answer
        except StoreUnreachable as exc:
            broken = True
            return {"e": exc.message, "c": exc.exit_code, "t": "unreachable"}
        except ReceiptError as exc:
            return {"e": exc.message, "c": exc.exit_code, "t": "receipt"}
        except AgentsessError as exc:
            broken = store._db is None or store._db.closed
            return {"e": exc.message, "c": exc.exit_code}
        except (TypeError, ValueError, KeyError) as exc:
            return {"e": f"the store agent refused {method}: {type(exc).__name__}", "c": STATE}
        finally:
            store._mirror_lag.clear()
            store._held.clear()
            self.give(store, broken)

    # -- revocations ----------------------------------------------------------------------

    def watched_ids(self) -> list[str]:
        with self.lock:
            out: set[str] = set()
            for ids, _ in self.subscribers.values():
                out.update(ids)
        return sorted(out)

    def _push(self, conn, lock, frame: dict) -> None:
        with lock:
            try:
                send(conn, frame)
            except OSError:
                pass  # gone: its thread sees the close and unsubscribes

    def publish(self, rows: list[dict]) -> None:
        with self.lock:
            subs = list(self.subscribers.items())
        for conn, (ids, lock) in subs:
            self._push(conn, lock, {"rows": [r for r in rows if r["run_id"] in ids]})

    def down(self) -> None:
        with self.lock:
            subs = list(self.subscribers.items())
        for conn, (_, lock) in subs:
            self._push(conn, lock, {"down": 1})

    def subscribe(self, conn, ids: list[str]) -> None:
        ids = [str(i) for i in ids][:64]
        lock = threading.Lock()
        with self.lock:
            self.subscribers[conn] = (set(ids), lock)
            if self.listener is None:
                self.listener = _Listener(self).start()  # type: ignore[assignment]
        # a first read of its own (the listener's next one includes these ids too)
        answer = self.call("revocations_of", [ids], {})
        if "r" in answer:
            self._push(conn, lock, {"rows": list(answer["r"].values())})
        else:
            self._push(conn, lock, {"down": 1})
        try:
            while True:
                recv(conn)  # nothing more is asked on it; its close ends the subscription
        except (OSError, FrameError):
            pass
        finally:
            with self.lock:
                self.subscribers.pop(conn, None)

    # -- connections ----------------------------------------------------------------------

    def serve_one(self, conn) -> None:
        with self.lock:
            self.clients += 1
        try:
            if peer_uid(conn) != os.getuid():
                return
            while True:
                try:
                    request = recv(conn)
                except (OSError, FrameError):
                    return
                if not isinstance(request, dict):
                    return
                method = request.get("m")
                answer: dict[str, Any]
                if method == "hello":
                    answer = {"r": {"agent": AGENT, "protocol": PROTOCOL, "key": self.key, "version": __version__,
                                    "location": self.target.label, "pid": os.getpid()}}
                elif method == "watch":
                    self.subscribe(conn, list(request.get("ids") or []))
                    return
                elif method in CALLS or method == "replay_pending":
                    args = request.get("a") or []
                    kwargs = request.get("k") or {}
                    if not isinstance(args, list) or not isinstance(kwargs, dict):
                        answer = {"e": "the store agent got a malformed request", "c": STATE}
                    else:
                        answer = self.call(method, args, kwargs)
                else:
                    answer = {"e": "the store agent has no such request", "c": STATE}
                try:
                    send(conn, answer)
                except OSError:
                    return
        except Exception as exc:  # noqa: BLE001 - one connection's failure never ends the agent
            log(f"a connection failed: {type(exc).__name__}")
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self.lock:
                self.clients -= 1
                if self.clients == 0:
                    self.idle_since = time.monotonic()

    def listen(self) -> None:
        import _socket

        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        sock.listen(128)
        self.sock = sock
        self.inode = os.stat(self.path).st_ino

    def ours(self) -> bool:
        try:
            return os.lstat(self.path).st_ino == self.inode
        except OSError:
            return False

    def _drop_lock(self) -> None:
        """Remove the start lock's file when no client holds it (none is starting an agent): the
        control folder keeps no file per store ever used. A client that opened it just before
        works on a removed file; two agents may then start, and the one whose socket file is
        replaced leaves at once (:meth:`ours`)."""
        import fcntl

        from agentsess.edges import paths

        path = paths.store_agent_lock(self.key, os.path.dirname(self.path))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(path)
        except OSError:
            pass  # a client is starting one
        finally:
            os.close(fd)

    def run(self) -> int:
        import _socket

        assert self.sock is not None
        log(f"serving {self.target.label} on {self.path}")
        reason = "stopped"
        try:
            while True:
                ready, _, _ = select.select([self.sock], [], [], 1.0)
                if ready:
                    try:
                        fd, _ = self.sock._accept()
                    except OSError:
                        continue
                    conn = _socket.socket(fileno=fd)
                    threading.Thread(target=self.serve_one, args=(conn,), daemon=True).start()
                    continue
                if not self.ours():
                    reason = "its socket file is gone"
                    break
                with self.lock:
                    idle = self.clients == 0 and time.monotonic() - self.idle_since >= self.idle
                if idle:
                    reason = f"idle for {self.idle:g}s"
                    break
        finally:
            self.close()
        log(f"exits: {reason}")
        return 0

    def close(self) -> None:
        if self.ours():
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self._drop_lock()
        if self.sock is not None:
            self.sock.close()
        if self.listener is not None:
            self.listener.stop()
        with self.lock:
            pool, self.pool = self.pool, []
        for store in pool:
            try:
                store.close()
            except Exception:  # noqa: BLE001 - closing at exit
                pass


def idle_seconds() -> float:
    """``AGENTSESS_STORE_AGENT_IDLE`` (seconds without a client before the agent leaves)."""
    return float(os.environ.get("AGENTSESS_STORE_AGENT_IDLE") or IDLE)


def _ready(said: str = "ok\n") -> None:
    """Tell the client that started this agent that it listens, or why it cannot (fd 3, then
    closed): ``ok``, or ``error CODE MESSAGE`` (the store's own one-line refusal, masked)."""
    from agentsess.edges.store.agent import READY_FD

    try:
        os.write(READY_FD, said.encode()[:4096])
        os.close(READY_FD)
    except OSError:
        pass  # started by hand


def main(argv: list[str]) -> int:
    from agentsess.edges.store import store_url
    from agentsess.edges.supervisor import not_dumpable

    not_dumpable()
    if len(argv) != 1:
        sys.stderr.write("usage: python -m agentsess.edges.store.agentserver SOCKET (started by agentsess itself)\n")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        idle_seconds()
    except ValueError:  # the agent's own setting: runs go on without it (the client falls back)
        log("cannot start: AGENTSESS_STORE_AGENT_IDLE must be a number of seconds")
        return 2
    try:
        url = store_url()
        if url is None:
            raise AgentsessError("no postgresql:// store is configured (AGENTSESS_STORE)", STATE)
        agent = Agent(argv[0], url)
        agent.listen()
        _ready()
    except AgentsessError as exc:
        log(f"cannot start: {exc.message}")
        _ready(f"error {exc.exit_code} {' '.join(exc.message.split())}\n")
        return exc.exit_code
    except OSError as exc:
        log(f"cannot listen on {argv[0]}: {exc.strerror}")
        return STATE
    return agent.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
