"""Approvals out of band: a call a rule says to ``ask`` about, held by the run's supervisor
until a person answers it from any terminal, or its time is up.

With ``approval = "human"`` in the run's profile, a call whose decision is ``ask`` (an agent
hook, ``check``, the MCP proxy) is not answered at once: the supervisor records a request in
the store (``approvals`` table: tool, masked summary, the SHA-256 of the exact arguments, a
short request id), writes ``approval.requested``, says so on the run's terminal and on the
desktop (``notify-send``, where there is one), and waits. A person answers with
``agentsess approve RUN REQ [--for 10m]`` or ``agentsess deny RUN REQ --reason …``, which
writes the answer into the store (one conditional UPDATE: the first of approve, deny and
expiry wins) and wakes the supervisor; the supervisor also polls the store, so an answer
typed on another machine of a shared store arrives too. Then the supervisor records
``approval.granted`` (who, when, for how long), ``approval.denied`` or ``approval.expired``
and answers the held call.

The answer is bound to the run, the request id and the hash of the exact arguments: it
answers that one call, once. ``--for`` grants the same call (same tool, same arguments
hash) in the same run again until then; any other arguments ask anew.

Who may answer: a person, never the run. ``approve`` and ``deny`` are refused inside a run
(the control socket of an ancestor, and the store's running supervisors among this
process's ancestors: nesting by ancestry, not by variables); a contained run's child does not
see the data root, so it can neither write an answer nor read one. The wake-up carries no
answer: anyone of this user may poke a supervisor, which then reads the store.
"""

import os
import threading
import time

from agentsess.core.guard import actions
from agentsess.core.guard.policy import Decision
from agentsess.errors import CHECK_FAILED, USAGE, AgentsessError

REQUEST_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 letters and digits; no l, o, 0, 1
REQUEST_LENGTH = 6  # 30 bits: short to type, bound to its run, and answered only from outside it
POLL = 0.5  # seconds between reads of the store while a call is held (a wake-up comes sooner)
NOTICE_SUMMARY = 120
# Agents whose hook agentsess runs with a fixed 60 s timeout (and whose behaviour on a timed-out
# hook is not a block): a call is held at most this long there, so that agentsess answers (deny)
# before the agent gives up on the hook. Claude Code's PreToolUse waits approval_timeout + 30 s.
HOOK_LIMIT = {"codex": 50, "gemini": 50}
MAX_WAITING = 8  # calls of one run waiting at once: beyond that an agent only floods your screen
# why a request nobody answered waits no more (the store's answer_reason, approval.expired's reason,
# the held call's denial, and what `approve`/`deny` say), by how its run went
ENDED_REASON = "the run ended before anyone answered"
REVOKED_REASON = "the run was revoked before anyone answered"
ABANDONED_REASON = "the run's supervisor died before anyone answered"

_wake = threading.Condition()


def mode(row: dict) -> str:
    """Who answers this run's ``ask``: ``agent`` or ``human`` (the profile's ``approval``)."""
    return (row.get("policy") or {}).get("approval") or "agent"


def timeout(row: dict) -> int:
    value = (row.get("policy") or {}).get("approval_timeout")
    return value if isinstance(value, int) and value > 0 else 300


def held(row: dict, decision: Decision) -> bool:
    """True when ``decision`` is to be held for a person's answer in run ``row``."""
    return decision.decision == "ask" and mode(row) == "human"


def new_request_id() -> str:
    import secrets

    return "".join(secrets.choice(REQUEST_ALPHABET) for _ in range(REQUEST_LENGTH))


def is_request_id(text) -> bool:
    return isinstance(text, str) and len(text) == REQUEST_LENGTH and set(text) <= set(REQUEST_ALPHABET)


def wake() -> None:
    """Every call held in this process reads the store now (the `approval_wake` op)."""
    with _wake:
        _wake.notify_all()


