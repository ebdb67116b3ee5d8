"""The MCP proxy: a stdio MCP server wrapped so that every ``tools/call`` meets the run's policy.

``agentsess mcp-proxy [--name SERVER] -- CMD...`` sits between an agent (the MCP client) and
the server CMD, relaying newline-delimited JSON-RPC. This module decides; the process, pipes
and threads are :mod:`agentsess.edges.mcp_relay`.

Client to server, it fails closed:

- Each line is parsed strictly: UTF-8, JSON without ``NaN``/``Infinity``, no duplicate keys
  and no keys that differ only in case (``"method"`` and ``"Method"``, compared with Unicode
  case folding) in any object at any depth, an object or a non-empty array of objects; the
  keys the proxy decides by (the envelope's ``method``, ``params``, ``id``…, a call's ``name``
  and ``arguments``, and the arguments rules match: ``command``, ``path``, ``url``…) spelled
  exactly, not ``"Method"`` or ``"paramſ"`` alone, which a server ignoring case would read as
  them; a ``tools/call`` with a string ``params.name``. A line
  that fails is **refused**: not relayed, answered with a JSON-RPC error (``-32700`` parse
  error or ``-32600`` invalid request, id null) and recorded as a denied ``action.checked``
  (tool ``mcp:SERVER:?``, the line's SHA-256, never its text). Blank lines are dropped.
- What reaches the server is the message as the proxy decoded it, re-encoded (compact JSON,
  UTF-8), never the original bytes: a server that decodes keys case-insensitively or reads
  escapes differently sees exactly what was decided. Integers are kept exactly; other numbers
  as IEEE doubles.
- Requests with method ``tools/call`` are decided by :func:`policy.decide` as tool
  ``mcp:SERVER:NAME`` and recorded as an ``action.checked`` receipt first. A denied call (or
  one a rule says to ``ask`` about: the proxy has nobody to ask) is not forwarded; the proxy
  answers it with the JSON-RPC error ``-32001 agentsess denied tools/call NAME: REASON``.
- Batches (JSON arrays, MCP 2025-03-26): every ``tools/call`` element is decided; the
  allowed rest is forwarded as a smaller batch, and the errors for the denied elements are
  added to the server's batch response, so the client gets one array for one batch (at
  once when nothing forwarded needs an answer).

Server to client, lines are relayed unchanged (a batch response that the proxy adds errors
to is re-encoded); the response to an allowed call is recorded as an ``action.result``.

The proxy runs inside the run: it asks the run's supervisor (over the control socket) to
decide and record each call, so a revocation or an expiry bites on the next call. Anything
the proxy cannot have checked and recorded is denied.
"""

import json
import os
import threading
from typing import Any

from agentsess.core.guard import actions, policy
from agentsess.digest import sha256_hex
from agentsess.encoding import canonical_text
from agentsess.errors import USAGE, AgentsessError

SOURCE = "mcp-proxy"
DENIED_CODE = -32001
HELD = {"held": True}  # Session.decide: the call waits for a person's answer on its own thread
PARSE_ERROR = -32700
INVALID_REQUEST = -32600

USAGE_LINE = "usage: agentsess mcp-proxy [--name SERVER] -- CMD [ARGS...]"


