"""The MCP proxy: a stdio MCP server wrapped so that every ``tools/call`` meets the run's policy.

``agentsess mcp-proxy [--name SERVER] -- CMD...`` sits between an agent (the MCP client) and
the server CMD, relaying newline-delimited JSON-RPC both ways byte for byte. Only requests
with method ``tools/call`` are looked at: each is decided by :func:`policy.decide` as tool
``mcp:SERVER:NAME`` and recorded as an ``action.checked`` receipt before anything else
happens. An allowed call is forwarded and its response, when it comes back, is recorded as
an ``action.result`` receipt and relayed unchanged. A denied call (or one a rule says to
``ask`` about: the proxy has nobody to ask) is not forwarded; the proxy answers it itself
with the JSON-RPC error ``-32001 agentsess denied tools/call NAME: REASON``.

The run's row is re-read from the store for every call, so a revocation or an expiry bites
on the next call. Anything the proxy cannot check or record is denied (fails closed).

Batches (JSON arrays, MCP 2025-03-26): every ``tools/call`` element is decided; when some
are denied, the proxy answers those in one batch of errors and forwards the rest as a
smaller batch (so the client gets two arrays for one batch; it matches responses by id).

Two threads: the caller's thread relays the server's output (and records results), a daemon
thread relays the client's input (and decides calls). Writes to our stdout are serialised by
a lock; each thread opens its own store connection.
"""

import json
import os

from agentsess.core.guard import actions, policy
from agentsess.encoding import canonical_text
from agentsess.errors import RUN_NOT_EXECUTABLE, RUN_NOT_FOUND, USAGE, AgentsessError

SOURCE = "mcp-proxy"
DENIED_CODE = -32001
READ_SIZE = 1 << 18
# Redaction sees this many characters beyond a summary's cap: enough for any credential
# (a 4096-bit RSA private key block is ~3.3 KB) to be masked whole, while the cost of a
# receipt no longer grows with the size of the message.

USAGE_LINE = "usage: agentsess mcp-proxy [--name SERVER] -- CMD [ARGS...]"


def server_name(command: list[str], name: str | None) -> str:
    """The SERVER in ``mcp:SERVER:TOOL``: ``--name``, else the basename of CMD[0]."""
    chosen = name if name is not None else os.path.basename(command[0].rstrip("/"))
    if not chosen or any(c == ":" or c.isspace() or not c.isprintable() for c in chosen):
        source = "--name" if name is not None else f"the command's basename ({chosen!r})"
        raise AgentsessError(
            f"mcp-proxy: {source} is not a usable server name: it must be non-empty, without ':' "
            "or spaces; pass --name SERVER",
            USAGE,
        )
    return chosen


def _key(rid):
    """A dict key for a JSON-RPC id: 1 and "1" differ, 1 and 1.0 do not."""
    if isinstance(rid, bool):
        return ("b", rid)
    if isinstance(rid, float) and rid.is_integer():
        rid = int(rid)
    if isinstance(rid, (int, float)):
        return ("n", rid)
    if isinstance(rid, str):
        return ("s", rid)
    return ("j", canonical_text(rid))


def _is_call(msg) -> bool:
    return isinstance(msg, dict) and msg.get("method") == "tools/call"


def _parse(line: bytes):
    """The JSON value of one line, or raise ValueError (not UTF-8, not JSON, blank)."""
    return json.loads(line.decode("utf-8"))


class LineBuffer:
    """Splits a byte stream into newline-terminated lines (terminator kept), however the
    stream is chunked; each chunk is searched once, so a line of many MB costs O(its size)."""

    __slots__ = ("parts",)

    def __init__(self):
        self.parts: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            self.parts.append(chunk[start : end + 1])
            lines.append(b"".join(self.parts))
            self.parts = []
            start = end + 1
        if start < len(chunk):
            self.parts.append(chunk[start:])
        return lines

    def rest(self) -> bytes:
        """The unterminated tail (at end of file), emptied."""
        tail = b"".join(self.parts)
        self.parts = []
        return tail


