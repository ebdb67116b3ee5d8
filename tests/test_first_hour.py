"""The first hour: what a new user meets: the profile named after the agent, the hint when
the scrub keeps the agent's key, `agentsess help TOPIC`, shell completion, and the GitHub
Actions example run step by step."""

import os
import stat

import pytest

from helpers import agentsess, show, write_config


def _fake_agent(tmp_path, name: str) -> dict:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\necho agent ran\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{folder}:{os.environ['PATH']}", "ANTHROPIC_API_KEY": "sk-ant-api03-notreal"}


def test_a_profile_named_after_the_command_is_used_and_said(tmp_path):
    write_config('[profiles.claude]\nscopes = ["fs:read"]\npass_env = ["ANTHROPIC_API_KEY"]\n')
    proc = agentsess("run", "--", "claude", env=_fake_agent(tmp_path, "claude"), check=0)
    assert b"agentsess: profile 'claude' (named after the command claude" in proc.stderr
    assert show()["profile"] == "claude"
    explicit = agentsess("run", "--profile", "default", "--", "claude", env=_fake_agent(tmp_path, "claude"), check=0)
    assert b"named after the command" not in explicit.stderr and show()["profile"] == "default"


def test_the_scrub_says_how_to_keep_the_agents_key(tmp_path):
    proc = agentsess("run", "--", "claude", env=_fake_agent(tmp_path, "claude"), check=0)
    err = proc.stderr.decode()
    assert "claude needs ANTHROPIC_API_KEY: add pass_env = [\"ANTHROPIC_API_KEY\"] to [profiles.default]" in err
    assert "--pass-env ANTHROPIC_API_KEY" in err
    assert "sk-ant-api03-notreal" not in err
    kept = agentsess("run", "--pass-env", "ANTHROPIC_API_KEY", "--", "claude", env=_fake_agent(tmp_path, "claude"), check=0)
    assert b"needs ANTHROPIC_API_KEY" not in kept.stderr


def test_no_key_hint_when_the_agent_got_one_of_the_keys_it_can_use(tmp_path):
    """aider works with any one of its keys: with OPENAI_API_KEY passed, a scrubbed
    GEMINI_API_KEY is no reason to say it "needs" one; with none of them, say it."""
    write_config('[profiles.aider]\npass_env = ["OPENAI_API_KEY"]\n')
    env = {**_fake_agent(tmp_path, "aider"), "OPENAI_API_KEY": "sk-openai-notreal", "GEMINI_API_KEY": "g-notreal-1"}
    proc = agentsess("run", "--", "aider", env=env, check=0)
    assert b"GEMINI_API_KEY" in proc.stderr  # still named as kept back
    assert b"aider needs" not in proc.stderr, proc.stderr
    none = agentsess("run", "--profile", "default", "--", "aider", env=env, check=0)
    assert b"aider needs ANTHROPIC_API_KEY or OPENAI_API_KEY or GEMINI_API_KEY: add pass_env" in none.stderr


# -- help topics ---------------------------------------------------------------------------


def test_help_lists_topics_and_shows_each():
    from agentsess.cli.topics import TOPICS

    overview = agentsess("help", check=0).stdout.decode()
    for topic in ("scopes", "rules", "exit-codes", "environment", "receipts", "completion"):
        assert topic in overview and topic in TOPICS
        text = agentsess("help", topic, check=0).stdout.decode()
        assert text.startswith(f"{topic}: ") and len(text.splitlines()) > 5
    codes = agentsess("help", "exit-codes", check=0).stdout.decode()
    for code in ("124", "125", "126", "127", "128+N"):
        assert code in codes
    assert b"help" in agentsess("--help", check=0).stdout


def test_help_command_is_the_commands_own_help():
    assert agentsess("help", "runs", check=0).stdout == agentsess("runs", "--help", check=0).stdout
    assert agentsess("help", "check", check=0).stdout == agentsess("check", "--help", check=0).stdout


def test_help_of_an_unknown_topic_is_one_line():
    proc = agentsess("help", "\x1b]52;c;eA==\x07")
    assert proc.returncode == 2 and proc.stderr.count(b"\n") == 1
    assert b"\x1b" not in proc.stderr and proc.stderr.startswith(b"agentsess: error: no help topic")