class Unparseable(ValueError):
    """A client line the proxy will not relay: ``code`` is the JSON-RPC error to answer."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _strict_object(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    obj = dict(pairs)
    if len(obj) != len(keys):
        dup = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise Unparseable(INVALID_REQUEST, f"duplicate key {json.dumps(dup)[:80]}")
    folded: dict = {}
    for k in keys:
        other = folded.setdefault(k.casefold(), k)
        if other != k:
            raise Unparseable(
                INVALID_REQUEST, f"keys that differ only in case: {json.dumps(other)[:80]} and {json.dumps(k)[:80]}"
            )
    return obj


# The words the proxy decides by: the JSON-RPC envelope, a call's params, and the arguments
# rules match (policy.MAIN_ARGUMENT_KEYS). A server that decodes keys case-insensitively (Go's
# encoding/json, with Unicode folding: "ſ" is "s", "K" is "k") reads "Method", "PARAMS",
# "paramſ" or "Command" as these, where the proxy saw no such key: such a spelling is refused.
ENVELOPE_KEYS = frozenset({"jsonrpc", "id", "method", "params", "result", "error"})
PARAMS_KEYS = frozenset({"name", "arguments", "_meta"})
ARGUMENT_KEYS = frozenset(policy.MAIN_ARGUMENT_KEYS)


def _spelled_as_is(obj: dict, words: frozenset, where: str) -> None:
    for k in obj:
        if k not in words and k.casefold() in words:
            raise Unparseable(
                INVALID_REQUEST,
                f"{where} key {json.dumps(k)[:80]} is {json.dumps(k.casefold())} in another spelling "
                "(a server that ignores case would read it so)",
            )


def _checked_message(msg: dict) -> None:
    """The keys the proxy decides by are spelled exactly, and a tools/call names its tool."""
    _spelled_as_is(msg, ENVELOPE_KEYS, "message")
    params = msg.get("params")
    if isinstance(params, dict):
        _spelled_as_is(params, PARAMS_KEYS, "params")
        args = params.get("arguments")
        if isinstance(args, dict):
            _spelled_as_is(args, ARGUMENT_KEYS, "arguments")
    if msg.get("method") == "tools/call" and not (isinstance(params, dict) and isinstance(params.get("name"), str)):
        raise Unparseable(INVALID_REQUEST, "a tools/call without params.name (the tool it calls)")


def _no_constant(name: str):
    raise Unparseable(PARSE_ERROR, f"{name} is not JSON")


def encode(value) -> bytes:
    """One line of compact JSON (UTF-8, newline-terminated); ValueError for what JSON cannot
    carry (non-finite numbers, unpaired surrogates)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode() + b"\n"


def parse_message(line: bytes):
    """(the message, its re-encoding) of one client line; :class:`Unparseable` when the line
    is not strict UTF-8 JSON-RPC (see the module docstring)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unparseable(PARSE_ERROR, f"not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_strict_object, parse_constant=_no_constant)
    except Unparseable:
        raise
    except (ValueError, RecursionError) as exc:
        raise Unparseable(PARSE_ERROR, f"not JSON ({str(exc)[:80]})") from None
    if isinstance(value, list):
        if not value or not all(isinstance(m, dict) for m in value):
            raise Unparseable(INVALID_REQUEST, "a batch must be a non-empty array of objects")
    elif not isinstance(value, dict):
        raise Unparseable(INVALID_REQUEST, "not a JSON-RPC object or batch")
    for msg in value if isinstance(value, list) else (value,):
        _checked_message(msg)
    try:
        encoded = encode(value)
    except (ValueError, UnicodeEncodeError) as exc:
        raise Unparseable(PARSE_ERROR, f"cannot be re-encoded ({str(exc)[:80]})") from None
    return value, encoded


def call_decision(row: dict, tool: str, args, hold=None) -> "policy.Decision":
    """The proxy's decision for ``tool`` (``mcp:SERVER:NAME``): the policy's, with ``ask``
    (nobody to ask) and anything but ``allow`` turned into ``deny``. Pure, but for ``hold``:
    ``hold(decision)`` answers an ``ask`` that ``approval = "human"`` holds for a person."""
    decision = policy.decide(row, tool, args)
    if decision.decision == "ask" and hold is not None:
        from agentsess.core.guard import approvals

        if approvals.held(row, decision):
            decision = hold(decision)
    if decision.decision == "ask":
        return policy.Decision(
            "deny",
            f"{decision.reason}; the rule says ask, and mcp-proxy has nobody to ask, so it denies "
            "(approval = \"human\" holds such calls for `agentsess approve`)",
            decision.rule,
            decision.scope,
        )
    if decision.decision != "allow":
        decision = decision.replace(decision="deny")
    return decision


class Deferred(Exception):
    """A call held for a person's answer that the proxy waits for on its own (``mcp_await``)."""

    def __init__(self, request_id: str):
        super().__init__(request_id)
        self.request_id = request_id