def _lines(fd: int):
    """Yield each line read from ``fd``, then any unterminated rest at end of file."""
    buffer = LineBuffer()
    while True:
        chunk = os.read(fd, READ_SIZE)
        if not chunk:
            tail = buffer.rest()
            if tail:
                yield tail
            return
        yield from buffer.feed(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Pending:
    """An allowed ``tools/call`` forwarded to the server, waiting for its response."""

    __slots__ = ("tool", "request_id", "args_sha256", "cancelled")

    def __init__(self, tool: str, request_id, args_sha256: str | None):
        self.tool = tool
        self.request_id = request_id
        self.args_sha256 = args_sha256
        self.cancelled = False


class Relay:
    """One proxy session between the client (our stdin/stdout) and one server process."""

    def __init__(self, server: str, run_id: str, ask, client_out: int = 1):
        import threading

        self.server = server
        self.run_id = run_id
        self.ask = ask  # ask(op, **fields): the run's supervisor, over its control socket
        self.client_out = client_out
        self.out_lock = threading.Lock()
        self.pending_lock = threading.Lock()
        self.pending: dict = {}
        self.client_gone = False  # our stdout broke: keep draining the server, write nothing
        self.finished = False  # the session ended: late denials are not written
        self.server_in: int | None = None

    # -- writing ------------------------------------------------------------------------

    def to_client(self, data: bytes) -> None:
        with self.out_lock:
            if self.client_gone or self.finished:
                return
            try:
                _write_all(self.client_out, data)
            except OSError:
                self.client_gone = True

    def to_server(self, data: bytes) -> None:
        if self.server_in is None:
            return
        try:
            _write_all(self.server_in, data)
        except OSError:  # the server exited or closed its stdin; its exit ends the session
            self.close_server_input()

    def close_server_input(self) -> None:
        fd, self.server_in = self.server_in, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    # -- client -> server -----------------------------------------------------------------

    def decide(self, msg: dict):
        """Decide one ``tools/call`` request and record it; the error response if denied, else
        None (an allowed call with an id is registered as pending)."""
        params = msg.get("params")
        params = params if isinstance(params, dict) else {}
        name = params.get("name")
        name = name if isinstance(name, str) else "?"
        args = params.get("arguments")
        tool = f"mcp:{self.server}:{name}"
        has_id = "id" in msg
        rid = msg.get("id")
        try:  # the run's supervisor decides and records (decide_call, below)
            answer = self.ask("mcp_call", server=self.server, name=name, arguments=args, request_id=rid)
            allowed, reason, args_sha256 = bool(answer["allowed"]), str(answer["reason"]), answer.get("args_sha256")
        except Exception as exc:  # fail closed: a call that cannot be checked and recorded is denied
            text = exc.message if isinstance(exc, AgentsessError) else f"{type(exc).__name__}: {exc}"
            allowed, reason, args_sha256 = False, f"agentsess could not check and record the call ({text})", None
        if allowed:
            if has_id:
                with self.pending_lock:
                    self.pending[_key(rid)] = Pending(tool, rid, args_sha256)
            return None
        return {
            "jsonrpc": "2.0",
            "id": rid,
            "error": {"code": DENIED_CODE, "message": f"agentsess denied tools/call {name}: {reason}"},
        }

    def note_cancel(self, msg) -> None:
        if isinstance(msg, dict) and msg.get("method") == "notifications/cancelled" and "id" not in msg:
            params = msg.get("params")
            if isinstance(params, dict) and "requestId" in params:
                with self.pending_lock:
                    entry = self.pending.get(_key(params["requestId"]))
                    if entry is not None:
                        entry.cancelled = True

    def client_line(self, line: bytes) -> None:
        try:
            msg = _parse(line)
        except ValueError:
            self.to_server(line)  # not JSON-RPC we can read: relayed unchanged, the server answers it
            return
        if _is_call(msg):
            answer = self.decide(msg)
            if answer is None:
                self.to_server(line)
            elif "id" in msg:
                self.to_client(_encode(answer))
            return
        if isinstance(msg, list) and any(_is_call(m) for m in msg):
            kept, answers = [], []
            for m in msg:
                if _is_call(m):
                    answer = self.decide(m)
                    if answer is not None:
                        if "id" in m:
                            answers.append(answer)
                        continue
                else:
                    self.note_cancel(m)
                kept.append(m)
            if len(kept) == len(msg):
                self.to_server(line)
            elif kept:
                self.to_server(_encode(kept))
            if answers:
                self.to_client(_encode(answers))
            return
        if isinstance(msg, list):
            for m in msg:
                self.note_cancel(m)
        else:
            self.note_cancel(msg)
        self.to_server(line)

    def pump_client(self, fd: int) -> None:
        try:
            for line in _lines(fd):
                self.client_line(line)
        except OSError:
            pass
        finally:
            self.close_server_input()

    # -- server -> client -----------------------------------------------------------------

    def record_result(self, entry: Pending, response: dict | None, why: str | None = None) -> None:
        payload: object
        if response is None:
            is_error, payload = True, {"no_response": why}
        elif "error" in response:
            is_error, payload = True, {"error": response.get("error")}
        else:
            payload = response.get("result")
            is_error = isinstance(payload, dict) and payload.get("isError") is True
        summary, digest = actions.summarise(payload, actions.RESULT_CAP)
        data = {
            "tool": entry.tool,
            "source": SOURCE,
            "server": self.server,
            "request_id": entry.request_id,
            "is_error": is_error,
            "result": summary,
            "result_sha256": digest,
            "args_sha256": entry.args_sha256,
        }
        if response is None:
            data["answered"] = False
        try:
            self.ask("mcp_result", data=data)
        except Exception as exc:  # the call already happened: say so, do not break the session
            text = exc.message if isinstance(exc, AgentsessError) else f"{type(exc).__name__}: {exc}"
            try:
                os.write(2, f"agentsess: mcp-proxy could not record the result of {entry.tool}: {text}\n".encode())
            except OSError:
                pass

    def server_line(self, line: bytes) -> None:
        with self.pending_lock:
            waiting = bool(self.pending)
        if waiting:
            try:
                msg = _parse(line)
            except ValueError:
                msg = None
            for m in msg if isinstance(msg, list) else [msg]:
                if isinstance(m, dict) and "method" not in m and "id" in m and ("result" in m or "error" in m):
                    with self.pending_lock:
                        entry = self.pending.pop(_key(m["id"]), None)
                    if entry is not None:
                        self.record_result(entry, m)
        self.to_client(line)

    def finish(self) -> None:
        """After the server's output ended: record calls it never answered; write no more."""
        with self.pending_lock:
            left = list(self.pending.values())
            self.pending.clear()
        for entry in left:
            why = "the client cancelled it" if entry.cancelled else "the server's output ended first"
            self.record_result(entry, None, f"no response: {why}")
        with self.out_lock:
            self.finished = True

    def run(self, proc, client_in: int = 0) -> int:
        """Relay until the server's output ends; the server's exit code (128+N for signal N)."""
        import threading

        self.server_in = os.dup(proc.stdin.fileno())
        proc.stdin.close()
        reader = threading.Thread(target=self.pump_client, args=(client_in,), name="mcp-proxy-client", daemon=True)
        reader.start()
        try:
            for line in _lines(proc.stdout.fileno()):
                self.server_line(line)
        finally:
            proc.stdout.close()
        code = proc.wait()
        self.finish()
        return 128 - code if code < 0 else code


def _encode(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def proxy(command: list[str], name: str | None = None, env=None, client_in: int = 0, client_out: int = 1,
          ask=None) -> int:
    """Run the MCP server ``command`` behind the policy of the current run; its exit code.

    Refuses (``AgentsessError(USAGE)``), before starting anything, outside a run: no
    ``AGENTSESS_TOKEN``/``AGENTSESS_RUN_ID`` in ``env``, or a run unknown to the store.
    """
    if not command:
        raise AgentsessError(f"mcp-proxy: no server command given; {USAGE_LINE}", USAGE)
    server = server_name(command, name)
    env = os.environ if env is None else env
    if ask is None:
        raise AgentsessError("mcp-proxy: no way to reach the run's supervisor", USAGE)
    try:
        row = ask("whoami")["run"]
    except AgentsessError as exc:
        raise AgentsessError(
            f"mcp-proxy works only inside a run: start the agent with `agentsess run -- AGENT` "
            f"and let it start this proxy ({exc.message})",
            USAGE,
        ) from None
    import subprocess

    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=None if env is os.environ else dict(env),
        )
    except FileNotFoundError:
        raise AgentsessError(f"mcp-proxy: cannot start the MCP server: {command[0]}: command not found", RUN_NOT_FOUND) from None
    except OSError as exc:
        raise AgentsessError(
            f"mcp-proxy: cannot start the MCP server: {command[0]}: {exc.strerror or exc}", RUN_NOT_EXECUTABLE
        ) from None
    return Relay(server, row["id"], ask, client_out).run(proc, client_in)


def decide_call(row: dict, server: str, name, args, request_id) -> tuple[policy.Decision, dict]:
    """The supervisor's side of one ``tools/call``: the decision (``ask`` becomes deny: the
    proxy has nobody to ask) and the ``action.checked`` receipt's data."""
    name = name if isinstance(name, str) else "?"
    tool = f"mcp:{server}:{name}"
    decision = policy.decide(row, tool, args)
    if decision.decision == "ask":
        decision = policy.Decision(
            "deny",
            f"{decision.reason}; the rule says ask, and mcp-proxy has nobody to ask, so it denies",
            decision.rule,
            decision.scope,
        )
    elif decision.decision != "allow":
        decision = decision.replace(decision="deny")
    data = actions.checked_receipt(decision, tool, None, SOURCE, {"server": server, "request_id": request_id})
    if args is not None:
        data["summary"], data["args_sha256"] = actions.summarise(args, actions.SUMMARY_CAP)
    return decision, data
