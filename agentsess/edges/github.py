"""The GitHub REST API as agentsess itself calls it: mint and delete installation tokens.

Only the supervisor calls these (the child never sees the App's key or a real token). TLS is
verified against the system CAs plus the provider's ``ca_file``. No message raised here ever
holds a token or the App's JWT: GitHub's own ``message`` is quoted, cut to one short line.
"""

import json
import ssl
import time
import urllib.error
import urllib.request

TIMEOUT = 15.0
API_VERSION = "2022-11-28"


class GitHubError(Exception):
    """A call failed; ``status`` is GitHub's HTTP status (None when it was not reached)."""

    def __init__(self, message: str, status: int | None = None, body: dict | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body or {}


_contexts: dict = {}


def _context(ca_file: str | None) -> ssl.SSLContext:
    ctx = _contexts.get(ca_file)
    if ctx is None:
        ctx = ssl.create_default_context()
        if ca_file:
            ctx.load_verify_locations(cafile=ca_file)
        _contexts[ca_file] = ctx
    return ctx


def _call(method: str, url: str, auth: str, ca_file: str | None, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/vnd.github+json")
    req.add_header("X-GitHub-Api-Version", API_VERSION)
    req.add_header("User-Agent", "agentsess")
    req.add_header("Authorization", auth)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    handler = urllib.request.HTTPSHandler(context=_context(ca_file)) if url.startswith("https:") else None
    opener = urllib.request.build_opener(*([handler] if handler else []), _NoRedirect)
    try:
        with opener.open(req, timeout=TIMEOUT) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw = exc.read() if exc.fp else b""
        status = exc.code
    except urllib.error.URLError as exc:
        reason = exc.reason
        shown = getattr(reason, "verify_message", None) or getattr(reason, "strerror", None) or type(reason).__name__
        raise GitHubError(f"cannot reach {url.split('/', 3)[2]}: {shown}") from None
    except (OSError, ValueError) as exc:
        raise GitHubError(f"cannot reach {url.split('/', 3)[2]}: {type(exc).__name__}") from None
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {}
    return status, parsed if isinstance(parsed, dict) else {"items": parsed}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a credential is never sent on to another URL
        return None


def _message(body: dict) -> str:
    text = str(body.get("message") or "").splitlines()[0:1]
    return (text[0][:200] if text else "").strip()


def mint(api_url: str, ca_file: str | None, app_jwt: str, installation_id: int, body: dict) -> dict:
    """``POST /app/installations/{id}/access_tokens``: GitHub's answer (``token``, ``expires_at``, ``permissions``)."""
    status, answer = _call("POST", f"{api_url}/app/installations/{installation_id}/access_tokens",
                           f"Bearer {app_jwt}", ca_file, body)
    if status != 201 or not isinstance(answer.get("token"), str) or not answer["token"]:
        why = _message(answer)
        raise GitHubError(f"github: minting an installation token failed: HTTP {status}" + (f": {why}" if why else ""),
                          status, answer if status != 201 else None)
    return answer


def installation(api_url: str, ca_file: str | None, app_jwt: str, installation_id: int) -> dict | None:
    """``GET /app/installations/{id}`` (what the installation grants), or None when unreadable."""
    try:
        status, answer = _call("GET", f"{api_url}/app/installations/{installation_id}", f"Bearer {app_jwt}", ca_file)
    except GitHubError:
        return None
    return answer if status == 200 else None


def delete(api_url: str, ca_file: str | None, token: str) -> tuple[str, float]:
    """``DELETE /installation/token``: ("revoked" | "already revoked", seconds it took)."""
    started = time.monotonic()
    status, answer = _call("DELETE", f"{api_url}/installation/token", f"token {token}", ca_file)
    took = time.monotonic() - started
    if status == 204:
        return "revoked", took
    if status == 401:
        return "already revoked", took
    why = _message(answer)
    raise GitHubError(f"HTTP {status}" + (f": {why}" if why else ""), status)
