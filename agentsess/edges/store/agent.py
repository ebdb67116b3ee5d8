"""The store agent's client: a PostgreSQL store without psycopg in this process.

A ``postgresql://`` store opened by an ``agentsess`` command (``run``, ``runs``, ``revoke``, …;
not a program that imports agentsess, unless ``AGENTSESS_STORE_AGENT=1``) is an
:class:`AgentStore`: each Store method is one request to
the **store agent** (:mod:`.agentserver`), a long-lived agentsess process of this user, one per
store (URL, data root, host, PG* settings), outside every run, which holds the PostgreSQL
connections, runs the method (with its own transactions) and answers. It is the ssh-agent
shape: the run's start pays a Unix-socket round trip per store call instead of psycopg's
import (~70–100 ms) and two TCP connections with SCRAM.

The socket is ``store-KEY.sock`` in the user's control folder (0700; hidden from a contained
run's child like every control socket). Before a connection is trusted: the file must be a
socket owned by this user, the peer's ``SO_PEERCRED`` uid this user's, and it must answer the
hello as the agent of this very store (its key and protocol). Anything else (a stale file, a
socket planted by another user, a listener that is not the agent, an agent of another
version) is removed and replaced by a new agent, started on demand under a lock
(``store-KEY.lock``: two runs racing start one), detached (``setsid``, its stderr appended to
``<data root>/store-agent.log``). When no agent can be started, ``Store()`` falls back to the
direct psycopg store and says so once on stderr.

Frames: a 4-byte big-endian length, then compact JSON. A request is ``{"m": method, "a":
args, "k": kwargs}``; the answer ``{"r": result}`` (``"lag"``: runs whose mirror fell behind) or
``{"e": message, "c": exit code, "t": kind}``. The agent never hears or says a password.

The revocation watch of a supervised run is :class:`AgentWatcher`: one long-lived connection
that subscribes to the run's ids; the agent's one LISTEN connection pushes each re-read of the
revocation list (every 0.5 s, and at once on a notification) and ``down`` when the store is out
of reach. A silent agent counts as an unreachable store, so ``store_unreachable_after`` and
``on_store_unreachable`` keep their meaning; an agent that dies is restarted by the next
connect, and the watcher re-reads the list on subscribing: no revocation is lost.
"""

import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from agentsess.edges.store import Store
from agentsess.edges.store.holding import StoreUnreachable, SupervisedWrites, pending_exists
from agentsess.edges.store.watcher import RevocationWatcher
from agentsess.errors import STATE, AgentsessError

PROTOCOL = 1
AGENT = "agentsess-store-agent"
MAX_FRAME = 64 << 20
HELLO_TIMEOUT = 3.0  # a listener that does not answer the hello in time is not the agent
CALL_TIMEOUT = 60.0  # beyond psycopg's own (connect 5 s, tcp_user_timeout 10 s, per try)
START_TIMEOUT = 15.0  # for a new agent to listen
OFF = ("0", "off", "no", "false")
ON = ("1", "on", "yes", "true")
# calls that may be sent again after the agent went away without answering
IDEMPOTENT = frozenset((
    "get_run", "resolve", "list_runs", "children", "descendants", "ancestors", "revoked_among", "find_by_token",
    "revocation", "revocations_of", "running", "count", "get_approval", "pending_approvals", "open_approvals",
    "standing_grant", "mirrored", "mirrored_count", "mirrored_types", "applied_migrations", "update_run",
    "set_head", "record_receipt", "sync_mirror", "replay_pending", "delete_runs",
))

_wanted = False
_said = False


class AgentUnavailable(Exception):
    """No store agent could be reached or started."""


def use_agent() -> None:
    """From now on this process opens a PostgreSQL store through the store agent (as the
    agentsess command does without asking: :func:`wanted`)."""
    global _wanted
    _wanted = True


def wanted() -> bool:
    """Whether ``Store()`` goes through the agent: ``AGENTSESS_STORE_AGENT`` (1/0) wins, else
    whether this process is the agentsess command (or asked, :func:`use_agent`) and is not pid 1
    of its PID namespace (a container's entry point, ``unshare --pid``): there every orphan is
    this process's, so an agent would die with it and only add its start to every command.
    Library use in another program (``Store()`` imported) connects directly."""
    value = os.environ.get("AGENTSESS_STORE_AGENT", "").strip().lower()
    if value in OFF:
        return False
    if value in ON:
        return True
    return (_wanted or _command()) and os.getpid() != 1


