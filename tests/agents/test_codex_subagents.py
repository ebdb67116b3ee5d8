"""The real Codex CLI (pinned) spawning a sub-agent (its `multi_agent_v1` `spawn_agent` tool,
on by default in 0.169) against a scripted Responses API: Codex's hook payloads carry the
sub-agent's `agent_id`/`agent_type` (its PreToolUse/PostToolUse input schemas have them, and
SubagentStart/SubagentStop require them), so the sub-agent's tool calls land in a child run
of their own, decided against the sub-agent's narrower scopes, while the orchestrator's
planning loop (spawn_agent, wait_agent) and its own calls stay in the parent.
"""

import json
import os
import threading

from clients import client, fake_git
from fakeapi import SPAWNED, Call, FakeModel, Say
from helpers import agentsess, runs_json, show, wait_for, write_config

PROFILE = """
[profiles.codex]
agent = "codex"
scopes = ["fs:*", "git:*"]
default_scopes = ["fs:*", "git:*"]
pass_env = ["OPENAI_API_KEY", "CODEX_HOME"]

[profiles.codex.subagents]
scopes = ["fs:read", "git:status"]

[[profiles.codex.rules]]
tool = "Bash"
args = "git push*"
scope = "git:push"
decision = "allow"
"""

SUBTASK = "SUBTASK-c0d3x: look around"


def _setting(tmp_path):
    codex = client("codex")
    write_config(PROFILE)
    work, markers, bindir, codex_home = (tmp_path / n for n in ("work", "markers", "bin", "codex-home"))
    for folder in (work, markers, codex_home):
        folder.mkdir()
    fake_git(str(bindir), str(markers))
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(tmp_path), "CODEX_HOME": str(codex_home),
           "OPENAI_API_KEY": "sk-test-not-a-real-key"}
    return codex, work, markers, env


def _run_codex(codex, model, work, env):
    provider = f'model_providers.fake={{name="fake",base_url="{model.url}/v1",wire_api="responses",env_key="OPENAI_API_KEY"}}'
    argv = [codex, "exec", "-c", provider, "-c", "model_provider=fake", "-c", "model=gpt-fake",
            "--skip-git-repo-check", "-s", "danger-full-access", "do the task"]
    return agentsess("run", "--no-pty", "--profile", "codex", "--", *argv, env=env, cwd=str(work), input=b"",
                     timeout=180)


