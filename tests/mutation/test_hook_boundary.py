"""The hook boundary in-process (`agentsess hook`, cli/guard.py): every way it can fail exits 2,
which Claude Code, Codex and Gemini CLI all take as "block this call"; exit 0 or 1 would let
the call through. These are the failures that happen before the supervisor is asked; the
supervisor's own answers are tested against live runs in tests/agents/test_hooks.py. stdin is
a real file, stdout and stderr are captured; see docs/mutation-testing.md."""

import io
import os
import socket

import pytest

from agentsess.cli import guard
from agentsess.cli.inside import NOT_INSIDE
from agentsess.edges import control

RUN = "run_01jabcdefghjkmnpqrstvwxyz0"


@pytest.fixture
def stdin(tmp_path, monkeypatch):
    """Put ``data`` on the hook's stdin (a real file, read as the hook reads it)."""

    def give(data: bytes):
        path = tmp_path / "stdin"
        path.write_bytes(data)
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(open(path, "rb")))

    give(b"{}")
    return give


@pytest.fixture
def refused_socket(tmp_path, monkeypatch):
    """AGENTSESS_CONTROL naming a socket nobody listens on: a run's supervisor that is gone."""
    path = str(tmp_path / "control.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)  # bound, never listening: connect() is refused
    monkeypatch.setenv("AGENTSESS_CONTROL", path)
    yield path
    sock.close()


def hook(capsys, *argv) -> tuple[int, str, str]:
    code = guard.hook_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_bare_hook_prints_its_help_and_blocks(capsys, stdin):
    code, out, err = hook(capsys)
    assert code == 2 and out == guard.hook_parser().format_help() and err == ""
    words = " ".join(out.split())  # the help's words, however it is laid out
    assert words.lower().startswith("usage: agentsess hook claude-code|codex|gemini [--run run] ")
    assert "Fails closed: on any error it exits 2 with the reason on stderr" in words
    assert " --run RUN the run's id (default: $AGENTSESS_RUN_ID)" in words
    assert " AGENT the agent whose hook this is: claude-code, codex or gemini " in words


@pytest.mark.parametrize("agent", ["aider", "Claude-Code", "claude-code "])
def test_an_unknown_agent_blocks(capsys, stdin, agent):
    code, out, err = hook(capsys, agent, "--run", RUN)
    assert (code, out) == (2, "")
    assert err == f"agentsess: denied: hook: unknown agent '{agent}': expected claude-code, codex or gemini\n"


def test_no_run_blocks(capsys, stdin, monkeypatch):
    monkeypatch.delenv("AGENTSESS_RUN_ID", raising=False)
    assert hook(capsys, "codex") == (2, "", "agentsess: denied: hook: no --run RUN and no AGENTSESS_RUN_ID\n")
    monkeypatch.setenv("AGENTSESS_RUN_ID", "")
    assert hook(capsys, "codex")[0] == 2


@pytest.mark.parametrize("data", [b"", b"not json", b"\xff\xfe", b'{"a": 1'])
def test_stdin_that_is_not_json_blocks(capsys, stdin, data):
    stdin(data)
    assert hook(capsys, "gemini", f"--run={RUN}") == (2, "", "agentsess: denied: hook: the input on stdin is not JSON\n")


def test_an_unexpected_error_blocks_and_names_itself(capsys, stdin):
    stdin(b"[" * 100000)  # past the JSON parser's nesting limit: RecursionError, not ValueError
    code, out, err = hook(capsys, "claude-code", f"--run={RUN}")
    assert (code, out) == (2, "")
    assert err.startswith("agentsess: denied: internal error in the hook: RecursionError: ") and err.endswith("\n")
    assert err.count("\n") == 1


def test_a_command_after_the_hook_blocks(capsys, stdin):
    assert hook(capsys, "claude-code", "--run", RUN, "--", "true") == (
        2, "", "agentsess: denied: hook: takes no command after -- (see `agentsess hook --help`)\n")


def test_the_run_may_come_from_agentsess_run_id(capsys, stdin, monkeypatch):
    monkeypatch.setenv("AGENTSESS_RUN_ID", RUN)
    stdin(b"not json")  # past the run check: the next check speaks
    assert hook(capsys, "codex") == (2, "", "agentsess: denied: hook: the input on stdin is not JSON\n")


def test_a_hook_whose_supervisor_is_gone_blocks(capsys, stdin, refused_socket):
    expected = f"agentsess: denied: cannot reach the run's supervisor at {refused_socket}: Connection refused\n"
    # the call agentsess writes into an agent's settings takes the fast path
    assert hook(capsys, "claude-code", "--run", RUN) == (2, "", expected)
    # any other spelling goes through the parser, and still blocks
    code, out, err = hook(capsys, "claude-code", f"--run={RUN}")
    assert code == 2 and out == "" and err.startswith("agentsess: denied: ") and err.count("\n") == 1


def test_a_hook_outside_any_run_blocks(capsys, stdin, monkeypatch):
    monkeypatch.delenv("AGENTSESS_CONTROL", raising=False)
    if control.find_socket() is not None:
        pytest.skip("this process's ancestry holds another run's control socket")
    assert hook(capsys, "codex", "--run", RUN) == (2, "", f"agentsess: denied: {NOT_INSIDE}\n")


def test_check_outside_a_run_is_refused_with_a_usage_code(monkeypatch):
    from agentsess.errors import USAGE, AgentsessError

    monkeypatch.delenv("AGENTSESS_CONTROL", raising=False)
    if control.find_socket() is not None:
        pytest.skip("this process's ancestry holds another run's control socket")
    with pytest.raises(AgentsessError) as info:
        guard.check_main(["fs:read"])
    assert (info.value.message, info.value.exit_code) == (NOT_INSIDE, USAGE)


# -- which calls take the fast path --------------------------------------------------------


def test_only_the_exact_settings_call_is_plain():
    assert guard._plain_hook_call(["claude-code", "--run", RUN]) == ("claude-code", RUN)
    for agent in guard.AGENTS:
        assert guard._plain_hook_call([agent, "--run", RUN]) == (agent, RUN)
    for argv in (
        ["aider", "--run", RUN],
        ["claude-code", "--run=" + RUN],
        ["claude-code", "-r", RUN],
        ["claude-code", "--run", RUN, "x"],
        ["claude-code", "--run", "-x"],
        ["claude-code", "--run", "a b"],
        ["claude-code", "--run"],
        ["--run", RUN, "claude-code"],
    ):
        assert guard._plain_hook_call(argv) is None, argv


def test_a_plain_word_is_short_printable_ascii_without_spaces_or_a_leading_dash():
    assert guard._plain_word("x") and guard._plain_word("a" * 256) and guard._plain_word("fs:read")
    assert guard._plain_word("a-b")
    for word in ("", "a" * 257, "é", "a\x1b", "a\n", "a b", "-a", "--run"):
        assert not guard._plain_word(word), word


def test_words_that_are_not_utf8_are_recorded_escaped():
    assert guard._shown([os.fsdecode(b"echo \xff"), "ok"]) == ["echo \\xff", "ok"]


# -- `check` before it asks -----------------------------------------------------------------


def _check_error(argv) -> tuple[str, int]:
    from agentsess.errors import AgentsessError

    with pytest.raises(AgentsessError) as info:
        guard.check_main(argv)
    return info.value.message, info.value.exit_code


def test_a_bare_check_prints_its_help_with_a_usage_code(capsys):
    from agentsess.errors import USAGE

    assert guard.check_main([]) == USAGE
    out, err = capsys.readouterr()
    assert out == guard.check_parser().format_help() and err == ""
    assert " SCOPE the scope to check, e.g. github:pr:create " in " ".join(out.split())


def test_check_with_an_empty_command_is_a_usage_error():
    assert _check_error(["fs:read", "--"]) == ("check: no command after -- (see `agentsess check --help`)", 2)
    assert _check_error(["--tool", "x", "fs:read", "--"])[0].startswith("check: no command after --")


def test_check_outside_a_run_through_the_parser_is_refused(monkeypatch):
    monkeypatch.delenv("AGENTSESS_CONTROL", raising=False)
    if control.find_socket() is not None:
        pytest.skip("this process's ancestry holds another run's control socket")
    assert _check_error(["--tool", "x", "fs:read"]) == (NOT_INSIDE, 2)