def _command() -> bool:
    """This process is `agentsess …` (the console script or ``python -m agentsess``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "agentsess.__main__":
        return True
    return bool(sys.argv) and os.path.basename(sys.argv[0]) == "agentsess"


# -- where the agent is ---------------------------------------------------------------------


def key(url: str) -> str:
    """One agent per store URL, data root, config, keyring choice, host and PG* settings: what
    decides where it connects and with which password (PGPASSWORD's value is not hashed in)."""
    from agentsess import digest
    from agentsess.edges import paths

    env = os.environ
    parts = [str(os.getuid()), os.uname().nodename, paths.data_root(), paths.config_file(), url,
             env.get("AGENTSESS_KEYRING", "")]
    for name in sorted(env):
        if name.startswith("PG"):
            parts.append(f"{name}={'set' if name == 'PGPASSWORD' else env[name]}")
    return digest.sha256_text("\0".join(parts))[:24]


def socket_path(url: str) -> str:
    from agentsess.edges import paths

    return paths.store_agent_socket(key(url))


# -- frames ---------------------------------------------------------------------------------


class FrameError(Exception):
    """The other end closed, or sent something that is not a frame."""


def send(sock, obj) -> None:
    data = json.dumps(obj, separators=(",", ":")).encode()
    sock.sendall(len(data).to_bytes(4, "big") + data)


def _exact(sock, n: int) -> bytes:
    chunks = []
    while n:
        part = sock.recv(min(n, 1 << 20))
        if not part:
            raise FrameError("closed")
        chunks.append(part)
        n -= len(part)
    return b"".join(chunks)


def recv(sock):
    n = int.from_bytes(_exact(sock, 4), "big")
    if n > MAX_FRAME:
        raise FrameError("frame too large")
    try:
        return json.loads(_exact(sock, n))
    except ValueError:
        raise FrameError("not JSON") from None


def peer_uid(sock) -> int:
    import _socket
    import struct

    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


# -- connecting, and starting the agent on demand -------------------------------------------


def _trusted(path: str, want: str):
    """A connection to the agent at ``path`` and its hello, or None when nothing trustworthy
    answers there (no file, not a socket, not ours, refused, another peer, not the agent)."""
    import _socket
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(HELLO_TIMEOUT)
        sock.connect(path)
        if peer_uid(sock) != os.getuid():
            raise FrameError("another user's listener")
        send(sock, {"m": "hello", "protocol": PROTOCOL})
        answer = recv(sock)
        hello = answer.get("r") if isinstance(answer, dict) else None
        if not isinstance(hello, dict) or hello.get("agent") != AGENT or hello.get("protocol") != PROTOCOL \
                or hello.get("key") != want or hello.get("version") != _version():
            raise FrameError("not the store agent")
        sock.settimeout(CALL_TIMEOUT)
        return sock, hello
    except (OSError, FrameError, ValueError):
        sock.close()
        return None


def _version() -> str:
    from agentsess import __version__

    return __version__


def connect(url: str):
    """(socket, hello) of this store's agent, started first if none answers."""
    from agentsess.edges import paths

    want = key(url)
    folder = paths.control_dir()
    path = paths.store_agent_socket(want, folder)
    found = _trusted(path, want)
    if found is not None:
        return found
    import fcntl

    _ensure_private(folder)
    lock = os.open(paths.store_agent_lock(want, folder), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _trusted(path, want)  # the racer that held the lock started it
        if found is not None:
            return found
        try:
            os.unlink(path)  # stale, planted, or not the agent: never trusted, replaced
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise AgentUnavailable(f"cannot remove {path}: {exc.strerror}") from None
        ready = _spawn(path, url)
        said = _readiness(ready)
        if said is None:
            raise AgentUnavailable(f"it did not start listening within {START_TIMEOUT:.0f}s "
                                   f"(see {paths.store_agent_log()})")
        if said.startswith(b"error "):
            # what the store itself refuses (its URL, psycopg missing): the direct store would
            # say the same, so it is said as it is, not hidden behind a fallback
            code, _, message = said[6:].decode(errors="replace").partition(" ")
            raise AgentsessError(message.strip(), int(code) if code.isdigit() else STATE)
        if said != b"ok\n":
            raise AgentUnavailable(f"it exited at once (see {paths.store_agent_log()})")
        found = _trusted(path, want)
        if found is None:
            raise AgentUnavailable(f"it does not answer on {path} (see {paths.store_agent_log()})")
        return found
    finally:
        os.close(lock)


def _readiness(ready: int) -> bytes | None:
    """What a starting agent says on its pipe (``ok``, or ``error CODE MESSAGE``), up to its
    end; None when it says nothing in time."""
    import select
    import time

    said = b""
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([ready], [], [], left)[0]:
                return None
            part = os.read(ready, 4096)
            if not part or said.endswith(b"\n") or len(said) > 8192:
                return said
            said += part
            if said == b"ok\n":
                return said
    finally:
        os.close(ready)


def _ensure_private(folder: str) -> None:
    from agentsess.edges.control import ensure_private

    try:
        ensure_private(folder)
    except AgentsessError as exc:
        raise AgentUnavailable(exc.message) from None


READY_FD = 3  # the agent's end of the readiness pipe
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def _spawn(path: str, url: str) -> int:
    """Start the agent detached: ``setsid``, stdin/stdout /dev/null, stderr appended to its log;
    returns a pipe's read end on which it says ``ok`` once it listens (end of file: it failed).

    It should be nobody's descendant: a supervisor is a subreaper (every orphan below it
    becomes its child, and is killed at the run's end), so it stops being one for the moment of
    the double fork (an intermediate child starts the agent and exits at once), and is one again
    before this returns, but only while no process of the run exists: an orphan of the run's
    made in that moment would escape the run. With the run's processes alive (an agent that
    died mid-run, restarted), the new agent stays below the supervisor and ends with the run;
    the run's end starts another if it needs one. A supervisor that is pid 1 of its own PID
    namespace (`unshare`) keeps every orphan whatever it does: that agent lives as long as the
    namespace."""
    import ctypes

    from agentsess.edges import paths
    from agentsess.edges.supervisor import descendants

    env = dict(os.environ)
    env.update(AGENTSESS_HOME=paths.data_root(), AGENTSESS_CONFIG=paths.config_file(), AGENTSESS_STORE=url)
    for name in ("AGENTSESS_RUN_ID", "AGENTSESS_TOKEN", "AGENTSESS_PARENT_RUN_ID", "AGENTSESS_CONTROL"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "agentsess.edges.store.agentserver", path]
    paths.ensure_dir(paths.data_root())
    log = paths.open_private(paths.store_agent_log())
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    if ready_w == READY_FD:  # dup2 onto itself would keep it close-on-exec
        ready_w, old_w = os.dup(ready_w), ready_w
        os.close(old_w)
    libc = ctypes.CDLL(None, use_errno=True)
    flag = ctypes.c_int(0)
    libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)
    was = flag.value and not descendants(os.getpid())
    try:
        if was:
            libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        import warnings

        with warnings.catch_warnings():
            # Python 3.12+ warns of fork() beside threads: the child only spawns and leaves
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the intermediate: start the agent, leave at once
            code = 1
            try:
                os.posix_spawn(sys.executable, argv, env, setsid=True, file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                    (os.POSIX_SPAWN_DUP2, log, 2), (os.POSIX_SPAWN_DUP2, ready_w, READY_FD)])
                code = 0
            finally:
                os._exit(code)
        os.waitpid(pid, 0)
    finally:
        if was:
            libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        os.close(log)
        os.close(devnull)
        os.close(ready_w)
    return ready_r


