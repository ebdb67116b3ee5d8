"""agentsess's git credential helper: ``python -m agentsess.edges.gitcredential BROKER_URL get``.

git runs it (``credential.helper``, set for the run by its supervisor) on every request that
needs a credential. It asks the run's supervisor on every ``get`` and prints what it answers:
the placeholder of the run's GitHub token for a repository in the run's scopes, or
``quit=1`` (git stops, asks no other helper and no terminal) for a revoked or finished run
or a repository outside the scopes, with the reason on stderr. ``store`` and ``erase`` do
nothing: there is nothing worth keeping.

:func:`ask_supervisor` is the one call to the supervisor. On this branch it goes to the run's
broker (``POST /.agentsess/control`` with the run's token); where runs have a control socket,
point it there (an op ``git_credential`` answering
:meth:`agentsess.core.credentials.providers.runtime.Providers.git_credential`).
"""

import json
import os
import sys

TIMEOUT = 10.0
FIELDS = ("protocol", "host", "path")


def ask_supervisor(broker_url: str, message: dict) -> dict:
    """The supervisor's answer to ``message``; raises OSError when it does not answer."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(broker_url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "::1", "localhost") or not parts.port:
        raise OSError("the broker's address is not a loopback http:// URL")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        body = json.dumps(message).encode()
        conn.request("POST", "/.agentsess/control", body=body, headers={
            "Authorization": f"Bearer {os.environ.get('AGENTSESS_TOKEN', '')}",
            "Content-Type": "application/json",
        })
        resp = conn.getresponse()
        raw = resp.read(1 << 16)
        answer = json.loads(raw) if raw else {}
    except ValueError:
        raise OSError("the broker's answer is not JSON") from None
    finally:
        conn.close()
    if not isinstance(answer, dict):
        raise OSError("the broker's answer is not a JSON object")
    if resp.status != 200:
        raise OSError(str(answer.get("error") or f"HTTP {resp.status}"))
    return answer


def _read_request(stream) -> dict:
    out = {}
    for line in stream:
        line = line.rstrip("\r\n")
        if not line:
            break
        key, sep, value = line.partition("=")
        if sep and key in FIELDS:
            out[key] = value
    return out


def _clean(value) -> str:
    """A value git may read: one line, no NUL (git refuses those, and so do we)."""
    text = str(value)
    if "\n" in text or "\0" in text or "\r" in text:
        raise ValueError("a credential value with a line break")
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m agentsess.edges.gitcredential BROKER_URL get|store|erase", file=sys.stderr)
        return 2
    broker_url, action = args
    if action != "get":
        sys.stdin.read()
        return 0
    request = _read_request(sys.stdin)
    try:
        answer = ask_supervisor(broker_url, {"op": "git_credential", **request})
    except OSError as exc:
        print(f"agentsess: error: no credential for git: the run's supervisor does not answer ({exc})", file=sys.stderr)
        print("quit=1")
        return 0
    if answer.get("quit"):
        print(f"agentsess: error: {answer.get('error') or 'no credential for git'}", file=sys.stderr)
        print("quit=1")
        return 0
    try:
        lines = [f"{key}={_clean(answer[key])}" for key in ("username", "password", "password_expiry_utc")
                 if key in answer]
    except ValueError:
        print("quit=1")
        return 0
    if lines:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
