"""A child run per sub-agent: the hook events of a sub-agent (``agent_id``/``agent_type``) land
in a run of its own, created by the parent's supervisor on the sub-agent's first tool call.

These drive the hook as Claude Code's own hook processes do (from inside a live run, over its
control socket); tests/agents/test_claude_subagents.py drives the real Claude Code.
"""

import json
import os
import shlex
import sys

import pytest
from helpers import agentsess, runs_json, show, wait_for, write_config
from inrun import InRun

PROFILE = """
[profiles.orch]
scopes = ["fs:*", "git:*", "github:*"]
default_scopes = ["fs:*", "git:*", "github:pr:create"]

[profiles.orch.subagents]
scopes = ["fs:read", "git:status", "github:*"]

[profiles.orch.subagents.types]
Explore = ["fs:read"]

[[profiles.orch.rules]]
tool = "Bash"
args = "git push*"
scope = "git:push"
decision = "allow"

[[profiles.orch.rules]]
tool = "Write"
scope = "fs:write"
decision = "allow"
"""


@pytest.fixture
def run(tmp_path):
    write_config(PROFILE)
    with InRun("--profile", "orch", "--agent", "none") as live:
        yield live


def hook(run, event, run_id=None):
    data = event if isinstance(event, bytes) else json.dumps(event).encode()
    return run.call("hook", "claude-code", "--run", run_id or run.run_id, input=data)


def pre(tool, tool_input, agent_id=None, agent_type="general-purpose", tid="toolu_1"):
    event = {"hook_event_name": "PreToolUse", "session_id": "s1", "tool_name": tool, "tool_input": tool_input,
             "tool_use_id": tid, "cwd": "/tmp", "transcript_path": "/tmp/t.jsonl", "permission_mode": "default"}
    if agent_id is not None:
        event["agent_id"] = agent_id
        event["agent_type"] = agent_type
    return event


def decision(proc):
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout) if proc.stdout.strip() else None
    return None if out is None else out["hookSpecificOutput"]["permissionDecision"]


def children(run_id):
    return [r for r in runs_json() if r.get("parent_id") == run_id]


def receipts(run_id, rtype):
    return [r["data"] for r in show(run_id)["receipts"] if r["type"] == rtype]


def test_a_subagents_first_call_gets_its_own_child_run_and_its_calls_land_there(run):
    assert decision(hook(run, pre("Bash", {"command": "git push origin main"}))) == "allow"  # the orchestrator
    # the same call from a sub-agent, whose scopes (git:status) do not hold git:push
    assert decision(hook(run, pre("Bash", {"command": "git push origin main"}, "a1b2c3", tid="t2"))) == "deny"
    assert decision(hook(run, pre("Write", {"file_path": "/tmp/x"}, "a1b2c3", tid="t3"))) == "deny"
    assert hook(run, {"hook_event_name": "PostToolUse", "session_id": "s1", "tool_name": "Bash", "agent_id": "a1b2c3",
                      "agent_type": "general-purpose", "tool_input": {"command": "git status"},
                      "tool_response": {"stdout": "ok"}, "tool_use_id": "t4"}).returncode == 0
    kids = children(run.run_id)
    assert len(kids) == 1, kids
    child = kids[0]
    assert child["name"] == "general-purpose" and child["status"] == "running"
    assert child["scopes"] == ["fs:read", "git:status", "github:pr:create"]  # github:* cut to the parent's
    parent = show(run.run_id)
    assert child["expires_at"] <= parent["expires_at"]
    # the sub-agent's calls are in its own stream, the orchestrator's in the parent's
    mine = receipts(child["id"], "action.checked")
    assert [c["decision"] for c in mine] == ["deny", "deny"]
    assert "lacks scope git:push" in mine[0]["reason"] or "git:push" in mine[0]["reason"]
    assert [c["decision"] for c in receipts(run.run_id, "action.checked")] == ["allow"]
    assert len(receipts(child["id"], "action.result")) == 1
    started = receipts(child["id"], "subagent.started")[0]
    assert started["agent_id"] == "a1b2c3" and started["parent"] == run.run_id
    # show-run lists it among the children; runs --tree shows it under its parent
    assert [c["id"] for c in parent["children"]] == [child["id"]]
    tree = agentsess("runs", "--tree", check=0).stdout.decode()
    assert f"└ {child['id']}" in tree
    assert "general-purpose" in agentsess("show-run", run.run_id, check=0).stdout.decode()