def decide_call(row: dict, server: str, name, args, request_id, store=None, say=None,
                defer: bool = False) -> tuple[policy.Decision, dict]:
    """The supervisor's side of one ``tools/call``: the decision and the ``action.checked``
    receipt's data. With ``store``, an ``ask`` under ``approval = "human"`` is held there until
    a person answers (``say``: the run's terminal notice); with ``defer`` too, the request is
    made and :class:`Deferred` raised instead of waiting (the proxy then waits with
    :func:`await_call`, without holding up the rest of its session)."""
    name = name if isinstance(name, str) else "?"
    tool = f"mcp:{server}:{name}"
    extra = {"server": server, "request_id": request_id}
    hold = None
    if store is not None:
        from agentsess.core.guard import approvals

        def hold(decision):
            if defer:
                opened = approvals.request(store, row, tool, args, SOURCE, decision, say)
                if isinstance(opened, str):
                    raise Deferred(opened)
            else:
                opened = approvals.settle(store, row, tool, args, SOURCE, decision, say)
            answered, more = opened
            extra.update(more)
            return answered

    decision = call_decision(row, tool, args, hold)
    return decision, _checked(decision, tool, args, extra)


def await_call(row: dict, server: str, name, args, request_id, approval: str, store) -> tuple[policy.Decision, dict]:
    """The answer to a call :func:`decide_call` deferred: held until a person answers request
    ``approval``, which must be for this very call (tool and arguments)."""
    from agentsess.core.guard import approvals

    name = name if isinstance(name, str) else "?"
    tool = f"mcp:{server}:{name}"
    extra = {"server": server, "request_id": request_id}
    decision = policy.decide(row, tool, args)
    if approvals.held(row, decision):
        decision, more = approvals.wait(store, row, approval, tool, args, decision)
        extra.update(more)
    elif decision.decision == "allow":  # the rules no longer ask (a revoked run never gets here as allow)
        decision = decision.replace(decision="deny", reason=f"approval request {approval} is not for a held call")
    if decision.decision != "allow":
        decision = decision.replace(decision="deny")
    return decision, _checked(decision, tool, args, extra)


def _checked(decision: "policy.Decision", tool: str, args, extra: dict) -> dict:
    data = actions.checked_receipt(decision, tool, None, SOURCE, extra)
    if args is not None:
        data["summary"], data["args_sha256"] = actions.summarise(args, actions.SUMMARY_CAP)
    return data


def refused_line(server: str, reason: str, line_sha256: str, line_bytes: int) -> dict:
    """The ``action.checked`` data of a client line the proxy would not relay."""
    decision = policy.Decision("deny", f"agentsess refused a message it cannot parse safely: {reason}")
    return actions.checked_receipt(
        decision, f"mcp:{server}:?", None, SOURCE,
        {"server": server, "request_id": None, "refused": reason, "line_sha256": line_sha256,
         "line_bytes": line_bytes},
    )


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


class Pending:
    """An allowed ``tools/call`` forwarded to the server, waiting for its response."""

    __slots__ = ("args_sha256", "cancelled", "request_id", "tool")

    def __init__(self, tool: str, request_id, args_sha256: str | None):
        self.tool = tool
        self.request_id = request_id
        self.args_sha256 = args_sha256
        self.cancelled = False


