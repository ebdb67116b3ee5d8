"""A GitHub stand-in for the provider tests: the REST API and git smart HTTP, over TLS on loopback.

The API verifies the App's JWT (RS256) against the App's public key, mints installation
tokens only within the installation's repositories and permissions (422 beyond them, as
GitHub does), serves ``/repos/...`` only to a live token that covers the repository, and
records every ``DELETE /installation/token``. The git server (``git http-backend`` as CGI)
accepts only a live installation token, and pushes only with ``contents: write``.
"""

import base64
import hashlib
import json
import os
import secrets
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

LEVELS = ("read", "write", "admin")


def rsa_pem() -> tuple[str, object]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return pem, key.public_key()


class GitHub:
    """State shared by the API and the git server."""

    def __init__(self, public_key, app_id=123456, installation_id=7890123, account="acme",
                 repositories=("acme/app", "acme/lib"), permissions=None, token_format="ghs", expires_in=3600):
        self.public_key = public_key
        self.app_id = app_id
        self.installation_id = installation_id
        self.account = account
        self.repositories = set(repositories)
        self.permissions = permissions or {"contents": "write", "metadata": "read", "pull_requests": "write",
                                           "issues": "read"}
        self.token_format = token_format
        self.expires_in = expires_in
        self.tokens: dict[str, dict] = {}
        self.minted: list[dict] = []
        self.deleted: list[dict] = []
        self.seen: list[dict] = []
        self.lock = threading.Lock()

    def new_token(self) -> str:
        if self.token_format == "stateless":  # GitHub's newer format: long, with dots
            part = lambda n: base64.urlsafe_b64encode(secrets.token_bytes(n)).decode().rstrip("=")  # noqa: E731
            return f"ghs_{part(60)}.{part(200)}.{part(120)}"
        return "ghs_" + secrets.token_hex(18)

    def live(self, token: str) -> dict | None:
        entry = self.tokens.get(token)
        if entry is None or not entry["live"] or entry["expires"] < time.time():
            return None
        return entry

    def allows(self, token: str, repo: str, permission: str, level: str) -> bool:
        entry = self.live(token)
        if entry is None or repo not in entry["repositories"]:
            return False
        have = entry["permissions"].get(permission)
        return have is not None and LEVELS.index(have) >= LEVELS.index(level)

    def digests_seen(self) -> str:
        return "\n".join(s["raw_headers"] for s in self.seen)