def test_a_codex_subagent_gets_its_own_child_run(tmp_path):
    codex, work, markers, env = _setting(tmp_path)
    orchestrator = [Call("multi_agent_v1__spawn_agent", {"message": SUBTASK}),
                    Call("multi_agent_v1__wait_agent", {"targets": [SPAWNED], "timeout_ms": 60000}),
                    Call("exec_command", {"cmd": f"touch {markers}/orch && git push origin main"}),
                    Say("finished")]
    sub = [Call("exec_command", {"cmd": f"touch {markers}/sub && git status"}),
           Call("exec_command", {"cmd": f"touch {markers}/sub-push && git push origin main"}),  # lacks git:push
           Say("sub-agent done")]
    with FakeModel(orchestrator, "openai", subs={SUBTASK: sub}) as model:
        proc = _run_codex(codex, model, work, env)
        told = model.told()
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert b"finished" in proc.stdout
    spawned = next(json.loads(i["output"])["agent_id"] for r in model.requests for i in r["body"].get("input") or []
                   if i.get("type") == "function_call_output" and '"agent_id"' in str(i.get("output")))

    runs = runs_json()
    parent = next(r for r in runs if not r.get("parent_id"))
    kids = [r for r in runs if r.get("parent_id") == parent["id"]]
    assert len(kids) == 1, kids
    child = show(kids[0]["id"])
    assert child["scopes"] == ["fs:read", "git:status"]
    assert child["status"] == "exited" and child["integrity"]["sealed"]
    started = next(r["data"] for r in child["receipts"] if r["type"] == "subagent.started")
    assert started["agent_id"] == spawned and started["agent_type"]
    # the sub-agent's calls are in its own run, as codex's: the first observed, the push denied by scope
    checked = [r["data"] for r in child["receipts"] if r["type"] == "action.checked"]
    assert [c["source"] for c in checked] == ["codex", "codex"]
    assert checked[0]["decision"] == "observe" and f"{markers}/sub " in checked[0]["summary"]
    assert checked[1]["decision"] == "deny" and "git:push" in checked[1]["reason"]
    assert (markers / "sub").exists() and not (markers / "sub-push").exists()
    assert "git:push" in told
    # the orchestrator's planning loop and its own push (its own scope) stay in the parent
    mine = [r["data"] for r in show(parent["id"])["receipts"] if r["type"] == "action.checked"]
    assert not any(f"{markers}/sub" in c.get("summary", "") for c in mine)
    [push] = [c for c in mine if c["summary"].endswith("git push origin main")]
    assert push["decision"] != "deny" and (markers / "orch").exists(), push
    kinds = [r["type"] for r in show(parent["id"])["receipts"]]
    assert "subagent.started" in kinds and "subagent.stopped" in kinds  # Codex's SubagentStop ended it
    announced = next(r["data"] for r in show(parent["id"])["receipts"] if r["type"] == "subagent.started")
    assert announced["event"] == "SubagentStart" and announced["agent_id"] == spawned  # Codex sent it
    stopped = next(r["data"] for r in show(parent["id"])["receipts"] if r["type"] == "subagent.stopped")
    assert stopped["run"] == child["id"] and stopped["agent_id"] == spawned and stopped["event"] == "SubagentStop"
    assert agentsess("verify", "--all").returncode == 0


def test_revoking_a_codex_subagents_run_denies_its_next_call_and_the_orchestrator_goes_on(tmp_path):
    codex, work, markers, env = _setting(tmp_path)
    gate = threading.Event()
    orchestrator = [Call("multi_agent_v1__spawn_agent", {"message": SUBTASK}),
                    Call("multi_agent_v1__wait_agent", {"targets": [SPAWNED], "timeout_ms": 120000}),
                    Call("exec_command", {"cmd": f"touch {markers}/orch-after"}),
                    Say("finished")]
    sub = [Call("exec_command", {"cmd": f"touch {markers}/sub-1"}),
           Call("exec_command", {"cmd": f"touch {markers}/sub-2"}, before=gate),
           Say("sub-agent done")]
    result = {}
    with FakeModel(orchestrator, "openai", subs={SUBTASK: sub}) as model:
        runner = threading.Thread(target=lambda: result.setdefault("proc", _run_codex(codex, model, work, env)))
        runner.start()
        try:
            child = wait_for(lambda: next((r for r in runs_json() if r.get("parent_id")), None), timeout=120,
                             what="the sub-agent's child run")
            wait_for(lambda: any(r["type"] == "action.result" for r in show(child["id"])["receipts"]), timeout=120,
                     what="the sub-agent's first call done")
            agentsess("revoke", child["id"], "--reason", "sub-agent went astray", check=0)
        finally:
            gate.set()
            runner.join(200)
        told = model.told()
    proc = result["proc"]
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert b"finished" in proc.stdout
    child = show(child["id"])
    assert child["status"] == "revoked"
    checked = [r["data"] for r in child["receipts"] if r["type"] == "action.checked"]
    assert [c["decision"] for c in checked] == ["observe"], checked
    # its next call is refused (a revoked run records nothing more; the parent notes the refusal)
    parent = show(child["parent_id"])
    refused = [r["data"] for r in parent["receipts"] if r["type"] == "subagent.refused"]
    assert refused and refused[0]["run"] == child["id"], refused
    assert "sub-agent went astray" in told
    assert (markers / "sub-1").exists() and not (markers / "sub-2").exists()
    assert (markers / "orch-after").exists()  # the orchestrator went on
    assert agentsess("verify", "--all").returncode == 0