def test_agent_type_table_narrows_and_the_token_carries_the_delegation_chain(run):
    assert hook(run, pre("Read", {"file_path": "/etc/hosts"}, "explorer1", "Explore")).returncode == 0
    child = children(run.run_id)[0]
    assert child["scopes"] == ["fs:read"]
    minted = receipts(child["id"], "credential.minted")[0]
    assert minted["chain"] == [run.run_id]
    # the token's act claim: the sub-agent acting for the orchestrator, acting for the human
    parent = show(run.run_id)
    assert minted["act"] == {"sub": "agent:orch", "sid": run.run_id, "act": {"sub": parent["user"] + "@" + parent["host"]}}


def test_a_nested_runs_token_shows_its_delegation_chain_in_token_verify(run):
    proc = run.call("run", "--no-pty", "--", sys.executable, "-m", "agentsess", "token", "verify", "--json")
    assert proc.returncode == 0, proc.stderr
    claims = json.loads(proc.stdout)["claims"]
    assert claims["act"]["sid"] == run.run_id and claims["act"]["sub"] == "agent:orch"
    assert claims["act"]["act"]["sub"] == claims["obo"]
    plain = run.call("run", "--no-pty", "--", sys.executable, "-m", "agentsess", "token", "verify")
    assert f"acting for: agent:orch (run {run.run_id}) → {claims['obo']}" in plain.stdout.decode()
    # and the top-level run's own token has none
    top = json.loads(run.call("token", "verify", "--json").stdout)["claims"]
    assert "act" not in top


def test_revoking_a_subagent_denies_its_later_calls_and_the_orchestrator_goes_on(run):
    assert hook(run, pre("Read", {"file_path": "/tmp/a"}, "worker1")).returncode == 0
    child = children(run.run_id)[0]
    proc = agentsess("revoke", child["id"], "--reason", "it went astray", check=0)
    assert b"stopp" in proc.stdout + proc.stderr or proc.returncode == 0
    wait_for(lambda: show(child["id"])["status"] == "revoked" and show(child["id"]).get("ended_at"),
             what="the sub-agent's run to end")
    denied = hook(run, pre("Read", {"file_path": "/tmp/b"}, "worker1", tid="t9"))
    assert decision(denied) == "deny"
    assert "it went astray" in json.loads(denied.stdout)["hookSpecificOutput"]["permissionDecisionReason"]
    # the orchestrator goes on: its own calls are decided, its process still runs
    assert decision(hook(run, pre("Bash", {"command": "git push"}, tid="t10"))) == "allow"
    assert run.proc.poll() is None
    assert show(run.run_id)["status"] == "running"
    refused = receipts(run.run_id, "subagent.refused")
    assert refused and "it went astray" in refused[-1]["reason"]
    assert agentsess("verify", child["id"]).returncode == 0


def test_subagent_stop_ends_and_seals_its_run_and_the_id_is_never_reused(run):
    assert hook(run, {"hook_event_name": "SubagentStart", "session_id": "s1", "agent_id": "w2",
                      "agent_type": "general-purpose"}).returncode == 0
    assert hook(run, pre("Read", {"file_path": "/tmp/a"}, "w2")).returncode == 0
    child = children(run.run_id)[0]
    stop = {"hook_event_name": "SubagentStop", "session_id": "s1", "agent_id": "w2", "agent_type": "general-purpose",
            "agent_transcript_path": "/tmp/t", "stop_hook_active": False}
    assert hook(run, stop).returncode == 0
    ended = show(child["id"])
    assert ended["status"] == "exited" and ended["integrity"]["sealed"]
    assert agentsess("verify", child["id"]).returncode == 0
    # the same id again: denied, recorded in the parent, no second run
    again = hook(run, pre("Read", {"file_path": "/tmp/b"}, "w2", tid="t5"))
    assert decision(again) == "deny"
    assert "stopped" in json.loads(again.stdout)["hookSpecificOutput"]["permissionDecisionReason"]
    assert len(children(run.run_id)) == 1
    kinds = [r["type"] for r in show(run.run_id)["receipts"]]
    assert "subagent.started" in kinds and "subagent.stopped" in kinds and "subagent.refused" in kinds
    # a new SubagentStart resumes it (Claude Code keeps a resumed sub-agent's id): a new run
    start = {"hook_event_name": "SubagentStart", "session_id": "s1", "agent_id": "w2", "agent_type": "general-purpose"}
    assert hook(run, start).returncode == 0
    assert decision(hook(run, pre("Read", {"file_path": "/tmp/c"}, "w2", tid="t6"))) is None
    kids = children(run.run_id)
    assert len(kids) == 2 and len({k["id"] for k in kids}) == 2


