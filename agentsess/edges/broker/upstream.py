"""The broker's client side: HTTP/1.1 over TCP or verified TLS towards an upstream, pooled.

Framing is h11's (the same library as the listener's side), so a request or response body
streams through event by event: nothing is buffered beyond one socket read. TLS is the
standard library's, verified against the system CAs plus any ``ca_file`` given; an idle
connection is reused only when it is still quiet (no EOF, no stray bytes).
"""

import socket
import ssl
import threading
import time

import h11

RECV = 1 << 18
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 600.0  # a model's stream can pause for minutes; revocation cuts sockets itself
IDLE_KEEP = 30.0
IDLE_MAX = 8


class UpstreamError(Exception):
    """The upstream could not be reached or spoke badly; ``str()`` is safe to show."""


def tls_context(ca_files: tuple[str, ...]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for path in ca_files:
        ctx.load_verify_locations(cafile=path)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Peer:
    """One side of an HTTP/1.1 connection: a socket and its h11 state (``role``: h11.CLIENT
    towards an upstream, h11.SERVER towards the child)."""

    __slots__ = ("conn", "sock")

    def __init__(self, sock, role):
        self.sock = sock
        self.conn = h11.Connection(role, max_incomplete_event_size=1 << 20)

    def send(self, event) -> int:
        data = self.conn.send(event)
        if data:
            self.sock.sendall(data)
            return len(data)
        return 0

    def next_event(self):
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(self._recv())

    def _recv(self) -> bytes:
        return self.sock.recv(RECV)


class Upstream(Peer):
    """One connection to an upstream, with its h11 client state."""

    __slots__ = ("idle_since", "key", "reused")

    def __init__(self, key: tuple, sock: socket.socket):
        super().__init__(sock, h11.CLIENT)
        self.reused = False
        self.key = key
        self.idle_since = 0.0

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(RECV)
        except (ConnectionError, ssl.SSLError) as exc:
            raise UpstreamError(f"upstream connection lost: {type(exc).__name__}") from None
        except TimeoutError:
            raise UpstreamError("upstream timed out") from None

    def quiet(self) -> bool:
        """True when an idle connection shows neither EOF nor unexpected bytes."""
        self.sock.setblocking(False)
        try:
            self.sock.recv(1)
        except (BlockingIOError, ssl.SSLWantReadError):
            return True
        except OSError:
            return False
        finally:
            try:
                self.sock.settimeout(READ_TIMEOUT)
            except OSError:
                pass
        return False  # EOF, or bytes nobody asked for

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Pool:
    """Idle upstream connections by (scheme, host, port, context)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: dict[tuple, list[Upstream]] = {}
        self.closed = False

    def open(self, scheme: str, host: str, port: int, ctx: ssl.SSLContext | None, register,
             fresh: bool = False) -> Upstream:
        """A connection (reused when a quiet one is idle); ``register(sock)`` lets the broker cut it."""
        key = (scheme, host, port, id(ctx))
        now = time.monotonic()
        while not fresh:
            with self._lock:
                idle = self._idle.get(key)
                up = idle.pop() if idle else None
            if up is None:
                break
            if now - up.idle_since < IDLE_KEEP and up.quiet():
                register(up.sock)
                up.reused = True
                return up
            up.close()
        try:
            raw = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        except TimeoutError:
            raise UpstreamError(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {exc.strerror or type(exc).__name__}") from None
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = raw
        if scheme == "https":
            assert ctx is not None
            try:
                sock = ctx.wrap_socket(raw, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                raw.close()
                raise UpstreamError(f"TLS verification of {host}:{port} failed: {exc.verify_message}") from None
            except (OSError, ssl.SSLError) as exc:
                raw.close()
                raise UpstreamError(f"TLS with {host}:{port} failed: {type(exc).__name__}") from None
        sock.settimeout(READ_TIMEOUT)
        register(sock)
        return Upstream(key, sock)

    def release(self, up: Upstream) -> None:
        """Keep ``up`` for the next request if its exchange ended cleanly, else close it."""
        conn = up.conn
        if self.closed or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            up.close()
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            up.close()
            return
        up.idle_since = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(up.key, [])
            if len(idle) >= IDLE_MAX:
                up.close()
            else:
                idle.append(up)

    def close_all(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, {}
        for ups in idle.values():
            for up in ups:
                up.close()
