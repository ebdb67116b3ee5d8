"""The real Claude Code (pinned) under `approval = "human"`: its PreToolUse hook is held while
a person answers from outside the run, and Claude waits for the answer.

The fake model asks for `git push origin main` (approved from a second process: the push
runs), then `git push --force origin main` (denied with a reason: it does not run, and the
model is told why). The fake `git` leaves a marker per push that got through.
"""

import json
import os
import subprocess

from clients import client, fake_git, node_ok
from fakeapi import Call, FakeModel, Say
from helpers import PY, agentsess, show, wait_for, write_config

PROFILE = """
[profiles.claude]
agent = "claude-code"
scopes = ["fs:*", "git:*"]
default_scopes = ["fs:*", "git:*"]
approval = "human"
approval_timeout = "2m"
pass_env = ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "DISABLE_AUTOUPDATER", "DISABLE_TELEMETRY",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "ENABLE_TOOL_SEARCH"]

[[profiles.claude.rules]]
tool = "Bash"
args = "git push*"
decision = "ask"
reason = "a push leaves this machine"
"""


def _waiting(count_answered: int) -> dict:
    def found():
        out = agentsess("approvals", "--json")
        items = json.loads(out.stdout) if out.returncode == 0 else []
        return items[0] if items else None

    return wait_for(found, timeout=90, interval=0.2, what=f"held call #{count_answered + 1}")


def test_claude_code_waits_for_a_person_to_approve_or_deny(tmp_path):
    node_ok()
    claude = client("claude")
    write_config(PROFILE)
    work = tmp_path / "work"
    work.mkdir()
    markers = tmp_path / "markers"
    markers.mkdir()
    bindir = tmp_path / "bin"
    fake_git(str(bindir), str(markers))
    home = tmp_path / "claude-home"
    (home / ".claude").mkdir(parents=True)
    script = [Call("Bash", {"command": "git push origin main", "description": "push"}),
              Call("Bash", {"command": "git push --force origin main", "description": "force push"}),
              Say("finished")]
    with FakeModel(script, "anthropic") as model:
        env = dict(os.environ, ANTHROPIC_BASE_URL=model.url, ANTHROPIC_API_KEY="sk-ant-test-not-a-real-key",
                   HOME=str(home), DISABLE_AUTOUPDATER="1", DISABLE_TELEMETRY="1",
                   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", ENABLE_TOOL_SEARCH="false",
                   PATH=f"{bindir}:{os.environ['PATH']}")
        proc = subprocess.Popen([PY, "-m", "agentsess", "run", "--no-pty", "--profile", "claude", "--", claude,
                                 "-p", "push it", "--allowedTools", "Bash", "--output-format", "json"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=str(work))
        try:
            first = _waiting(0)
            assert first["summary"] == "git push origin main" and first["source"] == "claude-code"
            assert os.listdir(markers) == []  # held: nothing ran yet
            agentsess("approve", first["run"], first["request"], check=0)
            second = wait_for(lambda: next((a for a in json.loads(agentsess("approvals", "--json").stdout)
                                            if a["request"] != first["request"]), None),
                              timeout=90, interval=0.2, what="the second held call")
            assert second["summary"] == "git push --force origin main"
            assert len(os.listdir(markers)) == 1  # the approved push ran, once
            agentsess("deny", second["run"], second["request"], "--reason", "no force pushes today", check=0)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        told = model.told()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert json.loads(out)["result"] == "finished"
    assert len(os.listdir(markers)) == 1, "the denied force push ran"
    assert "no force pushes today" in told
    recs = show("last")["receipts"]
    types = [r["type"] for r in recs]
    assert types.count("approval.requested") == 2 and "approval.granted" in types and "approval.denied" in types
    checked = [r["data"] for r in recs if r["type"] == "action.checked" and r["data"]["tool"] == "Bash"]
    assert [(c["summary"], c["decision"]) for c in checked] == [("git push origin main", "allow"),
                                                               ("git push --force origin main", "deny")]
    settings = json.loads(open(recs[0]["data"]["integration"]["claude_code"]["settings"]).read())
    [entry] = settings["hooks"]["PreToolUse"][0]["hooks"]
    assert entry["timeout"] == 150 and entry["onFailure"] == "block"
    assert agentsess("verify", "last").returncode == 0
