"""The agent does not inherit the human's session: scrubbed env, its own secrets, masked output."""

import json
import os
import subprocess
import sys

import pexpect
from helpers import agentsess, show, write_config

PY = sys.executable
DUMP_ENV = "import os,json,sys; json.dump(dict(os.environ), open(sys.argv[1],'w'))"
CANARY = "canary-5ecret-Value-0123456789"


def child_env(tmp_path, *options, env=None) -> tuple[dict, subprocess.CompletedProcess]:
    out = tmp_path / f"env-{len(list(tmp_path.iterdir()))}.json"
    proc = agentsess("run", *options, "--", PY, "-c", DUMP_ENV, str(out), env=env, check=0)
    return json.loads(out.read_text()), proc


HUMAN = {
    "GH_TOKEN": "human-value",
    "AWS_SECRET_ACCESS_KEY": "x",
    "AWS_PROFILE": "prod",
    "MY_SERVICE_PASSWORD": "pw",
    "SSH_AUTH_SOCK": "/tmp/agent.sock",
    "AZURE_CLIENT_ID": "a",
    "HARMLESS": "yes",
}


def test_the_humans_credential_variables_are_scrubbed(tmp_path):
    env, proc = child_env(tmp_path, env=HUMAN)
    for name in ("GH_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "MY_SERVICE_PASSWORD", "SSH_AUTH_SOCK", "AZURE_CLIENT_ID"):
        assert name not in env
    assert env["HARMLESS"] == "yes"
    assert env["AGENTSESS_RUN_ID"].startswith("run_")
    notice = [l for l in proc.stderr.decode().splitlines() if "kept from the agent" in l]
    assert len(notice) == 1 and "GH_TOKEN" in notice[0] and "human-value" not in notice[0]
    started = show()["receipts"][0]["data"]["env"]
    assert "GH_TOKEN" in started["scrubbed"]
    assert "human-value" not in json.dumps(show())


def test_pass_env_and_keep_env(tmp_path):
    env, _ = child_env(tmp_path, "--pass-env", "GH_TOKEN", env=HUMAN)
    assert env["GH_TOKEN"] == "human-value" and "AWS_PROFILE" not in env
    assert show()["receipts"][0]["data"]["env"]["passed"] == ["GH_TOKEN"]
    env, _ = child_env(tmp_path, "--keep-env", env=HUMAN)
    assert env["AWS_SECRET_ACCESS_KEY"] == "x"


def test_profile_scrub_and_pass_patterns(tmp_path):
    write_config('[profiles.p]\nscrub_env = ["HARMLESS"]\npass_env = ["AWS_PROFILE"]\n')
    env, _ = child_env(tmp_path, "--profile", "p", env=HUMAN)
    assert "HARMLESS" not in env and env["AWS_PROFILE"] == "prod"


def test_a_secret_is_injected_used_and_masked_in_log_and_terminal_pipe_mode(tmp_path):
    agentsess("secret", "set", "github-agent", input=CANARY.encode() + b"\n", check=0)
    write_config('[profiles.p]\n[profiles.p.env]\nGH_TOKEN = { secret = "github-agent" }\nMODE = "ci"\n')
    script = "import os,sys; v=os.environ['GH_TOKEN']; print('len', len(v), os.environ['MODE']); print('value', v); sys.stdout.write(v[:10]); sys.stdout.flush(); sys.stdout.write(v[10:]+'\\n')"
    proc = agentsess("run", "--profile", "p", "--", PY, "-c", script, env={"GH_TOKEN": "human-value"}, check=0)
    out = proc.stdout.decode()
    assert f"len {len(CANARY)} ci" in out
    assert CANARY not in out and "[masked:github-agent]" in out
    run = show()
    log = os.path.join(os.environ["AGENTSESS_HOME"], "runs", run["id"], "output.log")
    with open(log, "rb") as fh:
        assert CANARY.encode() not in fh.read()
    injected = [r for r in run["receipts"] if r["type"] == "secret.injected"][0]["data"]
    assert injected == {"vars": ["GH_TOKEN"], "secrets": ["github-agent"], "mode": "raw"}


def test_encodings_of_a_secret_are_masked(tmp_path):
    agentsess("secret", "set", "api", input=CANARY.encode(), check=0)
    write_config('[profiles.p.env]\nAPI = { secret = "api" }\n')
    script = "import os,base64,urllib.parse; v=os.environ['API'].encode(); print(base64.b64encode(b'x'+v).decode()); print(v.hex()); print(urllib.parse.quote(v))"
    proc = agentsess("run", "--profile", "p", "--", PY, "-c", script, check=0)
    assert proc.stdout.decode().count("[masked:api]") == 3
    assert CANARY.encode().hex().encode() not in proc.stdout


def test_no_mask_terminal_shows_raw_but_log_stays_masked(tmp_path):
    agentsess("secret", "set", "api", input=CANARY.encode(), check=0)
    write_config('[profiles.p.env]\nAPI = { secret = "api" }\n')
    proc = agentsess("run", "--profile", "p", "--no-mask-terminal", "--", PY, "-c", "import os; print(os.environ['API'])", check=0)
    assert CANARY.encode() in proc.stdout
    log = os.path.join(os.environ["AGENTSESS_HOME"], "runs", show()["id"], "output.log")
    with open(log, "rb") as fh:
        assert fh.read() == b"[masked:api]\n"


def test_secret_masked_in_pty_mode_with_colours_intact(tmp_path):
    agentsess("secret", "set", "api", input=CANARY.encode(), check=0)
    write_config('[profiles.p.env]\nAPI = { secret = "api" }\n')
    script = "import os; print('\\033[32mgreen\\033[0m', os.environ['API'], 'after')"
    child = pexpect.spawn(PY, ["-m", "agentsess", "run", "--profile", "p", "--", PY, "-c", script],
                          env=dict(os.environ), timeout=20)
    child.expect(pexpect.EOF)
    seen = child.before
    child.close()
    assert child.exitstatus == 0
    assert CANARY.encode() not in seen
    assert b"\x1b[32mgreen\x1b[0m [masked:api] after" in seen
    log = os.path.join(os.environ["AGENTSESS_HOME"], "runs", show()["id"], "output.log")
    with open(log, "rb") as fh:
        assert CANARY.encode() not in fh.read()


def test_missing_secret_is_a_clear_error_before_the_child_starts(tmp_path):
    write_config('[profiles.p.env]\nAPI = { secret = "nope" }\n')
    marker = tmp_path / "ran"
    proc = agentsess("run", "--profile", "p", "--", "touch", str(marker))
    assert proc.returncode == 125
    assert b"secret 'nope'" in proc.stderr and b"agentsess secret set nope" in proc.stderr
    assert not marker.exists()


def test_secret_commands_never_show_values():
    agentsess("secret", "set", "one", input=CANARY.encode(), check=0)
    listed = agentsess("secret", "list", "--json", check=0)
    assert CANARY.encode() not in listed.stdout
    assert [s["name"] for s in json.loads(listed.stdout)] == ["one"]
    assert agentsess("secret", "rm", "one").returncode == 0
    assert agentsess("secret", "rm", "one").returncode == 2
    assert agentsess("secret", "set", "bad name!", input=b"v").returncode == 2


def test_canary_never_reaches_store_receipts_config_or_errors(tmp_path):
    agentsess("secret", "set", "canary", input=CANARY.encode(), check=0)
    write_config('[profiles.p.env]\nC = { secret = "canary" }\n[profiles.q.env]\nC = { secret = "missing" }\n')
    stderr = b""
    for args in (
        ["run", "--profile", "p", "--", PY, "-c", "import os; print(os.environ['C']); import sys; sys.stderr.write(os.environ['C'])"],
        ["run", "--profile", "p", "--", "sh", "-c", "exit 3"],
        ["run", "--profile", "p", "--scope", "BAD SCOPE", "--", "true"],
        ["run", "--profile", "q", "--", "true"],
        ["run", "--profile", "p", "--", "/nonexistent"],
        ["runs", "--json"], ["show-run", "last", "--json"], ["show-run", "last", "--output"],
        ["verify", "--all"], ["secret", "list"], ["export", "last", "--format", "jsonl"],
        ["config", "show"], ["doctor"],
    ):
        proc = agentsess(*args)
        stderr += proc.stderr + proc.stdout
    assert CANARY.encode() not in stderr
    home = os.environ["AGENTSESS_HOME"]
    for root, _, files in os.walk(home):
        for name in files:
            if name == "secrets.json":  # the 0600 file-backed keyring itself (AGENTSESS_KEYRING=file)
                continue
            with open(os.path.join(root, name), "rb") as fh:
                assert CANARY.encode() not in fh.read(), name
    with open(os.environ["AGENTSESS_CONFIG"], "rb") as fh:
        assert CANARY.encode() not in fh.read()


def test_isolate_home_hides_the_humans_files_and_persists(tmp_path):
    human = tmp_path / "human"
    (human / ".config" / "gh").mkdir(parents=True)
    (human / ".config" / "gh" / "hosts.yml").write_text("oauth_token: human\n")
    (human / ".aws").mkdir()
    (human / ".aws" / "credentials").write_text("[default]\naws_secret_access_key = x\n")
    (human / ".gitconfig").write_text("[core]\n\teditor = vi\n")
    script = (
        "import os; h=os.environ['HOME']; "
        "print('gh', os.path.exists(os.path.join(h,'.config/gh/hosts.yml'))); "
        "print('aws', os.path.exists(os.path.join(h,'.aws/credentials'))); "
        "print('gitconfig', os.path.exists(os.path.join(h,'.gitconfig'))); "
        "p=os.path.join(h,'.agent-login'); print('persisted', os.path.exists(p)); open(p,'w').write('x')"
    )
    first = agentsess("run", "--isolate-home", "--name", "bot", "--", PY, "-c", script, env={"HOME": str(human)}, check=0)
    out = first.stdout.decode()
    assert "gh False" in out and "aws False" in out and "gitconfig True" in out and "persisted False" in out
    second = agentsess("run", "--isolate-home", "--name", "bot", "--", PY, "-c", script, env={"HOME": str(human)}, check=0)
    assert "persisted True" in second.stdout.decode()
    assert not (human / ".agent-login").exists()


def test_without_isolation_the_readable_credential_files_are_named_once(tmp_path):
    human = tmp_path / "human"
    (human / ".aws").mkdir(parents=True)
    (human / ".aws" / "credentials").write_text("x")
    # advisory: a contained run hides those files instead (tests/test_containment.py)
    first = agentsess("run", "--no-contain", "--", "true", env={"HOME": str(human)}, check=0)
    assert b".aws/credentials" in first.stderr
    second = agentsess("run", "--no-contain", "--", "true", env={"HOME": str(human)}, check=0)
    assert b".aws/credentials" not in second.stderr
    assert show()["receipts"][0]["data"]["env"]["human_files_readable"]


def test_commits_inside_a_run_are_the_agents(tmp_path):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f").write_text("x")
    script = "git add f && git commit -qm 'agent work' && git log -1 --format='%an|%ae|%cn|%ce'"
    proc = agentsess("run", "--name", "fixer", "--", "sh", "-c", script, cwd=str(repo),
                     env={"GIT_AUTHOR_NAME": "Human", "GIT_AUTHOR_EMAIL": "human@example.com"}, check=0)
    an, ae, cn, ce = proc.stdout.decode().strip().split("|")
    run_id = show()["id"]
    assert "fixer" in an and "Human" not in an
    assert run_id in ae and ae == ce
    assert an == cn
