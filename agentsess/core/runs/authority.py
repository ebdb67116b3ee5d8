"""The run's authority: what a supervisor answers on its control socket.

Commands inside a run (`hook`, `check`, `exec`, `whoami`, `token verify`, the MCP proxy) do
not open the store, the receipt streams or the keys: they ask their supervisor, which
decides, writes the receipts and answers. The caller is the run whose supervisor is the
nearest of the caller's ancestors (its peer pid's parent chain, read in /proc): what the
caller says about itself (``--run``, ``AGENTSESS_RUN_ID``) can narrow that, never widen it.

Every answer is a dict with ``ok``; a refusal carries ``error`` (one line) and ``code`` (the
exit code the client leaves with).
"""

import _thread
import os
import time

from agentsess.errors import CHECK_FAILED, RUN_FAILED, USAGE, AgentsessError


def refused(error: str, code: int = USAGE) -> dict:
    return {"ok": False, "error": error, "code": code}


def ancestry(pid: int):
    """``pid`` and its ancestors, nearest first."""
    from agentsess.edges.host import ancestors

    yield pid
    yield from ancestors(pid)


class Nested:
    """A run started inside this one, supervised by a process of this run (``pid``)."""

    def __init__(self, pid: int, run_id: str, plan, watch, broker=None):
        self.pid = pid
        self.run_id = run_id
        self.plan = plan
        self.watch = watch
        self.broker = broker  # lives here, with the authority, not in the nested supervisor
        # its end is recorded once, by whichever comes first: its supervisor's run_exited or the
        # parent's end, which waits for a run_exited in flight (the parent exits right after)
        self.ending = _thread.allocate_lock()
        self.ended: int | None = None


