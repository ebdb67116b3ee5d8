"""One style for failures and help: every usage error is one `agentsess: error: CMD: …` line
in the same words whichever parser (the hot commands' argparse or typer) read the command
line, and the hot commands' help is laid out like typer's."""

import re

import pytest
from helpers import agentsess


def _err(*args) -> tuple[int, str]:
    proc = agentsess(*args)
    return proc.returncode, proc.stderr.decode()


@pytest.mark.parametrize(
    "args,code,line",
    [
        (["run", "--bogus", "--", "true"], 125, "run: no such option: --bogus (see `agentsess run --help`)"),
        (["runs", "--bogus"], 2, "runs: no such option: --bogus (see `agentsess runs --help`)"),
        (["prune", "--bogus"], 2, "prune: no such option: --bogus (see `agentsess prune --help`)"),
        (["jwks", "--bogus"], 2, "jwks: no such option: --bogus (see `agentsess jwks --help`)"),
        (["show-run"], 2, "show-run: missing argument 'RUN' (see `agentsess show-run --help`)"),
        (["prune"], 2, "prune: missing option '--older-than' (see `agentsess prune --help`)"),
        (["show-run", "last", "--lines"], 2, "show-run: option '--lines' requires an argument (see `agentsess show-run --help`)"),
        (["token", "verify", "--scope"], 2,
         "token verify: option '--scope' requires an argument (see `agentsess token verify --help`)"),
        (["check", "a", "b"], 2, "check: got unexpected extra argument (b) (see `agentsess check --help`)"),
        (["config", "bogus"], 2, "config: no such command 'bogus' (see `agentsess config --help`)"),
        (["key", "bogus"], 2, "key: no such command 'bogus' (see `agentsess key --help`)"),
    ],
)
def test_usage_errors_are_one_line_in_one_style(args, code, line):
    got, err = _err(*args)
    assert got == code
    assert err == f"agentsess: error: {line}\n"


def test_bad_values_name_the_option_in_click_words():
    got, err = _err("show-run", "last", "--lines", "many")
    assert got == 2
    assert err == ("agentsess: error: show-run: invalid value for '--lines': 'many' is not a whole number "
                   "(see `agentsess show-run --help`)\n")


HOT_HELP = [["run"], ["check"], ["hook"], ["exec"], ["token", "verify"], ["whoami"], ["runs"], ["show-run"]]


@pytest.mark.parametrize("command", HOT_HELP, ids=lambda c: " ".join(c))
def test_hot_help_is_laid_out_like_typers(command):
    hot = agentsess(*command, "--help", check=0).stdout.decode()
    typer = agentsess("verify", "--help", check=0).stdout.decode()
    for text, name in ((hot, " ".join(command)), (typer, "verify")):
        assert text.startswith(f"Usage: agentsess {name} ")
        lines = text.splitlines()
        assert lines[1] == "" and lines[2].startswith("  ") and not lines[2].startswith("   ")  # description
        assert "\nOptions:\n" in text
        assert re.search(r"^  -h, --help +Show this message and exit\.$", text, re.M)
        assert "positional arguments:" not in text and "\noptions:" not in text and "usage:" not in text


def test_top_level_and_topic_help_use_the_same_headings():
    top = agentsess("--help", check=0).stdout.decode()
    assert top.startswith("Usage: agentsess ") and "\nCommands:\n" in top and "\nOptions:\n" in top
    assert "  -h, --help     Show this message and exit." in top
    topics = agentsess("help", check=0).stdout.decode()
    assert topics.startswith("Usage: agentsess help ") and "\nTopics:\n" in topics


def test_the_git_credential_helper_fails_in_the_same_style():
    import socket
    import subprocess
    import sys

    with socket.socket() as closed:  # a loopback port nothing listens on: the supervisor is gone
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "agentsess.edges.gitcredential", f"http://127.0.0.1:{port}", "get"],
                          input=b"protocol=https\nhost=github.com\n\n", capture_output=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout == b"quit=1\n"  # git stops asking, and says why
    line = proc.stderr.decode().strip()
    assert re.fullmatch(r"agentsess: error: no credential for git: the run's supervisor does not answer \(.+\)", line)


def test_verdicts_use_one_word_each_inside_and_outside_a_run():
    """`denied:` for a refused check, `invalid token (…)` for a refused token, and a valid token
    said once ("valid token of run …", not "valid: valid token …"); "has: none" both ways."""
    from inrun import InRun

    with InRun("--agent", "none") as run:
        token = run["AGENTSESS_TOKEN"]
        rid = run["AGENTSESS_RUN_ID"]
        valid = run.call("token", "verify", token)
        missing = run.call("token", "verify", "--scope", "git:push", token)
        denied = run.call("check", "git:push")
    assert valid.returncode == 0 and valid.stdout.decode() == f"valid token of run {rid} (agent {run['AGENTSESS_AGENT']})\n"
    assert missing.returncode == 1
    assert missing.stderr.decode() == f"agentsess: invalid token (missing scope): run {rid} lacks scope git:push (has: none)\n"
    assert denied.returncode == 1
    assert denied.stderr.decode() == f"agentsess: denied: run {rid} lacks scope git:push (has: none)\n"
    outside = agentsess("token", "verify", "not-a-token")
    assert outside.returncode == 1 and outside.stderr.startswith(b"agentsess: invalid token (malformed): ")
