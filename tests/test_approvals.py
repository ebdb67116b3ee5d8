"""Approvals out of band (issue 16): `approval = "human"` holds a call the rules ask about until
a person answers with `agentsess approve|deny` from outside the run, or its time is up.

Every held call here is made by a real process inside a live run (tests/inrun.py) — a Claude
Code hook, `check`, the MCP proxy — and answered by a second, real `agentsess` process outside
it. The attacks: the agent answering its own request (contained and advisory, with its
variables and its supervisor's socket link gone), an approval replayed with other arguments,
a consumed approval reused, another run's request id, a guessed one.
"""

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from helpers import agentsess, cli, show, wait_for, write_config
from inrun import InRun

from agentsess.core.guard import approvals

PY = sys.executable

CONFIG = """
[profiles.p]
scopes = ["git:*", "shell:*"]
default_scopes = ["git:read", "git:push", "shell:exec"]
default_decision = "allow"
approval = "human"
approval_timeout = "{timeout}"
on_revoke = "keep"

[[profiles.p.rules]]
tool = "Bash"
args = "git push*"
decision = "ask"
reason = "a push leaves this machine"

[[profiles.p.rules]]
tool = "deploy"
decision = "ask"
reason = "deploys need a person"

[[profiles.p.rules]]
tool = "mcp:fake:ask_me"
decision = "ask"
reason = "a human should confirm this"
"""


def _bwrap_works() -> bool:
    import shutil

    if shutil.which("bwrap") is None:
        return False
    return subprocess.run(["bwrap", "--bind", "/", "/", "--unshare-pid", "--", "true"], capture_output=True).returncode == 0


CONTAINED = _bwrap_works()
if not CONTAINED and os.environ.get("AGENTSESS_CI") == "1":
    raise RuntimeError("CI must run the contained tests: bubblewrap is missing or cannot create namespaces")
needs_bwrap = pytest.mark.skipif(not CONTAINED, reason="bubblewrap with user namespaces is not available here")


@pytest.fixture
def run(tmp_path):
    """A live advisory run of profile p (approval = "human", 60s to answer)."""
    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        yield live


def pre(command: str, tool_use_id: str = "toolu_1") -> bytes:
    return json.dumps({"hook_event_name": "PreToolUse", "session_id": "s1", "tool_name": "Bash",
                       "tool_input": {"command": command}, "tool_use_id": tool_use_id}).encode()


class Held:
    """A process inside the run that is (or will be) held: its stdin is written and closed."""

    def __init__(self, live: InRun, argv: list[str], tmp_path, data: bytes = b"", name: str = "held"):
        self.err_path = tmp_path / f"{name}.stderr"
        self.err = open(self.err_path, "wb")
        self.proc = live.spawn(argv, stderr=self.err)
        self.proc.stdin.write(data)
        self.proc.stdin.close()

    def result(self, timeout: float = 60) -> tuple[int, bytes, str]:
        code = self.proc.wait(timeout)
        out = self.proc.stdout.read()
        self.err.close()
        return code, out, self.err_path.read_text(errors="replace")


def hook(live: InRun, tmp_path, command: str, name: str = "hook") -> Held:
    return Held(live, [PY, "-m", "agentsess", "hook", "claude-code", "--run", live.run_id], tmp_path, pre(command), name)


def waiting(run_id: str | None = None, count: int = 1) -> list[dict]:
    """The requests waiting (of ``run_id``), once there are ``count`` of them."""
    def found():
        out = agentsess("approvals", "--json")
        assert out.returncode == 0, out.stderr
        items = [a for a in json.loads(out.stdout) if run_id is None or a["run"] == run_id]
        return items if len(items) >= count else None

    return wait_for(found, timeout=30, interval=0.1, what="a held call")


def answer_of(held: Held) -> tuple[str, str]:
    code, out, err = held.result()
    assert code == 0, err
    data = json.loads(out)["hookSpecificOutput"]
    return data["permissionDecision"], data["permissionDecisionReason"]


def receipts(run_id: str, *types: str) -> list[dict]:
    return [r for r in show(run_id)["receipts"] if not types or r["type"] in types]


# -- the hook path: approved, denied, timed out --------------------------------------------------