def test_a_revoked_subagent_cannot_come_back_by_a_new_start(run):
    assert hook(run, pre("Read", {"file_path": "/tmp/a"}, "w9")).returncode == 0
    child = children(run.run_id)[0]
    agentsess("revoke", child["id"], check=0)
    wait_for(lambda: show(child["id"]).get("ended_at"), what="the sub-agent's end")
    start = {"hook_event_name": "SubagentStart", "session_id": "s1", "agent_id": "w9", "agent_type": "general-purpose"}
    assert hook(run, start).returncode == 0
    again = hook(run, pre("Read", {"file_path": "/tmp/b"}, "w9", tid="t2"))
    assert decision(again) == "deny" and "revoked" in json.loads(again.stdout)["hookSpecificOutput"]["permissionDecisionReason"]
    assert len(children(run.run_id)) == 1


def test_the_parents_end_ends_and_seals_its_subagents(run):
    assert hook(run, pre("Read", {"file_path": "/tmp/a"}, "w3")).returncode == 0
    child = children(run.run_id)[0]
    assert run.finish(0).returncode == 0
    ended = show(child["id"])
    assert ended["status"] == "exited" and ended["integrity"]["sealed"]
    assert "parent run" in (ended.get("error") or "")
    assert agentsess("verify", child["id"]).returncode == 0


@pytest.mark.parametrize("agent_id", ["a\x1b[31mred", "a\nb", "x" * 5000, "", 42, "a b", "../../etc", "a\u202eb"])
def test_an_agent_id_with_control_characters_or_huge_is_refused(run, agent_id):
    event = pre("Read", {"file_path": "/tmp/a"})
    event["agent_id"] = agent_id
    event["agent_type"] = "general-purpose"
    proc = hook(run, event)
    assert proc.returncode == 2 and b"agentsess: denied: hook: agent_id" in proc.stderr
    assert children(run.run_id) == []
    refused = receipts(run.run_id, "subagent.refused")
    assert refused and len(json.dumps(refused[-1])) < 600  # the id itself only as a capped sample
    assert "\x1b" not in json.dumps(refused[-1], ensure_ascii=False)


def test_a_changed_agent_type_is_refused(run):
    assert hook(run, pre("Read", {"file_path": "/tmp/a"}, "w4", "Explore")).returncode == 0
    proc = hook(run, pre("Bash", {"command": "git push"}, "w4", "general-purpose", tid="t2"))
    assert decision(proc) == "deny"
    assert "was started as Explore" in json.loads(proc.stdout)["hookSpecificOutput"]["permissionDecisionReason"]


def test_many_subagents_at_once_each_get_exactly_one_run(run, tmp_path):
    ids = [f"agent{i:02d}" for i in range(12)]
    jobs = []
    for a in ids:
        for n in range(2):
            event = shlex.quote(json.dumps(pre("Read", {"file_path": f"/tmp/{n}"}, a, tid=f"{a}-{n}")))
            out = tmp_path / f"{a}-{n}"
            jobs.append(f"(echo {event} | {shlex.quote(sys.executable)} -m agentsess hook claude-code --run "
                        f"{run.run_id} > {out}.out 2>&1; echo $? > {out}.rc) &")
    proc = run.run(["bash", "-c", " ".join(jobs) + " wait"], timeout=120)
    assert proc.returncode == 0
    codes = {p.name: p.read_text().strip() for p in tmp_path.glob("*.rc")}
    assert len(codes) == 2 * len(ids) and set(codes.values()) == {"0"}, codes
    kids = children(run.run_id)
    assert sorted(k["name"] for k in kids) == ["general-purpose"] * len(ids)
    assert len({k["id"] for k in kids}) == len(ids)
    for kid in kids:
        assert len(receipts(kid["id"], "action.checked")) == 2
    assert agentsess("verify", "--all").returncode == 0