def _one_line(text: str, limit: int = NOTICE_SUMMARY) -> str:
    """``text`` safe on a terminal and in a notification: control characters escaped, capped."""
    out = []
    for ch in text:
        n = ord(ch)
        if (n < 0x20 or 0x7F <= n < 0xA0 or 0x200B <= n <= 0x200F or 0x2028 <= n <= 0x202E or 0x2066 <= n <= 0x2069
                or n in (0x061C, 0xFEFF) or 0xD800 <= n < 0xE000):  # controls, bidi and invisible marks
            out.append(f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}")
        else:
            out.append(ch)
    shown = "".join(out)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def settle(store, row: dict, tool: str, args, source: str, decision: Decision, say=None) -> tuple[Decision, dict]:
    """Hold a call the rules said to ``ask`` about until a person answers it (see the module
    docstring); returns the decision to answer with (``allow`` or ``deny``, with why) and
    what the ``action.checked`` receipt adds (``approval``: the request id)."""
    opened = request(store, row, tool, args, source, decision, say)
    if not isinstance(opened, str):
        return opened
    return wait(store, row, opened, tool, args, decision)


def request(store, row: dict, tool: str, args, source: str, decision: Decision, say=None):
    """Ask a person about this call: the request id of a new request (recorded, announced), or,
    when a ``--for`` grant still covers this exact call, the decision and receipt extras at once."""
    from agentsess.core.receipts import recording
    from agentsess.timefmt import rfc3339

    run_id = row["id"]
    summary, digest = actions.summarise(args)
    now = time.time()
    grant = store.standing_grant(run_id, tool, digest, now)
    if grant is not None:
        reason = (f"approved by {grant['answered_by']} for this exact call until {rfc3339(grant['grant_until'])} "
                  f"(request {grant['request_id']}); {decision.reason}")
        return decision.replace(decision="allow", reason=reason), {"approval": grant["request_id"]}
    if len(store.pending_approvals(now, run_id)) >= MAX_WAITING:
        return decision.replace(decision="deny", reason=f"{MAX_WAITING} calls of run {run_id} already wait for "
                                f"approval; answer those first; {decision.reason}"), {}
    seconds = min(timeout(row), HOOK_LIMIT.get(source, 1 << 30))
    expires = now + seconds
    request_id = new_request_id()
    while store.get_approval(run_id, request_id) is not None:  # taken in this run: 1 in 10^9
        request_id = new_request_id()
    why = actions.capped(decision.reason, actions.RESULT_CAP)  # a rule's reason quotes the command
    data = {"request_id": request_id, "tool": tool, "source": source, "summary": summary, "args_sha256": digest,
            "rule": decision.rule, "scope": decision.scope, "reason": why,
            "expires_at": rfc3339(expires), "timeout": seconds}
    rec = recording.record_action(store, run_id, "approval.requested", data)
    recorded = (rec or {}).get("data", data)  # as recorded: the run's exact secrets masked too
    shown, why = recorded.get("summary", summary), recorded.get("reason", why)
    try:
        failure = None if store.insert_approval({
            "run_id": run_id, "request_id": request_id, "tool": tool, "source": source, "summary": shown,
            "args_sha256": digest, "reason": why, "status": "pending", "requested_at": now, "expires_at": expires,
        }) else "its id is taken"
    except Exception as exc:  # noqa: BLE001 - SQLite's or the shared store's error, said in one line
        failure = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if failure is not None:  # the request has its outcome in the stream all the same
        message = f"could not record approval request {request_id}: {failure}"
        recording.record_action(store, run_id, "approval.denied", {"request_id": request_id, "reason": message})
        raise AgentsessError(message, USAGE)
    _announce(say, run_id, request_id, tool, shown, seconds)
    return request_id