def test_a_held_hook_call_approved_from_a_second_process(run, tmp_path):
    held = hook(run, tmp_path, "git push origin main")
    [item] = waiting(run.run_id)
    assert item["tool"] == "Bash" and item["summary"] == "git push origin main" and item["source"] == "claude-code"
    assert approvals.is_request_id(item["request"]) and len(item["args_sha256"]) == 64
    assert item["reason"].startswith("a push leaves this machine") and 0 < item["seconds_left"] <= 60
    table = agentsess("approvals")  # the rich table names what an approver types
    assert table.returncode == 0 and item["request"].encode() in table.stdout and b"git push origin main" in table.stdout
    proc = agentsess("approve", run.run_id, item["request"], "--json")
    assert proc.returncode == 0, proc.stderr
    granted = json.loads(proc.stdout)
    assert granted["decision"] == "granted" and granted["by"] == approvals.who() and granted["until"] is None
    decision, why = answer_of(held)
    assert decision == "allow" and f"approved by {approvals.who()} (request {item['request']})" in why
    assert agentsess("approvals", "--json").stdout.strip() == b"[]"
    requested, grant, checked = (r["data"] for r in receipts(run.run_id, "approval.requested", "approval.granted",
                                                               "action.checked"))
    assert requested["request_id"] == item["request"] and requested["args_sha256"] == item["args_sha256"]
    assert requested["summary"] == "git push origin main" and requested["tool"] == "Bash" and requested["timeout"] == 60
    assert grant["by"] == approvals.who() and grant["for"] is None and grant["at"].endswith("Z")
    assert grant["args_sha256"] == item["args_sha256"]
    assert checked["decision"] == "allow" and checked["approval"] == item["request"]
    assert cli("verify", run.run_id).returncode == 0


def test_a_held_hook_call_denied_with_a_reason(run, tmp_path):
    held = hook(run, tmp_path, "git push origin main")
    [item] = waiting(run.run_id)
    proc = agentsess("deny", run.run_id, item["request"], "--reason", "not on a Friday")
    assert proc.returncode == 0, proc.stderr
    decision, why = answer_of(held)
    assert decision == "deny" and f"denied by {approvals.who()}" in why and "not on a Friday" in why
    [denied] = [r["data"] for r in receipts(run.run_id, "approval.denied")]
    assert denied["reason"] == "not on a Friday" and denied["by"] == approvals.who()
    [checked] = [r["data"] for r in receipts(run.run_id, "action.checked")]
    assert checked["decision"] == "deny" and checked["approval"] == item["request"]
    # answered is answered: neither approve nor deny changes it now
    late = agentsess("approve", run.run_id, item["request"])
    assert late.returncode == 1 and b"no longer waiting: it was denied" in late.stderr