def test_a_subagents_command_is_bound_to_its_run_and_a_forged_payload_cannot_reach_the_parent(run):
    """The sub-agent's Bash command (through the shell prefix, `agentsess exec`) is bound to the
    sub-agent's run while it runs: `check` and `whoami` answer for the sub-agent, the
    orchestrator's token is withheld, and a hook it forges naming the parent run (or, as the
    sub-agent, another sub-agent's id) is refused."""
    ag = f"{shlex.quote(sys.executable)} -m agentsess"
    forged = json.dumps(pre("Bash", {"command": "git push"}))  # no agent_id: "I am the orchestrator"
    other = json.dumps(pre("Bash", {"command": "git push"}, "w6"))
    command = (f"{ag} check git:push; echo CHECK=$?; {ag} whoami --json > whoami.json; "
               f"echo TOKEN=${{AGENTSESS_TOKEN:-none}}; "
               f"echo {shlex.quote(forged)} | {ag} hook claude-code --run {run.run_id}; echo FORGED=$?; "
               f"echo {shlex.quote(other)} | {ag} hook claude-code --run $AGENTSESS_RUN_ID; echo OTHER=$?")
    assert decision(hook(run, pre("Bash", {"command": command}, "w5"))) is None  # observed: Claude decides
    child = children(run.run_id)[0]
    work = run.env.get("HOME") or "/tmp"
    proc = run.call("exec", "--source", "claude-code", "--subagents", "-c", command, cwd=work)
    out = proc.stdout.decode()
    assert "CHECK=1" in out, (out, proc.stderr)  # the sub-agent lacks git:push
    assert "TOKEN=none" in out
    assert "FORGED=2" in out and "OTHER=2" in out
    err = proc.stderr.decode()
    assert f"belongs to run {child['id']}, not {run.run_id}" in err
    assert "cannot act as another sub-agent" in err
    with open(f"{work}/whoami.json") as fh:
        assert json.load(fh)["id"] == child["id"]
    # the exec is recorded in the sub-agent's run, linked to its check; the parent saw none of it
    execs = receipts(child["id"], "action.exec")
    assert len(execs) == 1 and execs[0]["checked"] is not None
    assert receipts(run.run_id, "action.exec") == []
    assert [c["decision"] for c in receipts(child["id"], "action.checked")][-1] == "deny"  # its own check
    # the same command from the orchestrator (no sub-agent call waiting for it) stays the parent's
    again = run.call("exec", "--source", "claude-code", "--subagents", "-c", f"{ag} check git:push; echo CHECK=$?",
                     cwd=work)
    assert "CHECK=0" in again.stdout.decode()


def test_what_a_subagents_command_leaves_running_stays_the_subagents(run, tmp_path):
    """A background process (double-forked, outliving the command and its exec) still answers
    for the sub-agent, not the orchestrator."""
    out = tmp_path / "late.txt"
    ag = f"{shlex.quote(sys.executable)} -m agentsess"
    command = (f"( (sleep 1; {ag} check git:push; echo CHECK=$? > {out}.tmp; {ag} whoami --json >> {out}.tmp; "
               f"mv {out}.tmp {out}) & ) ; echo started")
    assert decision(hook(run, pre("Bash", {"command": command}, "w7"))) is None
    child = children(run.run_id)[0]
    proc = run.call("exec", "--source", "claude-code", "--subagents", "-c", command)
    assert b"started" in proc.stdout
    text = wait_for(lambda: out.exists() and out.read_text(), timeout=30, what="the late check")
    assert "CHECK=1" in text  # the sub-agent lacks git:push; the orchestrator holds it
    assert json.loads(text.split("\n", 1)[1])["id"] == child["id"]


def test_what_a_leftover_forks_later_and_its_own_execs_stay_the_subagents(run, tmp_path):
    """A process forked after the command ended, by a leftover that then exits (so it is
    orphaned twice), and that sends an exec of its own, still answers for the sub-agent: the
    keeper holds it. (Found in review: it used to fall back to the orchestrator's scopes.)"""
    out = tmp_path / "later.txt"
    ag = f"{shlex.quote(sys.executable)} -m agentsess"
    late = (f"{ag} exec -c true; {ag} check git:push; echo CHECK=$? > {out}.tmp; {ag} whoami --json >> {out}.tmp; "
            f"mv {out}.tmp {out}")
    command = f"( (sleep 1; ( ({late}) & ) ) & ) ; echo started"
    assert decision(hook(run, pre("Bash", {"command": command}, "w8"))) is None
    child = children(run.run_id)[0]
    proc = run.call("exec", "--source", "claude-code", "--subagents", "-c", command)
    assert b"started" in proc.stdout and proc.returncode == 0
    text = wait_for(lambda: out.exists() and out.read_text(), timeout=30, what="the later check")
    assert "CHECK=1" in text  # the sub-agent lacks git:push; the orchestrator holds it
    assert json.loads(text.split("\n", 1)[1])["id"] == child["id"]


