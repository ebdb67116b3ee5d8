"""The real Codex CLI (pinned, from npm) under `agentsess run`, offline against a scripted
OpenAI Responses API on 127.0.0.1: hooks registered for the one invocation (the user's
CODEX_HOME is left as it was), a denied push in several spellings leaves no marker, an
`ask` rule denies (Codex cannot ask), allowed and failing calls are recorded as `codex`."""

import json
import os

import pytest
from clients import PY, client, fake_git
from fakeapi import Call, FakeModel, Say

from helpers import agentsess, show, write_config

PROFILE = """
[profiles.codex]
agent = "codex"
scopes = ["fs:*", "git:*"]
default_scopes = ["fs:*", "git:commit"]
pass_env = ["OPENAI_API_KEY", "CODEX_HOME"]

[[profiles.codex.rules]]
tool = "Bash"
args = "git push*"
decision = "deny"
reason = "pushing is not part of this task"

[[profiles.codex.rules]]
tool = "mcp:demo:write_marker"
decision = "deny"
reason = "the demo server's writes are off limits"

[[profiles.codex.rules]]
tool = "Bash"
args = "deploy*"
decision = "ask"
reason = "deploys need a person"
"""

HERE = os.path.dirname(os.path.abspath(__file__))
SPELLINGS = ["git -C . push", "cd . && git push", "env X=1 git push", "sh -c 'git push'", "g$'i't push"]


@pytest.fixture
def setting(tmp_path):
    codex = client("codex")
    write_config(PROFILE)
    work = tmp_path / "work"
    work.mkdir()
    markers = tmp_path / "markers"
    markers.mkdir()
    bindir = tmp_path / "bin"
    fake_git(str(bindir), str(markers))
    deploy = bindir / "deploy"
    deploy.write_text(f"#!/bin/sh\ntouch {markers}/deployed\n")
    deploy.chmod(0o755)
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text("# the user's own config\n")
    return {"codex": codex, "work": work, "markers": markers, "bindir": bindir, "codex_home": codex_home,
            "tmp": tmp_path}


def run_codex(s, model, *extra):
    env = {"PATH": f"{s['bindir']}:{os.environ['PATH']}", "HOME": str(s["tmp"]), "CODEX_HOME": str(s["codex_home"]),
           "OPENAI_API_KEY": "sk-test-not-a-real-key"}
    provider = f'model_providers.fake={{name="fake",base_url="{model.url}/v1",wire_api="responses",env_key="OPENAI_API_KEY"}}'
    argv = [s["codex"], "exec", "-c", provider, "-c", "model_provider=fake", "-c", "model=gpt-fake",
            "--skip-git-repo-check", "-s", "danger-full-access", *extra, "do the task"]
    return agentsess("run", "--no-pty", "--profile", "codex", "--", *argv, env=env, cwd=str(s["work"]), input=b"",
                     timeout=120)


def test_codex_guarded_end_to_end(setting):
    s = setting
    before = sorted(os.listdir(s["codex_home"])), (s["codex_home"] / "config.toml").read_text()
    denied = s["markers"] / "denied"
    script = [Call("exec_command", {"cmd": f"touch {denied} && git push origin main"})]
    script += [Call("exec_command", {"cmd": c}) for c in SPELLINGS]
    # mid-session the model switches hooks off in the config files it can write, then pushes
    script += [Call("exec_command", {"cmd": "printf '[features]\\nhooks = false\\n' >> \"$CODEX_HOME/config.toml\"; "
                                            "mkdir -p .codex && printf '[features]\\nhooks = false\\n' > .codex/config.toml"}),
               Call("exec_command", {"cmd": f"touch {s['markers']}/late && git push"})]
    script += [Call("exec_command", {"cmd": "deploy prod"}),
               Call("exec_command", {"cmd": "echo allowed > allowed.txt"}),
               Call("exec_command", {"cmd": "echo oops >&2; exit 3"}),
               Call("mcp__demo__add", {"a": 2, "b": 3}),
               Call("mcp__demo__write_marker", {"path": str(s["markers"] / "mcp")}),
               Say("finished")]
    demo = os.path.join(HERE, "mcp_demo.py")
    with FakeModel(script, "openai") as model:
        proc = run_codex(s, model, "-c", f'mcp_servers.demo={{command="{PY}",args=["{demo}"]}}')
        told = model.told()
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert b"finished" in proc.stdout
    assert not denied.exists() and os.listdir(s["markers"]) == []
    assert (s["work"] / "allowed.txt").read_text() == "allowed\n"
    assert told.count("pushing is not part of this task") >= 1 + len(SPELLINGS)
    assert "deploys need a person" in told and "Codex cannot ask" in told
    assert "the demo server's writes are off limits" in told
    # agentsess wrote nothing to the user's CODEX_HOME config (the model appended its own line)
    assert (s["codex_home"] / "config.toml").read_text() == before[1] + "[features]\nhooks = false\n"
    assert not (s["codex_home"] / "hooks.json").exists()

    recs = show()["receipts"]
    started = recs[0]["data"]["integration"]["codex"]
    assert started["hook_trust"].startswith("bypassed for agentsess")
    checked = [r["data"] for r in recs if r["type"] == "action.checked"]
    assert all(c["source"] == "codex" for c in checked)
    decisions = {c["summary"]: c["decision"] for c in checked}
    assert decisions[f"touch {denied} && git push origin main"] == "deny"
    for spelled in [*SPELLINGS, f"touch {s['markers']}/late && git push"]:
        assert decisions[spelled] == "deny", spelled
    assert decisions["deploy prod"] == "ask"
    assert decisions["echo allowed > allowed.txt"] == "observe"
    mcp = [(c["tool"], c["decision"]) for c in checked if c["tool"].startswith("mcp:")]
    assert mcp == [("mcp:demo:add", "observe"), ("mcp:demo:write_marker", "deny")]
    results = [r["data"] for r in recs if r["type"] == "action.result"]
    assert {r["source"] for r in results} == {"codex"}
    assert len(results) >= 2  # the allowed and the failing call
    assert any(r["type"] == "agent.session" for r in recs)
    assert agentsess("verify", "last").returncode == 0


def test_untrusted_user_hooks_refuse_the_run(setting):
    s = setting
    marker = s["markers"] / "user-hook-ran"
    (s["codex_home"] / "hooks.json").write_text(json.dumps({"hooks": {"PreToolUse": [
        {"hooks": [{"type": "command", "command": f"touch {marker}"}]}]}}))
    with FakeModel([Call("exec_command", {"cmd": "true"}), Say("x")], "openai") as model:
        proc = run_codex(s, model)
    assert proc.returncode == 125
    assert b"would run these hooks untrusted" in proc.stderr and b"touch" in proc.stderr
    assert model.requests == [] and not marker.exists()
    assert json.loads(agentsess("runs", "--json").stdout) == []


@pytest.mark.parametrize("override", [["-c", "hooks.PreToolUse=[]"], ["-c", "features.hooks=false"],
                                      ["--config=hooks={}"], ["--disable", "hooks"]])
def test_overrides_that_would_replace_agentsess_hooks_are_refused(setting, override):
    with FakeModel([Say("x")], "openai") as model:
        proc = run_codex(setting, model, *override)
    assert proc.returncode == 125 and b"would replace or switch off agentsess's hooks" in proc.stderr
    assert model.requests == []
