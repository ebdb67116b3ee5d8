"""The command line as a whole: version, help, the command table, the hot-path parser."""

import importlib.metadata
import json
import sys

import pytest
from helpers import agentsess as ag
from helpers import cli, show
from inrun import InRun

import agentsess
from agentsess.cli.commands import COMMANDS

PY = sys.executable
HOT = [c.name for c in COMMANDS if c.hot]
GROUPS = [c.name for c in COMMANDS if c.group]


def test_version_is_written_once_and_printed():
    assert importlib.metadata.version("agentsess") == agentsess.__version__
    for flag in ("--version", "-V"):
        out = ag(flag, check=0)
        assert out.stdout.decode() == f"agentsess {agentsess.__version__}\n"
        assert out.stderr == b""


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"]], ids=["bare", "--help", "-h"])
def test_plain_agentsess_prints_the_help_on_stdout(argv):
    out = ag(*argv, check=0)
    text = out.stdout.decode()
    assert out.stderr == b""
    assert text.startswith("Usage: agentsess ") and text.count("\n") > len(COMMANDS)
    for command in COMMANDS:
        assert f"  {command.name} " in text and command.summary in text


@pytest.mark.parametrize("group", GROUPS)
def test_a_group_without_a_subcommand_prints_its_help(group):
    out = ag(group, check=0)
    text = out.stdout.decode()
    assert out.stderr == b""
    assert f"agentsess {group}" in text and "Commands:" in text and text.count("\n") > 4


def test_the_table_has_every_documented_command():
    documented = {"run", "show-run", "runs", "revoke", "verify", "export", "prune", "token", "jwks", "key",
                  "secret", "config", "check", "hook", "exec", "mcp-proxy", "whoami", "doctor"}  # DESIGN.md
    assert documented <= {c.name for c in COMMANDS}
    assert set(HOT) == {"run", "check", "hook", "exec", "token", "whoami", "help", "runs", "show-run"}
    for command in COMMANDS:
        assert command.summary.endswith(".") and "\n" not in command.summary


