"""The broker's listener: one loopback port per run, a thread per client connection.

Why h11 in threads: h11 is a small, well-kept sans-I/O HTTP/1.1 implementation (it frames
httpcore's and uvicorn's connections), so every byte of framing — chunked bodies, content
lengths, keep-alive, CONNECT — is parsed by it, never by hand, on both the child's side and
the upstream's. Being sans-I/O it needs no event loop: the broker runs as plain threads
beside the supervisor's own ``select`` loop, which it never touches, and a body streams
through one read at a time (SSE and chunked responses reach the child as they arrive).
aiohttp would need an asyncio loop inside the supervisor; httpcore (upstream side only)
hides the sockets a revocation must cut and the bytes the reflection guard must see. TLS is
the standard library's ``ssl``, verified against the system CAs plus any ``ca_file``.

Three kinds of request arrive:

- **base-URL mode** ``GET /<service>/<path>``: forwarded to that service's upstream
  (``<upstream base path>/<path>``), its placeholder swapped for the real secret;
- **proxy mode** ``GET http://host/...`` (plain HTTP) and ``CONNECT host:port``: refused
  unless the host is allowed. A CONNECT to a host that carries a placeholder is intercepted
  (TLS terminated with the run's CA, requests inspected and swapped, re-encrypted towards the
  upstream with verification); other allowed hosts are tunnelled untouched;
- anything else: 404.

On the way back, a real secret the upstream echoes is blanked (same length) before the
child sees it. Every request, allowed or refused, is one ``net.request`` receipt, written by a recorder
thread so the request path never waits on the disk. Each request first asks whether the
run is still live; a watcher thread asks every ``POLL`` seconds too and, the moment the run
is revoked, expired or finished, cuts every open connection, streams included.
"""

import os
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import h11

from agentsess.core.credentials import services as svc
from agentsess.core.credentials.services import Network, Service
from agentsess.edges.broker.upstream import (
    RECV,
    Peer,
    Pool,
    Upstream,
    UpstreamError,
    tls_context,
)

if TYPE_CHECKING:
    from agentsess.edges.broker.authority import RunAuthority

POLL = 0.1
MAX_CONNECTIONS = 256  # open client connections at once
# a receipt write that fails is tried again after these pauses (a store busy a moment, a lock)
RETRIES = (0.05, 0.2, 0.5)
# stop(): the recorder may take this long without writing anything before the run's end goes
# on without it (what is left is counted in a net.unrecorded receipt)
STALLED = 30.0
RAW_MIN = 1 << 20  # response bodies this large are read in RAW_CHUNK reads, past h11's buffer
RAW_CHUNK = 1 << 22
LOOPBACK_NO_PROXY = "localhost,127.0.0.1,::1"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


class _Cut(Exception):
    """The exchange was cut (revocation, the upstream or the client went away)."""


class _Client(Peer):
    """The child's side of one connection: a socket and its h11 server state; a broken
    connection reads as its end."""

    __slots__ = ()

    def __init__(self, sock):
        super().__init__(sock, h11.SERVER)

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(RECV)
        except (OSError, ssl.SSLError):
            return b""


def _refusal(status: int, reason: str) -> tuple[h11.Response, h11.Data]:
    body = f"agentsess broker: {reason}\n".encode()
    head = h11.Response(
        status_code=status,
        headers=[
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-agentsess-broker", b"refused"),
        ],
    )
    return head, h11.Data(data=body)