def attach(url: str) -> "AgentStore | None":
    """This store through its agent, or None (said once) when no agent can be had."""
    global _said
    try:
        sock, hello = connect(url)
    except (AgentUnavailable, OSError) as exc:
        if not _said:
            _said = True
            detail = exc if isinstance(exc, AgentUnavailable) else getattr(exc, "strerror", None) or exc
            sys.stderr.write(f"agentsess: the store agent could not be started ({detail}); "
                             "connecting to the store directly\n")
        return None
    store = object.__new__(AgentStore)
    store._attach(url, sock, hello)
    return store


# -- the store ------------------------------------------------------------------------------


class _Remote(Store):
    """Every Store method, forwarded to the agent (one method, one request)."""

    backend = "postgresql"
    shared = True
    readonly = False
    url = ""
    _sock: "Any" = None
    _attached = False
    _mirror_lag: "set[str]"

    def _attach(self, url: str, sock, hello: dict) -> None:
        import _thread

        self.url = url
        self._sock = sock
        self._lock = _thread.allocate_lock()  # one request at a time on the connection
        self.location = str(hello.get("location") or "")
        self.agent_pid = hello.get("pid")
        self._attached = True

    def __init__(self, path: str | None = None, *, url: str | None = None):
        if self._attached:
            return  # made by attach() through Store()
        from agentsess.edges.store import store_url

        found = url or store_url()
        if found is None:
            raise AgentsessError("no postgresql:// store is configured (AGENTSESS_STORE)", STATE)
        try:
            sock, hello = connect(found)
        except (AgentUnavailable, OSError) as exc:
            raise StoreUnreachable(f"the store agent cannot be reached: {exc}", STATE) from None
        self._attach(found, sock, hello)

    def _call(self, method: str, *args, **kwargs):
        with self._lock:
            return self._call_locked(method, args, kwargs)

    def _call_locked(self, method: str, args, kwargs):
        request = {"m": method, "a": args, "k": kwargs}
        answer = None
        for attempt in (0, 1):
            if self._sock is None:
                try:
                    self._sock, _ = connect(self.url)
                except (AgentUnavailable, OSError) as exc:
                    raise StoreUnreachable(f"the store agent of {self.location} cannot be reached: {exc}",
                                           STATE) from None
            sent = False
            try:
                send(self._sock, request)
                sent = True
                answer = recv(self._sock)
                break
            except (OSError, FrameError):
                self._drop()
                if attempt == 0 and (not sent or method in IDEMPOTENT):
                    continue
                raise StoreUnreachable(f"the store agent of {self.location} went away during {method}",
                                       STATE) from None
        if not isinstance(answer, dict):
            raise AgentsessError(f"the store agent of {self.location} answered something unreadable", STATE)
        if "e" in answer:
            message, code, kind = str(answer["e"]), int(answer.get("c") or STATE), answer.get("t")
            if kind == "unreachable":
                raise StoreUnreachable(message, code)
            if kind == "receipt":
                from agentsess.edges.streams import ReceiptError

                raise ReceiptError(message)
            raise AgentsessError(message, code)
        lag = answer.get("lag")
        if lag:
            self._mirror_lag.update(lag)
        return answer.get("r")

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def close(self) -> None:
        self._drop()

    def _exec(self, sql: str, args=()):
        raise AgentsessError("the store agent's client runs no SQL", STATE)

    def _transaction(self):
        raise AgentsessError("the store agent's client runs no transactions", STATE)

    # forwarded one for one
    def insert_run(self, row):
        return self._call("insert_run", row)

    def update_run(self, run_id, **fields):
        return self._call("update_run", run_id, **fields)

    def set_status_if(self, run_id, expected, **fields):
        return self._call("set_status_if", run_id, expected, **fields)

    def set_head(self, run_id, head, count):
        return self._call("set_head", run_id, head, count)

    def record_receipt(self, run_id, rec):
        try:
            return self._call("record_receipt", run_id, rec)
        except StoreUnreachable:
            self._mirror_lag.add(run_id)

    def get_run(self, run_id):
        return self._call("get_run", run_id)

    def resolve(self, ref):
        return self._call("resolve", ref)

    def list_runs(self, status=None, name=None, since=None, parent_id=None, limit=None, columns="*", host=None):
        return self._call("list_runs", status=status, name=name, since=since, parent_id=parent_id,
                          limit=limit, columns=columns, host=host)

    def children(self, run_id):
        return self._call("children", run_id)

    def descendants(self, run_id):
        return self._call("descendants", run_id)

    def ancestors(self, run_id):
        return self._call("ancestors", run_id)

    def revoked_among(self, run_ids):
        return self._call("revoked_among", list(run_ids))

    def find_by_token(self, token_sha256):
        return self._call("find_by_token", token_sha256)

    def revocation(self, run_id):
        revoked_at, cause = self._call("revocation", run_id)
        return revoked_at, cause

    def revocations_of(self, run_ids):
        return self._call("revocations_of", list(run_ids))

    def mark_revoked(self, causes, now, by, reason):
        return self._call("mark_revoked", causes, now, by, reason)

    def running(self):
        return self._call("running")

    def count(self):
        return self._call("count")

    def delete_runs(self, run_ids):
        return self._call("delete_runs", list(run_ids))

    def applied_migrations(self):
        return self._call("applied_migrations")

    def insert_approval(self, row):
        return self._call("insert_approval", row)

    def get_approval(self, run_id, request_id):
        return self._call("get_approval", run_id, request_id)

    def answer_approval(self, run_id, request_id, status, now, by, reason=None, grant_until=None):
        return self._call("answer_approval", run_id, request_id, status, now, by, reason=reason,
                          grant_until=grant_until)

    def consume_approval(self, run_id, request_id, now):
        return self._call("consume_approval", run_id, request_id, now)

    def pending_approvals(self, now, run_id=None):
        return self._call("pending_approvals", now, run_id=run_id)

    def open_approvals(self, run_id):
        return self._call("open_approvals", run_id)

    def end_approval(self, run_id, request_id, now, reason):
        return self._call("end_approval", run_id, request_id, now, reason)

    def standing_grant(self, run_id, tool, args_sha256, now):
        return self._call("standing_grant", run_id, tool, args_sha256, now)

    def mirrored(self, run_id):
        import base64

        return [base64.b64decode(line) for line in self._call("mirrored", run_id)]

    def mirrored_count(self, run_id):
        return self._call("mirrored_count", run_id)

    def mirrored_types(self, run_id, rtype):
        return self._call("mirrored_types", run_id, rtype)

    def sync_mirror(self, run_id):
        return self._call("sync_mirror", run_id)


