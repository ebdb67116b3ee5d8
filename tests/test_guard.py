"""Policy at the tool call: `check`, Claude Code hooks, `exec`, shell capture."""

import json
import os
import stat
import sys
import textwrap

import pytest
from helpers import agentsess, cli, show, write_config
from inrun import LIVE, InRun

PY = sys.executable

RULES = """
[profiles.claude]
scopes = ["git:*", "fs:*"]
default_scopes = ["fs:*", "git:commit"]
default_decision = "allow"

[[profiles.claude.rules]]
tool = "Bash"
args = "rm -rf /*"
decision = "deny"
reason = "never wipe the disk"

[[profiles.claude.rules]]
tool = "Bash"
args = "git push*"
scope = "git:push"
decision = "allow"

[[profiles.claude.rules]]
tool = "mcp:github:*"
decision = "ask"
"""


@pytest.fixture
def live_run(tmp_path):
    """A live run under the claude profile whose child runs the test's commands (tests/inrun.py)."""
    write_config(RULES)
    with InRun("--profile", "claude", "--agent", "none") as run:
        yield run


def hook(run_id: str, event: dict | bytes):
    """The hook as Claude Code would call it: from inside run ``run_id`` (from outside if it is not live)."""
    data = event if isinstance(event, bytes) else json.dumps(event).encode()
    inside = LIVE.get(run_id)
    if inside is None:
        return agentsess("hook", "claude-code", "--run", run_id, input=data)
    return inside.call("hook", "claude-code", "--run", run_id, input=data)


def pre(tool: str, tool_input: dict) -> dict:
    return {"hook_event_name": "PreToolUse", "session_id": "sess-1", "tool_name": tool, "tool_input": tool_input,
            "tool_use_id": "toolu_1", "cwd": "/tmp", "transcript_path": "/tmp/t.jsonl"}


def decision_of(proc) -> tuple[str, str]:
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["hookSpecificOutput"]
    assert out["hookEventName"] == "PreToolUse"
    return out["permissionDecision"], out["permissionDecisionReason"]


def test_pre_tool_use_golden_decisions(live_run):
    run_id = live_run["AGENTSESS_RUN_ID"]
    assert decision_of(hook(run_id, pre("Bash", {"command": "ls -la"}))) == ("allow", "agentsess: no rule matched; default_decision is allow")
    d, why = decision_of(hook(run_id, pre("Bash", {"command": "rm -rf /home"})))
    assert d == "deny" and "never wipe the disk" in why
    d, why = decision_of(hook(run_id, pre("Bash", {"command": "git push origin main"})))
    assert d == "deny" and "needs scope git:push" in why
    d, why = decision_of(hook(run_id, pre("mcp:github:create_pull_request", {"title": "x"})))
    assert d == "ask"
    receipts = [r for r in show(run_id)["receipts"] if r["type"] == "action.checked"]
    assert [r["data"]["decision"] for r in receipts] == ["allow", "deny", "deny", "ask"]
    first = receipts[0]["data"]
    assert first["tool"] == "Bash" and first["summary"] == "ls -la" and len(first["args_sha256"]) == 64
    assert first["source"] == "claude-code" and first["session_id"] == "sess-1"
    assert receipts[1]["data"]["rule"] == 0
    assert show(run_id)["receipts"]  # the run's chain stays valid
    assert cli("verify", run_id).returncode == 0


def test_post_tool_use_records_a_masked_capped_result(live_run):
    run_id = live_run["AGENTSESS_RUN_ID"]
    event = {"hook_event_name": "PostToolUse", "session_id": "sess-1", "tool_name": "Bash",
             "tool_input": {"command": "cat .env"},
             "tool_response": {"stdout": "API_KEY=sk-abcdefghijklmnopqrstuvwx\n" + "x" * 10000, "stderr": ""}}
    proc = hook(run_id, event)
    assert proc.returncode == 0 and proc.stdout == b""
    result = [r for r in show(run_id)["receipts"] if r["type"] == "action.result"][0]["data"]
    assert "sk-abcdefghijklmnopqrstuvwx" not in result["result"]
    assert len(result["result"]) < 2200 and "more characters" in result["result"]


