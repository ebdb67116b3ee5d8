"""Approvals out of band (issue 16), the cases the first suite left out: two people answering
the same request at once, a held `check` and a held MCP call nobody answers, a `--for` grant
on the `check` path covering that one command only, and a sub-agent's held call, answered
under the sub-agent's own run.

Every held call is made by a real process inside a live run (tests/inrun.py) and answered by
real `agentsess` processes outside it.
"""

import json
import os
import subprocess
import sys

import pytest
from helpers import agentsess, show, write_config
from inrun import InRun
from pg import backend  # noqa: F401 - the fixture
from test_approvals import CONFIG, Held, answer_of, hook, pre, receipts, waiting

from agentsess.core.guard import approvals

PY = sys.executable


def _answerers(run_id: str, request: str, count: int) -> list[subprocess.Popen]:
    """``count`` approvers and ``count`` deniers of one request, all started before any is waited for."""
    procs = []
    for n in range(count):
        for argv in (["approve", run_id, request, "--json"],
                     ["deny", run_id, request, "--reason", f"denier {n}", "--json"]):
            procs.append(subprocess.Popen([PY, "-m", "agentsess", *argv], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, env=dict(os.environ)))
    return procs


@pytest.mark.usefixtures("backend")
def test_two_people_answering_at_once_one_answer_wins_and_the_call_gets_that_one(tmp_path):  # noqa: F811
    """On SQLite and on a fleet's PostgreSQL store: one conditional UPDATE decides."""
    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        for round_ in range(3):
            held = hook(live, tmp_path, f"git push origin race-{round_}", f"race{round_}")
            [item] = waiting(live.run_id)
            procs = _answerers(live.run_id, item["request"], 3)
            results = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in procs]
            winners = [json.loads(out) for code, out, _ in results if code == 0]
            assert len(winners) == 1, results  # one conditional UPDATE: the first answer wins
            losers = [err for code, _, err in results if code != 0]
            assert len(losers) == 5 and all(b"is no longer waiting" in err for err in losers), losers
            assert all(code == 1 for code, _, _ in results if code != 0)
            decision, why = answer_of(held)
            won = winners[0]["decision"]
            assert decision == ("allow" if won == "granted" else "deny"), (won, why)
        # each request has exactly one answer in the stream, the one that won
        answered = [r["data"]["request_id"] for r in receipts(live.run_id, "approval.granted", "approval.denied")]
        requested = [r["data"]["request_id"] for r in receipts(live.run_id, "approval.requested")]
        assert sorted(answered) == sorted(requested) and len(set(answered)) == 3
    assert agentsess("verify", live.run_id).returncode == 0


def test_a_held_check_nobody_answers_is_denied_when_its_time_is_up(tmp_path):
    write_config(CONFIG.format(timeout="2s"))
    ran = tmp_path / "ran"
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        held = Held(live, [PY, "-m", "agentsess", "check", "git:push", "--tool", "deploy", "--", "touch", str(ran)],
                    tmp_path)
        code, _, err = held.result()
        assert code == 1 and "nobody approved it within 2s (approval_timeout)" in err, err
        assert not ran.exists()
        [requested] = [r["data"] for r in receipts(live.run_id, "approval.requested")]
        [expired] = [r["data"] for r in receipts(live.run_id, "approval.expired")]
        assert expired["request_id"] == requested["request_id"] and requested["source"] == "check"
        [checked] = [r["data"] for r in receipts(live.run_id, "action.checked")]
        assert checked["decision"] == "deny" and checked["approval"] == requested["request_id"]