class Session:
    """The decisions of one proxy session; ``io`` (a :class:`mcp_relay.LineRelay`) carries
    the bytes. ``client_line`` runs in the client thread, ``server_line`` and ``finish`` in
    the caller's; each thread uses its own store connection."""

    def __init__(self, server: str, run_id: str, ask):
        self.server = server
        self.run_id = run_id
        self.ask = ask  # ask(op, **fields): the run's supervisor decides and records
        self.io: Any = None  # the edge's LineRelay, set before the session starts
        self.lock = threading.Lock()
        self.pending: dict = {}  # allowed calls waiting for their response, by id
        self.held: dict = {}  # calls held for a person's answer, by id: True once the client cancelled
        self.batches: list = []  # (ids forwarded, our error answers) per batch waiting

    # -- client -> server -----------------------------------------------------------------

    def decide(self, msg: dict, encoded: bytes | None = None):
        """Decide one ``tools/call`` request and record it; the error response if denied, else
        None (an allowed call with an id is registered as pending). With ``encoded`` (a call on
        its own line, not in a batch), a call held for a person's answer is waited for on a
        thread of its own and forwarded (``encoded``) or refused then: :data:`HELD` is returned."""
        params = msg.get("params")
        params = params if isinstance(params, dict) else {}
        name = params.get("name")
        name = name if isinstance(name, str) else "?"
        args = params.get("arguments")
        tool = f"mcp:{self.server}:{name}"
        rid = msg.get("id")
        try:
            answer = self.ask("mcp_call", server=self.server, name=name, arguments=args, request_id=rid,
                              defer=encoded is not None)
            if answer.get("held"):
                self._wait(msg, encoded, name, args, str(answer["held"]))
                return HELD
            decision = policy.Decision("allow" if answer["allowed"] else "deny", str(answer["reason"]))
            data = {"args_sha256": answer.get("args_sha256")}
        except Exception as exc:  # noqa: BLE001 - fail closed: a call that cannot be checked and recorded is denied
            text = exc.message if isinstance(exc, AgentsessError) else f"{type(exc).__name__}: {exc}"
            decision = policy.Decision("deny", f"agentsess could not check and record the call ({text})")
            data = {}
        if decision.allowed:
            if "id" in msg:
                with self.lock:
                    self.pending[_key(rid)] = Pending(tool, rid, data.get("args_sha256"))
            return None
        return _error(rid, DENIED_CODE, f"agentsess denied tools/call {name}: {decision.reason}")

    def _wait(self, msg: dict, encoded, name: str, args, approval: str) -> None:
        """Wait for a person's answer on a thread: the rest of the session goes on meanwhile."""
        rid = msg.get("id")
        key = _key(rid) if "id" in msg else None
        if key is not None:
            with self.lock:
                self.held[key] = False

        def answered() -> None:
            try:
                answer = self.ask("mcp_await", server=self.server, name=name, arguments=args, request_id=rid,
                                  approval=approval)
                allowed, reason = bool(answer["allowed"]), str(answer["reason"])
                digest = answer.get("args_sha256")
            except Exception as exc:  # noqa: BLE001 - fail closed
                text = exc.message if isinstance(exc, AgentsessError) else f"{type(exc).__name__}: {exc}"
                allowed, reason, digest = False, f"agentsess could not check and record the call ({text})", None
            with self.lock:
                cancelled = self.held.pop(key, False) if key is not None else False
                if allowed and key is not None and not cancelled:
                    self.pending[key] = Pending(f"mcp:{self.server}:{name}", rid, digest)
            if cancelled:
                return  # the client gave up on it: nothing to forward, nobody to answer
            if allowed:
                self.io.to_server(encoded)
            elif key is not None:
                self.io.to_client(encode(_error(rid, DENIED_CODE, f"agentsess denied tools/call {name}: {reason}")))

        threading.Thread(target=answered, name="mcp-proxy-held", daemon=True).start()

    def refuse(self, line: bytes, exc: Unparseable) -> None:
        """Answer and record a line that is not relayed because it cannot be parsed safely."""
        reason = f"agentsess refused a message it cannot parse safely: {exc.reason}"
        try:
            self.ask("mcp_refused", server=self.server, reason=exc.reason, line_sha256=sha256_hex(line),
                     line_bytes=len(line))
        except Exception as err:  # noqa: BLE001 - still refused; say that it went unrecorded
            text = err.message if isinstance(err, AgentsessError) else f"{type(err).__name__}: {err}"
            try:
                os.write(2, f"agentsess: mcp-proxy could not record a refused message: {text}\n".encode())
            except OSError:
                pass
        self.io.to_client(encode(_error(None, exc.code, reason)))

    def note_cancel(self, msg) -> None:
        if isinstance(msg, dict) and msg.get("method") == "notifications/cancelled" and "id" not in msg:
            params = msg.get("params")
            if isinstance(params, dict) and "requestId" in params:
                with self.lock:
                    key = _key(params["requestId"])
                    entry = self.pending.get(key)
                    if entry is not None:
                        entry.cancelled = True
                    if key in self.held:
                        self.held[key] = True

    def client_line(self, line: bytes) -> None:
        if not line.strip():
            return  # a blank line carries nothing to relay
        try:
            msg, encoded = parse_message(line)
        except Unparseable as exc:
            self.refuse(line, exc)
            return
        if isinstance(msg, dict):
            if _is_call(msg):
                answer = self.decide(msg, encoded)
                if answer is HELD:
                    return
                if answer is not None:
                    if "id" in msg:
                        self.io.to_client(encode(answer))
                    return
            else:
                self.note_cancel(msg)
            self.io.to_server(encoded)
            return
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
        forwarded_ids = {_key(m["id"]) for m in kept if "id" in m and "method" in m}
        if answers and forwarded_ids:
            with self.lock:  # before forwarding: the server may answer at once
                self.batches.append((forwarded_ids, answers))
        elif answers:
            self.io.to_client(encode(answers))  # nothing forwarded will be answered
        if kept:
            self.io.to_server(encoded if len(kept) == len(msg) else encode(kept))

    def client_done(self) -> None:
        pass

    # -- server -> client -----------------------------------------------------------------

    def record_result(self, entry: Pending, response: dict | None, why: str | None = None) -> None:
        payload: Any
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
        except Exception as exc:  # noqa: BLE001 - the call already happened: say so, do not break the session
            text = exc.message if isinstance(exc, AgentsessError) else f"{type(exc).__name__}: {exc}"
            try:
                os.write(2, f"agentsess: mcp-proxy could not record the result of {entry.tool}: {text}\n".encode())
            except OSError:
                pass

    def server_line(self, line: bytes) -> None:
        with self.lock:
            waiting = bool(self.pending) or bool(self.batches)
        if waiting:
            try:
                msg = json.loads(line.decode("utf-8"))
            except ValueError:
                msg = None
            for m in msg if isinstance(msg, list) else [msg]:
                if isinstance(m, dict) and "method" not in m and "id" in m and ("result" in m or "error" in m):
                    with self.lock:
                        entry = self.pending.pop(_key(m["id"]), None)
                    if entry is not None:
                        self.record_result(entry, m)
            if isinstance(msg, list):
                ids = {_key(m["id"]) for m in msg if isinstance(m, dict) and "id" in m}
                with self.lock:
                    found = next((b for b in self.batches if b[0] & ids), None)
                    if found is not None:
                        self.batches.remove(found)
                if found is not None:
                    line = encode(msg + found[1])  # one batch answered with one array
        self.io.to_client(line)

    def finish(self) -> None:
        """After the server's output ended: answer batches it never answered, record calls
        it never answered."""
        with self.lock:
            left = list(self.pending.values())
            self.pending.clear()
            batches, self.batches = self.batches, []
        for _, answers in batches:
            self.io.to_client(encode(answers))
        for entry in left:
            why = "the client cancelled it" if entry.cancelled else "the server's output ended first"
            self.record_result(entry, None, f"no response: {why}")


def _error(rid, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def proxy(command: list[str], name: str | None = None, env=None, client_in: int = 0, client_out: int = 1,
          ask=None) -> int:
    """Run the MCP server ``command`` behind the policy of the current run; its exit code.

    ``ask(op, **fields)`` reaches the run's supervisor. Refuses (``AgentsessError(USAGE)``),
    before starting anything, outside a run.
    """
    if not command:
        raise AgentsessError(f"mcp-proxy: no server command given; {USAGE_LINE}", USAGE)
    server = server_name(command, name)
    env = os.environ if env is None else env
    if ask is None:
        raise AgentsessError("mcp-proxy: no way to reach the run's supervisor", USAGE)
    from agentsess.edges import mcp_relay

    try:
        row = ask("whoami")["run"]
    except AgentsessError as exc:
        raise AgentsessError(
            f"mcp-proxy works only inside a run: start the agent with `agentsess run -- AGENT` "
            f"and let it start this proxy ({exc.message})",
            USAGE,
        ) from None
    proc = mcp_relay.start_server(command, None if env is os.environ else dict(env))
    session = Session(server, row["id"], ask)
    relay = mcp_relay.LineRelay(proc, session, client_in, client_out)
    session.io = relay
    return relay.run()
