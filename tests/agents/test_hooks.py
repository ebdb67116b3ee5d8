"""`agentsess hook claude-code|codex|gemini`: each agent's protocol, failing closed, and the
Claude shell prefix (the model's command unwrapped and linked to its check)."""

import json
import os
import subprocess
import sys

import pytest
from helpers import agentsess, show, write_config
from inrun import LIVE, InRun

PY = sys.executable

RULES = """
[profiles.guarded]
scopes = ["git:*", "fs:*"]
default_scopes = ["fs:*", "git:commit"]

[[profiles.guarded.rules]]
tool = "Bash"
args = "git push*"
scope = "git:push"
decision = "allow"

[[profiles.guarded.rules]]
tool = "Bash"
args = "deploy*"
decision = "ask"
reason = "deploys need a person"

[[profiles.guarded.rules]]
tool = "mcp:github:*"
decision = "deny"
reason = "no GitHub writes from here"
"""


@pytest.fixture
def run_id(tmp_path):
    """A live run whose child runs the test's commands: hooks ask its supervisor (tests/inrun.py)."""
    write_config(RULES)
    with InRun("--profile", "guarded", "--agent", "none") as run:
        yield run.run_id


def hook(agent, run, event):
    """The hook as the agent would call it: from inside the run."""
    data = event if isinstance(event, bytes) else json.dumps(event).encode()
    return LIVE[run].call("hook", agent, "--run", run, input=data)


def receipts(run, rtype):
    return [r["data"] for r in show(run)["receipts"] if r["type"] == rtype]


def claude_pre(tool, tool_input, tid="toolu_1"):
    return {"hook_event_name": "PreToolUse", "session_id": "s1", "tool_name": tool, "tool_input": tool_input,
            "tool_use_id": tid, "cwd": "/tmp"}


def test_claude_no_rule_gives_no_decision_so_claude_still_asks(run_id):
    proc = hook("claude-code", run_id, claude_pre("Bash", {"command": "ls -la"}))
    assert proc.returncode == 0 and proc.stdout == b""
    [checked] = receipts(run_id, "action.checked")
    assert checked["decision"] == "observe" and "default_decision is observe" in checked["reason"]