def test_session_start_records_the_claude_session(live_run):
    run_id = live_run["AGENTSESS_RUN_ID"]
    hook(run_id, {"hook_event_name": "SessionStart", "session_id": "abc-123", "source": "startup"})
    receipts = show(run_id)["receipts"]
    assert any(r["type"] == "agent.session" and r["data"]["session_id"] == "abc-123" for r in receipts)


@pytest.mark.parametrize("payload", [b"{not json", b"[]", b'{"tool_name": "Bash"}'])
def test_malformed_hook_input_fails_closed(live_run, payload):
    proc = hook(live_run["AGENTSESS_RUN_ID"], payload)
    assert proc.returncode == 2
    assert proc.stderr.startswith(b"agentsess: denied:")


def test_unknown_run_fails_closed():
    proc = hook("run_00000000000000000000000000", pre("Bash", {"command": "ls"}))
    assert proc.returncode == 2


def test_revoked_run_denies():
    # on_revoke = keep: the process goes on, so its next tool call meets the dead credential
    write_config(RULES + '\n[profiles.keeper]\non_revoke = "keep"\n')
    with InRun("--profile", "keeper", "--agent", "none") as run:
        run_id = run["AGENTSESS_RUN_ID"]
        agentsess("revoke", run_id, check=0)
        d, why = decision_of(hook(run_id, pre("Bash", {"command": "ls"})))
        assert d == "deny" and "revoked" in why


def test_expired_run_denies(tmp_path):
    write_config(RULES)
    with InRun("--ttl", "1s") as run:
        run_id = run["AGENTSESS_RUN_ID"]
        import time

        time.sleep(1.2)
        d, why = decision_of(hook(run_id, pre("Bash", {"command": "ls"})))
        assert d == "deny" and "expired" in why


def test_check_inside_a_run(live_run):
    assert live_run.call("check", "fs:write").returncode == 0
    denied = live_run.call("check", "git:push", "--tool", "deploy")
    assert denied.returncode == 1 and b"lacks scope git:push" in denied.stderr
    ran = live_run.call("check", "git:commit", "--", "sh", "-c", "exit 7")
    assert ran.returncode == 7
    blocked = live_run.call("check", "git:push", "--", "sh", "-c", "echo ran")
    assert blocked.returncode == 1 and b"ran" not in blocked.stdout
    receipts = [r["data"] for r in show(live_run["AGENTSESS_RUN_ID"])["receipts"] if r["type"] == "action.checked"]
    assert [(r["scope"], r["decision"]) for r in receipts] == [
        ("fs:write", "allow"), ("git:push", "deny"), ("git:commit", "allow"), ("git:push", "deny")]
    assert receipts[1]["tool"] == "deploy"


def test_check_outside_a_run_is_a_clear_error():
    proc = agentsess("check", "fs:write")
    assert proc.returncode == 2
    assert b"not inside a run" in proc.stderr


def test_check_with_a_foreign_token_is_refused(live_run):
    proc = agentsess("check", "fs:write", env={"AGENTSESS_TOKEN": "eyJ.forged.token"})
    assert proc.returncode == 2


def test_exec_records_the_command_and_passes_its_code(live_run, tmp_path):
    proc = live_run.call("exec", "-c", "echo hi; exit 4", cwd=str(tmp_path))
    assert proc.returncode == 4 and proc.stdout == b"hi\n"
    rec = [r["data"] for r in show(live_run["AGENTSESS_RUN_ID"])["receipts"] if r["type"] == "action.exec"][0]
    assert rec["command"] == "echo hi; exit 4" and rec["exit_code"] == 4 and rec["cwd"] == str(tmp_path)
    assert rec["duration"] >= 0


