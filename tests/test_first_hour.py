"""The first hour: what a new user meets: the profile named after the agent, the hint when
the scrub keeps the agent's key, `agentsess help TOPIC`, shell completion, and the GitHub
Actions example run step by step."""

import os
import stat

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