def test_claude_deny_and_ask_answer_in_claudes_format(run_id):
    out = json.loads(hook("claude-code", run_id, claude_pre("Bash", {"command": "cd . && git -C . push"})).stdout)
    assert out["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert "needs scope git:push" in out["hookSpecificOutput"]["permissionDecisionReason"]
    out = json.loads(hook("claude-code", run_id, claude_pre("Bash", {"command": "deploy prod"})).stdout)
    assert out["hookSpecificOutput"]["permissionDecision"] == "ask"


def test_claude_mcp_tools_are_checked_as_mcp_server_tool(run_id):
    proc = hook("claude-code", run_id, claude_pre("mcp__github__create_pull_request", {"title": "x"}))
    out = json.loads(proc.stdout)["hookSpecificOutput"]
    assert out["permissionDecision"] == "deny" and "no GitHub writes" in out["permissionDecisionReason"]
    [checked] = receipts(run_id, "action.checked")
    assert checked["tool"] == "mcp:github:create_pull_request"
    assert checked["agent_tool"] == "mcp__github__create_pull_request"


@pytest.mark.parametrize("name, expected", [
    ("mcp__github__create_pull_request", "mcp:github:create_pull_request"),
    ("mcp__srv__a__b", "mcp:srv:a__b"),
    ("mcp__", "mcp__"), ("mcp____x", "mcp____x"), ("Bash", "Bash"),
])
def test_mcp_name_mapping(name, expected):
    from agentsess.core.guard.agents.claude import mcp_name

    assert mcp_name(name) == expected


def test_claude_post_tool_use_failure_is_a_result(run_id):
    event = {"hook_event_name": "PostToolUseFailure", "session_id": "s1", "tool_name": "Bash",
             "tool_input": {"command": "false"}, "tool_use_id": "toolu_9",
             "error": "Exit code 1\nsecret sk-abcdefghijklmnopqrstuvwx", "is_interrupt": False, "duration_ms": 12}
    proc = hook("claude-code", run_id, event)
    assert proc.returncode == 0 and proc.stdout == b""
    [result] = receipts(run_id, "action.result")
    assert result["is_error"] is True and result["tool_use_id"] == "toolu_9"
    assert result["error"].startswith("Exit code 1") and "sk-abcdefghijklmnopqrstuvwx" not in result["error"]
    assert result["is_interrupt"] is False and result["duration_ms"] == 12


def test_claude_permission_request_is_recorded(run_id):
    event = {"hook_event_name": "PermissionRequest", "session_id": "s1", "tool_name": "Bash",
             "tool_input": {"command": "rm -rf build"}, "permission_suggestions": []}
    proc = hook("claude-code", run_id, event)
    assert proc.returncode == 0 and proc.stdout == b""
    [perm] = receipts(run_id, "agent.permission")
    assert perm["tool"] == "Bash" and perm["summary"] == "rm -rf build" and perm["source"] == "claude-code"


def test_codex_ask_becomes_deny_with_the_reason_and_the_source_is_codex(run_id):
    event = {"hook_event_name": "PreToolUse", "session_id": "c1", "turn_id": "t1", "tool_name": "Bash",
             "tool_input": {"command": "deploy prod"}, "tool_use_id": "call_1"}
    out = json.loads(hook("codex", run_id, event).stdout)["hookSpecificOutput"]
    assert out["permissionDecision"] == "deny"
    assert "deploys need a person" in out["permissionDecisionReason"] and "Codex cannot ask" in out["permissionDecisionReason"]
    quiet = hook("codex", run_id, dict(event, tool_input={"command": "ls"}))
    assert quiet.returncode == 0 and quiet.stdout == b""
    checked = receipts(run_id, "action.checked")
    assert [c["source"] for c in checked] == ["codex", "codex"]
    assert [c["decision"] for c in checked] == ["ask", "observe"]
    post = dict(event, hook_event_name="PostToolUse", tool_response="done")
    assert hook("codex", run_id, post).returncode == 0
    assert receipts(run_id, "action.result")[0]["source"] == "codex"


def gemini_event(name, tool, tool_input, **extra):
    return {"hook_event_name": name, "session_id": "g1", "transcript_path": "/tmp/t.json", "cwd": "/tmp",
            "timestamp": "2026-12-01T00:00:00Z", "tool_name": tool, "tool_input": tool_input, **extra}


def test_gemini_before_tool_denies_in_geminis_format(run_id):
    proc = hook("gemini", run_id, gemini_event("BeforeTool", "run_shell_command", {"command": "sh -c 'git push'"}))
    assert proc.returncode == 0
    out = json.loads(proc.stdout)
    assert out["decision"] == "deny" and "needs scope git:push" in out["reason"]
    ask = json.loads(hook("gemini", run_id, gemini_event("BeforeTool", "run_shell_command", {"command": "deploy"})).stdout)
    assert ask["decision"] == "deny" and "deploys need a person" in ask["reason"]
    quiet = hook("gemini", run_id, gemini_event("BeforeTool", "read_file", {"file_path": "a.txt"}))
    assert quiet.returncode == 0 and quiet.stdout == b""
    checked = receipts(run_id, "action.checked")
    assert checked[0]["tool"] == "Bash" and checked[0]["agent_tool"] == "run_shell_command"
    assert checked[0]["source"] == "gemini" and checked[0]["tool_use_id"] is None


def test_gemini_mcp_tool_and_after_tool(run_id):
    event = gemini_event("BeforeTool", "mcp_github_create_issue", {"title": "x"},
                         mcp_context={"server_name": "github", "tool_name": "create_issue"})
    assert json.loads(hook("gemini", run_id, event).stdout)["decision"] == "deny"
    assert receipts(run_id, "action.checked")[0]["tool"] == "mcp:github:create_issue"
    after = gemini_event("AfterTool", "run_shell_command", {"command": "false"},
                         tool_response={"llmContent": "", "returnDisplay": "", "error": "exit 1"})
    assert hook("gemini", run_id, after).returncode == 0
    [result] = receipts(run_id, "action.result")
    assert result["is_error"] is True and result["error"] == "exit 1" and result["source"] == "gemini"


@pytest.mark.parametrize("agent", ["claude-code", "codex", "gemini"])
@pytest.mark.parametrize("payload", [b"{not json", b"[]", b'{"tool_name": "Bash"}',
                                     b'{"hook_event_name": "Bogus"}', b'{"hook_event_name": "PreToolUse"}',
                                     b'{"hook_event_name": "BeforeTool"}'])
def test_bad_input_fails_closed_in_every_agents_convention(run_id, agent, payload):
    proc = hook(agent, run_id, payload)
    assert proc.returncode == 2, (agent, payload, proc.stdout)
    assert proc.stderr.startswith(b"agentsess: denied:") and proc.stdout == b""


@pytest.mark.parametrize("agent", ["claude-code", "codex", "gemini"])
def test_a_hook_outside_any_run_fails_closed(agent):
    event = claude_pre("Bash", {"command": "ls"}) if agent != "gemini" else gemini_event(
        "BeforeTool", "run_shell_command", {"command": "ls"})
    proc = agentsess("hook", agent, "--run", "run_00000000000000000000000000", input=json.dumps(event).encode())
    assert proc.returncode == 2 and b"agentsess: denied" in proc.stderr and proc.stdout == b""


def test_unknown_agent_fails_closed(run_id):
    proc = hook("cursor", run_id, claude_pre("Bash", {"command": "ls"}))
    assert proc.returncode == 2 and b"expected claude-code, codex or gemini" in proc.stderr


WRAPPED = ("source /home/u/.claude/shell-snapshots/snapshot-bash-1-x.sh 2>/dev/null || true && "
           "{{ \\builtin shopt -u extglob || \\builtin setopt NO_EXTENDED_GLOB; }} >/dev/null 2>&1 || true && "
           "eval {cmd} < /dev/null && pwd -P >| /tmp/claude-ab12-cwd")


def test_claude_exec_records_the_models_command_linked_to_its_check(run_id, tmp_path):
    import shlex

    model = "echo 'it''s' && eval \"echo inner\" > out.txt"
    hook("claude-code", run_id, claude_pre("Bash", {"command": model}, tid="toolu_link"))
    wrapped = WRAPPED.format(cmd=shlex.quote(model))
    proc = LIVE[run_id].call("exec", "--source", "claude-code", "-c", wrapped, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    [rec] = receipts(run_id, "action.exec")
    assert rec["command"] == model
    assert rec["tool_use_id"] == "toolu_link" and rec["checked"]["seq"] > 0 and len(rec["checked"]["hash"]) == 64
    assert len(rec["wrapper_sha256"]) == 64
    checked = [r for r in show(run_id)["receipts"] if r["type"] == "action.checked"][0]
    assert checked["seq"] == rec["checked"]["seq"] and checked["hash"] == rec["checked"]["hash"]
    # a second run of the same command links to nothing new
    LIVE[run_id].call("exec", "--source", "claude-code", "-c", wrapped, cwd=str(tmp_path))
    assert receipts(run_id, "action.exec")[1]["checked"] is None


def test_unwrap_takes_only_the_wrappers_own_eval():
    import shlex

    from agentsess.core.guard.agents.claude import unwrap

    assert unwrap(WRAPPED.format(cmd="false")) == "false"
    hostile = "eval 'rm -rf ~' ; echo x"
    assert unwrap(WRAPPED.format(cmd=shlex.quote(hostile))) == hostile
    assert unwrap("ls -la") is None
    assert unwrap("eval a && eval b") is None
    assert unwrap("eval $X") is None


def test_claude_prefix_does_not_record_hook_commands(run_id, tmp_path):
    from agentsess.core.guard.agents import agentsess_command
    from agentsess.core.guard.agents.claude import prefix_script

    hook_cmd = f"{agentsess_command()} hook claude-code --run {run_id}"
    script = tmp_path / "prefix"
    script.write_text(prefix_script(run_id, agentsess_command(), hook_cmd))
    script.chmod(0o755)
    inside = LIVE[run_id]
    # a user's hook, as Claude runs it (AI_AGENT says "harness")
    assert inside.run([str(script), "echo user-hook"], env={"AI_AGENT": "claude-code_2-1_harness"}).returncode == 0
    # agentsess's own hook command, whatever AI_AGENT says
    event = json.dumps({"hook_event_name": "SessionStart", "session_id": "s9", "source": "startup"})
    ran = inside.run([str(script), hook_cmd], env={"AI_AGENT": "claude-code_2-1_agent"}, input=event.encode())
    assert ran.returncode == 0, ran.stderr
    # the Bash tool's command is recorded
    ran = inside.run([str(script), WRAPPED.format(cmd="true")], env={"AI_AGENT": "claude-code_2-1_agent"},
                     cwd=str(tmp_path))
    assert ran.returncode == 0, ran.stderr
    assert [e["command"] for e in receipts(run_id, "action.exec")] == ["true"]
    assert receipts(run_id, "agent.session")[0]["session_id"] == "s9"


def test_claude_user_settings_are_merged_in_order_and_hooks_kept(tmp_path):
    from agentsess.core.guard.agents import claude

    first = tmp_path / "first.json"
    first.write_text(json.dumps({"model": "a", "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "x"}]}]}}))
    argv = ["claude", "--settings", str(first), "-p", "hi", f"--settings={json.dumps({'model': 'b', 'disableAllHooks': True})}",
            "--", "--settings", "not-an-option"]
    rest, given = claude._user_settings(argv)
    assert rest == ["claude", "-p", "hi", "--", "--settings", "not-an-option"]
    merged = claude.settings("run_x", "HOOK", given)
    assert merged["model"] == "b" and merged["disableAllHooks"] is False
    assert merged["hooks"]["Stop"] == [{"hooks": [{"type": "command", "command": "x"}]}]
    assert merged["hooks"]["PreToolUse"][0]["hooks"][0]["command"] == "HOOK"
    assert set(claude.HOOK_EVENTS) <= set(merged["hooks"])


@pytest.mark.parametrize("argv, message", [
    (["claude", "--settings"], "needs a value"),
    (["claude", "--settings", '{"a": [1]} trailing'], "not valid JSON"),
    (["claude", "--settings", "{\"a\": }"], "not valid JSON"),
    (["claude", "--settings", "/nonexistent/settings.json"], "cannot read"),
    (["claude", "--bare=1"], "--bare skips hooks"),
    (["claude", "-p", "x", "--safe-mode"], "--safe-mode disables hooks"),
])
def test_claude_command_lines_that_would_lose_the_hooks_are_refused(argv, message):
    from agentsess.core.guard.agents import claude
    from agentsess.errors import AgentsessError

    with pytest.raises(AgentsessError) as exc:
        claude.preflight(argv, {}, "/tmp")
    assert message in exc.value.message


def test_claude_environment_that_skips_hooks_is_refused():
    from agentsess.core.guard.agents import claude
    from agentsess.errors import AgentsessError

    for name in ("CLAUDE_CODE_SIMPLE", "CLAUDE_CODE_SAFE_MODE"):
        with pytest.raises(AgentsessError):
            claude.preflight(["claude"], {name: "1"}, "/tmp")
    claude.preflight(["claude"], {"CLAUDE_CODE_SIMPLE": "0"}, "/tmp")


def test_gemini_settings_with_comments_merge_and_force_hooks_on(tmp_path):
    from agentsess.core.guard.agents import gemini

    path = tmp_path / "settings.json"
    path.write_text('{\n  // the user\'s own\n  "theme": "x", /* note */ "url": "http://a//b",\n'
                    '  "hooksConfig": {"enabled": false, "disabled": ["agentsess", "other"]},\n}\n')
    merged = gemini.settings(gemini._read_json(str(path), "the Gemini settings"), "HOOK")
    assert merged["theme"] == "x" and merged["url"] == "http://a//b"
    assert merged["hooksConfig"] == {"enabled": True, "disabled": ["other"]}
    assert merged["hooks"]["BeforeTool"][0]["hooks"][0]["command"] == "HOOK"


@pytest.mark.parametrize("argv, clash", [
    (["codex", "-c", "hooks.PreToolUse=[]"], True), (["codex", "--config", "features.hooks=false"], True),
    (["codex", "-chooks={}"], True), (["codex", "-c", "features={hooks=false}"], True),
    (["codex", "--disable", "hooks"], True), (["codex", "-c", "model=x", "exec", "hi"], False),
    (["codex", "exec", "--", "-c", "hooks=x"], False),
])
def test_codex_overrides_of_the_hooks_are_found(argv, clash):
    from agentsess.core.guard.agents import codex

    assert (codex._overrides_hooks(argv) is not None) is clash


def test_claude_user_settings_env_goes_to_the_environment_not_the_command_line(tmp_path):
    from agentsess.core.guard.agents import claude

    user = tmp_path / "user.json"
    user.write_text(json.dumps({"env": {"API_KEY": "sk-ant-secret-value-0123456789"}, "model": "m"}))
    from pathlib import Path

    from agentsess.edges import paths

    folder = Path(paths.ensure_dir(paths.run_dir("run_x")))
    argv, env, facts = claude.setup("run_x", ["claude", "--settings", str(user), "-p", "hi"], {}, str(folder),
                                    "agentsess", paths.write_private)
    written = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert "sk-ant-secret-value" not in " ".join(argv)
    assert env["API_KEY"] == "sk-ant-secret-value-0123456789"
    assert json.loads(argv[2])["model"] == "m" and "env" not in json.loads(argv[2])
    assert all(b"sk-ant-secret-value" not in data for data in written.values())
    assert argv[3:] == ["-p", "hi"]


@pytest.mark.parametrize("dies", ["kill -SEGV $$", "kill -KILL $$", "exit 1", "exit 139"])
def test_a_hook_that_dies_blocks_the_call(dies):
    from agentsess.core.guard.agents import guarded

    import shlex

    proc = subprocess.run(["sh", "-c", guarded(f"sh -c {shlex.quote(dies)}")], capture_output=True)
    assert proc.returncode == 2 and b"agentsess: denied" in proc.stderr


def test_a_hook_that_answers_keeps_its_answer():
    from agentsess.core.guard.agents import guarded

    proc = subprocess.run(["sh", "-c", guarded("echo '{\"decision\": \"deny\"}'")], capture_output=True)
    assert proc.returncode == 0 and proc.stdout == b'{"decision": "deny"}\n'


def test_a_parser_that_crashes_or_hangs_denies(monkeypatch):
    from agentsess.core.guard import commands, isolation

    def crash(text):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)

    def hang(text):
        import time

        time.sleep(60)

    monkeypatch.setattr(commands, "_parse_json", crash)
    assert "failed" in commands.parse("git push").error
    monkeypatch.setattr(isolation, "PARSE_TIMEOUT", 0.5)
    ok, why = isolation.isolated(hang, "x", timeout=0.5)
    assert not ok and "longer than" in why