def wait(store, row: dict, request_id: str, tool: str, args, decision: Decision) -> tuple[Decision, dict]:
    """Wait for the answer to ``request_id``, which must be this very call (tool and arguments
    hash); the first waiter to take the answer gets it, any other is denied."""
    from agentsess.core.receipts import recording
    from agentsess.timefmt import rfc3339

    run_id = row["id"]
    digest = actions.summarise(args)[1]
    extra = {"approval": request_id}
    answer = store.get_approval(run_id, request_id)
    if answer is None or answer["tool"] != tool or answer["args_sha256"] != digest:
        return decision.replace(decision="deny", reason=f"approval request {request_id} of run {run_id} is not "
                                "this call (another tool or other arguments)"), extra
    seconds = round(answer["expires_at"] - answer["requested_at"])
    expires = answer["expires_at"]

    def taken() -> tuple[Decision, dict]:
        return decision.replace(decision="deny", reason=f"approval request {request_id} already answered another "
                                "call; each answer is for one call"), extra

    while True:
        answer = store.get_approval(run_id, request_id)
        now = time.time()
        status = answer["status"] if answer else "denied"
        if status == "granted":
            if not store.consume_approval(run_id, request_id, now):
                return taken()
            until = answer.get("grant_until")
            recording.record_action(store, run_id, "approval.granted", {
                "request_id": request_id, "tool": tool, "args_sha256": digest, "by": answer["answered_by"],
                "at": rfc3339(answer["answered_at"]), "for": None if until is None else round(until - answer["answered_at"]),
                "until": None if until is None else rfc3339(until)})
            by = f"approved by {answer['answered_by']} (request {request_id})"
            return decision.replace(decision="allow", reason=f"{by}; {decision.reason}"), extra
        if status == "denied":
            if answer is not None and not store.consume_approval(run_id, request_id, now):
                return taken()
            why = (answer or {}).get("answer_reason") or "no reason given"
            who = (answer or {}).get("answered_by") or "agentsess"
            recording.record_action(store, run_id, "approval.denied", {
                "request_id": request_id, "tool": tool, "args_sha256": digest, "by": who,
                "at": rfc3339((answer or {}).get("answered_at") or now), "reason": why})
            return decision.replace(decision="deny", reason=f"denied by {who} (request {request_id}): {why}; "
                                    f"{decision.reason}"), extra
        if status == "ended":  # its run ended or was revoked: recorded (approval.expired) by whoever marked it
            why = (answer or {}).get("answer_reason") or ENDED_REASON
            return decision.replace(decision="deny", reason=f"{why} (request {request_id}); {decision.reason}"), extra
        if status == "expired" or now >= expires:
            if status == "expired" or store.answer_approval(run_id, request_id, "expired", now, None,
                                                            f"no answer within {seconds}s"):
                if not store.consume_approval(run_id, request_id, now):
                    return taken()
                why = f"nobody approved it within {_duration(seconds)} (approval_timeout)"
                recording.record_action(store, run_id, "approval.expired", {
                    "request_id": request_id, "tool": tool, "args_sha256": digest, "after": seconds, "reason": why})
                return decision.replace(decision="deny", reason=f"{why}, request {request_id}; {decision.reason}"), extra
            continue  # answered at the last moment: read that answer
        if _revoked(store, run_id):
            end_pending(store, run_id, REVOKED_REASON, [answer])
            continue
        with _wake:
            _wake.wait(min(POLL, max(0.0, expires - now)))


def _revoked(store, run_id: str) -> bool:
    return store.revocation(run_id)[0] is not None