def test_a_subagents_command_keeps_its_exit_code_and_output(run):
    command = "echo out; echo err >&2; exit 3"
    assert decision(hook(run, pre("Bash", {"command": command}, "w9"))) is None
    proc = run.call("exec", "--source", "claude-code", "--subagents", "-c", command)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"out\n", b"err\n")


def test_codex_subagent_calls_get_their_own_run_too(run):
    event = {"hook_event_name": "PreToolUse", "session_id": "s1", "tool_name": "Bash", "tool_use_id": "c1",
             "tool_input": {"command": "git push"}, "agent_id": "codex-sub-1", "agent_type": "worker", "cwd": "/tmp"}
    proc = run.call("hook", "codex", "--run", run.run_id, input=json.dumps(event).encode())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"
    kid = children(run.run_id)[0]
    assert kid["name"] == "worker" and receipts(kid["id"], "action.checked")[0]["source"] == "codex"
    # a SubagentStart without an id is noted, never blocks the agent
    bare = {"hook_event_name": "SubagentStart", "session_id": "s1"}
    assert run.call("hook", "codex", "--run", run.run_id, input=json.dumps(bare).encode()).returncode == 0


@pytest.mark.parametrize("table, message", [
    ('[profiles.p.subagents]\nscope = ["fs:read"]\n', "unknown key"),
    ('[profiles.p.subagents]\nscopes = ["fs::"]\n', "profiles.p.subagents.scopes[0]"),
    ('[profiles.p.subagents]\ntypes = ["x"]\n', "profiles.p.subagents.types"),
    ('[profiles.p.subagents.types]\nExplore = "fs:read"\n', "profiles.p.subagents.types.Explore"),
    ('[profiles.p]\nsubagents = 3\n', "profiles.p.subagents"),
])
def test_a_bad_subagents_table_is_refused_naming_the_key(table, message):
    write_config(table)
    proc = agentsess("config", "show")
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert err.startswith("agentsess: error:") and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_the_starter_config_describes_the_subagents_keys():
    from agentsess.core.profiles import Profile

    text = open(__import__("agentsess").__path__[0] + "/data/starter.toml").read()
    assert "[profiles.NAME.subagents]" in text and "subagents.types" in text
    assert "subagents" in Profile.__annotations__


def test_revoking_the_orchestrator_revokes_its_subagents_and_seals_every_stream(run):
    for agent_id in ("r1", "r2"):
        assert hook(run, pre("Read", {"file_path": "/tmp/a"}, agent_id, tid=agent_id)).returncode == 0
    kids = children(run.run_id)
    assert len(kids) == 2
    agentsess("revoke", run.run_id, "--reason", "incident", check=0)
    run.proc.wait(30)
    for kid in kids:
        ended = wait_for(lambda k=kid: show(k["id"]).get("ended_at") and show(k["id"]), what="the sub-agent's end")
        assert ended["status"] == "revoked" and ended["integrity"]["sealed"], ended["integrity"]
    assert agentsess("verify", "--all").returncode == 0


def test_a_subagent_expires_with_its_parent(tmp_path):
    write_config(PROFILE)
    with InRun("--profile", "orch", "--agent", "none", "--ttl", "3s") as live:
        assert hook(live, pre("Read", {"file_path": "/tmp/a"}, "e1")).returncode == 0
        kid = children(live.run_id)[0]
        assert kid["expires_at"] <= show(live.run_id)["expires_at"]
        wait_for(lambda: show(kid["id"]).get("ended_at"), timeout=20, what="the sub-agent's expiry")
        late = hook(live, pre("Read", {"file_path": "/tmp/b"}, "e1", tid="t2"))
        assert decision(late) == "deny"
        assert "expired" in json.loads(late.stdout)["hookSpecificOutput"]["permissionDecisionReason"]
        assert show(kid["id"])["integrity"]["sealed"]


