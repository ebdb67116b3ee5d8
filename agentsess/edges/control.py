"""The control socket: how commands inside a run ask their supervisor.

One Unix socket per run, owned by its supervisor, in a private folder (:func:`control_dir`).
A client sends one JSON object and shuts its side; the supervisor answers with one JSON
object and closes. The caller is known by its peer credentials (``SO_PEERCRED``): the
supervisor decides which run a caller belongs to from the caller's process ancestry, never
from anything the caller says about itself.

A client finds its run's socket, in order: ``AGENTSESS_CONTROL``; the fixed path a
contained child sees (:func:`agentsess.edges.containment.inside_socket`); the socket of the
nearest ancestor process that is a supervisor (advisory runs, when the agent dropped the
variable). The client half imports nothing beyond the standard library's socket and json:
it runs on every tool call.
"""

import json
import os
import socket

from agentsess.edges.host import ancestors
from agentsess.edges.paths import control_dir, control_link, control_socket, inside_control_socket

CONTROL_ENV = "AGENTSESS_CONTROL"
MAX_MESSAGE = 64 << 20  # a hook event carries the tool's whole result
MAX_FDS = 4


class ControlError(Exception):
    """The supervisor could not be reached, or answered something unreadable."""


def _private(folder: str) -> bool:
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    import stat

    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def find_socket(env=None) -> str | None:
    """The control socket of the run this process is in, or None outside any run."""
    env = os.environ if env is None else env
    named = env.get(CONTROL_ENV)
    if named and os.path.exists(named):
        return named
    folder = control_dir()
    inside = inside_control_socket(folder)
    if os.path.exists(inside):
        return inside
    if not _private(folder):
        return None
    for pid in ancestors(os.getpid()):
        link = control_link(pid, folder)
        if os.path.exists(link):
            return link
    return None


def request(path: str, message: dict, timeout: float | None = None) -> dict:
    """Send ``message`` to the supervisor at ``path``; return its answer. File descriptors the
    supervisor passed along (SCM_RIGHTS) are in the answer's ``fds``."""
    data = json.dumps(message, separators=(",", ":")).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            header, fds, _flags, _addr = socket.recv_fds(sock, 1, MAX_FDS)
            answer = _read_all(sock)
    except OSError as exc:
        raise ControlError(f"cannot reach the run's supervisor at {path}: {exc.strerror or exc}") from None
    try:
        reply = json.loads(answer) if header else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        for fd in fds:
            os.close(fd)
        raise ControlError("the run's supervisor sent an unreadable answer")
    if fds:
        reply["fds"] = fds
    return reply


def _read_all(sock: socket.socket) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        part = sock.recv(1 << 16)
        if not part:
            return b"".join(parts)
        size += len(part)
        if size > MAX_MESSAGE:
            raise OSError("message too large")
        parts.append(part)


def peer_pid(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connected Unix socket."""
    import struct

    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


class ControlServer:
    """The supervisor's end: accepts connections on a thread, one thread per request.

    ``handler(message, pid)`` returns the answer; it runs on the connection's thread and
    must not raise (an exception becomes ``{"ok": false, "error": ...}``). Connections from
    another Unix user are closed unanswered.
    """

    def __init__(self, run_id: str, handler, folder: str | None = None):
        self.folder = folder or control_dir()
        self.path = control_socket(run_id, self.folder)
        self.link = control_link(os.getpid(), self.folder)
        self.handler = handler
        self._sock: socket.socket | None = None
        self._thread: object | None = None

    def start(self) -> str:
        import threading

        _ensure_private(self.folder)
        for stale in (self.path, self.link):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        sock.listen(64)
        os.symlink(os.path.basename(self.path), self.link)
        self._sock = sock
        thread = threading.Thread(target=self._accept, name="agentsess-control", daemon=True)
        thread.start()
        self._thread = thread
        return self.path

    def _accept(self) -> None:
        import threading

        sock = self._sock
        while sock is not None:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                pid, uid = peer_pid(conn)
                if uid != os.getuid():
                    return
                conn.settimeout(30)
                raw = _read_all(conn)
                try:
                    message = json.loads(raw)
                except ValueError:
                    message = None
                if not isinstance(message, dict):
                    answer = {"ok": False, "error": "the request is not a JSON object", "code": 2}
                else:
                    try:
                        answer = self.handler(message, pid)
                    except Exception as exc:  # the handler's bug must not kill the run
                        answer = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}", "code": 2}
                passed = answer.pop("fds", None)
                fds = [int(fd) for fd in passed] if isinstance(passed, list) else []
                try:
                    socket.send_fds(conn, [b"F" if fds else b"N"], fds)
                finally:
                    for fd in fds:
                        os.close(fd)
                conn.sendall(json.dumps(answer, separators=(",", ":")).encode())
            except OSError:
                pass

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for path in (self.link, self.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _ensure_private(folder: str) -> None:
    from agentsess.errors import STATE, AgentsessError

    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise AgentsessError(f"cannot create the control folder {folder}: {exc.strerror}", STATE) from None
    if not _private(folder):
        raise AgentsessError(
            f"the control folder {folder} is not a private folder of this user (0700, owned by uid "
            f"{os.getuid()}); remove it or fix its owner and mode",
            STATE,
        )
