"""The real Claude Code (pinned) spawning a sub-agent (its Agent/Task tool) against a scripted
Messages API: the sub-agent's tool calls go through the hooks into a child run of its own,
decided against the sub-agent's narrower scopes; revoking that run denies the sub-agent's
next call while the orchestrator goes on.
"""

import json
import os
import threading

import pytest
from clients import client, fake_git, node_ok
from fakeapi import Call, FakeModel, Say
from helpers import agentsess, runs_json, show, wait_for, write_config

PROFILE = """
[profiles.claude]
agent = "claude-code"
scopes = ["fs:*", "git:*"]
default_scopes = ["fs:*", "git:*"]
pass_env = ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "DISABLE_AUTOUPDATER", "DISABLE_TELEMETRY",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "ENABLE_TOOL_SEARCH"]

[profiles.claude.subagents]
scopes = ["fs:read"]

[profiles.claude.subagents.types]
general-purpose = ["fs:read", "git:status"]   # Claude Code's own agent_type for its Agent tool

[[profiles.claude.rules]]
tool = "Bash"
args = "git push*"
scope = "git:push"
decision = "allow"
"""

SUBTASK = "SUBTASK-7f3e: look around"


def claude_env(model, home, bindir):
    return {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key", "HOME": str(home),
            "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "ENABLE_TOOL_SEARCH": "false", "PATH": f"{bindir}:{os.environ['PATH']}"}


@pytest.fixture
def setting(tmp_path):
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
    return {"claude": claude, "work": work, "markers": markers, "bindir": bindir, "home": home}


def run_claude(s, model):
    return agentsess("run", "--no-pty", "--profile", "claude", "--", s["claude"], "-p", "do the task",
                     "--allowedTools", "Bash", "Agent", "Task", "--output-format", "json",
                     env=claude_env(model, s["home"], s["bindir"]), cwd=str(s["work"]), input=b"", timeout=180)


def agent_call():
    return Call("Agent", {"description": "look around", "prompt": SUBTASK, "subagent_type": "general-purpose"})


def test_a_claude_subagent_gets_its_own_child_run_and_revoking_it_stops_only_it(setting):
    s = setting
    gate = threading.Event()
    orchestrator = [
        Call("Bash", {"command": f"touch {s['markers']}/orch-before", "description": "before"}),
        agent_call(),
        Call("Bash", {"command": "git push origin main", "description": "push"}),  # git:push: the parent holds it
        Call("Bash", {"command": f"touch {s['markers']}/orch-after", "description": "after"}),
        Say("finished"),
    ]
    sub = [
        Call("Bash", {"command": f"touch {s['markers']}/sub-1 && git status", "description": "one"}),
        Call("Bash", {"command": "git push origin main", "description": "sub push"}),  # the sub-agent lacks git:push
        Call("Bash", {"command": f"touch {s['markers']}/sub-2", "description": "two"}, before=gate),
        Say("sub-agent done"),
    ]
    result = {}
    with FakeModel(orchestrator, "anthropic", subs={SUBTASK: sub}) as model:
        runner = threading.Thread(target=lambda: result.setdefault("proc", run_claude(s, model)))
        runner.start()
        try:
            child = wait_for(lambda: next((r for r in runs_json() if r.get("parent_id")), None), timeout=120,
                             what="the sub-agent's child run")
            # wait until the sub-agent's push was decided, then revoke it before its next call
            wait_for(lambda: len([r for r in show(child["id"])["receipts"] if r["type"] == "action.checked"]) >= 2,
                     timeout=120, what="the sub-agent's second call")
            agentsess("revoke", child["id"], "--reason", "sub-agent went astray", check=0)
        finally:
            gate.set()
            runner.join(200)
        told = model.told()
    proc = result["proc"]
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert json.loads(proc.stdout)["result"] == "finished"

    runs = runs_json()
    parent = next(r for r in runs if not r.get("parent_id"))
    kids = [r for r in runs if r.get("parent_id") == parent["id"]]
    assert len(kids) == 1, kids
    child = show(kids[0]["id"])
    assert child["scopes"] == ["fs:read", "git:status"]  # the general-purpose entry, not the plain scopes
    assert child["status"] == "revoked"
    assert child["expires_at"] <= show(parent["id"])["expires_at"]
    # its token's act claim: the sub-agent acting for the orchestrator, acting for the human
    [minted] = [r["data"] for r in child["receipts"] if r["type"] == "credential.minted"]
    assert minted["act"] == {"sub": "agent:claude-code", "sid": parent["id"],
                             "act": {"sub": f"{parent['user']}@{parent['host']}"}}
    tree = agentsess("runs", "--tree", check=0).stdout.decode()
    assert f"└ {child['id']}" in tree and tree.index(parent["id"]) < tree.index(child["id"])
    assert [c["id"] for c in show(parent["id"])["children"]] == [child["id"]]
    # the sub-agent's calls are in its own run: the first observed and run, the push denied by scope
    checked = [r["data"] for r in child["receipts"] if r["type"] == "action.checked"]
    assert checked[0]["decision"] == "observe" and "sub-1" in checked[0]["summary"]
    assert checked[1]["decision"] == "deny" and "git:push" in checked[1]["reason"]
    assert (s["markers"] / "sub-1").exists()
    assert not (s["markers"] / "sub-2").exists()  # denied after the revocation
    assert "sub-agent went astray" in told
    # its command ran bound to its run: recorded there, linked to its check
    execs = [r["data"] for r in child["receipts"] if r["type"] == "action.exec"]
    assert execs and "sub-1" in execs[0]["command"] and execs[0]["checked"]
    # the orchestrator went on: its push (its own scope) was allowed, its last command ran
    whole = show(parent["id"])
    mine = [r["data"] for r in whole["receipts"] if r["type"] == "action.checked"]
    assert any(c["summary"] == "git push origin main" and c["decision"] == "allow" for c in mine)
    assert (s["markers"] / "orch-after").exists()
    assert not any("sub-1" in c.get("summary", "") for c in mine)
    kinds = [r["type"] for r in whole["receipts"]]
    assert "subagent.refused" in kinds
    assert agentsess("verify", "--all").returncode == 0


def test_a_claude_subagent_that_finishes_ends_and_seals_its_run(setting):
    s = setting
    orchestrator = [agent_call(), Call("Bash", {"command": f"touch {s['markers']}/orch", "description": "o"}),
                    Say("finished")]
    sub = [Call("Bash", {"command": f"touch {s['markers']}/sub && git status", "description": "one"}),
           Call("Bash", {"command": "git push origin main", "description": "sub push"}),
           Say("sub-agent done")]
    with FakeModel(orchestrator, "anthropic", subs={SUBTASK: sub}) as model:
        proc = run_claude(s, model)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    runs = runs_json()
    parent = next(r for r in runs if not r.get("parent_id"))
    child = show(next(r for r in runs if r.get("parent_id") == parent["id"])["id"])
    assert child["status"] == "exited" and child["integrity"]["sealed"]
    started = next(r["data"] for r in child["receipts"] if r["type"] == "subagent.started")
    assert started["agent_type"] == "general-purpose" and started["agent_id"]
    kinds = [r["type"] for r in show(parent["id"])["receipts"]]
    assert "subagent.started" in kinds and "subagent.stopped" in kinds
    # the Agent call itself is the orchestrator's (its planning loop stays in the parent)
    mine = [r["data"] for r in show(parent["id"])["receipts"] if r["type"] == "action.checked"]
    assert mine[0]["tool"] == "Agent" and SUBTASK in mine[0]["summary"]
    stopped = next(r["data"] for r in show(parent["id"])["receipts"] if r["type"] == "subagent.stopped")
    assert stopped["run"] == child["id"] and stopped["agent_id"] == started["agent_id"]
    assert stopped["event"] == "SubagentStop"  # Claude Code's own SubagentStop ended it
    assert not list(s["markers"].glob("push-*"))  # the sub-agent's push was denied
    assert (s["markers"] / "orch").exists() and (s["markers"] / "sub").exists()
    assert agentsess("verify", "--all").returncode == 0


def test_revoking_a_claude_subagent_kills_the_command_it_is_running(setting):
    """A call in flight stops too: the real Claude Code's sub-agent is running a long Bash
    command (through the shell prefix, bound to its run) when its run is revoked; the command
    dies, the sub-agent's next call is denied, and the orchestrator finishes."""
    from inrun import host_pids

    s = setting
    nap = r"python3 -c import time; time\.sleep\(41\.4242\)$"  # found by its arguments
    orchestrator = [agent_call(), Call("Bash", {"command": f"touch {s['markers']}/orch-after", "description": "after"}),
                    Say("finished")]
    sub = [Call("Bash", {"command": f"python3 -c 'import time; time.sleep(41.4242)' && touch {s['markers']}/sub-late",
                         "description": "long"}),
           Call("Bash", {"command": f"touch {s['markers']}/sub-next", "description": "next"}),
           Say("sub-agent done")]
    result = {}
    with FakeModel(orchestrator, "anthropic", subs={SUBTASK: sub}) as model:
        runner = threading.Thread(target=lambda: result.setdefault("proc", run_claude(s, model)))
        runner.start()
        try:
            wait_for(lambda: host_pids(nap), timeout=60, what="the sub-agent's long command")
            child = next(r for r in runs_json() if r.get("parent_id"))
            agentsess("revoke", child["id"], "--reason", "cut it short", check=0)
            wait_for(lambda: not host_pids(nap), timeout=20, what="the sub-agent's command to be killed")
        finally:
            runner.join(200)
        told = model.told()
    proc = result["proc"]
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert json.loads(proc.stdout)["result"] == "finished"
    assert not (s["markers"] / "sub-late").exists() and not (s["markers"] / "sub-next").exists()
    assert (s["markers"] / "orch-after").exists() and "cut it short" in told
    parent = next(r for r in runs_json() if not r.get("parent_id"))
    [ended] = [r["data"] for r in show(parent["id"])["receipts"] if r["type"] == "subagent.ended"]
    assert ended["how"] == "revoked" and ended["processes_killed"] >= 1 and ended["run"] == child["id"]
    assert len(ended["commands"]) == 1 and "time.sleep(41.4242)" in ended["commands"][0]  # the model's command
    assert agentsess("verify", "--all").returncode == 0
