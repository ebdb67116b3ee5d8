"""Approval requests nobody answered before their run ended or was revoked (issue 16): marked
``ended`` by the run's supervisor (or agentsess's abandonment), each with an
``approval.expired`` receipt that names why, so that `approvals`, `approve`, `deny` and the
held call all say the same thing.

Every request here is opened by a real process inside a live run (tests/inrun.py) and every
answer comes from a second, real `agentsess` process outside it.
"""

import json
import os
import signal

import pytest
from helpers import agentsess, cli, store_rows, wait_for, write_config
from inrun import InRun
from pg import backend  # noqa: F401 - the fixture
from test_approvals import CONFIG, PY, answer_of, hook, receipts, waiting

from agentsess.core.guard import approvals

# the MCP proxy's first half, as the proxy sends it: a request is opened, and nothing waits on it
OPEN_ONLY = r"""
import json, sys
from agentsess.edges import control
print(json.dumps(control.request(control.find_socket(), {"op": "mcp_call", "server": "fake", "name": "ask_me",
      "arguments": {"n": int(sys.argv[1])}, "request_id": 1, "defer": True})))
"""


def _open_only(live: InRun, n: int) -> str:
    proc = live.run([PY, "-c", OPEN_ONLY, str(n)])
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert approvals.is_request_id(answer.get("held")), answer
    return answer["held"]


def _row(run_id: str, request_id: str) -> dict:
    [row] = store_rows("SELECT * FROM approvals WHERE run_id = ? AND request_id = ?", (run_id, request_id))
    return row


def _late_answers_say(run_id: str, request_id: str, why: str) -> None:
    for argv in (["approve", run_id, request_id], ["approve", run_id, request_id, "--for", "10m"],
                 ["deny", run_id, request_id, "--reason", "too late"]):
        proc = agentsess(*argv)
        assert proc.returncode == 1, (argv, proc.stderr)
        assert proc.stderr.decode() == f"agentsess: error: request {request_id} of run {run_id} waits no more: {why}\n"


def test_a_call_held_when_the_run_ends_is_marked_ended_with_a_receipt(tmp_path):
    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        hook(live, tmp_path, "git push origin main")  # held when the run ends (and killed with it)
        orphan = _open_only(live, 1)  # a request nothing waits on (its proxy gone)
        items = waiting(live.run_id, 2)
        assert {i["request"] for i in items} >= {orphan}
        live.finish()
    for item in items:
        row = _row(live.run_id, item["request"])
        assert row["status"] == "ended" and row["answer_reason"] == approvals.ENDED_REASON
        assert row["answered_by"] == "agentsess"
        _late_answers_say(live.run_id, item["request"], approvals.ENDED_REASON)
    stream = receipts(live.run_id)
    ended = [r for r in stream if r["type"] == "approval.expired"]
    assert sorted(r["data"]["request_id"] for r in ended) == sorted(i["request"] for i in items)
    assert all(r["data"]["ended"] is True and r["data"]["reason"] == approvals.ENDED_REASON for r in ended)
    assert {r["data"]["tool"] for r in ended} == {"Bash", "mcp:fake:ask_me"}
    exited = next(r["seq"] for r in stream if r["type"] == "run.exited")
    assert all(r["seq"] < exited for r in ended)  # written by the supervisor before the run's end
    assert cli("verify", live.run_id).returncode == 0
    assert agentsess("approvals", "--json").stdout.strip() == b"[]"
    assert agentsess("approvals", live.run_id, "--json").stdout.strip() == b"[]"
    text = agentsess("approvals", live.run_id)
    assert text.returncode == 0
    assert text.stdout.decode().strip() == f"run {live.run_id} has ended (exited): none of its calls wait for approval"


def test_a_revoked_run_marks_its_requests_and_the_held_call_is_told_why(tmp_path):
    write_config(CONFIG.format(timeout="60s"))  # on_revoke = "keep": the run goes on
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        held = hook(live, tmp_path, "git push origin main")
        orphan = _open_only(live, 1)
        items = waiting(live.run_id, 2)
        agentsess("revoke", live.run_id, check=0)
        decision, why = answer_of(held)
        assert decision == "deny" and f"{approvals.REVOKED_REASON} (request " in why
        wait_for(lambda: _row(live.run_id, orphan)["status"] == "ended", what="the supervisor marking the orphan")
        for item in items:
            assert _row(live.run_id, item["request"])["answer_reason"] == approvals.REVOKED_REASON
            _late_answers_say(live.run_id, item["request"], approvals.REVOKED_REASON)
        ended = [r["data"] for r in receipts(live.run_id, "approval.expired")]
        assert sorted(d["request_id"] for d in ended) == sorted(i["request"] for i in items)  # one receipt each
        assert not receipts(live.run_id, "approval.denied", "approval.granted")
        live.finish()
    assert len(receipts(live.run_id, "approval.expired")) == 2  # the end marks nothing twice
    assert cli("verify", live.run_id).returncode == 0