def test_capture_shell_records_bash_commands(tmp_path):
    script = "cd /tmp && echo one >/dev/null; false; ls /nonexistent 2>/dev/null; true"
    proc = agentsess("run", "--capture-shell", "--", "bash", "-c", script)
    assert proc.returncode == 0, proc.stderr
    execs = [r["data"] for r in show()["receipts"] if r["type"] == "action.exec"]
    commands = [e["command"] for e in execs]
    assert "echo one > /dev/null" in commands or "echo one >/dev/null" in commands
    assert any(c == "false" for c in commands)
    false = [e for e in execs if e["command"] == "false"][0]
    assert false["exit_code"] == 1 and false["source"] == "shell-capture"
    assert [e for e in execs if e["command"].startswith("ls")][0]["exit_code"] == 2
    assert cli("verify", "last").returncode == 0


def test_capture_shell_limits_nesting(tmp_path):
    nested = "bash -c 'bash -c \"bash -c \\\"bash -c \\\\\\\"bash -c \\\\\\\\\\\\\\\"echo deep\\\\\\\\\\\\\\\"\\\\\\\"\\\"\"'"
    proc = agentsess("run", "--capture-shell", "--", "bash", "-c", nested)
    assert proc.returncode == 0
    assert b"deep" in proc.stdout


FAKE_CLAUDE = textwrap.dedent('''\
    #!{py}
    """A stand-in for Claude Code: reads --settings, calls its PreToolUse hook, runs a shell command via the prefix."""
    import json, os, subprocess, sys
    args = sys.argv[1:]
    given = args[args.index("--settings") + 1]
    settings = json.loads(given) if given.startswith("{{") else json.load(open(given))
    hook = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    for command in ("ls", "rm -rf /tmp/x"):
        event = {{"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Bash", "tool_input": {{"command": command}}}}
        out = subprocess.run(hook, shell=True, input=json.dumps(event).encode(), capture_output=True)
        print(command, "->", json.loads(out.stdout)["hookSpecificOutput"]["permissionDecision"], flush=True)
    prefix = os.environ["CLAUDE_CODE_SHELL_PREFIX"]
    code = subprocess.run(f"{{prefix}} 'echo via-prefix; exit 3'", shell=True).returncode
    print("prefix exit", code, "rest", args[args.index("--settings") + 2:], flush=True)
''')


def test_claude_code_integration_end_to_end(tmp_path):
    write_config(RULES)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "claude"
    fake.write_text(FAKE_CLAUDE.format(py=PY))
    fake.chmod(0o755)
    path = f"{bindir}:{os.environ['PATH']}"
    proc = agentsess("run", "--profile", "claude", "--", "claude", "-p", "hello", env={"PATH": path})
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert "ls -> allow" in out and "rm -rf /tmp/x -> deny" in out
    assert "via-prefix" in out and "prefix exit 3" in out and "rest ['-p', 'hello']" in out
    run = show()
    types = [r["type"] for r in run["receipts"]]
    assert types.count("action.checked") == 2 and "action.exec" in types
    exec_rec = [r["data"] for r in run["receipts"] if r["type"] == "action.exec"][0]
    assert exec_rec["exit_code"] == 3 and exec_rec["source"] == "claude-code"
    settings = run["receipts"][0]["data"]["integration"]["claude_code"]["settings"]
    assert stat.S_IMODE(os.stat(settings).st_mode) == 0o600
    assert run["receipts"][0]["data"]["argv"] == ["claude", "-p", "hello"]


def test_a_config_edited_during_a_run_does_not_change_its_rules(live_run):
    write_config(RULES.replace('decision = "deny"', 'decision = "allow"'))
    d, _ = decision_of(hook(live_run["AGENTSESS_RUN_ID"], pre("Bash", {"command": "rm -rf /x"})))
    assert d == "deny"