class AgentStore(SupervisedWrites, _Remote):
    """A PostgreSQL store through the store agent (see the module docstring)."""

    def _attach(self, url: str, sock, hello: dict) -> None:
        self._init_holding()
        super()._attach(url, sock, hello)
        if pending_exists():  # what a run here wrote while the store was out of reach
            try:
                self._call("replay_pending")
            except AgentsessError:
                pass

    def close(self) -> None:
        if self._held or self._mirror_lag:
            self._flush_or_keep()
        super().close()

    def watch_run(self, run_id: str, profile, wake):
        from agentsess.edges.store.watcher import FleetWatch

        return FleetWatch(self, run_id, profile, wake)

    def revocation_watcher(self, run_ids: list[str], on_change):
        return AgentWatcher(self.url, run_ids, on_change=on_change)


class AgentWatcher(RevocationWatcher):
    """A run's revocation watch through the agent: the state of :class:`RevocationWatcher`,
    fed by the agent's pushes (see the module docstring) instead of a connection of its own."""

    def __init__(self, url: str, run_ids: list[str], on_change=None, poll: float | None = None):
        if poll is None:
            super().__init__(None, run_ids, on_change)
        else:
            super().__init__(None, run_ids, on_change, poll)
        self.url = url

    def _connect(self):
        sock, _ = connect(self.url)
        return sock

    def _subscribe(self, sock) -> None:
        send(sock, {"m": "watch", "ids": self.run_ids})

    def _take(self, sock, ready: bool) -> None:
        import time

        if ready:
            frame = recv(sock)
            if isinstance(frame, dict) and isinstance(frame.get("rows"), list):
                self._seen(frame["rows"])
            elif isinstance(frame, dict) and frame.get("down"):
                self._down()
        gap = self.unreachable_for()
        if gap:  # the agent says nothing: the store is as good as unreachable
            self._down(time.time() - gap)


__all__ = ["AgentStore", "AgentUnavailable", "AgentWatcher", "attach", "connect", "socket_path", "use_agent",
           "wanted"]
