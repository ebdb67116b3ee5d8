"""Upstream stand-ins for the broker tests: real HTTP/1.1 servers on loopback (plain and TLS).

Each stand-in records what it received (method, path, headers, body size) so a test can
assert that the real secret arrived and the placeholder never did.
"""

import datetime
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REAL = "real-secret-VALUE-0123456789abcdef"


class MintedCA:
    """A CA and one server certificate for 127.0.0.1 to 127.0.0.9, ::1 and localhost."""

    def __init__(self, folder: str):
        now = datetime.datetime.now(datetime.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker test CA")])
        ca = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName("localhost")] + [
            x509.IPAddress(ipaddress.ip_address(a)) for a in [f"127.0.0.{i}" for i in range(1, 10)] + ["::1"]
        ]
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "upstream")]))
            .issuer_name(name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256())
        )
        self.ca_file = os.path.join(folder, "test-ca.pem")
        self.cert_file = os.path.join(folder, "upstream.pem")
        self.key_file = os.path.join(folder, "upstream.key")
        with open(self.ca_file, "wb") as fh:
            fh.write(ca.public_bytes(serialization.Encoding.PEM))
        with open(self.cert_file, "wb") as fh:
            fh.write(leaf.public_bytes(serialization.Encoding.PEM))
        with open(self.key_file, "wb") as fh:
            fh.write(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _body(self) -> int:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            total = 0
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return total
                left = size
                while left:
                    left -= len(self.rfile.read(min(left, 1 << 20)))
                total += size
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        left = length
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        return length - left

    def _handle(self):
        upstream = self.server.upstream
        path = self.path.removeprefix("/base")
        if path.startswith("/close-early-big"):  # past the broker's socket-to-socket threshold
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n" + b"p" * (3 << 20))
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if path.startswith("/then-close"):  # a complete response, then the connection is closed
            upstream.seen.append({"method": self.command, "path": path, "headers": dict(self.headers.items()),
                                  "raw_headers": str(self.headers), "body_bytes": 0})
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            self.wfile.flush()
            self.close_connection = True
            return
        if path.startswith("/close-early"):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        size = self._body()
        seen = {
            "method": self.command, "path": path, "headers": dict(self.headers.items()),
            "raw_headers": str(self.headers), "body_bytes": size, "peer": self.client_address[1],
        }
        upstream.seen.append(seen)
        if path.startswith("/slow"):
            time.sleep(float(path.split("/")[2]) if path.count("/") >= 2 else 1.5)
        if path.startswith("/sse"):
            count = 5
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(count):
                event = f"event: tick\ndata: {{\"n\": {i}}}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                upstream.gate.wait(5) if i == 0 else None
            self.wfile.write(b"0\r\n\r\n")
            return
        if path.startswith("/forever"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for i in range(600):
                    event = f"data: {i}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                upstream.cut.set()
            return
        if path.startswith("/bytes/"):
            n = int(path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = b"x" * (1 << 20)
            left = n
            while left:
                part = block[: min(left, len(block))]
                self.wfile.write(part)
                left -= len(part)
            return
        body = upstream.respond(self, seen)
        if isinstance(body, list):  # server-sent events, one chunk each
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for event in body:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        extra = {}
        if isinstance(body, tuple):
            body, extra = body
        self.send_response(200)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class Upstream:
    """A stand-in API on ``host`` (plain HTTP, or TLS with ``ca``'s certificate)."""

    def __init__(self, host: str = "127.0.0.1", ca: MintedCA | None = None, respond=None):
        self.seen: list[dict] = []
        self.gate = threading.Event()
        self.gate.set()
        self.cut = threading.Event()
        self.respond = respond or (lambda handler, seen: json.dumps({"ok": True, "path": seen["path"]}).encode())
        self.server = ThreadingHTTPServer((host, 0), _Handler)
        self.server.daemon_threads = True
        self.server.upstream = self
        if ca is not None:
            ctx = ca.server_context()
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.host = host
        self.port = self.server.server_address[1]
        self.scheme = "https" if ca else "http"
        self.url = f"{self.scheme}://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def secrets_seen(self) -> str:
        return "\n".join(s["raw_headers"] for s in self.seen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _GitHandler(BaseHTTPRequestHandler):
    """`git http-backend` as CGI, behind Basic auth that must carry the real secret."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        import base64
        import subprocess

        server = self.server
        auth = self.headers.get("Authorization", "")
        server.upstream.seen.append({"method": self.command, "path": self.path, "raw_headers": str(self.headers)})
        want = "Basic " + base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(length) if length else b""
        if auth != want:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": server.root,
            "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
            "REQUEST_METHOD": self.command, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": server.user, "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            name, _, value = line.decode().partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _handle


class GitUpstream:
    """A TLS git server for repositories under ``root``; only ``user:password`` may fetch."""

    def __init__(self, root: str, ca: "MintedCA", host: str, user: str, password: str):
        self.seen: list[dict] = []
        self.server = ThreadingHTTPServer((host, 0), _GitHandler)
        self.server.daemon_threads = True
        self.server.upstream = self
        self.server.root = root
        self.server.user = user
        self.server.password = password
        self.server.socket = ca.server_context().wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
