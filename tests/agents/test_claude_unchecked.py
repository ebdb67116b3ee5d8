"""Bypass detection against the real Claude Code: with shell capture on, every command a hook
allowed (and Claude's own wrapper around it) is covered; a command no hook saw is flagged."""

import json
import os

from clients import client, node_ok
from fakeapi import Call, FakeModel, Say
from helpers import agentsess, show, write_config

PROFILE = """
[profiles.claude]
agent = "claude-code"
scopes = ["fs:*"]
capture_shell = true
pass_env = ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "DISABLE_AUTOUPDATER", "DISABLE_TELEMETRY",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "ENABLE_TOOL_SEARCH"]
"""


def test_claudes_checked_commands_are_covered_and_a_hidden_one_is_flagged(tmp_path):
    node_ok()
    claude = client("claude")
    write_config(PROFILE)
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    # the hidden command: a script the checked command runs, whose own bash commands no hook saw
    hidden = work / "hidden.sh"
    hidden.write_text("#!/bin/bash\ntouch hidden-ran\n")
    os.chmod(hidden, 0o755)
    script = [Call("Bash", {"command": "echo one > one.txt && ls -la", "description": "checked"}),
              Call("Bash", {"command": "./hidden.sh", "description": "runs a script"}),
              Say("finished")]
    with FakeModel(script, "anthropic") as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key",
               "HOME": str(home), "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "ENABLE_TOOL_SEARCH": "false"}
        proc = agentsess("run", "--no-pty", "--profile", "claude", "--", claude, "-p", "go", "--allowedTools", "Bash",
                         "--output-format", "json", env=env, cwd=str(work), input=b"", timeout=180)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert json.loads(proc.stdout)["result"] == "finished"
    assert (work / "hidden-ran").exists()
    run = show()
    captured = [r["data"]["command"] for r in run["receipts"]
                if r["type"] == "action.exec" and r["data"]["source"] == "shell-capture"]
    assert "touch hidden-ran" in captured, captured
    flagged = [i["what"] for i in run["unchecked"]]
    # (shell capture records the last command of a script's bash twice, so a set)
    assert set(flagged) == {"touch hidden-ran"}, (flagged, captured)
    # Claude's own shells (hooks, its shell snapshot) are not captured at all
    assert not any(" hook claude-code --run " in c or "SNAPSHOT_FILE" in c for c in captured), captured
    assert agentsess("verify", "--strict", "last").returncode == 1
    assert agentsess("verify", "last").returncode == 0