class _Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: dict | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _app(self, gh: GitHub) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            self._reply(401, {"message": "A JSON web token could not be decoded"})
            return False
        try:
            claims = jwt.decode(auth[7:], gh.public_key, algorithms=["RS256"],
                                options={"require": ["iat", "exp", "iss"]}, leeway=5)
        except jwt.PyJWTError as exc:
            self._reply(401, {"message": f"'Expiration time' claim ('exp') is invalid: {type(exc).__name__}"})
            return False
        if str(claims["iss"]) != str(gh.app_id) or claims["exp"] - claims["iat"] > 660:
            self._reply(401, {"message": "bad iss or lifetime"})
            return False
        return True

    def _token(self) -> str:
        auth = self.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        return value if scheme.lower() in ("token", "bearer") else ""

    def _handle(self):
        gh: GitHub = self.server.github
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        with gh.lock:
            gh.seen.append({"method": self.command, "path": path, "raw_headers": str(self.headers)})
        prefix = f"/app/installations/{gh.installation_id}"
        if self.command == "POST" and path.startswith("/app/installations/") and path.endswith("/access_tokens"):
            if not self._app(gh):
                return
            if path != prefix + "/access_tokens":
                return self._reply(404, {"message": "Not Found"})
            body = json.loads(raw or b"{}")
            names = body.get("repositories")
            repos = {f"{gh.account}/{n}".lower() for n in names} if names is not None else set(gh.repositories)
            if not repos <= gh.repositories:
                return self._reply(422, {"message": "There is at least one repository that does not exist or is "
                                                    "not accessible to the parent installation."})
            perms = body.get("permissions")
            if perms is None:
                perms = dict(gh.permissions)
            for name, level in perms.items():
                have = gh.permissions.get(name)
                if have is None or LEVELS.index(have) < LEVELS.index(level):
                    return self._reply(422, {"message": "The permissions requested are not granted to this "
                                                        "installation."})
            token = gh.new_token()
            expires = time.time() + gh.expires_in
            with gh.lock:
                gh.tokens[token] = {"repositories": repos, "permissions": perms, "live": True, "expires": expires}
                gh.minted.append({"token": token, "repositories": sorted(repos), "permissions": perms,
                                  "at": time.time(), "body": body})
            return self._reply(201, {
                "token": token, "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
                "permissions": perms, "repository_selection": "selected",
                "repositories": [{"full_name": r} for r in sorted(repos)],
            })
        if self.command == "GET" and path.startswith("/app/installations/"):
            if not self._app(gh):
                return
            if path != prefix:
                return self._reply(404, {"message": "Not Found"})
            return self._reply(200, {"id": gh.installation_id, "account": {"login": gh.account},
                                     "permissions": gh.permissions, "repository_selection": "selected"})
        if self.command == "DELETE" and path == "/installation/token":
            token = self._token()
            with gh.lock:
                entry = gh.live(token)
                if entry is None:
                    return self._reply(401, {"message": "Bad credentials"})
                entry["live"] = False
                gh.deleted.append({"sha256": hashlib.sha256(token.encode()).hexdigest(), "at": time.time()})
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "GET" and path.startswith("/repos/"):
            token = self._token()
            repo = "/".join(path.split("/")[2:4]).lower()
            if gh.live(token) is None:
                return self._reply(401, {"message": "Bad credentials"})
            if not gh.allows(token, repo, "metadata", "read") and not gh.allows(token, repo, "contents", "read"):
                return self._reply(404, {"message": "Not Found"})
            return self._reply(200, {"full_name": repo, "echo": "token was " + token[:8]})
        return self._reply(404, {"message": "Not Found"})

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _handle


class _Git(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _deny(self, status: int, message: str) -> None:
        data = message.encode() + b"\n"
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        gh: GitHub = self.server.github
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
        with gh.lock:
            gh.seen.append({"method": self.command, "path": self.path, "raw_headers": str(self.headers)})
        path, _, query = self.path.partition("?")
        parts = path.split("/")
        repo = "/".join(parts[1:3]).removesuffix(".git").lower()
        push = path.endswith("/git-receive-pack") or "service=git-receive-pack" in query
        auth = self.headers.get("Authorization", "")
        token = ""
        if auth.startswith("Basic "):
            user, _, token = base64.b64decode(auth[6:]).decode().partition(":")
        if not token or gh.live(token) is None:
            return self._deny(401, "Invalid username or token.")
        if not gh.allows(token, repo, "contents", "write" if push else "read"):
            return self._deny(403, f"Permission to {repo}.git denied to the installation.")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": self.server.root,
            "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
            "REQUEST_METHOD": self.command, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": "x-access-token", "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
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


class Server:
    def __init__(self, handler, github: GitHub, ca, host: str, root: str | None = None):
        self.server = ThreadingHTTPServer((host, 0), handler)
        self.server.daemon_threads = True
        self.server.github = github
        self.server.root = root
        self.server.socket = ca.server_context().wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_repos(root: str, names) -> None:
    """Bare repositories ``root/owner/name.git``, each with one commit on main."""
    for name in names:
        work = os.path.join(root, "_work", name)
        subprocess.run(["git", "init", "-q", "-b", "main", work], check=True)
        subprocess.run(["git", "-C", work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                        "--allow-empty", "-m", f"first commit of {name}"], check=True)
        bare = os.path.join(root, name + ".git")
        subprocess.run(["git", "clone", "-q", "--bare", work, bare], check=True)
        subprocess.run(["git", "-C", bare, "config", "http.receivepack", "true"], check=True)
