"""examples/github-actions/agent.yml, run step by step (act is not available offline): the
`run:` steps execute in order with bash, as a runner would, against a stand-in `claude`
that does what Claude Code does with agentsess's settings: call the PreToolUse hook before
a headless `git push`, and push only when the hook allows it."""

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
import yaml
from helpers import agentsess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOW = os.path.join(ROOT, "examples", "github-actions", "agent.yml")

# Claude Code as far as agentsess sees it: `--settings JSON|FILE` holds its hooks; a tool call
# is allowed when the PreToolUse hook exits 0 without a "deny" decision.
FAKE_CLAUDE = r'''#!PYTHON
import json, os, subprocess, sys
argv = sys.argv[1:]
given = argv[len(argv) - 1 - argv[::-1].index("--settings") + 1]  # Claude keeps the last --settings
settings = json.loads(given) if given.lstrip().startswith("{") else json.load(open(given))
hook = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
task = argv[argv.index("-p") + 1]
event = {"hook_event_name": "PreToolUse", "session_id": "ci", "tool_name": "Bash",
         "tool_input": {"command": "git push origin HEAD:agent"}, "tool_use_id": "t1",
         "cwd": os.getcwd(), "transcript_path": "/dev/null"}
p = subprocess.run(hook, shell=True, input=json.dumps(event).encode(), capture_output=True)
# then a sub-agent (the Task tool) looks around: its calls get a child run of their own,
# started after the agent's, so `last` is no longer the agent's run
sub = dict(event, tool_input={"command": "ls"}, tool_use_id="t2", agent_id="sub1", agent_type="explorer")
subprocess.run(hook, shell=True, input=json.dumps(sub).encode(), capture_output=True, check=True)
out = json.loads(p.stdout or b"{}").get("hookSpecificOutput", {})
decision = out.get("permissionDecision", "allow" if p.returncode == 0 else "deny")
print(f"task={task!r} hook={p.returncode} decision={decision}")
print("GITHUB_TOKEN" in os.environ, "GH_TOKEN" in os.environ, "ANTHROPIC_API_KEY" in os.environ)
if decision != "allow":
    sys.exit(3)
subprocess.run(["git", "push", "-q", os.environ["PUSH_TO"], "HEAD:agent"], check=True)
'''


def _steps() -> tuple[dict, list[dict]]:
    with open(WORKFLOW) as fh:
        doc = yaml.safe_load(fh)
    job = doc["jobs"]["agent"]
    return job, job["steps"]


def test_no_expression_reaches_a_script():
    """${{ }} inside `run:` is pasted into the script before bash sees it: script injection."""
    _, steps = _steps()
    for step in steps:
        assert "${{" not in step.get("run", ""), step


def test_checkout_keeps_no_token_and_the_jwks_is_uploaded():
    job, steps = _steps()
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert "jwks.json" in upload["with"]["path"] and "agent-run.bundle.json" in upload["with"]["path"]
    install = next(s for s in steps if "pip install" in s.get("run", ""))
    assert '"$AGENTSESS_SOURCE"' in install["run"] and job["env"]["AGENTSESS_SOURCE"] == "."
    assert "runner.temp" in job["env"]["AGENTSESS_CONFIG"]  # not in the workspace the agent edits


def _expand(value: str, context: dict) -> str:
    """The few ${{ }} expressions the workflow uses, as the runner would expand them."""
    for expr, result in context.items():
        value = value.replace("${{ " + expr + " }}", result)
    assert "${{" not in value, value
    return value