def test_help_documents_every_exit_code_constant():
    from agentsess import errors
    from agentsess.cli.topics import TOPICS

    body = TOPICS["exit-codes"][1]
    for name in ("USAGE", "STATE", "CHECK_FAILED", "RUN_FAILED"):
        assert f" {getattr(errors, name)} " in body.replace("\n", " "), name


# -- shell completion ------------------------------------------------------------------------


def _bash_complete(tmp_path, line: str) -> list[str]:
    import subprocess
    import sys

    script = agentsess("--show-completion", "bash", check=0).stdout.decode()
    (tmp_path / "c.bash").write_text(script)
    words = line.split(" ")
    driver = (
        f"source {tmp_path / 'c.bash'}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_agentsess\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + ":" + env["PATH"]
    proc = subprocess.run(["bash", "--norc", "-c", driver], capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [w for w in proc.stdout.decode().splitlines() if w]


def test_bash_completes_commands_subcommands_options_and_runs(tmp_path):
    assert _bash_complete(tmp_path, "agentsess sh") == ["show-run"]
    assert set(_bash_complete(tmp_path, "agentsess key ")) == {"rotate", "list"}
    assert "--tree" in _bash_complete(tmp_path, "agentsess runs --t")
    assert "--no-pty" in _bash_complete(tmp_path, "agentsess run --no-")
    assert "--jwks" in _bash_complete(tmp_path, "agentsess verify --j")
    assert "exit-codes" in _bash_complete(tmp_path, "agentsess help e")
    agentsess("run", "--", "true", check=0)
    run_id = show()["id"]
    assert set(_bash_complete(tmp_path, "agentsess show-run ")) == {"last", run_id}
    assert _bash_complete(tmp_path, "agentsess run -- agentsess") == []  # the child's: the shell's own


def _shell(name: str) -> str:
    import shutil

    path = shutil.which(name)
    if path is None:
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail(f"{name} is required in CI (its completion script is tried in it)")
        pytest.skip(f"{name} is not installed")
    return path


# zsh's own completion system, driven through a pty (zsh/zpty) as a person would press TAB:
# the line is typed, TAB completes it, and a widget bound to ^X prints what the line became.
ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z "PS1='%% '; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D; dump() { print -r -- \"<BUF>\$BUFFER<END>\" }; zle -N dump; bindkey '^X' dump; print READY"
zpty -r -m z out '*READY*'
zpty -n -w z "$2"$'\t\x18'
zpty -r -m z out '*<END>*'
print -r -- "${${out##*<BUF>}%<END>*}"
zpty -d z
"""


def _zsh_complete(tmp_path, line: str) -> str:
    import subprocess
    import sys

    zsh = _shell("zsh")
    fdir = tmp_path / "zfunc"
    fdir.mkdir(exist_ok=True)
    (fdir / "_agentsess").write_bytes(agentsess("--show-completion", "zsh", check=0).stdout)
    (tmp_path / "driver.zsh").write_text(ZSH_DRIVER)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + ":" + env["PATH"]
    proc = subprocess.run([zsh, "-f", str(tmp_path / "driver.zsh"), str(fdir), line], capture_output=True, env=env,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().rstrip("\n")


def _fish_complete(tmp_path, line: str) -> list[str]:
    import subprocess
    import sys

    fish = _shell("fish")
    (tmp_path / "c.fish").write_bytes(agentsess("--show-completion", "fish", check=0).stdout)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + ":" + env["PATH"]
    proc = subprocess.run([fish, "--no-config", "-c", f"source {tmp_path / 'c.fish'}; complete -C '{line}'"],
                          capture_output=True, env=env, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return [w.split("\t")[0] for w in proc.stdout.decode().splitlines() if w]


def test_zsh_completes_in_the_real_shell(tmp_path):
    (tmp_path / "stream.jsonl").write_text("")
    assert _zsh_complete(tmp_path, "agentsess sh") == "agentsess show-run "
    assert _zsh_complete(tmp_path, "agentsess help exit") == "agentsess help exit-codes "
    assert _zsh_complete(tmp_path, "agentsess runs --tr") == "agentsess runs --tree "
    # where agentsess has nothing to offer (a FILE), the shell completes files
    assert _zsh_complete(tmp_path, "agentsess verify ./str") == "agentsess verify ./stream.jsonl "
    agentsess("run", "--", "true", check=0)
    run_id = show()["id"]
    assert _zsh_complete(tmp_path, "agentsess show-run " + run_id[:12]) == f"agentsess show-run {run_id} "


def test_fish_completes_in_the_real_shell(tmp_path):
    (tmp_path / "stream.jsonl").write_text("")
    assert _fish_complete(tmp_path, "agentsess sh") == ["show-run"]
    assert set(_fish_complete(tmp_path, "agentsess key ")) == {"rotate", "list"}
    assert "--tree" in _fish_complete(tmp_path, "agentsess runs --t")
    assert "exit-codes" in _fish_complete(tmp_path, "agentsess help e")
    assert _fish_complete(tmp_path, "agentsess verify ./str") == ["./stream.jsonl"]
    agentsess("run", "--", "true", check=0)
    assert set(_fish_complete(tmp_path, "agentsess show-run ")) == {"last", show()["id"]}


def test_every_shell_has_a_script_and_installs(tmp_path):
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": "", "XDG_CONFIG_HOME": ""}
    for shell, where in (("bash", ".local/share/bash-completion/completions/agentsess"), ("zsh", ".zfunc/_agentsess"),
                         ("fish", ".config/fish/completions/agentsess.fish")):
        script = agentsess("--show-completion", shell, check=0).stdout
        assert b"agentsess --complete" in script
        agentsess("--install-completion", shell, env=env, check=0)
        assert (tmp_path / where).read_bytes() == script
    bad = agentsess("--show-completion", "tcsh", env={"SHELL": "/bin/tcsh"})
    assert bad.returncode == 2 and bad.stderr.startswith(b"agentsess: error: --show-completion: give a shell")


def test_the_readme_rule_for_claudes_mcp_tools_matches_claudes_names():
    """Claude Code calls its MCP tools mcp__SERVER__TOOL: the example's mcp:github:* rules must
    decide those (they are checked as mcp:SERVER:TOOL)."""
    import json
    import shutil

    from inrun import InRun

    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
    shutil.copy(os.path.join(examples, "claude-code.toml"), os.environ["AGENTSESS_CONFIG"])
    agentsess("secret", "set", "github-agent", input=b"ghp_" + b"Z" * 36, check=0)
    with InRun("--profile", "claude", "--agent", "none") as run:
        event = {"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "mcp__github__delete_repository",
                 "tool_input": {"repo": "x"}, "tool_use_id": "t", "cwd": "/tmp", "transcript_path": "/dev/null"}
        proc = run.call("hook", "claude-code", "--run", run["AGENTSESS_RUN_ID"], input=json.dumps(event).encode())
    out = json.loads(proc.stdout)["hookSpecificOutput"]
    assert out["permissionDecision"] == "deny", out


def test_the_readme_aider_line_runs_with_its_model_key(tmp_path):
    """README: `agentsess config init` then `agentsess run --scope git:commit --ttl 30m -- aider`
    runs under [profiles.aider] with its model key (it used to run without it)."""
    agentsess("config", "init", check=0)
    folder = tmp_path / "bin"
    folder.mkdir()
    exe = folder / "aider"
    exe.write_text('#!/bin/sh\necho "key=${OPENAI_API_KEY:+set} other=${GH_TOKEN:+leaked}"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{folder}:{os.environ['PATH']}", "OPENAI_API_KEY": "sk-proj-notreal-0123456789", "GH_TOKEN": "ghp_x"}
    proc = agentsess("run", "--scope", "git:commit", "--ttl", "30m", "--", "aider", env=env, check=0)
    assert proc.stdout == b"key=set other=\n", proc
    assert b"profile 'aider'" in proc.stderr and b"aider needs" not in proc.stderr
    assert show()["profile"] == "aider" and show()["scopes"] == ["git:commit"]