def test_hot_commands_never_import_typer_or_rich():
    probe = (
        "import sys\n"
        "from agentsess.cli import entry\n"
        "for name in sys.argv[1:]:\n"
        "    entry.BY_NAME[name].load()\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click')], sys.modules\n"
    )
    import subprocess

    proc = subprocess.run([PY, "-c", probe, *HOT], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


@pytest.mark.parametrize(
    "argv, stdin",
    [
        (["check", "fs:read"], b""),
        (["hook", "claude-code", "--run", "run_0000000000000000000000000a"], b'{"hook_event_name": "Stop"}'),
        (["exec", "--", "true"], b""),
        (["exec", "-c", "true"], b""),
    ],
    ids=["check", "hook", "exec", "exec -c"],
)
def test_tool_call_paths_import_no_typing_dataclasses_or_shutil(argv, stdin):
    """Paid on every tool call: typing, dataclasses (inspect) and shutil (bz2, lzma) cost 2-5 ms each."""
    import subprocess

    probe = (
        "import sys\n"
        "from agentsess.cli import entry\n"
        "entry.main(sys.argv[1:])\n"
        "heavy = ('typing', 'dataclasses', 'inspect', 'shutil', 'typer', 'rich', 'click', 'hashlib')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run([PY, "-c", probe, *argv], input=stdin, capture_output=True, timeout=60)
    assert proc.stdout.decode().splitlines()[-1] == "[]", (proc.stdout, proc.stderr)


@pytest.mark.parametrize("command", ["check", "hook", "exec", "token"])
def test_a_bare_hot_command_prints_its_help_and_exits_2(command):
    out = ag(command)
    assert out.returncode == 2 and out.stdout.decode().startswith(f"Usage: agentsess {command}")


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_a_commands_help_shows_the_tables_summary_once(command):
    argv = ["token", "verify", "--help"] if command == "token" else [command, "--help"]
    out = cli(*argv, check=0)
    summary = next(c.summary for c in COMMANDS if c.name == command)
    text = " ".join(out.stdout.decode().split())  # as wrapped to any width
    assert text.count(summary) == 1, text
    assert out.stderr == b""


def test_the_typer_app_has_exactly_the_tables_other_commands():
    import typer.main

    from agentsess.cli.app import build

    group = typer.main.get_command(build())
    assert sorted(group.commands) == sorted(c.name for c in COMMANDS if not c.hot)


# -- exec: the child's argv is the child's ------------------------------------------------------


def _execs(run_id=None):
    return [r["data"] for r in show(run_id or "last")["receipts"] if r["type"] == "action.exec"]


def test_exec_passes_the_childs_own_options_through():
    out = ag("run", "--no-pty", "--", PY, "-m", "agentsess", "exec", "--", "echo", "hello", "--source", "x", check=0)
    assert out.stdout == b"hello --source x\n"
    (rec,) = _execs()
    assert rec["command"] == "echo hello --source x" and rec["source"] == "exec" and rec["exit_code"] == 0


@pytest.mark.parametrize(
    "argv, printed, command",
    [
        (["echo", "--source", "y"], b"--source y\n", "echo --source y"),  # no --: the child starts at echo
        (["--source", "claude-code", "-c", "echo -- -c --source"], b"-- -c --source\n", "echo -- -c --source"),
        (["--source", "claude-code", "--", "echo", "--"], b"--\n", "echo --"),
        (["-c", "echo $0 --", "--"], None, None),  # -c and a CMD: refused
    ],
    ids=["no-dashes", "-c with dashes inside", "dashes after --", "-c and CMD"],
)
def test_exec_spellings(argv, printed, command):
    out = ag("run", "--no-pty", "--", PY, "-m", "agentsess", "exec", *argv)
    if printed is None:
        assert out.returncode == 2 and b"agentsess: error: exec: -c takes exactly one COMMAND" in out.stderr
        assert _execs() == []
        return
    assert out.returncode == 0, out.stderr
    assert out.stdout == printed
    (rec,) = _execs()
    assert rec["command"] == command


@pytest.mark.parametrize("argv", [["--source", "x"], ["--source"], ["-c"], ["--"], ["--source", "x", "--"], ["--frob", "x"]])
def test_exec_without_a_command_is_a_one_line_usage_error(argv):
    out = ag("exec", *argv)
    lines = out.stderr.decode().splitlines()
    assert out.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith("agentsess: error: exec: ") and "Traceback" not in lines[0]
    assert out.stdout == b""


def test_run_takes_the_command_at_its_first_word_or_after_dashes():
    out = ag("run", "--no-pty", "--name", "n1", "echo", "--name", "-- x", check=0)
    assert out.stdout == b"--name -- x\n"
    out = ag("run", "--no-pty", "echo", "--", "x", check=0)  # the -- after the command is the command's
    assert out.stdout == b"-- x\n"
    names = [r["name"] for r in json.loads(ag("runs", "--json", check=0).stdout)]
    assert names == ["echo", "n1"]


@pytest.mark.parametrize(
    "argv, code",
    [
        (["run", "--ttl"], 125),
        (["run", "--name", "--", "true"], 125),  # a bare -- is never an option's value
        (["exec", "-c", "--", "true"], 2),
        (["run", "--frobnicate", "--", "true"], 125),
        (["run", "--pty", "--no-pty", "--", "true"], 125),
        (["check", "a:b", "--"], 2),
        (["check", "a:b", "--tool"], 2),
        (["token", "verify", "a", "b"], 2),
        (["token", "verify", "a", "--", "b"], 2),
    ],
)
def test_hot_usage_errors_are_one_line(argv, code):
    out = ag(*argv)
    lines = out.stderr.decode().splitlines()
    assert out.returncode == code and len(lines) == 1, (out.returncode, lines)
    assert lines[0].startswith(f"agentsess: error: {argv[0]}") and f"agentsess {argv[0]}" in lines[0]


def test_a_hook_with_bad_arguments_fails_closed():
    out = ag("hook", "claude-code", "--run")
    assert out.returncode == 2 and out.stderr.decode().startswith("agentsess: denied: hook: option '--run' requires an argument")


# -- what an agent types cannot make its action unrecorded ------------------------------------


def test_exec_records_a_command_that_is_not_utf8():
    out = ag("run", "--no-pty", "--", PY, "-c",
             "import os, sys; os.execvp(sys.executable, [sys.executable, '-m', 'agentsess', 'exec', '--', 'printf', '%s', os.fsdecode(b'a\\xffb')])")
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"a\xffb"
    (rec,) = _execs()
    assert rec["command"] == "printf %s a\\xffb" and rec["exit_code"] == 0
    assert ag("verify", "last").returncode == 0


def test_a_hook_with_a_lone_surrogate_is_recorded_and_verifies():
    event = '{"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Bash", "tool_input": {"command": "ls \\udcff"}}'
    with InRun() as run:
        out = run.call("hook", "claude-code", "--run", run.run_id, input=event.encode())
        assert out.returncode == 0, out.stderr
        run_id = run.run_id
        run.finish()
    checked = [r["data"] for r in show(run_id)["receipts"] if r["type"] == "action.checked"]
    assert checked and checked[0]["summary"] == "ls \ufffd"
    verdict = json.loads(ag("verify", run_id, "--json").stdout)[0]
    assert verdict["ok"] and verdict["sealed"], verdict