def test_a_flood_of_invented_subagent_ids_stops_at_the_limit(run, monkeypatch):
    """Each sub-agent is a run in the store: a loop inventing ids is cut off at the limit (the
    limit made small here, the routing driven in this process against the live run's store)."""
    from agentsess.core.runs import subagents
    from agentsess.edges.store import Store
    from agentsess.errors import AgentsessError

    monkeypatch.setattr(subagents, "MAX_SUBAGENTS", 3)
    table = subagents.SubAgents(os.getpid(), "advisory")
    with Store() as store:
        for n in range(3):
            target, denial = table.route(store, run.run_id, pre("Read", {"file_path": "/tmp/a"}, f"f{n}"), "claude-code")
            assert denial is None and target != run.run_id
        with pytest.raises(AgentsessError, match="already has 3 sub-agents"):
            table.route(store, run.run_id, pre("Read", {"file_path": "/tmp/a"}, "f3"), "claude-code")
        # the known ones still act
        assert table.route(store, run.run_id, pre("Read", {"file_path": "/tmp/b"}, "f1"), "claude-code")[1] is None
        table.end_all(store, "test over")
    assert len(children(run.run_id)) == 3


def test_the_subagents_own_token_carries_the_nested_act_claim(run, monkeypatch, tmp_path):
    """The JWT itself, not only its receipt: a sub-agent of a run nested in the orchestrator's
    run holds a token whose ``act`` is the whole chain, nearest first (the sub-agent acting for
    the nested run, acting for the orchestrator, acting for the human), valid while its run is."""
    from agentsess.core.runs import start, subagents
    from agentsess.edges.store import Store

    nested = run.spawn([sys.executable, "-m", "agentsess", "run", "--no-pty", "--", sys.executable, "-c",
                        "import sys; sys.stdin.read()"], stderr=open(tmp_path / "nested.err", "wb"))
    middle = wait_for(lambda: next(iter(children(run.run_id)), None), what="the nested run")
    launched, real = [], start.launch_subagent

    def spy(*args, **kw):  # the real launch, its result kept: the token is held nowhere a test can read
        launched.append(real(*args, **kw))
        return launched[-1]

    monkeypatch.setattr(start, "launch_subagent", spy)
    table = subagents.SubAgents(os.getpid(), "advisory")
    try:
        with Store() as store:
            target, denial = table.route(store, middle["id"], pre("Read", {"file_path": "/tmp/a"}, "deep1"), "claude-code")
            assert denial is None and target not in (middle["id"], run.run_id)
            [(plan, launch)] = launched
            token = launch.env["AGENTSESS_TOKEN"]
            proc = agentsess("token", "verify", "--json", "-", input=token.encode())
            assert proc.returncode == 0, proc.stderr
            verdict = json.loads(proc.stdout)
            claims = verdict["claims"]
            assert verdict["valid"] and claims["sid"] == target and token not in proc.stderr.decode()
            human = claims["obo"]
            assert claims["act"] == {"sub": "agent:orch", "sid": middle["id"],
                                     "act": {"sub": "agent:orch", "sid": run.run_id, "act": {"sub": human}}}
            assert claims["chain"] == [run.run_id, middle["id"]] and claims["sub"].startswith("agent:")
            assert claims["scope"].split() == show(target)["scopes"] == ["fs:read", "git:status", "github:pr:create"]
            assert claims["exp"] <= store.get_run(middle["id"])["expires_at"] <= store.get_run(run.run_id)["expires_at"]
            table.end_all(store, "test over")
    finally:
        nested.stdin.close()
        nested.wait(30)