def _content_length(headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _dot_segments(target: str) -> bool:
    """True if the path has a ``.`` or ``..`` segment, spelled plainly or percent-encoded."""
    path = target.split("?", 1)[0].lower().replace("%2e", ".")
    return any(seg in (".", "..") for seg in path.replace("%2f", "/").replace("\\", "/").split("/"))


class Broker:
    """The run's credential broker. ``start()`` returns the child's environment additions.

    ``record(type, data)`` writes one receipt (called from one thread only: the recorder);
    ``liveness()`` returns None while the run is live, else why not ("revoked", "expired",
    "finished"); it may be called from any thread. ``secrets`` maps a service name to its
    real value, which never leaves this object except towards that service's upstream.
    """

    def __init__(
        self,
        run_id: str,
        services: list[Service],
        secrets: dict[str, str],
        network: Network,
        *,
        record: Callable[[str, dict], object],
        liveness: Callable[[], str | None],
        expires_at: float,
        authorize: Callable[[str, str, str], str | None] | None = None,
        control: Callable[[bytes, dict, str | None], tuple[int, dict]] | None = None,
    ):
        self.run_id = run_id
        self.services = list(services)
        self.by_name = {s.name: s for s in self.services}
        self._secrets = dict(secrets)
        self.network = network
        self._record = record
        self._liveness = liveness
        self.expires_at = expires_at
        self._authorize = authorize  # (service, method, target) -> a reason to refuse, or None
        self._control = control  # the run's own helpers: POST /.agentsess/control (issue 14)
        self.port: int | None = None
        self.dead: str | None = None
        self._listener: socket.socket | None = None
        self._pool = Pool()
        self._active: dict[int, socket.socket] = {}
        self._active_lock = threading.Lock()
        self._receipts: queue.Queue = queue.Queue()
        self._written = 0  # receipts the recorder wrote, and those it could not (with why)
        self._unwritten = 0
        self._unwritten_why: str | None = None
        self._threads: list[threading.Thread] = []
        self._handlers: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._contexts: dict[tuple, ssl.SSLContext] = {}
        self.authority: RunAuthority | None = None  # proxy mode with hosts to intercept
        self._child_env: dict = {}
        self.bundle: str | None = None

    # -- life ---------------------------------------------------------------------------

    def start(self, child_env: dict | None = None, bundle_dir: str | None = None) -> dict:
        """Listen, start the threads, and return the variables to add to the child's env.

        ``bundle_dir``: where to write the CA bundle of proxy mode (a folder the child sees).
        """
        self._child_env = dict(child_env or {})
        for service in self.services:
            if service.ca_file or self.network.ca_file:
                self._context(service)  # a bad ca_file fails the run now, not on the first request
        intercept = sorted({s.upstream.host for s in self.services if s.upstream.scheme == "https"}
                           | {h for s in self.services for h in s.hosts})
        if self.network.proxy and intercept:
            from agentsess.edges.broker.authority import (  # cryptography: only here
                BUNDLE_VARS,
                RunAuthority,
            )

            self.authority = RunAuthority(self.run_id, self.expires_at, intercept)
            extra = [
                (child_env or {}).get(var) for var in BUNDLE_VARS if (child_env or {}).get(var)
            ]
            self.bundle = self.authority.write_bundle([p for p in dict.fromkeys(extra) if p], bundle_dir)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self._listener = listener
        self.port = listener.getsockname()[1]
        for target, name in ((self._accept_loop, "accept"), (self._watch_loop, "watch"), (self._record_loop, "record")):
            thread = threading.Thread(target=target, name=f"agentsess-broker-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.child_env()

    def child_env(self) -> dict:
        base = f"http://127.0.0.1:{self.port}"
        env = {}
        for service in self.services:
            if service.env_base_url:
                env[service.env_base_url] = f"{base}/{service.name}"
            for var in service.env_key:
                env[var] = service.placeholder
        if self.network.proxy:
            try:
                existing = int(self._child_env.get("GIT_CONFIG_COUNT") or 0)
            except ValueError:
                existing = 0
            env.update(svc.git_credentials(self.services, existing))
            for var in PROXY_VARS:
                env[var] = base
            env["NO_PROXY"] = env["no_proxy"] = LOOPBACK_NO_PROXY
            if self.bundle:
                from agentsess.edges.broker.authority import BUNDLE_VARS

                for var in BUNDLE_VARS:
                    env[var] = self.bundle
        return env

    def set_secret(self, service: str, value: str) -> None:
        """Attach ``value`` from now on for ``service`` (a provider credential re-minted mid-run)."""
        self._secrets[service] = value

    def stop(self, reason: str = "finished") -> None:
        """Refuse from now on, cut open connections, write the outstanding receipts."""
        if self.dead is None:
            self._check()  # revoked or expired says more than "finished", if it is so
        if self.dead is None:
            self.dead = reason
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        self._cut_all()
        self._pool.close_all()
        deadline = time.monotonic() + 5
        while True:  # every exchange in flight notes its receipt before the recorder ends
            with self._active_lock:
                handlers = list(self._handlers)
            if not handlers or time.monotonic() > deadline:
                break
            handlers[0].join(max(0.0, deadline - time.monotonic()))
        for thread in self._threads:  # the recorder only: the others are daemons with nothing to finish
            if thread.name.endswith("record"):
                self._receipts.put(None)
                self._drain(thread)
        self._account()
        if self.bundle:
            try:
                os.unlink(self.bundle)
                os.rmdir(os.path.dirname(self.bundle))
            except OSError:
                pass

    # -- threads ------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.01)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._active_lock:
                busy = len(self._handlers) >= MAX_CONNECTIONS
            if busy:  # a child that opens connections without end gets refusals, not threads
                try:
                    head, body = _refusal(503, "too many connections to the broker")
                    conn = h11.Connection(h11.SERVER)
                    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    conn.next_event()
                    sock.sendall(conn.send(head) + conn.send(body) + conn.send(h11.EndOfMessage()))
                except OSError:
                    pass
                sock.close()
                continue
            thread = threading.Thread(target=self._serve, args=(sock,), name="agentsess-broker-conn", daemon=True)
            with self._active_lock:
                self._handlers.add(thread)
            thread.start()

    def _watch_loop(self) -> None:
        for service in self.services:  # load the system CAs off the run's start-up path
            if service.upstream.scheme == "https" and not self._stopping.is_set():
                self._context(service)
        while not self._stopping.wait(POLL):
            if self.dead is None:
                try:
                    reason = self._liveness()
                except Exception:  # noqa: BLE001 - unreadable state is a dead run: fail closed
                    reason = "its state cannot be read"
                if reason is not None:
                    self.dead = reason
                    self._cut_all()

    def _record_loop(self) -> None:
        while True:
            item = self._receipts.get()
            if item is None:
                if self._stopping.is_set() and self._receipts.empty():
                    return
                continue
            why = self._write("net.request", item)
            if why is None:
                self._written += 1
                continue
            self._unwritten += 1
            self._unwritten_why = why
            # fail closed: a run whose requests cannot be recorded makes no more of them
            self.dead = "its receipts cannot be written"
            self._cut_all()

    def _write(self, rtype: str, data: dict) -> str | None:
        """Write one receipt, trying again after a failure (:data:`RETRIES`); None once written,
        else why not (the error's type: its text could hold anything)."""
        for pause in (*RETRIES, None):
            try:
                self._record(rtype, data)
                return None
            except Exception as exc:  # noqa: BLE001
                why = type(exc).__name__
            if pause is None:
                return why
            time.sleep(pause)
        return None  # unreachable

    def _drain(self, recorder: threading.Thread) -> None:
        """Wait for the recorder to write every receipt noted: the run's end (run.exited, the
        seal) must come after them, or a late one is refused after the seal and lost without a
        trace. It is given up on only when it has written nothing for :data:`STALLED` seconds."""
        last, since = -1, time.monotonic()
        while recorder.is_alive():
            recorder.join(0.25)
            done = self._written + self._unwritten
            if done != last:
                last, since = done, time.monotonic()
            elif time.monotonic() - since > STALLED:
                return

    def _account(self) -> None:
        """A receipt noted and never written is said so in the stream (count and why), so that
        the record shows it is missing requests instead of looking whole."""
        with self._receipts.mutex:  # left when the recorder was given up on
            left = sum(1 for item in self._receipts.queue if item is not None)
        missing = self._unwritten + left
        if missing:  # if even this cannot be written, neither can the run's end: it fails on that
            self._write("net.unrecorded", {"count": missing,
                                           "reason": self._unwritten_why or f"the recorder stalled for {STALLED:.0f} s"})

    # -- connections --------------------------------------------------------------------

    def _register(self, sock: socket.socket, upstream: bool = True) -> None:
        try:
            ctl = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return
        with self._active_lock:
            old = self._active.pop(id(sock), None)
            self._active[id(sock)] = ctl
        if old is not None:
            old.close()
        if upstream and self.dead is not None:
            self._cut(ctl)  # a client connection is answered 403 instead

    def _unregister(self, sock) -> None:
        with self._active_lock:
            ctl = self._active.pop(id(sock), None)
        if ctl is not None:
            ctl.close()

    @staticmethod
    def _cut(ctl: socket.socket) -> None:
        try:
            ctl.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _cut_all(self) -> None:
        with self._active_lock:
            ctls = list(self._active.values())
        for ctl in ctls:
            self._cut(ctl)

    def _check(self) -> str | None:
        if self.dead is not None:
            return self.dead
        try:
            reason = self._liveness()
        except Exception:  # noqa: BLE001 - unreadable state is a dead run: fail closed
            reason = "its state cannot be read"
        if reason is not None:
            self.dead = reason
        return reason

    def _context(self, service: Service | None) -> ssl.SSLContext:
        files = tuple(f for f in ((service.ca_file if service else None), self.network.ca_file) if f)
        ctx = self._contexts.get(files)
        if ctx is None:
            try:
                ctx = tls_context(files)
            except (OSError, ssl.SSLError) as exc:
                from agentsess.errors import RUN_FAILED, AgentsessError

                where = f"service {service.name}" if service else "network"
                raise AgentsessError(
                    f"{where}: cannot load ca_file {files[-1] if files else ''}: "
                    f"{getattr(exc, 'strerror', None) or type(exc).__name__}",
                    RUN_FAILED,
                ) from None
            self._contexts[files] = ctx
        return ctx

    def _serve(self, sock: socket.socket, dest: tuple[str, int] | None = None) -> None:
        """Serve one client connection (``dest``: the host of an intercepted CONNECT)."""
        self._register(sock, upstream=False)
        client = _Client(sock)
        try:
            while True:
                try:
                    event = client.next_event()
                except h11.RemoteProtocolError:
                    self._send_refusal(client, 400, "malformed request")
                    return
                if not isinstance(event, h11.Request):
                    return
                if not self._exchange(client, event, dest):
                    return
                if client.conn.our_state is h11.DONE and client.conn.their_state is h11.DONE:
                    client.conn.start_next_cycle()
                else:
                    return
        except (OSError, h11.LocalProtocolError, h11.RemoteProtocolError, _Cut):
            return
        except Exception:  # noqa: BLE001 - never a traceback: its text could hold a header value
            return
        finally:
            self._unregister(sock)
            try:
                sock.close()
            except OSError:
                pass
            if dest is None:
                with self._active_lock:
                    self._handlers.discard(threading.current_thread())

    def _send_refusal(self, client: _Client, status: int, reason: str) -> int:
        head, body = _refusal(status, reason)
        try:
            if client.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                n = client.send(head) + client.send(body) + client.send(h11.EndOfMessage())
                return n
        except (OSError, h11.LocalProtocolError):
            pass
        return 0

    def _note(self, **fields) -> None:
        self._receipts.put(svc.request_receipt(**fields))

    # -- one request --------------------------------------------------------------------

    def _exchange(self, client: _Client, req: h11.Request, dest: tuple[str, int] | None) -> bool:
        """Handle one request; False when the connection must not carry another."""
        started = time.monotonic()
        method = req.method.decode("ascii", "replace")
        target = req.target
        text_target = target.decode("latin-1")
        if method == "CONNECT" and dest is None:
            return self._connect(client, req, started)
        service: Service | None = None
        if dest is not None:
            mode, (host, port), scheme = "intercept", dest, "https"
            if not target.startswith(b"/"):
                return self._refuse(client, started, mode, None, method, host, port, text_target, 400,
                                    "expected an origin-form request inside the tunnel")
            upstream_target = target
        elif target.startswith((b"http://", b"https://")):
            mode, scheme = "proxy", "http"
            if not self.network.proxy:
                return self._refuse(client, started, mode, None, method, "", 0, "", 403,
                                    "proxy mode is off for this run")
            if target.startswith(b"https://"):
                return self._refuse(client, started, mode, None, method, "", 0, "", 400,
                                    "https:// through a plain proxy request; use CONNECT")
            rest = text_target[len("http://"):]
            authority, slash, path = rest.partition("/")
            parsed = svc.parse_host_port(authority.rsplit("@", 1)[-1], 80) if "@" not in authority else None
            if parsed is None:
                return self._refuse(client, started, mode, None, method, "", 0, "", 400, "bad host in the request")
            host, port = parsed
            upstream_target = ("/" + path).encode("latin-1") if slash else b"/"
            if not self._allowed(host, port, scheme):
                return self._refuse(client, started, mode, None, method, host, port, upstream_target.decode("latin-1"),
                                    403, f"{host}:{port} is not in this run's allow_hosts")
        elif text_target.startswith("/.agentsess/") and self._control is not None:
            return self._answer_control(client, req, text_target[len("/.agentsess/"):])
        else:
            mode = "base-url"
            name = text_target[1:].split("/", 1)[0].split("?", 1)[0]
            one_slash = text_target.startswith("/") and not text_target.startswith("//")
            service = self.by_name.get(name) if one_slash else None
            if service is None:
                return self._refuse(client, started, mode, None, method, "", 0, text_target, 404,
                                    "no such service in this run (expected /<service>/<path>)")
            up = service.upstream
            host, port, scheme = up.host, up.port, up.scheme
            tail = text_target[1 + len(name):]  # "", "/path...", or "?query"
            if not tail.startswith("/"):
                tail = "/" + tail
            upstream_target = (up.base_path + tail).encode("latin-1")
        shown = upstream_target.decode("latin-1")
        if _dot_segments(shown):
            return self._refuse(client, started, mode, service and service.name, method, host, port, shown, 400,
                                "a path with . or .. segments")
        dead = self._check()
        if dead is not None:
            return self._refuse(client, started, mode, service and service.name, method, host, port, shown, 403,
                                f"run {self.run_id} is {dead}: its credentials are dead")
        if self._authorize is not None and service is not None:
            why = self._authorize(service.name, method, shown)
            if why is not None:
                return self._refuse(client, started, mode, service.name, method, host, port, shown, 403, why)
        decision = svc.guard(self.services, self._secrets, [(n, v) for n, v in req.headers
                                                             if n != b"host"], upstream_target, host, port, scheme)
        if not decision.allow:
            return self._refuse(client, started, mode, service and service.name, method, host, port, shown, 403,
                                decision.reason or "refused", decision="deny")
        if service is None:
            service = next((s for s in self.services if s.serves(host, port, scheme)), None)
        ctx = self._context(service) if scheme == "https" else None
        return self._forward(client, req, decision, started, mode, service, scheme, host, port, shown, ctx)

    def _answer_control(self, client: _Client, req: h11.Request, name: str) -> bool:
        """A request of the run's own helpers (git's credential helper, the AWS SDKs' container
        credentials): ``POST /.agentsess/control`` with a JSON object, or ``GET /.agentsess/<op>``."""
        import json

        assert self._control is not None
        body = b""
        while True:
            event = client.next_event()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > 1 << 16:
                    self._send_refusal(client, 413, "request too large")
                    return False
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return False
        auth = next((v for n, v in req.headers if n == b"authorization"), b"")
        try:
            if req.method == b"POST" and name == "control":
                message = json.loads(body)
            else:
                message = {"op": name} if req.method == b"GET" and name != "control" else None
        except ValueError:
            message = None
        if not isinstance(message, dict):
            status, answer = 400, {"ok": False, "error": "expected a JSON object"}
        else:
            status, answer = self._control(auth, message, self._check())
        data = json.dumps(answer).encode()
        client.send(h11.Response(status_code=status, headers=[
            (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
            (b"cache-control", b"no-store")]))
        client.send(h11.Data(data=data))
        client.send(h11.EndOfMessage())
        return True

    def _allowed(self, host: str, port: int, scheme: str) -> bool:
        if any(s.serves(host, port, scheme) for s in self.services):
            return True
        return svc.host_allowed(self.network.allow_hosts, host, port)

    def _refuse(self, client, started, mode, service, method, host, port, path, status, reason,
                decision="deny") -> bool:
        sent = self._send_refusal(client, status, reason)
        self._note(mode=mode, service=service, method=method, host=host, port=port,
                   path=svc.masked_path(path, self.services), status=status, sent=0, received=sent,
                   duration=time.monotonic() - started, decision=decision, reason=reason)
        return False

    def _forward(self, client, req, decision, started, mode, service, scheme, host, port, shown, ctx) -> bool:
        names = {n for n, _ in req.headers}
        headers = list(decision.headers)
        authority = svc.Upstream(scheme, host, port, "").authority.encode()
        headers.insert(0, (b"host", authority))
        if b"transfer-encoding" in names and b"content-length" not in names:
            headers.append((b"transfer-encoding", b"chunked"))
        sent = received = 0
        status = None
        error = None
        up: Upstream | None = None
        keep = False
        back = svc.Reflection(self._secrets.values())
        try:
            try:
                up = self._pool.open(scheme, host, port, ctx, self._register)
                up.send(h11.Request(method=req.method, target=decision.target, headers=headers))
            except (UpstreamError, OSError) as exc:
                error = str(exc) if isinstance(exc, UpstreamError) else f"upstream write failed: {type(exc).__name__}"
                received = self._send_refusal(client, 502, error)
                status = 502
                return False
            if client.conn.they_are_waiting_for_100_continue:
                client.send(h11.InformationalResponse(status_code=100, headers=[]))
            upstream_open = True
            while True:
                event = client.next_event()
                if isinstance(event, h11.Data):
                    sent += len(event.data)
                    if upstream_open:
                        try:
                            up.send(event)
                        except OSError:
                            upstream_open = False  # it answered early and closed: read its answer
                    if self.dead is not None:
                        raise _Cut(self.dead)
                elif isinstance(event, h11.EndOfMessage):
                    if upstream_open:
                        try:
                            up.send(h11.EndOfMessage())
                        except OSError:
                            pass
                    break
                else:
                    raise _Cut("the client went away mid-request")
            bodyless = sent == 0 and b"transfer-encoding" not in names and _content_length(req.headers) in (None, 0)
            first = True
            while True:
                try:
                    event = up.next_event()
                    if first and isinstance(event, h11.ConnectionClosed):
                        raise UpstreamError("the upstream closed the connection early")
                except (UpstreamError, h11.RemoteProtocolError):
                    if not (first and up.reused and bodyless):
                        raise
                    # a kept-alive connection the upstream closed just as we reused it: once more,
                    # on a fresh one (only for a request without a body, which can be resent)
                    self._unregister(up.sock)
                    up.close()
                    up = None
                    up = self._pool.open(scheme, host, port, ctx, self._register, fresh=True)
                    up.send(h11.Request(method=req.method, target=decision.target, headers=headers))
                    up.send(h11.EndOfMessage())
                    first = False
                    continue
                first = False
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    out = [(n, back.blank(v)) for n, v in event.headers if n not in svc.HOP_BY_HOP]
                    client.send(h11.Response(status_code=status, headers=out, reason=event.reason))
                    length = _content_length(out) if req.method != b"HEAD" and status not in (204, 304) else None
                    if length is not None and length >= RAW_MIN:
                        progress = [0]
                        try:
                            self._relay_body(up, client, length, progress, back)
                        finally:
                            received += progress[0]
                        client.send(h11.EndOfMessage())
                        return True  # the upstream connection is not reused (keep stays False)
                elif isinstance(event, h11.Data):
                    if self.dead is not None:
                        raise _Cut(self.dead)
                    received += len(event.data)
                    data = back.feed(event.data)
                    if data:
                        client.send(h11.Data(data=data))
                elif isinstance(event, h11.EndOfMessage):
                    rest = back.flush()
                    if rest:
                        client.send(h11.Data(data=rest))
                    client.send(h11.EndOfMessage())
                    break
                else:
                    raise UpstreamError("the upstream closed the connection early")
            keep = True
            return True
        except UpstreamError as exc:
            error = str(exc)
            if status is None:
                status = 502
                received += self._send_refusal(client, 502, error)
            return False
        except h11.RemoteProtocolError:
            error = ("the upstream closed the connection early" if status is not None
                     else "the upstream's response was not valid HTTP/1.1")
            if status is None:
                status = 502
                received += self._send_refusal(client, 502, error)
            return False
        except _Cut as exc:
            error = f"cut: {exc}"
            return False
        except (OSError, h11.LocalProtocolError) as exc:
            error = f"cut: {self.dead or type(exc).__name__}"
            return False
        finally:
            if up is not None:
                self._unregister(up.sock)
                if keep:
                    self._pool.release(up)
                else:
                    up.close()
            if error and self.dead and not error.startswith("cut"):
                error = f"cut: {self.dead}"
            self._note(mode=mode, service=service.name if service else None, method=req.method.decode("ascii", "replace"),
                       host=host, port=port, path=svc.masked_path(shown, self.services), status=status, sent=sent,
                       received=received, duration=time.monotonic() - started, secret=decision.attached,
                       error=error)

    def _relay_body(self, up: Upstream, client: _Client, length: int, progress: list[int],
                    back: svc.Reflection) -> None:
        """Relay a large body of known ``length`` in big reads, past h11's receive buffer.

        Every byte is still scanned for a reflected secret (``back``), and h11 still frames
        the child's side (each piece passes through its content-length writer without a
        copy); the upstream's h11 state is abandoned, so that connection is closed afterwards
        instead of being reused.
        """
        left = length
        while left:  # whatever h11 already holds
            event = up.conn.next_event()
            if event is h11.NEED_DATA:
                break
            if not isinstance(event, h11.Data):
                raise UpstreamError("the upstream closed the connection early")
            data = back.feed(event.data)
            if data:
                client.send(h11.Data(data=data))
            left -= len(event.data)
            progress[0] += len(event.data)
        buf = bytearray(min(RAW_CHUNK, max(left, 1)))
        view = memoryview(buf)
        while left:
            try:
                n = up.sock.recv_into(view, min(left, len(buf)))
            except (ConnectionError, ssl.SSLError, TimeoutError) as exc:
                raise UpstreamError(f"upstream connection lost: {type(exc).__name__}") from None
            if n == 0:
                raise UpstreamError("the upstream closed the connection early")
            progress[0] += n  # bytes received from the upstream
            if self.dead is not None:
                raise _Cut(self.dead)
            data = back.feed(view[:n])
            if data:
                for piece in client.conn.send_with_data_passthrough(h11.Data(data=data)):
                    client.sock.sendall(piece)
            left -= n
        rest = back.flush()
        if rest:
            client.send(h11.Data(data=rest))

    # -- CONNECT ------------------------------------------------------------------------

    def _connect(self, client: _Client, req: h11.Request, started: float) -> bool:
        target = req.target.decode("latin-1")
        if not self.network.proxy:
            return self._refuse(client, started, "tunnel", None, "CONNECT", "", 0, "", 403, "proxy mode is off for this run")
        parsed = svc.parse_host_port(target, 443)
        if parsed is None:
            return self._refuse(client, started, "tunnel", None, "CONNECT", "", 0, "", 400, "bad CONNECT target")
        host, port = parsed
        intercept = next((s for s in self.services if s.serves(host, port, "https")), None)
        mode = "intercept" if intercept else "tunnel"
        if intercept is None and not svc.host_allowed(self.network.allow_hosts, host, port):
            return self._refuse(client, started, mode, None, "CONNECT", host, port, "", 403,
                                f"{host}:{port} is not in this run's allow_hosts")
        dead = self._check()
        if dead is not None:
            return self._refuse(client, started, mode, None, "CONNECT", host, port, "", 403,
                                f"run {self.run_id} is {dead}: its credentials are dead")
        if not isinstance(client.next_event(), h11.EndOfMessage):
            return False  # a CONNECT with a body
        if intercept is not None:
            assert self.authority is not None
            client.send(h11.Response(status_code=200, headers=[], reason=b"Connection established"))
            leftover, _ = client.conn.trailing_data
            if leftover:
                return False
            try:
                tls = self.authority.server_context(host).wrap_socket(client.sock, server_side=True)
            except (OSError, ssl.SSLError):
                self._note(mode=mode, service=intercept.name, method="CONNECT", host=host, port=port, path="",
                           status=None, sent=0, received=0, duration=time.monotonic() - started,
                           error="the client refused the run's CA (TLS handshake failed)")
                return False
            self._serve(tls, dest=(host, port))
            return False
        return self._tunnel(client, host, port, started)

    def _tunnel(self, client: _Client, host: str, port: int, started: float) -> bool:
        sent = received = 0
        error = None
        try:
            remote = socket.create_connection((host, port), timeout=10)
        except OSError as exc:
            error = f"cannot connect to {host}:{port}: {exc.strerror or type(exc).__name__}"
            received = self._send_refusal(client, 502, error)
            self._note(mode="tunnel", service=None, method="CONNECT", host=host, port=port, path="", status=502,
                       sent=0, received=received, duration=time.monotonic() - started, error=error)
            return False
        remote.settimeout(None)
        self._register(remote)
        try:
            client.send(h11.Response(status_code=200, headers=[], reason=b"Connection established"))
            leftover, _ = client.conn.trailing_data
            if leftover:
                remote.sendall(leftover)
                sent += len(leftover)
            pair = {client.sock: remote, remote: client.sock}
            open_ends = 2
            while open_ends and self.dead is None:
                ready, _, _ = select.select(list(pair), [], [], 0.25)
                for src in ready:
                    try:
                        data = src.recv(RECV)
                    except OSError:
                        data = b""
                    dst = pair[src]
                    if not data:
                        open_ends -= 1
                        try:
                            dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        del pair[src]
                        continue
                    dst.sendall(data)
                    if src is remote:
                        received += len(data)
                    else:
                        sent += len(data)
            if self.dead is not None:
                error = f"cut: {self.dead}"
        except OSError as exc:
            error = f"tunnel ended: {type(exc).__name__}"
        finally:
            self._unregister(remote)
            remote.close()
            self._note(mode="tunnel", service=None, method="CONNECT", host=host, port=port, path="", status=200,
                       sent=sent, received=received, duration=time.monotonic() - started, error=error)
        return False