class Authority:
    """Answers the control socket of run ``run_id``, whose supervisor is this process, and of
    the runs nested in it (whose supervisors are processes of this run)."""

    def __init__(self, run_id: str, containment: str, say=None):
        self.run_id = run_id
        self.containment = containment
        self.pid = os.getpid()
        self.nested: dict[int, Nested] = {}
        self.lock = _thread.allocate_lock()
        from agentsess.core.runs.subagents import SubAgents

        self.subagents = SubAgents(self.pid, containment)
        self.subagents.on_stop = self.stop_commands  # a revoked or expired sub-agent's commands die
        # a sub-agent's command (its `agentsess exec`): pid -> (start time, the sub-agent's run)
        self.bound: dict[int, tuple[int | None, str]] = {}
        self.commands: set[int] = set()  # the execs among them: only these end their own binding
        self.texts: dict[int, str] = {}  # what each bound process runs (the command's text), for the record
        self.say = say  # the run's terminal notice (the supervisor's), for held approvals

    def caller_run(self, pid: int) -> str | None:
        """The run a process belongs to: the nearest supervisor among its ancestors decides, or
        the nearest command of a sub-agent (bound to the sub-agent's run while it runs)."""
        with self.lock:
            nested = {n.pid: n.run_id for n in self.nested.values()}
            bound = dict(self.bound)
        for anc in ancestry(pid):
            if anc in bound:
                from agentsess.edges.host import process_start

                started, run_id = bound[anc]
                if process_start(anc) == started:
                    return run_id
            if anc in nested:
                return nested[anc]
            if anc == self.pid:
                return self.run_id
        return None

    def fast(self, words: list[str], body: bytes, pid: int) -> tuple[int, bytes, bytes]:
        """A fast frame (`hook AGENT --run RUN`, a plain `check SCOPE`, `exec`'s start and its
        record): the exit code and the bytes the command prints, rendered here so that the
        client loads nothing to do it."""
        import json

        if words[:1] == ["hook"] and len(words) == 3:
            try:
                parsed = json.loads(body)
            except ValueError:
                return 2, b"", b"agentsess: denied: hook: the input on stdin is not JSON\n"
            except Exception as exc:  # e.g. RecursionError on absurdly nested input: still no
                return 2, b"", f"agentsess: denied: internal error in the hook: {type(exc).__name__}: {exc}\n".encode()
            answer = self.handle({"op": "hook", "agent": words[1], "run": words[2], "event": parsed}, pid)
            if not answer.get("ok"):  # every agent's convention: exit 2 with the reason blocks
                return 2, b"", f"agentsess: denied: {answer.get('error') or 'refused'}\n".encode()
            if answer.get("answer") is None:
                return 0, b"", b""
            return 0, (json.dumps(answer["answer"]) + "\n").encode(), b""
        if words[:1] == ["check"] and len(words) == 2:
            answer = self.handle({"op": "check", "scope": words[1]}, pid)
            if not answer.get("ok"):
                return int(answer.get("code") or USAGE), b"", f"agentsess: error: {answer.get('error')}\n".encode()
            if not answer["allowed"]:
                return CHECK_FAILED, b"", f"agentsess: denied: {answer['reason']}\n".encode()
            return 0, b"", b""
        if words[:1] == ["exec"] and len(words) == 4:
            return self._fast_exec(words, body, pid)
        if words == ["exec_start"]:
            return self._fast_exec_start(body, pid)
        return USAGE, b"", b"agentsess: error: malformed request\n"

    def _fast_exec(self, words: list[str], body: bytes, pid: int) -> tuple[int, bytes, bytes]:
        """`exec`'s record: ``exec CODE SECONDS KEEPER`` (KEEPER ``-`` for none), the body the
        cwd, source and command, NUL-separated. The command's own exit code is the client's:
        only the reason a record failed comes back, on stderr."""
        parts = body.split(b"\0", 2)
        code, took, keeper = words[1], words[2], words[3]
        try:
            duration = float(took)
        except ValueError:
            duration = -1.0
        if (len(parts) != 3 or not (code.isascii() and code.isdigit()) or not 0 <= duration < float("inf")
                or not (keeper == "-" or (keeper.isascii() and keeper.isdigit()))):
            return USAGE, b"", b"agentsess: could not record the command: malformed request\n"
        cwd, source, command = (part.decode("utf-8", "surrogateescape") for part in parts)
        answer = self.handle({"op": "exec", "command": command, "cwd": cwd, "exit_code": int(code),
                              "duration": duration, "source": source,
                              "keeper": None if keeper == "-" else int(keeper)}, pid)
        if not answer.get("ok"):
            error = " ".join(str(answer.get("error") or "refused").splitlines())
            return int(answer.get("code") or USAGE), b"", f"agentsess: could not record the command: {error}\n".encode()
        return 0, b"", b""

    def _fast_exec_start(self, body: bytes, pid: int) -> tuple[int, bytes, bytes]:
        """Whether the command about to run (body: source NUL command) is a sub-agent's: the
        sub-agent's run (``=RUN``), the variables to unset (``-NAME``) and set (``+NAME=VALUE``),
        NUL-separated; nothing if not."""
        source, sep, command = body.partition(b"\0")
        if not sep:
            return USAGE, b"", b""
        answer = self.handle({"op": "exec_start", "source": source.decode("utf-8", "surrogateescape"),
                              "command": command.decode("utf-8", "surrogateescape")}, pid)
        if not answer.get("ok"):
            return int(answer.get("code") or USAGE), b"", b""
        if not answer.get("bound"):
            return 0, b"", b""
        items = [f"={answer['bound']}"] + [f"-{name}" for name in answer.get("unset") or ()]
        items += [f"+{name}={value}" for name, value in (answer.get("env") or {}).items()]
        return 0, "\0".join(items).encode("utf-8", "surrogateescape"), b""

    def stop_commands(self, run_id: str, rounds: int = 50) -> dict:
        """Kill what the commands bound to sub-agent run ``run_id`` are running (its revocation
        or expiry stops its tool calls in flight too): everything below each bound exec's
        keeper, and below each bound keeper; the keepers then end by themselves, and the exec
        reports the command as killed. A run nested in it is spared: revoked with it, its own
        supervisor stops it and seals its stream. Returns how many processes were killed and
        the commands (their text) they were running."""
        import signal

        from agentsess.edges.host import parent_of, process_start
        from agentsess.edges.supervisor import descendants

        with self.lock:
            mine = [(pid, started, pid in self.commands) for pid, (started, bound) in self.bound.items()
                    if bound == run_id]
        killed, hit = 0, set()
        for _ in range(rounds):
            targets = []
            with self.lock:
                nested = set(self.nested)
            for pid, started, is_exec in mine:
                if process_start(pid) != started:
                    continue  # gone (its pid may be another process's by now)
                below = descendants(pid)
                spared = {p for p in below if parent_of(p) == pid} if is_exec else set()  # the keepers
                for supervisor in nested.intersection(below):
                    # a run it started stops itself (its revocation cascaded): killed, it could not seal
                    spared |= {supervisor, *descendants(supervisor)}
                doomed = [p for p in below if p not in spared]
                if doomed:
                    hit.add(pid)
                targets += doomed
            if not targets:
                break
            for target in targets:
                try:
                    os.kill(target, signal.SIGKILL)
                    killed += 1
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.02)  # the keepers reap them; what they forked meanwhile is found next round
        with self.lock:
            texts = sorted({self.texts[pid] for pid in hit if pid in self.texts})
        return {"processes_killed": killed, "commands": texts}

    def nested_supervisor(self, pid: int) -> Nested | None:
        with self.lock:
            return self.nested.get(pid)

    def end_nested(self, store) -> None:
        """The parent's end is its nested runs' end: record each one still open."""
        with self.lock:
            left = list(self.nested.values())
            self.nested.clear()
        self.subagents.end_all(store, f"its parent run {self.run_id} ended")
        for run in left:
            try:
                _finish_nested(store, run, {"error": f"its parent run {self.run_id} ended"})
            except Exception:
                pass

    def handle(self, message: dict, pid: int) -> dict:
        if message.get("op") == "approval_wake":  # from anyone: it carries no answer, the store does
            from agentsess.core.guard.approvals import wake

            wake()
            return {"ok": True}
        run_id = self.caller_run(pid)
        if run_id is None:
            return refused(f"process {pid} is not part of run {self.run_id}; only the run's own processes may ask it")
        claimed = message.get("run")
        if claimed and claimed != run_id:
            return refused(f"this process belongs to run {run_id}, not {claimed}; a run cannot act for another")
        fn = OPS.get(message.get("op"))
        if fn is None:
            return refused(f"unknown request {message.get('op')!r}")
        from agentsess.edges.store import Store

        try:
            with Store() as store:
                return fn(self, store, run_id, message, pid)
        except AgentsessError as exc:
            return refused(exc.message, exc.exit_code)


