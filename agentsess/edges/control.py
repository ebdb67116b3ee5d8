"""The control socket: how commands inside a run ask their supervisor.

One Unix socket per run, owned by its supervisor, in a private folder (:func:`control_dir`).
A client sends one JSON object and shuts its side; the supervisor answers with one JSON
object and closes. The caller is known by its peer credentials (``SO_PEERCRED``): the
supervisor decides which run a caller belongs to from the caller's process ancestry, never
from anything the caller says about itself.

A client finds its run's socket, in order: ``AGENTSESS_CONTROL``; the fixed path a
contained child sees (:func:`agentsess.edges.containment.inside_socket`); the socket of the
nearest ancestor process that is a supervisor (advisory runs, when the agent dropped the
variable). The client half runs on every tool call, so it imports almost nothing: a hook, a
plain check and `exec` (:func:`request_fast`) send one frame, ``FAST1 OP WORDS…`` and the raw
input (the agent's event; exec's cwd, source and command), over ``_socket`` and get the exit
code and the bytes to print back, rendered by the supervisor; no ``json``, ``socket`` or
argument parser is loaded for them.
"""

import os

from agentsess.edges.host import lineage, process_start
from agentsess.edges.paths import control_dir, control_link, control_socket, inside_control_socket

CONTROL_ENV = "AGENTSESS_CONTROL"
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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
    for pid, started in lineage(os.getpid()):
        link = control_link(pid, started, folder)
        if os.path.exists(link):
            return link
    return None


FAST_FRAME = b"FAST1 "


def request_fast(path: str, words: list[str], body: bytes = b"") -> tuple[int, bytes, bytes]:
    """A hot command's whole exchange (``words``: the op and its arguments, none holding a space
    or a line break): (exit code, stdout, stderr) as the supervisor rendered them."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
        sock.sendall(FAST_FRAME + " ".join(words).encode() + b"\n" + body)
        sock.shutdown(_socket.SHUT_WR)
        parts = []
        while True:
            part = sock.recv(1 << 16)
            if not part:
                break
            parts.append(part)
    finally:
        sock.close()
    data = b"".join(parts)[1:]  # the leading byte says whether descriptors came along: none here
    head, _, rest = data.partition(b"\n")
    code, _, size = head.partition(b" ")
    if not code.isdigit() or not size.isdigit():
        raise OSError("the run's supervisor sent an unreadable answer")
    return int(code), rest[: int(size)], rest[int(size) :]


def request(path: str, message: dict, timeout: float | None = None) -> dict:
    """Send ``message`` to the supervisor at ``path``; return its answer. File descriptors the
    supervisor passed along (SCM_RIGHTS) are in the answer's ``fds``."""
    import json
    import socket

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


def _read_all(sock) -> bytes:
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


def peer_pid(sock) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connected Unix socket."""
    import _socket
    import struct

    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


class ControlServer:
    """The supervisor's end: accepts connections on a thread, one thread per request.

    :meth:`listen` binds and listens (before the child starts: a connection made from then on
    waits in the backlog); :meth:`serve` starts accepting, with ``handler(message, pid)`` for
    JSON requests and ``fast_handler(words, body, pid)`` (returning ``(code, stdout, stderr)``)
    for fast frames. A handler runs on the connection's thread and must not raise (an
    exception becomes ``{"ok": false, "error": ...}``). Connections from another Unix user are
    closed unanswered. Built on ``_socket`` and ``_thread``: ``socket`` and ``threading`` cost
    ~3 ms of every `run`'s start.
    """

    def __init__(self, run_id: str, handler=None, folder: str | None = None, fast_handler=None):
        self.folder = folder or control_dir()
        self.path = control_socket(run_id, self.folder)
        self.link = control_link(os.getpid(), process_start(os.getpid()), self.folder)
        self.handler = handler
        self.fast_handler = fast_handler
        self._sock: Any = None  # the listening _socket.socket, once listening

    def start(self) -> str:
        """:meth:`listen` and :meth:`serve` at once."""
        path = self.listen()
        self.serve()
        return path

    def listen(self) -> str:
        import _socket

        ensure_private(self.folder)
        for stale in (self.path, self.link):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)  # close-on-exec, as every socket
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old)
        sock.listen(64)
        self._sock = sock
        os.symlink(os.path.basename(self.path), self.link)
        return self.path

    def serve(self, handler=None, fast_handler=None) -> None:
        """Start accepting (the handlers, if given, replace those passed when built)."""
        import _thread

        if handler is not None:
            self.handler = handler
        if fast_handler is not None:
            self.fast_handler = fast_handler
        if self._sock is None:
            raise ControlError("the control socket is not listening")
        _thread.start_new_thread(self._accept, (self._sock,))

    def _accept(self, sock) -> None:
        import _socket
        import _thread

        while True:
            try:
                fd, _ = sock._accept()
            except OSError:
                return  # closed (close() shuts it down first, which wakes the accept)
            try:
                conn = _socket.socket(fileno=fd)
            except OSError:
                os.close(fd)
                continue
            _thread.start_new_thread(self._serve, (conn,))

    def _serve(self, conn) -> None:
        import json

        try:
            pid, uid = peer_pid(conn)
            if uid != os.getuid():
                return
            conn.settimeout(30)
            raw = _read_all(conn)
            if raw.startswith(FAST_FRAME) and self.fast_handler is not None:
                conn.sendall(b"N" + self._fast(raw, pid))
                return
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
                _send_fds(conn, b"F" if fds else b"N", fds)
            finally:
                for fd in fds:
                    os.close(fd)
            conn.sendall(json.dumps(answer, separators=(",", ":")).encode())
        except OSError:
            pass
        finally:
            conn.close()

    def _fast(self, raw: bytes, pid: int) -> bytes:
        head, _, body = raw[len(FAST_FRAME) :].partition(b"\n")
        words = head.decode("utf-8", "replace").split(" ")
        try:
            code, out, err = self.fast_handler(words, body, pid)
        except Exception as exc:  # fail closed, in the hook's own convention
            code, out, err = 2, b"", f"agentsess: denied: internal error: {type(exc).__name__}: {exc}\n".encode()
        return f"{code} {len(out)}\n".encode() + out + err

    def close(self) -> None:
        import _socket

        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(_socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for path in (self.link, self.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _send_fds(conn, data: bytes, fds: list[int]) -> None:
    """``data`` with ``fds`` attached (SCM_RIGHTS), as ``socket.send_fds`` sends them."""
    if not fds:
        conn.sendall(data)
        return
    import _socket
    import array

    conn.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", fds))])


def ensure_private(folder: str) -> None:
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