def test_a_held_mcp_call_nobody_answers_is_refused_when_its_time_is_up(tmp_path):
    from test_mcp_proxy import Session

    write_config(CONFIG.format(timeout="2s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        session = Session(tmp_path, live)
        try:
            session.call(1, "ask_me", n=1)
            reply = session.answer()
            assert reply["id"] == 1 and reply["error"]["code"] == -32001, reply
            assert "nobody approved it within 2s" in reply["error"]["message"]
            assert b'"n":1' not in session.server_got()  # never forwarded
        finally:
            session.close()
        [expired] = [r["data"] for r in receipts(live.run_id, "approval.expired")]
        [checked] = [r["data"] for r in receipts(live.run_id, "action.checked") if r["data"]["tool"] == "mcp:fake:ask_me"]
        assert checked["decision"] == "deny" and checked["approval"] == expired["request_id"]


def test_a_for_grant_on_check_covers_that_command_and_no_other(tmp_path):
    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        def check(*command, name):
            return Held(live, [PY, "-m", "agentsess", "check", "git:push", "--tool", "deploy", "--", *command],
                        tmp_path, name=name)

        first = check("true", "prod", name="first")
        [item] = waiting(live.run_id)
        agentsess("approve", live.run_id, item["request"], "--for", "10m", check=0)
        assert first.result()[0] == 0
        again = check("true", "prod", name="again")  # the same command: covered by the grant
        code, _, err = again.result()
        assert code == 0, err
        other = check("true", "staging", name="other")  # other arguments: asked anew
        [asked] = waiting(live.run_id)
        assert asked["request"] != item["request"] and asked["args_sha256"] != item["args_sha256"]
        agentsess("deny", live.run_id, asked["request"], "--reason", "not staging", check=0)
        code, _, err = other.result()
        assert code == 1 and "not staging" in err
        checked = [r["data"] for r in receipts(live.run_id, "action.checked")]
        assert [c["decision"] for c in checked] == ["allow", "allow", "deny"]
        assert "for this exact call until" in checked[1]["reason"] and checked[1]["approval"] == item["request"]
        assert len(receipts(live.run_id, "approval.requested")) == 2


SUBAGENT_CONFIG = CONFIG + """
[profiles.p.subagents]
scopes = ["git:push", "shell:exec"]
"""


def test_a_subagents_held_call_waits_in_its_own_run_and_is_answered_there(tmp_path):
    write_config(SUBAGENT_CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        event = json.loads(pre("git push origin main"))
        event.update(agent_id="sub1", agent_type="general-purpose")
        held = Held(live, [PY, "-m", "agentsess", "hook", "claude-code", "--run", live.run_id], tmp_path,
                    json.dumps(event).encode())
        [item] = waiting()
        child = item["run"]
        assert child != live.run_id and show(child)["parent_id"] == live.run_id
        # the parent's id does not answer its sub-agent's request
        cross = agentsess("approve", live.run_id, item["request"])
        assert cross.returncode == 2 and b"has no approval request" in cross.stderr
        agentsess("approve", child, item["request"], check=0)
        decision, why = answer_of(held)
        assert decision == "allow" and f"approved by {approvals.who()}" in why
        assert [r["data"]["request_id"] for r in receipts(child, "approval.granted")] == [item["request"]]
        assert not receipts(live.run_id, "approval.requested", "approval.granted")


FULL_SCREEN_AGENT = r"""
import json, os, subprocess, sys, time
flags = sys.argv[1]
os.write(1, b"\x1b[?1049h\x1b[2J\x1b[HFULL SCREEN\r\n")
event = {"hook_event_name": "PreToolUse", "session_id": "s1", "tool_name": "Bash", "tool_use_id": "t1",
         "tool_input": {"command": "git push origin main"}}
p = subprocess.run([sys.executable, "-m", "agentsess", "hook", "claude-code", "--run", os.environ["AGENTSESS_RUN_ID"]],
                   input=json.dumps(event).encode(), capture_output=True)
os.write(1, b"HOOK DONE " + (b"allow" if b'"allow"' in p.stdout else b"other") + b"\r\n")
while not os.path.exists(os.path.join(flags, "leave")):
    time.sleep(0.02)
os.write(1, b"\x1b[?1049lBACK\r\n")
"""


def test_the_approval_notice_waits_for_a_full_screen_program_to_leave_its_screen(tmp_path):
    """In a real pty: the one-line notice of a held call is not written over a full-screen
    program (its alternate screen); it appears once the program leaves it, on a line of its own."""
    import pexpect

    write_config(CONFIG.format(timeout="60s"))
    flags = tmp_path / "flags"
    flags.mkdir()
    env = dict(os.environ, TERM="xterm")
    child = pexpect.spawn(PY, ["-m", "agentsess", "run", "--profile", "p", "--agent", "none", "--no-contain", "--",
                               PY, "-c", FULL_SCREEN_AGENT, str(flags)], env=env, dimensions=(24, 80), timeout=60)
    try:
        child.expect_exact(b"FULL SCREEN")
        [item] = waiting()
        agentsess("approve", item["run"], item["request"], check=0)
        child.expect_exact(b"HOOK DONE allow")  # the notice was said before the call was answered
        full_screen = child.before
        assert b"approval needed" not in full_screen and b"agentsess:" not in full_screen, full_screen
        (flags / "leave").touch()
        child.expect(pexpect.EOF)
        after = child.before
    finally:
        child.close(force=True)
    left = after.index(b"\x1b[?1049l")
    notice = after.index(b"agentsess: approval needed: Bash: git push origin main")
    assert left < notice, after
    assert after.count(b"approval needed") == 1
    line = after[notice:].split(b"\n", 1)[0]
    assert f"agentsess approve {item['run']} {item['request']}".encode() in line and b"\x1b" not in line, line
    [requested] = [r["data"] for r in receipts(item["run"], "approval.requested")]
    assert requested["request_id"] == item["request"]


def test_the_request_names_the_sha256_of_the_exact_arguments_and_a_grant_covers_no_respelling(tmp_path):
    """The hash is over the exact arguments (their canonical JSON), so a grant ``--for`` a while
    covers that call only: a doubled space, a trailing space, a look-alike letter or one more
    argument is another call, asked anew."""
    import hashlib

    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        first = hook(live, tmp_path, "git push origin main")
        [item] = waiting(live.run_id)
        exact = json.dumps({"command": "git push origin main"}, sort_keys=True, separators=(",", ":"))
        assert item["args_sha256"] == hashlib.sha256(exact.encode()).hexdigest()
        agentsess("approve", live.run_id, item["request"], "--for", "10m", check=0)
        assert answer_of(first)[0] == "allow"
        for n, spelling in enumerate(("git push  origin main", "git push origin main ", "git push origin maіn",
                                      "git push origin main --force", "git push origin main\n")):
            held = hook(live, tmp_path, spelling, f"respelled{n}")
            [asked] = waiting(live.run_id)
            assert asked["request"] != item["request"] and asked["args_sha256"] != item["args_sha256"], spelling
            agentsess("deny", live.run_id, asked["request"], check=0)
            assert answer_of(held)[0] == "deny", spelling
        assert answer_of(hook(live, tmp_path, "git push origin main", "same"))[0] == "allow"  # the grant still holds
        assert len(receipts(live.run_id, "approval.granted")) == 1


def test_approval_timeout_defaults_to_five_minutes(tmp_path):
    write_config(CONFIG.format(timeout="60s").replace('approval_timeout = "60s"\n', ""))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        held = hook(live, tmp_path, "git push origin main")
        [item] = waiting(live.run_id)
        assert 290 <= item["seconds_left"] <= 300
        agentsess("deny", live.run_id, item["request"], check=0)
        assert answer_of(held)[0] == "deny"
        [requested] = [r["data"] for r in receipts(live.run_id, "approval.requested")]
        assert requested["timeout"] == 300


def test_help_explains_sub_agents_and_approvals_without_shadowing_the_approvals_command():
    subagents = agentsess("help", "subagents", check=0).stdout.decode()
    for words in ("child run", "[profiles.claude.subagents]", "act claim", "revoke SUBRUN", "SubagentStop",
                  "runs --tree"):
        assert words in subagents, words
    approval = agentsess("help", "approval", check=0).stdout.decode()
    for words in ('approval = "human"', "approve RUN REQ [--for 10m]", "deny RUN REQ --reason", "approvals [RUN]",
                  "SHA-256 of the exact arguments", "approval_timeout (default 5m)", "notify-send",
                  "approval.granted (by user@host, when, for how long)", "refused inside a run"):
        assert words in approval, words
    assert agentsess("help", "approvals", check=0).stdout == agentsess("approvals", "--help", check=0).stdout


def test_redaction_compiled_on_first_use_by_many_threads_at_once_keeps_working():
    """Found by the flood test (eight held calls at once): the supervisor's control-socket
    threads all redact a summary on their first use of the patterns; two first uses at once
    must not break redaction (it used to leave every later call of the run failing closed)."""
    import re

    from agentsess.core.guard import redaction

    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can: the race shows at once
    try:
        _race_first_uses(redaction, re, token)
    finally:
        sys.setswitchinterval(switch)


def _race_first_uses(redaction, re, token):
    import threading

    for _ in range(10):
        redaction._compiled = type(redaction._compiled)() if isinstance(redaction._compiled, list) else None
        re.purge()  # compiled anew, not found in re's cache: the first use takes a while
        gate, out, errors = threading.Barrier(16), [], []

        def one(gate=gate, out=out, errors=errors):
            gate.wait()
            try:
                out.append(redaction.redact(f"git push https://x:{token}@github.com/o/r"))
            except Exception as exc:  # noqa: BLE001 - the race shows as an exception here
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(out) == 16 and all(token not in text and "[masked]" in text for text in out), out
        assert token not in redaction.redact(f"token={token}")