def _env(run_id: str) -> dict:
    return {"AGENTSESS_RUN_ID": run_id}


def _check(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    from agentsess.core.guard.calls import check

    scope = message.get("scope")
    if not isinstance(scope, str):
        return refused("check: expected exactly one SCOPE")
    command = message.get("command")
    row, decision = check(store, _env(run_id), scope, message.get("tool"), command, auth.say)
    return {"ok": True, "run": row["id"], "decision": decision.decision, "reason": decision.reason,
            "scope": decision.scope, "allowed": decision.allowed}


def _hook(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    from agentsess.core.guard.calls import agent_hook

    agent = message.get("agent")
    if agent not in ("claude-code", "codex", "gemini"):
        return refused(f"hook: unknown agent '{agent}': expected claude-code, codex or gemini")
    event = message.get("event")
    if not isinstance(event, dict):
        return refused("hook input is not a JSON object")
    # a sub-agent's call is decided and recorded in the sub-agent's own run (see subagents.py)
    from agentsess.core.guard import agents
    from agentsess.core.runs.subagents import record_refusal

    protocol = agents.protocol(agent)
    try:
        target, denial = auth.subagents.route(store, run_id, event, protocol.SOURCE)
    except AgentsessError as exc:
        record_refusal(store, run_id, event, exc.message, protocol.SOURCE)
        raise
    if denial is not None:
        kind = protocol.EVENTS.get(event.get("hook_event_name"))
        if "deny" in denial and kind == "pre":
            return {"ok": True, "answer": protocol.pre_answer(denial["deny"])}
        return {"ok": True, "answer": None}
    assert target is not None  # no denial: a run decides it
    answer = agent_hook(store, target, agent, event, auth.say)
    if target != run_id:
        auth.subagents.after_call(target, event, protocol, answer)
    return {"ok": True, "answer": answer}


def _exec_start(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    """A command the agent's shell prefix is about to run: a sub-agent's own (its allowed call
    waits for it) is bound to the sub-agent's run while it runs, and told so."""
    from agentsess.edges.host import process_start

    if not auth.subagents.pending or auth.subagents.by_run.get(run_id) is not None:
        return {"ok": True, "bound": None}
    command = message.get("command")
    if not isinstance(command, str) or message.get("source") != "claude-code":
        return {"ok": True, "bound": None}
    from agentsess.core.guard.agents import claude
    from agentsess.digest import sha256_text

    inner = claude.unwrap(command)
    sub = auth.subagents.claim(sha256_text(inner if inner is not None else command))
    if sub is None or sub.run_id is None:
        return {"ok": True, "bound": None}
    with auth.lock:
        auth.bound[pid] = (process_start(pid), sub.run_id)
        auth.commands.add(pid)
        auth.texts[pid] = inner if inner is not None else command
    row = store.get_run(sub.run_id) or {}
    from agentsess.timefmt import rfc3339

    env = {"AGENTSESS_RUN_ID": sub.run_id, "AGENTSESS_PARENT_RUN_ID": sub.parent,
           "AGENTSESS_SCOPES": " ".join(row.get("scopes") or []),
           "AGENTSESS_EXPIRES_AT": rfc3339(row["expires_at"]) if row.get("expires_at") else ""}
    return {"ok": True, "bound": sub.run_id, "env": env, "unset": ["AGENTSESS_TOKEN"]}


def _exec(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    from agentsess.core.guard.calls import record_exec

    record_exec(store, _env(run_id), str(message.get("command", "")), str(message.get("cwd", "")),
                int(message.get("exit_code", 0)), float(message.get("duration", 0.0)),
                str(message.get("source", "exec")))
    with auth.lock:
        if pid not in auth.commands:  # only the command's own exec ends its binding
            return {"ok": True}
        auth.commands.discard(pid)
        binding = auth.bound.pop(pid)
        text = auth.texts.pop(pid, None)
    keeper = message.get("keeper")
    if isinstance(keeper, int) and not isinstance(keeper, bool):
        from agentsess.edges.host import child_known_as, process_start

        # the exec's child by the name it gave (a contained process counts in its namespace);
        # it holds everything the command left running, for as long as any of it lives
        held = child_known_as(pid, keeper)
        if held is not None:
            with auth.lock:
                auth.bound[held] = (process_start(held), binding[1])
                if text is not None:
                    auth.texts[held] = text
    return {"ok": True}


def _whoami(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    return {"ok": True, "run": describe(store, run_id, auth.containment)}


def _token_verify(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    from agentsess.core.credentials.verify import verify_here

    token = message.get("token")
    if not isinstance(token, str):
        return refused("token verify: no token given")
    scopes = [s for s in message.get("scopes") or [] if isinstance(s, str)]
    verdict = verify_here(token, scopes)
    return {"ok": True, "verdict": verdict.as_dict(), "valid": bool(verdict.valid), "detail": verdict.detail,
            "reason": verdict.reason}


def _mcp_call(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    from agentsess.core.guard.calls import _refresh_liveness
    from agentsess.core.guard.mcp import Deferred, decide_call
    from agentsess.core.receipts import recording

    server = message.get("server")
    if not isinstance(server, str):
        return refused("mcp_call: no server name")
    row = _refresh_liveness(store, store.get_run(run_id))
    try:
        decision, data = decide_call(row, server, message.get("name"), message.get("arguments"),
                                     message.get("request_id"), store, auth.say, defer=message.get("defer") is True)
    except Deferred as held:  # a person is asked; the proxy waits with mcp_await
        return {"ok": True, "held": held.request_id}
    recording.record_action(store, run_id, "action.checked", data)
    return {"ok": True, "allowed": decision.allowed, "reason": decision.reason, "args_sha256": data.get("args_sha256")}


def _mcp_await(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    from agentsess.core.guard.calls import _refresh_liveness
    from agentsess.core.guard.mcp import await_call
    from agentsess.core.receipts import recording

    server, approval = message.get("server"), message.get("approval")
    if not isinstance(server, str) or not isinstance(approval, str):
        return refused("mcp_await: malformed")
    row = _refresh_liveness(store, store.get_run(run_id))
    decision, data = await_call(row, server, message.get("name"), message.get("arguments"), message.get("request_id"),
                                approval, store)
    recording.record_action(store, run_id, "action.checked", data)
    return {"ok": True, "allowed": decision.allowed, "reason": decision.reason, "args_sha256": data.get("args_sha256")}


def _mcp_refused(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    from agentsess.core.guard.mcp import refused_line
    from agentsess.core.receipts import recording

    server, reason = message.get("server"), message.get("reason")
    digest, size = message.get("line_sha256"), message.get("line_bytes")
    if not (isinstance(server, str) and isinstance(reason, str) and isinstance(digest, str) and isinstance(size, int)):
        return refused("mcp_refused: malformed")
    recording.record_action(store, run_id, "action.checked", refused_line(server, reason, digest, size))
    return {"ok": True}


def _mcp_result(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    from agentsess.core.guard.mcp import SOURCE
    from agentsess.core.receipts import recording

    data = message.get("data")
    if not isinstance(data, dict):
        return refused("mcp_result: no result")
    data = {**data, "source": SOURCE}
    recording.record_action(store, run_id, "action.result", data)
    return {"ok": True}


def _revoke(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    """`revoke` inside a run: only the caller's run's own descendants (its nested runs and
    sub-agents, and theirs), named by id or a prefix unique among them; never itself, its
    parent, or any other run (those are not even looked up, so nothing is said about them)."""
    from agentsess import ids
    from agentsess.core.runs.revocation import revoke

    ref, reason, only = message.get("target"), message.get("reason"), message.get("only") is True
    if not isinstance(ref, str) or (reason is not None and not isinstance(reason, str)):
        return refused("revoke: malformed request")
    below = [row["id"] for row in store.descendants(run_id)]
    prefix = ids.normalise_prefix(ref) if ref != "last" else None
    matches = [rid for rid in below if prefix is not None and rid.startswith(prefix)]
    if prefix is not None and len(matches) > 1 and prefix in matches:
        matches = [prefix]
    if len(matches) != 1:
        what = "matches more than one" if len(matches) > 1 else "is not one"
        return refused(f"revoke inside a run reaches only the run's own descendants, and {ref!r} {what} of "
                       f"run {run_id}'s ({len(below)} in all); revoke other runs from outside the run")
    said = f"from inside run {run_id}" + (f": {reason}" if reason else "")
    return {"ok": True, "results": revoke(store, matches[0], said, only)}


def describe(store, run_id: str, containment: str) -> dict:
    """`whoami`: who this run is, what it may do, for how long, inside whom."""
    from agentsess.timefmt import rfc3339

    row = store.get_run(run_id)
    chain = []
    parent = row.get("parent_id")
    while parent:
        up = store.get_run(parent)
        if up is None:
            break
        chain.append({"id": up["id"], "name": up["name"], "agent": up.get("agent")})
        parent = up.get("parent_id")
    expires = row.get("expires_at")
    return {
        "id": row["id"], "name": row["name"], "agent": row.get("agent"), "profile": row.get("profile"),
        "scopes": row.get("scopes") or [], "ceiling": (row.get("policy") or {}).get("scopes") or [],
        "expires_at": rfc3339(expires) if expires else None,
        "seconds_left": max(0, int(expires - time.time())) if expires else None,
        "parents": chain, "containment": containment, "status": row["status"],
        "revoked": row.get("revoked_at") is not None,
    }



# -- runs started inside this run ----------------------------------------------------------

REQUEST_FIELDS = ("argv", "name", "use_pty", "profile", "scopes", "ttl", "pass_env", "keep_env", "isolate_home",
                  "mask_terminal", "capture_shell", "integration", "cwd", "env")


def _run(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    """A nested `agentsess run`: plan, mint and record it as a child of the caller's run."""
    from agentsess.core.runs.plan import Request
    from agentsess.core.runs.start import Caller, launch_nested
    from agentsess.core.runs.supervise import Watch
    from agentsess.edges import outputlog

    fields = message.get("request")
    socket = message.get("control")
    if not isinstance(fields, dict) or not isinstance(socket, str):
        return refused("run: malformed request")
    fields = {k: v for k, v in fields.items() if k in REQUEST_FIELDS}
    argv = fields.pop("argv", None)
    env = fields.pop("env", None)
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        return refused("run: no command given")
    env = {str(k): str(v) for k, v in (env or {}).items()} if isinstance(env, dict) else {}
    env.pop("AGENTSESS_TOKEN", None)
    env["AGENTSESS_RUN_ID"] = run_id  # the parent is the caller's run, whatever the caller's environment says
    request = Request(argv, **fields, env=env)
    plan, launch = launch_nested(store, request, Caller(pid, socket, auth.containment))
    notes: list[str] = []
    with auth.lock:
        auth.nested[pid] = Nested(pid, launch.run_id, plan, Watch(store, launch.run_id, plan, notes.append),
                                  launch.broker)
    fds = list(outputlog.open_files(launch.run_id))
    profile = plan.profile
    return {
        "ok": True, "run_id": launch.run_id, "argv": launch.argv, "env": launch.env, "use_pty": launch.use_pty,
        "masked": {name: value.decode() for name, value in launch.masked.items()}, "notices": launch.notices,
        "containment": launch.containment.mode, "grace": profile.revoke_grace, "on_exit": profile.on_exit,
        "mask_terminal": profile.mask_terminal if request.mask_terminal is None else request.mask_terminal,
        "fds": fds,
    }


def _run_started(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    from agentsess.edges import host

    run = auth.nested_supervisor(pid)
    if run is None:
        return refused("run_started: only a nested run's own supervisor may say so")
    child = message.get("child_pid")
    if isinstance(child, int):
        store.update_run(run.run_id, child_pid=child, child_pgid=child, child_started=host.process_start(child))
    return {"ok": True}


class _StopRequest:
    """What a nested run's watch asks of its supervisor, carried back in the answer."""

    def __init__(self):
        self.grace: float | None = None

    def stop(self, grace: float | None = None) -> None:
        self.grace = 0.0 if grace is None else grace


def _status(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    """A nested run's periodic watch: revocation, expiry, the stream's presence."""
    run = auth.nested_supervisor(pid)
    if run is None:
        return refused("status: only a nested run's own supervisor may ask")
    notes: list[str] = []
    run.watch.store, run.watch.say = store, notes.append  # this request's connection and answer
    stop = _StopRequest()
    run.watch(stop)
    return {"ok": True, "stop": stop.grace is not None, "grace": stop.grace, "notices": notes}


def _run_exited(auth: Authority, store, run_id: str, message: dict, pid: int) -> dict:
    run = auth.nested_supervisor(pid)
    if run is None:
        return refused("run_exited: only a nested run's own supervisor may say so")
    code, notes = _finish_nested(store, run, message)
    with auth.lock:
        auth.nested.pop(pid, None)
    return {"ok": True, "exit": code, "notices": notes}


class _LogSummary:
    def __init__(self, size: int, digest: str | None):
        self.size = size
        self._digest = digest

    def digest(self) -> str | None:
        return self._digest


def _finish_nested(store, run: Nested, message: dict) -> tuple[int, list[str]]:
    if not run.ending.acquire(timeout=10):  # another thread's finish of it, wedged: give up
        return RUN_FAILED, []
    try:
        if run.ended is None:
            run.ended, notes = _record_end(store, run, message)
            return run.ended, notes
        return run.ended, []
    finally:
        run.ending.release()


def _record_end(store, run: Nested, message: dict) -> tuple[int, list[str]]:
    from agentsess.core.runs.supervise import finish

    if run.broker is not None:
        run.broker.stop()
    notes: list[str] = []
    run.watch.store, run.watch.say = store, notes.append
    run.watch.stopped = run.watch.stopped or bool(message.get("stopped"))
    run.watch.confirm_at_end()  # fleet (issue 17): a revocation seen only now is still confirmed
    size = message.get("output_bytes")
    digest = message.get("output_sha256")
    log = _LogSummary(size if isinstance(size, int) else 0, digest if isinstance(digest, str) else None)
    code = message.get("exit_code")
    sig = message.get("signal")
    error = message.get("error")
    code = finish(store, run.plan, run.watch, log, code if isinstance(code, int) else None,
                  sig if isinstance(sig, int) else None, error if isinstance(error, str) else None)
    return code, notes


# Ops a run may ask for; each is ``fn(authority, store, run_id, message, pid) -> answer``.
# A plain table, not a registering decorator: mutmut 3 does not mutate decorated functions.
OPS: dict = {
    "check": _check,
    "hook": _hook,
    "exec_start": _exec_start,
    "exec": _exec,
    "whoami": _whoami,
    "token_verify": _token_verify,
    "revoke": _revoke,
    "mcp_call": _mcp_call,
    "mcp_await": _mcp_await,
    "mcp_refused": _mcp_refused,
    "mcp_result": _mcp_result,
    "run": _run,
    "run_started": _run_started,
    "status": _status,
    "run_exited": _run_exited,
}