def test_a_held_call_nobody_answers_is_denied_when_its_time_is_up(tmp_path):
    write_config(CONFIG.format(timeout="2s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        held = hook(live, tmp_path, "git push origin main")
        decision, why = answer_of(held)
        assert decision == "deny" and "nobody approved it within 2s (approval_timeout)" in why
        [requested] = [r["data"] for r in receipts(live.run_id, "approval.requested")]
        [expired] = [r["data"] for r in receipts(live.run_id, "approval.expired")]
        assert expired["request_id"] == requested["request_id"] and expired["after"] == 2
        late = agentsess("approve", live.run_id, requested["request_id"])
        assert late.returncode == 1 and b"no longer waiting: it was expired" in late.stderr
        assert agentsess("approvals", "--json").stdout.strip() == b"[]"


def test_the_run_terminal_gets_one_line_that_escapes_what_the_agent_chose(run, tmp_path):
    held = hook(run, tmp_path, "git push origin main\x1b[2J\x1b]52;c;aGk=\x07\rforged line")
    [item] = waiting(run.run_id)
    agentsess("deny", run.run_id, item["request"], check=0)
    held.result()
    out = run.finish()
    lines = [line for line in out.stderr.decode().splitlines() if "approval needed" in line]
    assert len(lines) == 1, out.stderr
    line = lines[0]
    assert "\x1b" not in line and "\x07" not in line and "\r" not in line
    assert "\\x1b[2J" in line and f"agentsess approve {run.run_id} {item['request']}" in line


def test_notice_text_escapes_controls_bidi_and_invisible_marks():
    text = approvals._one_line("a\x1b[2Jb\u202ec\u200bd\ufeffe\x9bf" + "x" * 500)
    assert text.startswith("a\\x1b[2Jb\\u202ec\\u200bd\\ufeffe\\x9bf") and text.isprintable()
    assert len(text) == approvals.NOTICE_SUMMARY and text.endswith("…")


def test_a_desktop_notification_where_notify_send_exists(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "notified.json"
    # notify-send's whole interface is its argv (options, then SUMMARY and BODY) and its exit
    # code; the real one (libnotify-bin) also needs a D-Bus session bus with a notification
    # daemon, which a test machine has not. This stand-in is that interface: it records its argv.
    script = bin_dir / "notify-send"
    script.write_text(f"#!{PY}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    script.chmod(0o755)
    write_config(CONFIG.format(timeout="60s"))
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with InRun("--profile", "p", "--agent", "none", "--no-contain", env=env) as live:
        held = hook(live, tmp_path, "git push <b>origin</b> main")
        [item] = waiting(live.run_id)
        argv = wait_for(lambda: record.exists() and json.loads(record.read_text()), what="the notification")
        assert argv[:3] == ["--app-name=agentsess", "--urgency=critical", "--"]  # no option from the agent's text
        assert argv[-2] == "agentsess: approval needed"
        assert "&lt;b&gt;origin&lt;/b&gt;" in argv[-1] and "<b>" not in argv[-1]
        assert f"agentsess approve {live.run_id} {item['request']}" in argv[-1]
        agentsess("deny", live.run_id, item["request"], check=0)
        held.result()


def test_an_agent_cannot_flood_the_person_with_requests(run, tmp_path):
    helds = [hook(run, tmp_path, f"git push origin b{i}", f"h{i}") for i in range(approvals.MAX_WAITING)]
    items = waiting(run.run_id, approvals.MAX_WAITING)
    one_more = run.call("hook", "claude-code", "--run", run.run_id, input=pre("git push origin extra"))
    data = json.loads(one_more.stdout)["hookSpecificOutput"]
    assert data["permissionDecision"] == "deny" and "already wait for approval" in data["permissionDecisionReason"]
    for item in items:
        agentsess("deny", run.run_id, item["request"], check=0)
    assert all(answer_of(h)[0] == "deny" for h in helds)


# -- bound to the exact call, consumed once ------------------------------------------------------


def test_an_approval_does_not_approve_other_arguments(run, tmp_path):
    held = hook(run, tmp_path, "git push origin main")
    [item] = waiting(run.run_id)
    agentsess("approve", run.run_id, item["request"], "--for", "10m", check=0)
    assert answer_of(held)[0] == "allow"
    # the same call again, within --for: allowed without asking, naming the grant
    again = hook(run, tmp_path, "git push origin main", "again")
    decision, why = answer_of(again)
    assert decision == "allow" and f"request {item['request']}" in why and "for this exact call until" in why
    # other arguments are another call: held anew, and the old request id does not answer it
    forced = hook(run, tmp_path, "git push --force origin main", "forced")
    [other] = waiting(run.run_id)
    assert other["request"] != item["request"] and other["summary"] == "git push --force origin main"
    assert other["args_sha256"] != item["args_sha256"]
    replay = agentsess("approve", run.run_id, item["request"])
    assert replay.returncode == 1 and b"no longer waiting: it was granted" in replay.stderr
    agentsess("deny", run.run_id, other["request"], "--reason", "no force pushes", check=0)
    decision, why = answer_of(forced)
    assert decision == "deny" and "no force pushes" in why
    grants = [r["data"] for r in receipts(run.run_id, "approval.granted")]
    assert len(grants) == 1 and grants[0]["for"] == 600


def test_an_approval_is_consumed_by_the_one_call(run, tmp_path):
    first = hook(run, tmp_path, "git push origin main")
    [item] = waiting(run.run_id)
    agentsess("approve", run.run_id, item["request"], check=0)
    assert answer_of(first)[0] == "allow"
    second = hook(run, tmp_path, "git push origin main", "second")  # the very same call: asked again
    [again] = waiting(run.run_id)
    assert again["request"] != item["request"] and again["args_sha256"] == item["args_sha256"]
    reuse = agentsess("approve", run.run_id, item["request"])
    assert reuse.returncode == 1 and b"no longer waiting: it was granted" in reuse.stderr
    agentsess("deny", run.run_id, again["request"], check=0)
    assert answer_of(second)[0] == "deny"


def test_another_runs_request_id_and_a_guessed_one_answer_nothing(run, tmp_path):
    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as other:
        held = hook(run, tmp_path, "git push origin main")
        [item] = waiting(run.run_id)
        cross = agentsess("approve", other.run_id, item["request"])
        assert cross.returncode == 2 and f"run {other.run_id} has no approval request {item['request']}".encode() in cross.stderr
        guess = next(c * 6 for c in approvals.REQUEST_ALPHABET if c * 6 != item["request"])
        guessed = agentsess("approve", run.run_id, guess)
        assert guessed.returncode == 2 and b"has no approval request" in guessed.stderr
        for bad in ("../x", "ABCDEF", item["request"] + "x", "abc\x1bd", ""):
            proc = agentsess("approve", run.run_id, bad)
            assert proc.returncode == 2 and b"not a request id" in proc.stderr and b"\x1b" not in proc.stderr, bad
        assert [a["request"] for a in waiting(run.run_id)] == [item["request"]]  # still waiting, for the right answer
        agentsess("approve", run.run_id, item["request"], check=0)
        assert answer_of(held)[0] == "allow"
    assert not receipts(other.run_id, "approval.granted", "approval.denied", "approval.requested")


def test_bad_for_and_unknown_runs_are_usage_errors(run):
    for args, text in ((["--for", "soon"], b"--for"), (["--for", "0s"], b"longer than zero")):
        proc = agentsess("approve", run.run_id, "abcdef", *args)
        assert proc.returncode == 2 and text in proc.stderr and proc.stderr.count(b"\n") == 1
    proc = agentsess("deny", "run_nosuchrun", "abcdef")
    assert proc.returncode == 2 and proc.stderr.startswith(b"agentsess: error: ")


# -- THE attack: the agent answering its own request ---------------------------------------------


def _inside_attempts(live: InRun, item: dict) -> list[subprocess.CompletedProcess]:
    """Every way the agent could try to answer from inside: plainly, without its variables, and
    (advisory) with its supervisor's socket link removed so that no socket is found."""
    from agentsess.edges import paths

    home = {"AGENTSESS_HOME": os.environ["AGENTSESS_HOME"]}  # an advisory agent can find the data root
    tries = [live.call("approve", live.run_id, item["request"]),
             live.call("deny", live.run_id, item["request"]),
             live.call("approvals", "--json"),
             live.call("approve", live.run_id, item["request"],
                       unset=("AGENTSESS_CONTROL", "AGENTSESS_RUN_ID", "AGENTSESS_TOKEN"))]
    tries.append(live.call("approve", live.run_id, item["request"], env=home, unset=("AGENTSESS_CONTROL",)))
    tries.append(live.run([PY, "-c", ORPHAN_APPROVES, live.run_id, item["request"]], env=home,
                          unset=("AGENTSESS_CONTROL", "AGENTSESS_RUN_ID", "AGENTSESS_TOKEN")))
    return tries + [live.run([PY, "-c", REMOVE_LINK_THEN_APPROVE, live.run_id, item["request"], paths.control_dir()],
                             env=home, unset=("AGENTSESS_CONTROL", "AGENTSESS_RUN_ID", "AGENTSESS_TOKEN"))]


# the agent double-forks into a new session, so that its parent is gone, then asks agentsess
ORPHAN_APPROVES = r"""
import os, sys, time
run, req = sys.argv[1:3]
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(r)
        time.sleep(0.2)  # its parent has exited: it is an orphan now
        os.dup2(w, 2)
        os.dup2(w, 1)
        os.execv(sys.executable, [sys.executable, "-c",
                 "import subprocess, sys; p = subprocess.run([sys.executable, '-m', 'agentsess', 'approve', sys.argv[1], sys.argv[2]]);"
                 "print('rc', p.returncode)", run, req])
    os._exit(0)
os.close(w)
os.wait()
out = b""
while True:
    part = os.read(r, 65536)
    if not part:
        break
    out += part
sys.stderr.buffer.write(out)
sys.exit(2 if b"rc 2" in out else 0)
"""

# the agent deletes its supervisor's pid link (its own user's folder), then asks agentsess
REMOVE_LINK_THEN_APPROVE = r"""
import os, subprocess, sys
run, req, folder = sys.argv[1:4]
for name in os.listdir(folder) if os.path.isdir(folder) else []:
    if name.startswith("pid-"):
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass
proc = subprocess.run([sys.executable, "-m", "agentsess", "approve", run, req], capture_output=True)
sys.stderr.buffer.write(proc.stderr)
sys.exit(proc.returncode)
"""


@pytest.mark.parametrize("mode", [pytest.param([], id="contained", marks=needs_bwrap),
                                  pytest.param(["--no-contain"], id="advisory")])
def test_the_agent_cannot_answer_its_own_request(tmp_path, mode):
    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none", *mode) as live:
        held = hook(live, tmp_path, "git push origin main")
        [item] = waiting(live.run_id)
        for proc in _inside_attempts(live, item):
            assert proc.returncode == 2, (proc.args, proc.returncode, proc.stderr)
            assert b"refused inside a run" in proc.stderr, proc.stderr
        assert [a["request"] for a in waiting(live.run_id)] == [item["request"]], "an answer from inside the run got through"
        agentsess("deny", live.run_id, item["request"], check=0)
        assert answer_of(held)[0] == "deny"
        assert not receipts(live.run_id, "approval.granted")


@needs_bwrap
def test_a_contained_agent_cannot_reach_where_approvals_are_recorded(tmp_path, agentsess_home):
    write_config(CONFIG.format(timeout="60s"))
    with InRun("--profile", "p", "--agent", "none") as live:
        held = hook(live, tmp_path, "git push origin main")
        [item] = waiting(live.run_id)
        from agentsess.edges import paths

        store = paths.store_file()
        assert os.path.exists(store)
        forge = live.run([PY, "-c", FORGE, store, live.run_id, item["request"]])
        assert forge.returncode == 3, forge.stderr  # the store is not there to write
        # a wake-up from inside carries no answer: the call stays held
        poke = live.run([PY, "-c", WAKE])
        assert poke.returncode == 0, poke.stderr
        assert [a["request"] for a in waiting(live.run_id)] == [item["request"]]
        agentsess("approve", live.run_id, item["request"], check=0)
        assert answer_of(held)[0] == "allow"


FORGE = r"""
import os, sqlite3, sys
path, run, req = sys.argv[1:4]
if not os.path.exists(path):
    sys.exit(3)
db = sqlite3.connect(path)
db.execute("UPDATE approvals SET status = 'granted', answered_by = 'agent', answered_at = 0 WHERE run_id = ? AND request_id = ?", (run, req))
db.commit()
"""

WAKE = r"""
from agentsess.edges import control
path = control.find_socket()
print(control.request(path, {"op": "approval_wake"}))
"""


def test_a_run_revoked_while_a_call_waits_denies_it(run, tmp_path):
    held = hook(run, tmp_path, "git push origin main")
    [item] = waiting(run.run_id)
    agentsess("revoke", run.run_id, check=0)
    decision, why = answer_of(held)
    assert decision == "deny" and "revoked" in why
    assert agentsess("approvals", "--json").stdout.strip() == b"[]"


def test_a_request_of_a_run_that_ended_answers_nothing(run, tmp_path):
    held = hook(run, tmp_path, "git push origin main")
    [item] = waiting(run.run_id)
    held.proc.stdin.close()
    run.finish()
    assert agentsess("approvals", "--json").stdout.strip() == b"[]"
    proc = agentsess("approve", run.run_id, item["request"])
    assert proc.returncode == 1 and b"waits no more" in proc.stderr


def test_a_codex_call_is_held_no_longer_than_its_hook_waits(run, tmp_path):
    event = json.dumps({"hook_event_name": "PreToolUse", "session_id": "s1", "tool_name": "Bash",
                        "tool_input": {"command": "git push origin main"}, "tool_use_id": "call_1"}).encode()
    held = Held(run, [PY, "-m", "agentsess", "hook", "codex", "--run", run.run_id], tmp_path, event, "codex")
    [item] = waiting(run.run_id)
    assert item["source"] == "codex" and item["seconds_left"] <= approvals.HOOK_LIMIT["codex"] < 60
    agentsess("approve", run.run_id, item["request"], check=0)
    code, out, err = held.result()
    assert code == 0, err
    assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "allow"
    [requested] = [r["data"] for r in receipts(run.run_id, "approval.requested")]
    assert requested["timeout"] == approvals.HOOK_LIMIT["codex"]


# -- `check` and the MCP proxy --------------------------------------------------------------------


def _check(live: InRun, tmp_path, script: str, name: str = "check") -> Held:
    argv = [PY, "-m", "agentsess", "check", "git:push", "--tool", "deploy", "--", "sh", "-c", script]
    return Held(live, argv, tmp_path, b"", name)


def test_check_holds_then_runs_the_approved_command(run, tmp_path):
    ran, other_ran = tmp_path / "ran", tmp_path / "other-ran"
    held = _check(run, tmp_path, f"touch {ran}; exit 7")
    [item] = waiting(run.run_id)
    assert item["tool"] == "deploy" and item["source"] == "check" and f"touch {ran}" in item["summary"]
    agentsess("approve", run.run_id, item["request"], check=0)
    code, _, err = held.result()
    assert code == 7 and ran.exists(), err  # allowed: the command ran, and its exit code is check's
    other = _check(run, tmp_path, f"touch {other_ran}", "other")  # another command: asked anew
    [again] = waiting(run.run_id)
    assert again["request"] != item["request"]
    agentsess("deny", run.run_id, again["request"], "--reason", "not this one", check=0)
    code, _, err = other.result()
    assert code == 1 and "agentsess: denied:" in err and "not this one" in err and not other_ran.exists()
    checked = [r["data"] for r in receipts(run.run_id, "action.checked")]
    assert [c["decision"] for c in checked] == ["allow", "deny"] and checked[0]["approval"] == item["request"]


def test_mcp_proxy_holds_an_ask_call_and_forwards_it_once_approved(run, tmp_path):
    from test_mcp_proxy import Session

    session = Session(tmp_path, run)
    try:
        session.call(1, "ask_me", n=1)
        [item] = waiting(run.run_id)
        assert item["tool"] == "mcp:fake:ask_me" and item["source"] == "mcp-proxy" and item["summary"] == '{"n":1}'
        session.call(2, "add", a=1, b=2)  # the session goes on while a call is held
        assert session.answer()["id"] == 2
        assert b'"n":1' not in session.server_got()
        agentsess("approve", run.run_id, item["request"], check=0)
        reply = session.answer()
        assert reply["id"] == 1 and "result" in reply, reply
        session.call(3, "ask_me", n=3)
        [second] = waiting(run.run_id)
        agentsess("deny", run.run_id, second["request"], "--reason", "enough", check=0)
        reply = session.answer()
        assert reply["id"] == 3 and reply["error"]["code"] == -32001 and "enough" in reply["error"]["message"]
        assert b'"n":3' not in session.server_got()
        # a held call the client cancels is not forwarded, even once approved
        session.call(4, "ask_me", n=4)
        [third] = waiting(run.run_id)
        session.request({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 4}})
        agentsess("approve", run.run_id, third["request"], check=0)
        session.request({"jsonrpc": "2.0", "id": 5, "method": "ping"})
        assert session.answer()["id"] == 5
        wait_for(lambda: len(receipts(run.run_id, "approval.granted")) == 2, what="the second grant")
        session.request({"jsonrpc": "2.0", "id": 6, "method": "ping"})
        assert session.answer()["id"] == 6
        assert b'"n":4' not in session.server_got()
    finally:
        session.close()
    checked = [r["data"] for r in receipts(run.run_id, "action.checked")]
    held = [(c["decision"], c.get("approval")) for c in checked if c["tool"] == "mcp:fake:ask_me"]
    assert held == [("allow", item["request"]), ("deny", second["request"]), ("allow", third["request"])]


def test_an_mcp_answer_is_taken_once_and_only_for_its_own_call(run, tmp_path):
    """The proxy is inside the run: a hostile one could wait on a request twice, or with other
    arguments. The supervisor gives the answer to one waiter, for the call it was asked about."""
    from test_mcp_proxy import Session

    session = Session(tmp_path, run)
    try:
        session.call(1, "ask_me", n=1)
        [item] = waiting(run.run_id)
        other = run.run([PY, "-c", AWAIT, item["request"], json.dumps({"n": 2})])
        assert json.loads(other.stdout)["allowed"] is False and "is not this call" in json.loads(other.stdout)["reason"]
        agentsess("approve", run.run_id, item["request"], check=0)
        assert "result" in session.answer()
        again = run.run([PY, "-c", AWAIT, item["request"], json.dumps({"n": 1})])
        answer = json.loads(again.stdout)
        assert answer["allowed"] is False and "already answered another call" in answer["reason"], answer
    finally:
        session.close()
    assert len(receipts(run.run_id, "approval.granted")) == 1


AWAIT = r"""
import json, sys
from agentsess.edges import control
print(json.dumps(control.request(control.find_socket(), {"op": "mcp_await", "server": "fake", "name": "ask_me",
      "arguments": json.loads(sys.argv[2]), "request_id": 99, "approval": sys.argv[1]})))
"""


def test_approval_agent_keeps_todays_answers(tmp_path):
    write_config(CONFIG.format(timeout="60s").replace('approval = "human"', 'approval = "agent"'))
    with InRun("--profile", "p", "--agent", "none", "--no-contain") as live:
        proc = live.call("hook", "claude-code", "--run", live.run_id, input=pre("git push origin main"))
        assert json.loads(proc.stdout)["hookSpecificOutput"]["permissionDecision"] == "ask"  # Claude's own prompt
        proc = live.call("check", "git:push", "--tool", "deploy", "--", "true")
        assert proc.returncode == 1 and b"denied" in proc.stderr
        assert not receipts(live.run_id, "approval.requested")


# -- what a request holds, where it lives ---------------------------------------------------------


def test_a_secret_in_the_arguments_never_reaches_the_store_or_the_listing(run, tmp_path, agentsess_home):
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    held = hook(run, tmp_path, f"git push https://x:{token}@github.com/o/r main")
    [item] = waiting(run.run_id)
    assert token not in json.dumps(item)
    from agentsess.edges import paths

    db = sqlite3.connect(paths.store_file())
    assert token not in json.dumps(db.execute("SELECT * FROM approvals").fetchall())
    agentsess("deny", run.run_id, item["request"], check=0)
    held.result()
    out = run.finish()
    assert token.encode() not in out.stderr
    assert token not in json.dumps(show(run.run_id)["receipts"])


def test_profile_keys_are_checked(tmp_path):
    for text, where in (('approval = "maybe"', "profiles.p.approval"), ('approval_timeout = "0s"', "profiles.p.approval_timeout"),
                        ("approval_timeout = 5", "profiles.p.approval_timeout")):
        write_config(f"[profiles.p]\n{text}\n")
        proc = agentsess("config", "show")
        assert proc.returncode == 2 and where.encode() in proc.stderr, proc.stderr


def test_claude_waits_for_a_held_hook_and_blocks_if_the_hook_fails():
    from agentsess.core.guard.agents import claude

    held = claude.settings("run_x", "HOOK", [], held=900)
    [entry] = held["hooks"]["PreToolUse"][0]["hooks"]
    assert entry["timeout"] == 930 and entry["onFailure"] == "block"
    plain = claude.settings("run_x", "HOOK", [])
    assert plain["hooks"]["PreToolUse"][0]["hooks"][0]["timeout"] == 60
    assert "onFailure" not in plain["hooks"]["PostToolUse"][0]["hooks"][0]


def test_the_approvals_migration_applies_on_a_store_of_the_previous_schema(tmp_path):
    from agentsess.edges.store.migrations import MIGRATIONS
    from agentsess.edges.store import Store

    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    before = [name for name, _ in MIGRATIONS].index("0006_approvals")
    for name, sql in MIGRATIONS[:before]:
        for statement in sql.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO migrations VALUES (?, 0)", (name,))
    db.execute(f"PRAGMA user_version = {before}")
    db.commit()
    db.close()
    with Store(path) as store:
        assert "0006_approvals" in store.applied_migrations()
        assert store.pending_approvals(0.0) == []
    with Store(str(tmp_path / "new.db")) as store:
        assert "0006_approvals" in store.applied_migrations()


def test_pruning_a_run_forgets_its_requests(tmp_path):
    from agentsess.edges.store import Store

    with Store(str(tmp_path / "s.db")) as store:
        store.insert_run({"id": "run_a", "name": "a", "status": "exited", "command": ["true"], "cwd": "/",
                          "host": "h", "user": "u", "started_at": 1.0})
        for run_id in ("run_a", "run_b"):
            assert store.insert_approval({"run_id": run_id, "request_id": "abcdef", "tool": "Bash", "source": "check",
                                          "summary": "x", "args_sha256": "0" * 64, "reason": None, "status": "pending",
                                          "requested_at": 1.0, "expires_at": 2.0})
        assert not store.insert_approval({"run_id": "run_a", "request_id": "abcdef", "tool": "Bash", "source": "check",
                                          "summary": "y", "args_sha256": "1" * 64, "reason": None, "status": "pending",
                                          "requested_at": 1.0, "expires_at": 2.0})  # (run, request) is unique
        store.delete_runs(["run_a"])
        assert store.get_approval("run_a", "abcdef") is None and store.get_approval("run_b", "abcdef") is not None
