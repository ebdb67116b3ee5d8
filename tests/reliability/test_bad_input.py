"""A table of bad inputs across every command: each gives exactly one line on stderr, its
documented exit code, no traceback, and leaves the data root and the config as they were."""

import json
import os
import subprocess

import pytest
from helpers import PY, ag, assert_no_traceback, stderr_lines
from reliability_support import checkpoint, tree_digest

ERROR = "agentsess: error:"
DENIED = "agentsess: denied:"
INVALID = "agentsess: invalid token"  # `token verify`'s verdict (exit 1), like check's "denied"

CONFIG = """
[profiles.p]
scopes = ["repo:*"]
default_scopes = ["repo:read"]
ttl = "10m"
"""

PRE_TOOL_USE = json.dumps({"session_id": "s", "hook_event_name": "PreToolUse", "tool_name": "Bash",
                           "tool_input": {"command": "ls"}}).encode()

# (id, argv, stdin, extra env, exit code, prefix of the one stderr line)
# {run} is the id of an exited run, {config_bad_toml} and {config_bad_key} are config files,
# {plain_file} is a file without the execute bit. Exit codes: usage 2; `run`'s own failures 125,
# not found 127, not executable 126; a check said no 1; hooks fail closed with 2.
CASES = [
    # run ids
    ("show-run unknown id", ["show-run", "run_zzzzzzzzzz"], None, {}, 2, ERROR),
    ("show-run ambiguous prefix", ["show-run", "run_0"], None, {}, 2, ERROR),
    ("show-run malformed id", ["show-run", "not/a run!"], None, {}, 2, ERROR),
    ("show-run no argument", ["show-run"], None, {}, 2, ERROR),
    ("revoke unknown id", ["revoke", "run_zzzzzzzzzz"], None, {}, 2, ERROR),
    ("revoke ambiguous prefix", ["revoke", "run_0"], None, {}, 2, ERROR),
    ("export unknown id", ["export", "run_zzzzzzzzzz"], None, {}, 2, ERROR),
    ("export bad format", ["export", "{run}", "--format", "mp4"], None, {}, 2, ERROR),
    ("verify neither RUN nor --all", ["verify"], None, {}, 2, ERROR),
    ("verify both RUN and --all", ["verify", "{run}", "--all"], None, {}, 2, ERROR),
    ("verify malformed id", ["verify", "RUN-42?"], None, {}, 2, ERROR),
    # listing
    ("runs bogus status", ["runs", "--status", "bogus"], None, {}, 2, ERROR),
    ("runs bad --since", ["runs", "--since", "soonish"], None, {}, 2, ERROR),
    ("runs negative limit", ["runs", "--limit", "-1"], None, {}, 2, ERROR),
    ("runs unknown parent", ["runs", "--parent", "run_zzzzzzzzzz"], None, {}, 2, ERROR),
    ("prune bad duration", ["prune", "--older-than", "forever"], None, {}, 2, ERROR),
    ("prune missing option", ["prune"], None, {}, 2, ERROR),
    # run
    ("run no command", ["run"], None, {}, 125, ERROR),
    ("run nothing after --", ["run", "--no-pty", "--"], None, {}, 125, ERROR),
    ("run unknown option", ["run", "--frobnicate", "--", "true"], None, {}, 125, ERROR),
    ("run bad ttl", ["run", "--ttl", "soon", "--", "true"], None, {}, 125, ERROR),
    ("run bad scope", ["run", "--scope", "repo:::", "--", "true"], None, {}, 125, ERROR),
    ("run unknown profile", ["run", "--profile", "nosuch", "--", "true"], None, {}, 125, ERROR),
    ("run not found", ["run", "--", "/nonexistent/agent-binary"], None, {}, 127, ERROR),
    ("run not found on PATH", ["run", "--", "agentsess-no-such-command-xyz"], None, {}, 127, ERROR),
    ("run not executable", ["run", "--", "{plain_file}"], None, {}, 126, ERROR),
    ("run a directory", ["run", "--", "/tmp"], None, {}, 126, ERROR),
    ("run malformed TOML", ["run", "--", "true"], None, {"AGENTSESS_CONFIG": "{config_bad_toml}"}, 125, ERROR),
    ("run unknown config key", ["run", "--", "true"], None, {"AGENTSESS_CONFIG": "{config_bad_key}"}, 125, ERROR),
    # config
    ("config show malformed TOML", ["config", "show"], None, {"AGENTSESS_CONFIG": "{config_bad_toml}"}, 2, ERROR),
    ("config show unknown key", ["config", "show"], None, {"AGENTSESS_CONFIG": "{config_bad_key}"}, 2, ERROR),
    ("config show unknown profile", ["config", "show", "--profile", "nosuch"], None, {}, 2, ERROR),
    ("config set bad key", ["config", "set", "profiles.p.colour", "blue"], None, {}, 2, ERROR),
    ("config set unknown section", ["config", "set", "nosuch.key", "1"], None, {}, 2, ERROR),
    ("config set bad duration", ["config", "set", "profiles.p.ttl", "soon"], None, {}, 2, ERROR),
    ("config set bad enum", ["config", "set", "profiles.p.on_revoke", "explode"], None, {}, 2, ERROR),
    # tokens and the guard
    ("token verify garbage", ["token", "verify", "not.a.token"], None, {}, 1, INVALID),
    ("token verify no token", ["token", "verify"], None, {}, 2, ERROR),
    ("token unknown subcommand", ["token", "mint"], None, {}, 2, ERROR),
    ("token verify bad option", ["token", "verify", "x", "--frobnicate"], None, {}, 2, ERROR),
    ("check outside a run", ["check", "repo:read"], None, {}, 2, ERROR),
    ("check two scopes", ["check", "repo:read", "repo:write"], None, {}, 2, ERROR),
    ("check with a foreign token", ["check", "repo:read"], None, {"AGENTSESS_TOKEN": "abc.def.ghi"}, 2, ERROR),
    ("check unknown run id", ["check", "repo:read"], None, {"AGENTSESS_RUN_ID": "run_zzzzzzzzzzzzzzzzzzzzzzzzzz"}, 2, ERROR),
    ("exec -c without a command", ["exec", "-c"], None, {}, 2, ERROR),
    ("hook bad JSON", ["hook", "claude-code", "--run", "{run}"], b"{not json", {}, 2, DENIED),
    ("hook JSON not an object", ["hook", "claude-code", "--run", "{run}"], b"[1, 2]", {}, 2, DENIED),
    ("hook unknown run", ["hook", "claude-code", "--run", "run_zzzzzzzzzzzzzzzzzzzzzzzzzz"], PRE_TOOL_USE, {}, 2, DENIED),
    ("hook no run", ["hook", "claude-code"], PRE_TOOL_USE, {}, 2, DENIED),
    ("hook unknown agent", ["hook", "cursor", "--run", "{run}"], PRE_TOOL_USE, {}, 2, DENIED),
    # secrets
    ("secret set invalid name", ["secret", "set", "bad name!"], b"value", {}, 2, ERROR),
    ("secret set empty value", ["secret", "set", "fine-name"], b"", {}, 2, ERROR),
    ("secret rm unknown", ["secret", "rm", "never-set"], None, {}, 2, ERROR),
    # the command line itself
    ("unknown command", ["frobnicate"], None, {}, 2, ERROR),
    ("unknown option", ["runs", "--frobnicate"], None, {}, 2, ERROR),
]


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A data root with three finished runs, a secret and a config, shared by the table."""
    base = tmp_path_factory.mktemp("bad-input")
    env = {
        "AGENTSESS_HOME": str(base / "home"),
        "AGENTSESS_CONFIG": str(base / "config.toml"),
        "AGENTSESS_KEYRING": "file",
    }
    (base / "config.toml").write_text(CONFIG)
    (base / "bad.toml").write_text("[profiles.p\nttl = \n")
    (base / "badkey.toml").write_text('[profiles.p]\nttl = "10m"\ncolour = "blue"\n')
    plain = base / "not-executable.sh"
    plain.write_text("#!/bin/sh\necho hi\n")
    plain.chmod(0o644)
    run = lambda *a, **kw: subprocess.run([PY, "-m", "agentsess", *a], env={**os.environ, **env},
                                          capture_output=True, timeout=60, **kw)
    for i in range(3):
        assert run("run", "--profile", "p", "--", "echo", str(i)).returncode == 0
    assert run("secret", "set", "kept", input=b"value").returncode == 0
    listed = json.loads(run("runs", "--json").stdout)
    checkpoint(env["AGENTSESS_HOME"])
    return {
        "env": env,
        "run": listed[0]["id"],
        "config_bad_toml": str(base / "bad.toml"),
        "config_bad_key": str(base / "badkey.toml"),
        "plain_file": str(plain),
    }


def test_the_table_is_wide_enough():
    assert len({c[0] for c in CASES}) == len(CASES) >= 30
    assert len({c[1][0] for c in CASES}) >= 14  # commands covered


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,argv,stdin,extra,code,prefix", CASES, ids=[c[0] for c in CASES])
def test_bad_input(populated, monkeypatch, name, argv, stdin, extra, code, prefix):
    for key, value in populated["env"].items():
        monkeypatch.setenv(key, value)
    for var in ("AGENTSESS_RUN_ID", "AGENTSESS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    fill = lambda s: s.format(**populated)
    argv = [fill(a) for a in argv]
    env = {k: fill(v) for k, v in extra.items()}
    roots = (populated["env"]["AGENTSESS_HOME"], populated["env"]["AGENTSESS_CONFIG"])
    before = tree_digest(*roots)
    proc = ag(*argv, input=stdin if stdin is not None else b"", env=env)
    assert_no_traceback(proc)
    lines = stderr_lines(proc)
    assert proc.returncode == code, (argv, proc.returncode, lines)
    assert len(lines) == 1, (argv, lines)
    assert lines[0].startswith(prefix), (argv, lines)
    assert tree_digest(*roots) == before, argv


@pytest.mark.timeout(60)
def test_a_hook_naming_a_finished_run_denies_and_leaves_it_sealed():
    assert ag("run", "--", "true").returncode == 0
    (row,) = json.loads(ag("runs", "--json").stdout)
    before = tree_digest(os.path.join(os.environ["AGENTSESS_HOME"], "runs"))
    # outside any live run there is no supervisor to ask: the hook blocks (Claude's exit 2) and
    # writes nothing, so a finished run's sealed stream cannot be extended from outside
    proc = ag("hook", "claude-code", "--run", row["id"], input=PRE_TOOL_USE)
    assert proc.returncode == 2 and proc.stdout == b"" and proc.stderr.startswith(b"agentsess: denied:"), proc.stderr
    assert tree_digest(os.path.join(os.environ["AGENTSESS_HOME"], "runs")) == before
    (verdict,) = json.loads(ag("verify", row["id"], "--json").stdout)
    assert verdict["ok"] and verdict["sealed"], verdict