def test_revoking_a_subagent_stops_the_commands_it_is_running_and_leaves_the_orchestrators(run, tmp_path):
    """Revocation stops a sub-agent's tool calls in flight too: its running command (and what
    that command left running in the background) is killed; the orchestrator's own command,
    running at the same time, is not."""
    from inrun import host_pids

    late, left, mine = tmp_path / "late", tmp_path / "left", tmp_path / "mine"
    naps = "^sleep 3[01]\\.4711$"  # sleeps this test can find by their arguments
    secret = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
    command = f"(sleep 30.4711 && touch {left}) & GH_TOKEN={secret} sleep 31.4711 && touch {late}"
    assert decision(hook(run, pre("Bash", {"command": command}, "w11"))) is None
    child = children(run.run_id)[0]
    errors = open(tmp_path / "exec.err", "wb")
    sub_exec = run.spawn([sys.executable, "-m", "agentsess", "exec", "--source", "claude-code", "--subagents", "-c",
                          command], stderr=errors)
    orch = run.spawn(["sh", "-c", f"sleep 3 && touch {mine}"], stderr=open(tmp_path / "orch.err", "wb"))
    wait_for(lambda: len(host_pids(naps)) == 2, what="the sub-agent's two sleeps")
    agentsess("revoke", child["id"], "--reason", "stop it now", check=0)
    code = sub_exec.wait(30)
    assert code == 128 + 9 or code != 0, code  # its command was killed, as a shell reports SIGKILL
    wait_for(lambda: not host_pids(naps), what="the sub-agent's processes to die")
    assert orch.wait(30) == 0 and mine.exists()  # the orchestrator's command ran to its end
    assert not late.exists() and not left.exists()
    assert show(child["id"])["status"] == "revoked" and run.proc.poll() is None
    denied = hook(run, pre("Bash", {"command": "true"}, "w11", tid="t12"))
    assert decision(denied) == "deny" and "stop it now" in denied.stdout.decode()
    [ended] = receipts(run.run_id, "subagent.ended")
    assert ended["run"] == child["id"] and ended["how"] == "revoked" and "stop it now" in ended["reason"]
    assert ended["processes_killed"] >= 2
    [stopped] = ended["commands"]  # what it was running, on the record, its credential masked
    assert "sleep 31.4711" in stopped and "[masked]" in stopped and secret not in json.dumps(show(run.run_id))


def test_a_run_a_revoked_subagents_command_started_stops_itself_and_is_sealed(run, tmp_path):
    """A nested `agentsess run` a sub-agent's command started is a child of the sub-agent's run:
    the revocation cascades to it, and its own supervisor stops it and seals its stream (it is
    not killed from under its supervisor, which would leave it unsealed)."""
    ag = f"{shlex.quote(sys.executable)} -m agentsess"
    command = f"{ag} run --no-pty --scope fs:read -- {shlex.quote(sys.executable)} -c 'import time; time.sleep(42.4343)'"
    assert decision(hook(run, pre("Bash", {"command": command}, "w12"))) is None
    child = children(run.run_id)[0]
    sub_exec = run.spawn([sys.executable, "-m", "agentsess", "exec", "--source", "claude-code", "--subagents", "-c",
                          command], stderr=open(tmp_path / "exec.err", "wb"))
    grandchild = wait_for(lambda: next(iter(children(child["id"])), None), what="the run the sub-agent's command started")
    agentsess("revoke", child["id"], "--reason", "enough", check=0)
    assert sub_exec.wait(60) != 0
    ended = wait_for(lambda: show(grandchild["id"]).get("ended_at") and show(grandchild["id"]), what="its end")
    assert ended["status"] == "revoked" and ended["integrity"]["sealed"], ended
    assert agentsess("verify", grandchild["id"]).returncode == 0
    assert run.proc.poll() is None


def test_on_revoke_keep_leaves_a_revoked_subagents_running_command_alone(tmp_path):
    """The profile's on_revoke = "keep" keeps a revoked run's processes: a sub-agent's too (its
    later calls are still denied)."""
    from inrun import host_pids

    write_config(PROFILE.replace('[profiles.orch]\n', '[profiles.orch]\non_revoke = "keep"\n'))
    done = tmp_path / "done"
    command = f"python3 -c 'import time; time.sleep(3.4545)' && touch {done}"
    with InRun("--profile", "orch", "--agent", "none") as live:
        assert decision(hook(live, pre("Bash", {"command": command}, "k1"))) is None
        child = children(live.run_id)[0]
        sub_exec = live.spawn([sys.executable, "-m", "agentsess", "exec", "--source", "claude-code", "--subagents",
                               "-c", command], stderr=open(tmp_path / "exec.err", "wb"))
        wait_for(lambda: host_pids(r"python3 -c import time; time\.sleep\(3\.4545\)$"), what="its command")
        agentsess("revoke", child["id"], check=0)
        wait_for(lambda: receipts(live.run_id, "subagent.ended"), what="the sub-agent's end")
        sub_exec.wait(60)
        assert done.exists()  # kept: it ran to its end
        [ended] = receipts(live.run_id, "subagent.ended")
        assert ended["processes_killed"] == 0 and ended["commands"] == [] and ended["how"] == "revoked"
        assert decision(hook(live, pre("Bash", {"command": "true"}, "k1", tid="t2"))) == "deny"