@pytest.mark.parametrize("granted", [True, False], ids=["with git:push", "without git:push"])
def test_the_workflow_runs_step_by_step_and_a_headless_push_goes_through(tmp_path, granted):
    if shutil.which("git") is None:
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail("git is required in CI")
        pytest.skip("git is not installed")
    job, steps = _steps()
    workspace = tmp_path / "workspace"
    shutil.copytree(os.path.join(ROOT, "examples"), workspace / "examples")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    git = ["git", "-C", str(workspace)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "add", "."], check=True)
    subprocess.run([*git, "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-qm", "x"], check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(FAKE_CLAUDE.replace("PYTHON", sys.executable, 1))
    claude.chmod(claude.stat().st_mode | stat.S_IXUSR)
    hostile = 'fix it"; touch PWNED; echo "$(touch PWNED2)'
    context = {
        "runner.temp": str(runner_temp),
        "secrets.AGENT_GH_TOKEN": "ghp_" + "A1b2" * 9,
        "secrets.ANTHROPIC_API_KEY": "sk-ant-api03-" + "x" * 40,
        "github.event.inputs.task": hostile,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSESS_")}
    env.update({k: _expand(str(v), context) for k, v in job["env"].items()})
    env["PATH"] = f"{bin_dir}:{os.path.dirname(sys.executable)}:{env['PATH']}"
    env["GITHUB_TOKEN"] = "ghs_" + "w" * 36  # the workflow's own token: the agent must not get it
    env["PUSH_TO"] = str(bare)
    ran = []
    for step in steps:
        script = step.get("run")
        if script is None:
            continue
        if "pip install" in script:  # the package is installed in this venv already
            script = "\n".join(line for line in script.splitlines() if "pip install" not in line)
        if not granted:
            assert "--scope git:push " in script or "agentsess run " not in script
            script = script.replace("--scope git:push ", "")
        step_env = dict(env)
        step_env.update({k: _expand(str(v), context) for k, v in (step.get("env") or {}).items()})
        proc = subprocess.run(["bash", "-e", "-c", script], cwd=workspace, env=step_env, capture_output=True, timeout=120)
        if not granted and step.get("name") == "Run the agent":
            assert proc.returncode == 3 and b"decision=deny" in proc.stdout, proc  # the job fails
            assert subprocess.run(["git", "-C", str(bare), "rev-parse", "agent"], capture_output=True).returncode != 0
            continue
        assert proc.returncode == 0, (step.get("name"), proc.stdout[-2000:], proc.stderr[-2000:])
        ran.append((step.get("name"), proc))
    if not granted:
        assert (workspace / "jwks.json").exists()  # the receipts are kept (if: always())
        return
    agent_out = next(p for name, p in ran if name == "Run the agent").stdout.decode()
    assert f"task={hostile!r}" in agent_out and "decision=allow" in agent_out
    assert "False True True" in agent_out  # no GITHUB_TOKEN; its own GH_TOKEN; the model key
    assert not (workspace / "PWNED").exists() and not (workspace / "PWNED2").exists()
    pushed = subprocess.run(["git", "-C", str(bare), "rev-parse", "agent"], capture_output=True)
    assert pushed.returncode == 0
    for name in ("run.json", "agent-run.bundle.json", "session.cast", "jwks.json"):
        assert (workspace / name).stat().st_size > 0, name
    # the agent's own run, not the sub-agent's that started after it; the sub-agent's kept too
    kept = json.loads((workspace / "run.json").read_text())
    assert kept["name"] == "agent" and kept["parent_id"] is None
    assert any(r["type"] == "action.checked" and "git push" in json.dumps(r["data"]) for r in kept["receipts"])
    (sub,) = list((workspace / "subagents").iterdir())
    assert sub.name == kept["children"][0]["id"] + ".bundle.json", (sub.name, kept["children"])
    # the artefacts verify on another machine, with only the uploaded files
    os.environ["AGENTSESS_HOME"] = str(tmp_path / "elsewhere")
    proc = agentsess("verify", str(workspace / "agent-run.bundle.json"), "--jwks", str(workspace / "jwks.json"), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["sealed"]
    proc = agentsess("verify", str(sub), "--jwks", str(workspace / "jwks.json"), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["sealed"]
    for name in ("agent-run.bundle.json", "run.json", "session.cast", f"subagents/{sub.name}"):
        text = (workspace / name).read_text()
        assert context["secrets.AGENT_GH_TOKEN"] not in text and context["secrets.ANTHROPIC_API_KEY"] not in text


def test_the_install_step_installs_agentsess_from_the_repository(tmp_path):
    """The install step, run as written (`python -m pip install "$AGENTSESS_SOURCE"` with the
    job's AGENTSESS_SOURCE, in the checkout) into a fresh virtual environment that has no
    agentsess: the package is not on an index, the repository is its source."""
    job, steps = _steps()
    step = next(s for s in steps if "pip install" in s.get("run", ""))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSESS_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update({k: _expand(str(v), {"runner.temp": str(runner_temp)}) for k, v in job["env"].items()})
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    proc = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=ROOT, env=env, capture_output=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import agentsess; print(agentsess.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(venv)), where.stdout  # installed, not read from the checkout
    version = subprocess.run([str(venv / "bin" / "agentsess"), "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("agentsess "), version
    assert (runner_temp / "agentsess.toml").read_bytes() == open(
        os.path.join(ROOT, "examples", "github-actions", "agentsess.toml"), "rb").read()
