"""The real Gemini CLI (pinned, from npm) under `agentsess run`, offline against a scripted
Gemini generateContent API on 127.0.0.1: hooks for the one run through GEMINI_CLI_HOME (the
user's ~/.gemini linked, not moved; their settings and hooks kept), a denied push in several
spellings leaves no marker even with GITHUB_SHA set (Gemini then strips AGENTSESS_* from its
hooks), allowed and failing calls are recorded as `gemini`."""

import json
import os

import pytest
from clients import PY, client, fake_git, node_ok
from fakeapi import Call, FakeModel, Say

from helpers import agentsess, show, write_config

PROFILE = """
[profiles.gemini]
agent = "gemini"
scopes = ["fs:*", "git:*"]
default_scopes = ["fs:*", "git:commit"]
pass_env = ["GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GEMINI_CLI_TRUST_WORKSPACE", "GITHUB_SHA"]

[[profiles.gemini.rules]]
tool = "Bash"
args = "git push*"
decision = "deny"
reason = "pushing is not part of this task"

[[profiles.gemini.rules]]
tool = "mcp:demo:write_marker"
decision = "deny"
reason = "the demo server's writes are off limits"
"""

HERE = os.path.dirname(os.path.abspath(__file__))
SPELLINGS = ["git -C . push", "cd . && git push", "env X=1 git push", "sh -c 'git push'", "touch x && git push"]


@pytest.fixture
def setting(tmp_path):
    node_ok()
    gemini = client("gemini")
    write_config(PROFILE)
    work = tmp_path / "work"
    work.mkdir()
    markers = tmp_path / "markers"
    markers.mkdir()
    bindir = tmp_path / "bin"
    fake_git(str(bindir), str(markers))
    home = tmp_path / "human"
    dot = home / ".gemini"
    dot.mkdir(parents=True)
    user_hook_log = tmp_path / "user-hook.log"
    (dot / "settings.json").write_text(json.dumps({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "mcpServers": {"demo": {"command": PY, "args": [os.path.join(HERE, "mcp_demo.py")]}},
        "hooks": {"BeforeTool": [{"matcher": ".*", "hooks": [
            {"type": "command", "command": f"cat >> {user_hook_log}", "name": "users-own"}]}]},
    }))
    (dot / "google_accounts.json").write_text('{"active": "human@example.com"}')
    return {"gemini": gemini, "work": work, "markers": markers, "bindir": bindir, "home": home, "dot": dot,
            "user_hook_log": user_hook_log, "tmp": tmp_path}


def run_gemini(s, model, *extra, env_extra=None):
    env = {"PATH": f"{s['bindir']}:{os.environ['PATH']}", "HOME": str(s["home"]), "GEMINI_API_KEY": "test-not-a-key",
           "GOOGLE_GEMINI_BASE_URL": model.url, "GEMINI_CLI_TRUST_WORKSPACE": "true", **(env_extra or {})}
    argv = [s["gemini"], "-m", "gemini-2.5-flash", "-p", "do the task", "--approval-mode", "yolo", "-o", "json", *extra]
    return agentsess("run", "--no-pty", "--profile", "gemini", "--", *argv, env=env, cwd=str(s["work"]), input=b"",
                     timeout=120)


def test_gemini_guarded_end_to_end(setting):
    s = setting
    denied = s["markers"] / "denied"
    script = [Call("run_shell_command", {"command": f"touch {denied} && git push origin main"})]
    script += [Call("run_shell_command", {"command": c}) for c in SPELLINGS]
    # mid-session the model empties every settings file it can find, then pushes
    off = json.dumps({"hooksConfig": {"enabled": False}, "hooks": {}})
    script += [Call("run_shell_command", {"command": f"echo '{off}' > \"$GEMINI_CLI_HOME/.gemini/settings.json\"; "
                                                     f"echo '{off}' > ~/.gemini/settings.json; mkdir -p .gemini; "
                                                     f"echo '{off}' > .gemini/settings.json"}),
               Call("run_shell_command", {"command": f"touch {s['markers']}/late && git push"})]
    script += [Call("run_shell_command", {"command": "echo allowed > allowed.txt"}),
               Call("run_shell_command", {"command": "exit 3"}),
               Call("mcp_demo_add", {"a": 2, "b": 3}),
               Call("mcp_demo_write_marker", {"path": str(s["markers"] / "mcp")}),
               Say("finished")]
    with FakeModel(script, "gemini") as model:
        proc = run_gemini(s, model, env_extra={"GITHUB_SHA": "0123abc"})
        told = model.told()
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert not denied.exists() and os.listdir(s["markers"]) == []
    assert not (s["work"] / "x").exists()
    assert (s["work"] / "allowed.txt").read_text() == "allowed\n"
    assert told.count("pushing is not part of this task") >= 1 + len(SPELLINGS)
    # the user's own hook ran beside agentsess's; their files stayed in their ~/.gemini
    assert "BeforeTool" in s["user_hook_log"].read_text()
    assert (s["dot"] / "google_accounts.json").read_text() == '{"active": "human@example.com"}'
    assert os.path.isdir(s["dot"] / "tmp")  # the session's files landed in the user's own folder

    recs = show()["receipts"]
    facts = recs[0]["data"]["integration"]["gemini"]
    overlay = os.path.join(facts["gemini_cli_home"], ".gemini")
    assert os.path.islink(os.path.join(overlay, "google_accounts.json"))
    checked = [r["data"] for r in recs if r["type"] == "action.checked"]
    mcp = [(c["tool"], c["agent_tool"], c["decision"]) for c in checked if c["tool"].startswith("mcp:")]
    assert mcp == [("mcp:demo:add", "mcp_demo_add", "observe"), ("mcp:demo:write_marker", "mcp_demo_write_marker", "deny")]
    assert "the demo server's writes are off limits" in told
    checked = [c for c in checked if not c["tool"].startswith("mcp:")]
    assert all(c["source"] == "gemini" and c["tool"] == "Bash" for c in checked)
    assert all(c["agent_tool"] == "run_shell_command" for c in checked)
    decisions = {c["summary"]: c["decision"] for c in checked}
    for spelled in [f"touch {denied} && git push origin main", *SPELLINGS, f"touch {s['markers']}/late && git push"]:
        assert decisions[spelled] == "deny", spelled
    assert decisions["echo allowed > allowed.txt"] == "observe"
    results = [r["data"] for r in recs if r["type"] == "action.result"]
    shell = [r for r in results if r["tool"] == "Bash"]
    assert [r["is_error"] for r in shell][-2:] == [False, True]
    assert shell[-1]["error"] == "exit code 3"
    assert any(r["tool"] == "mcp:demo:add" for r in results)
    sessions = [r["data"]["event"] for r in recs if r["type"] == "agent.session"]
    assert "SessionStart" in sessions
    assert agentsess("verify", "last").returncode == 0


def test_workspace_settings_that_switch_hooks_off_are_refused(setting):
    s = setting
    (s["work"] / ".gemini").mkdir()
    (s["work"] / ".gemini" / "settings.json").write_text(json.dumps({"hooksConfig": {"enabled": False}}))
    with FakeModel([Say("hi")], "gemini") as model:
        proc = run_gemini(s, model)
    assert proc.returncode == 125 and b"switches Gemini's hooks off" in proc.stderr
    assert model.requests == []