def end_pending(store, run_id: str, why: str, rows: list | None = None, record=None) -> list[str]:
    """Mark the requests of run ``run_id`` still pending (``rows``, or all of them) ``ended``:
    its run ended or was revoked, so nobody's answer can reach them now. Each one this marks
    gets an ``approval.expired`` receipt naming ``why`` (written with ``record``: the run's
    supervisor records it as an action; agentsess's own abandonment, after the run's end, as
    a plain receipt). A waiting call sees ``ended`` and is denied with ``why``; ``approve`` and
    ``deny`` say the same. Returns the request ids marked here."""
    from agentsess.core.receipts import recording
    from agentsess.edges.streams import ReceiptError

    write = record or recording.record_action
    now = time.time()
    marked = []
    for row in store.open_approvals(run_id) if rows is None else rows:
        if not store.end_approval(run_id, row["request_id"], now, why):
            continue  # answered, expired or ended a moment ago: that one is recorded by its winner
        marked.append(row["request_id"])
        try:
            write(store, run_id, "approval.expired", {
                "request_id": row["request_id"], "tool": row["tool"], "args_sha256": row["args_sha256"],
                "after": round(now - row["requested_at"]), "reason": why, "ended": True})
        except (AgentsessError, ReceiptError):
            pass  # the stream is sealed or gone: the store still says why
    return marked


def _duration(seconds: int) -> str:
    from agentsess.core.durations import format_duration

    return format_duration(seconds, 5)


def _announce(say, run_id: str, request_id: str, tool: str, summary: str, wait: int) -> None:
    """The one-line notice on the run's terminal, and a desktop notification where there is one."""
    what = _one_line(f"{tool}: {summary}")
    if say is not None:
        try:
            say(f"approval needed: {what} — `agentsess approve {run_id} {request_id}` or "
                f"`agentsess deny {run_id} {request_id} --reason …` (denied in {_duration(wait)})")
        except Exception:  # noqa: BLE001 - a notice must never cost the held call its answer
            pass
    from agentsess.edges import desktop

    desktop.notify("agentsess: approval needed", f"{what}\nagentsess approve {run_id} {request_id}")


# -- the person's side: list, approve, deny ------------------------------------------------------


def who() -> str:
    """user@host of the person answering (the account's name, not $USER: an environment says
    what it likes)."""
    from agentsess.edges import host

    try:
        import pwd

        name = pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        name = host.user()
    return f"{name}@{host.hostname()}"


def refuse_inside(store, command: str) -> None:
    """Refuse ``command`` in a process of a run: a supervisor of a running run of this store
    among its ancestors (the same pid and start time), whatever the environment says."""
    from agentsess.edges import host

    mine = host.hostname()
    supervisors = {}
    for row in store.running():
        if row.get("host") == mine and row.get("supervisor_pid"):
            supervisors[row["supervisor_pid"]] = row
    for pid in host.ancestors(os.getpid()):
        row = supervisors.get(pid)
        if row is not None and host.same_process(pid, row.get("supervisor_started")):
            raise AgentsessError(
                f"{command} is refused inside a run (this process belongs to run {row['id']}): an agent "
                "cannot answer its own approval requests; answer from a terminal outside the run",
                USAGE,
            )


def list_pending(run_ref: str | None = None) -> list[dict]:
    """`agentsess approvals`: the requests waiting for an answer, oldest first."""
    from agentsess.edges.store import Store

    with Store() as store:
        refuse_inside(store, "agentsess approvals")
        return pending(store, run_ref)


def approve(run_ref: str, request_id: str, for_text: str | None = None) -> dict:
    """`agentsess approve RUN REQ [--for DURATION]`."""
    from agentsess.core.durations import parse_duration
    from agentsess.edges.store import Store

    for_seconds = None
    if for_text is not None:
        try:
            for_seconds = parse_duration(for_text)
        except AgentsessError as exc:
            raise AgentsessError(f"approve: --for: {exc.message}", USAGE) from None
        if for_seconds < 1:
            raise AgentsessError("approve: --for: expected a duration of at least 1s", USAGE)
    with Store() as store:
        return answer(store, run_ref, request_id, True, for_seconds)


def deny(run_ref: str, request_id: str, reason: str | None = None) -> dict:
    """`agentsess deny RUN REQ [--reason TEXT]`."""
    from agentsess.edges.store import Store

    with Store() as store:
        return answer(store, run_ref, request_id, False, reason=reason)