def test_a_run_stopped_by_its_revocation_ends_its_requests_as_revoked(tmp_path):
    write_config(CONFIG.format(timeout="60s").replace('on_revoke = "keep"', 'on_revoke = "stop"'))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        orphan = _open_only(live, 1)
        waiting(live.run_id)
        agentsess("revoke", live.run_id, check=0)
        live.proc.wait(30)
    row = _row(live.run_id, orphan)
    assert row["status"] == "ended" and row["answer_reason"] == approvals.REVOKED_REASON
    _late_answers_say(live.run_id, orphan, approvals.REVOKED_REASON)
    [ended] = [r["data"] for r in receipts(live.run_id, "approval.expired")]
    assert ended["request_id"] == orphan and ended["reason"] == approvals.REVOKED_REASON
    assert cli("verify", live.run_id).returncode == 0
    text = agentsess("approvals", live.run_id).stdout.decode()
    assert "has ended (revoked)" in text


def test_a_run_whose_supervisor_died_has_its_requests_ended_by_abandonment(tmp_path):
    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        orphan = _open_only(live, 1)
        waiting(live.run_id)
        [run] = store_rows("SELECT supervisor_pid FROM runs WHERE id = ?", (live.run_id,))
        os.kill(run["supervisor_pid"], signal.SIGKILL)
        live.proc.wait(30)
        assert agentsess("runs").returncode == 0  # any read marks abandoned runs
    row = _row(live.run_id, orphan)
    assert row["status"] == "ended" and row["answer_reason"] == approvals.ABANDONED_REASON
    _late_answers_say(live.run_id, orphan, approvals.ABANDONED_REASON)
    [ended] = [r["data"] for r in receipts(live.run_id, "approval.expired")]
    assert ended["request_id"] == orphan and ended["reason"] == approvals.ABANDONED_REASON


def test_an_answer_given_first_wins_over_the_end(tmp_path):
    """Answered (and taken) before the run ends: the end marks nothing, the answer stands."""
    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        held = hook(live, tmp_path, "git push origin main")
        [item] = waiting(live.run_id)
        agentsess("deny", live.run_id, item["request"], "--reason", "no", check=0)
        assert answer_of(held)[0] == "deny"
        live.finish()
    assert _row(live.run_id, item["request"])["status"] == "denied"
    assert not receipts(live.run_id, "approval.expired")
    late = agentsess("approve", live.run_id, item["request"])
    assert late.returncode == 1 and b"it was denied" in late.stderr


@pytest.mark.parametrize("status", ["exited", "revoked", "abandoned"])
def test_a_request_left_pending_by_an_older_agentsess_reads_as_ended(tmp_path, status):
    """A store written before requests were marked: still pending, its run over. `approve`
    says why from the run's status, as it would have been marked."""
    from agentsess.edges.store import Store
    from agentsess.ids import new_run_id

    old = new_run_id()
    with Store() as store:
        store.insert_run({"id": old, "name": "a", "status": status, "command": ["true"], "cwd": "/",
                          "host": "h", "user": "u", "started_at": 1.0})
        store.insert_approval({"run_id": old, "request_id": "abcdef", "tool": "Bash", "source": "check",
                               "summary": "x", "args_sha256": "0" * 64, "reason": None, "status": "pending",
                               "requested_at": 1.0, "expires_at": 4e9})
    why = {"exited": approvals.ENDED_REASON, "revoked": approvals.REVOKED_REASON,
           "abandoned": approvals.ABANDONED_REASON}[status]
    _late_answers_say(old, "abcdef", why)


@pytest.mark.usefixtures("backend")
def test_both_stores_end_only_what_is_still_pending():  # noqa: F811 - the fixture
    """The store's half, on SQLite and PostgreSQL: one conditional UPDATE per request, so the
    first of an answer, an expiry and the run's end wins, and the end never marks twice."""
    from agentsess.edges.store import Store
    from agentsess.ids import new_run_id

    run_id = new_run_id()
    with Store() as store:
        store.insert_run({"id": run_id, "name": "a", "status": "running", "command": ["true"], "cwd": "/",
                          "host": "h", "user": "u", "started_at": 1.0})
        for request_id, expires in (("aaaaaa", 4e9), ("bbbbbb", 4e9), ("cccccc", 2.0)):
            assert store.insert_approval({"run_id": run_id, "request_id": request_id, "tool": "Bash", "source": "check",
                                          "summary": "x", "args_sha256": "0" * 64, "reason": None, "status": "pending",
                                          "requested_at": 1.0, "expires_at": expires})
        assert store.answer_approval(run_id, "bbbbbb", "granted", 3.0, "me@h")
        assert [a["request_id"] for a in store.open_approvals(run_id)] == ["aaaaaa", "cccccc"]  # expired or not
        assert store.end_approval(run_id, "aaaaaa", 5.0, approvals.ENDED_REASON)
        assert not store.end_approval(run_id, "aaaaaa", 6.0, "again")
        assert not store.end_approval(run_id, "bbbbbb", 6.0, "answered first")
        assert not store.answer_approval(run_id, "aaaaaa", "granted", 7.0, "me@h")
        row = store.get_approval(run_id, "aaaaaa")
        assert (row["status"], row["answer_reason"], row["answered_by"], row["answered_at"]) == \
            ("ended", approvals.ENDED_REASON, "agentsess", 5.0)
        assert store.get_approval(run_id, "bbbbbb")["status"] == "granted"
        assert [a["request_id"] for a in store.open_approvals(run_id)] == ["cccccc"]