def pending(store, run_ref: str | None = None) -> list[dict]:
    """Requests waiting for an answer, oldest first, as plain data."""
    from agentsess.timefmt import rfc3339

    now = time.time()
    run_id = store.resolve(run_ref) if run_ref else None
    out = []
    for a in store.pending_approvals(now, run_id):
        out.append({
            "run": a["run_id"], "request": a["request_id"], "tool": a["tool"], "source": a["source"],
            "summary": a["summary"], "args_sha256": a["args_sha256"], "reason": a["reason"],
            "requested_at": rfc3339(a["requested_at"]), "expires_at": rfc3339(a["expires_at"]),
            "seconds_left": max(0, int(a["expires_at"] - now)),
        })
    return out


def answer(store, run_ref: str, request_id: str, grant: bool, for_seconds: int | None = None,
           reason: str | None = None) -> dict:
    """`approve` / `deny`: answer one pending request of one run; returns what was answered.

    Refused inside a run; an unknown request (another run's, a guess) is a usage error (2); one
    already answered or expired exits 1."""
    from agentsess.timefmt import rfc3339

    command = "agentsess approve" if grant else "agentsess deny"
    refuse_inside(store, command)
    run_id = store.resolve(run_ref)
    if not is_request_id(request_id):
        raise AgentsessError(
            f"'{_one_line(str(request_id), 40)}' is not a request id: expected {REQUEST_LENGTH} letters and digits "
            "as `agentsess approvals` lists them", USAGE)
    row = store.get_approval(run_id, request_id)
    if row is None:
        raise AgentsessError(f"run {run_id} has no approval request {request_id}; list them with `agentsess approvals`",
                             USAGE)
    run = store.get_run(run_id) or {}
    if row["status"] == "ended" or (row["status"] == "pending" and run.get("status") != "running"):
        raise AgentsessError(f"request {request_id} of run {run_id} waits no more: "
                             f"{row.get('answer_reason') or _ended_reason(run)}", CHECK_FAILED)
    now = time.time()
    by = who()
    until = now + for_seconds if grant and for_seconds else None
    if not store.answer_approval(run_id, request_id, "granted" if grant else "denied", now, by,
                                 None if grant else (reason or "denied"), until):
        row = store.get_approval(run_id, request_id) or row
        state = row["status"]
        if state == "pending":
            state = "expired"
        raise AgentsessError(f"request {request_id} of run {run_id} is no longer waiting: it was {state}"
                             + (f" by {row['answered_by']}" if row.get("answered_by") and state != "expired" else ""),
                             CHECK_FAILED)
    _wake_supervisor(run_id)
    return {"run": run_id, "request": request_id, "tool": row["tool"], "summary": row["summary"],
            "args_sha256": row["args_sha256"], "decision": "granted" if grant else "denied", "by": by,
            "at": rfc3339(now), "until": None if until is None else rfc3339(until),
            "reason": None if grant else (reason or "denied")}


def _ended_reason(run: dict) -> str:
    """Why a request still marked pending waits no more, from its run's status."""
    if run.get("status") == "revoked" or run.get("revoked_at") is not None:
        return REVOKED_REASON
    if run.get("status") == "abandoned":
        return ABANDONED_REASON
    return ENDED_REASON


def run_note(run_ref: str | None) -> str | None:
    """`agentsess approvals RUN` for a run that is no longer running: why none of its calls wait."""
    if not run_ref:
        return None
    from agentsess.edges.store import Store

    with Store() as store:
        run = store.get_run(store.resolve(run_ref)) or {}
    if not run or run.get("status") == "running":
        return None
    return f"run {run['id']} has ended ({run['status']}): none of its calls wait for approval"


def _wake_supervisor(run_id: str) -> None:
    """Poke the run's supervisor on this machine (it polls the store anyway)."""
    from agentsess.edges import control, paths

    path = paths.control_socket(run_id)
    if os.path.exists(path):
        try:
            control.request(path, {"op": "approval_wake"}, timeout=5)
        except control.ControlError:
            pass
