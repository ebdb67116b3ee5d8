"""`exec` inside a run on the fast frame (issue 18): the spellings agentsess writes skip the
argument parser and reach the supervisor in one frame; every spelling records the same
receipt, exits with the command's code and says the same when it cannot record.

The agent is the adversary: it can send the supervisor any frame it likes, from inside the run
or from beside it, so the supervisor's parsing of an `exec` frame is attacked here too.
"""

import json
import os
import sys

import pytest
from helpers import agentsess, show
from inrun import InRun

PY = sys.executable


@pytest.fixture
def live_run(tmp_path):
    with InRun("--agent", "none") as run:
        yield run


def _execs(run_id: str) -> list[dict]:
    return [r["data"] for r in show(run_id)["receipts"] if r["type"] == "action.exec"]


# (argv after `exec`, stdout, exit code, recorded command, recorded source); the first group
# takes the fast path, the second goes through the parser: both record alike
SPELLINGS = [
    (["-c", "echo a; exit 3"], b"a\n", 3, "echo a; exit 3", "exec"),
    (["--source", "claude-code", "-c", "exit 4"], b"", 4, "exit 4", "claude-code"),
    (["--source", "x", "--subagents", "-c", "echo s"], b"s\n", 0, "echo s", "x"),
    (["--subagents", "--source", "x", "-c", "true"], b"", 0, "true", "x"),
    (["-c", ""], b"", 0, "", "exec"),
    (["--", "sh", "-c", "exit 5"], b"", 5, "sh -c exit 5", "exec"),
    (["--source", "x", "--", "echo", "--source", "y", "-c", "z"], b"--source y -c z\n", 0,
     "echo --source y -c z", "x"),
    (["--", "-c", "x"], b"", 127, "-c x", "exec"),  # after --, even -c is the command's
    # through the parser
    (["--source=x", "-c", "true"], b"", 0, "true", "x"),
    (["--source", "a b", "-c", "exit 1"], b"", 1, "exit 1", "a b"),
    (["--source", "x", "--source", "y", "-c", "true"], b"", 0, "true", "y"),
    (["-c", "-x"], b"", 2, "-x", "exec"),
    (["echo", "plain"], b"plain\n", 0, "echo plain", "exec"),
]


@pytest.mark.parametrize("argv, stdout, code, command, source", SPELLINGS,
                         ids=[" ".join(s[0]) or "empty" for s in SPELLINGS])
def test_every_spelling_runs_the_command_and_records_it(live_run, tmp_path, argv, stdout, code, command, source):
    proc = live_run.call("exec", *argv, cwd=str(tmp_path))
    assert proc.returncode == code and proc.stdout == stdout
    assert b"could not record" not in proc.stderr, proc.stderr
    (rec,) = _execs(live_run.run_id)
    assert rec["command"] == command and rec["source"] == source and rec["exit_code"] == code
    assert rec["cwd"] == str(tmp_path) and rec["duration"] >= 0


def test_bytes_that_are_not_utf8_and_control_characters_are_recorded_escaped(live_run, tmp_path):
    folder = os.path.join(os.fsencode(tmp_path), b"dir\xff")
    os.mkdir(folder)
    proc = live_run.run([PY, "-c", "import os, subprocess, sys; sys.exit(subprocess.run([sys.executable, '-m', "
                         "'agentsess', 'exec', '--source', os.fsdecode(b'src\\xff'), '-c', "
                         "os.fsdecode(b'printf ok # \\xfe\\n# \\x1b[2J')]).returncode)"], cwd=os.fsdecode(folder))
    assert proc.returncode == 0 and proc.stdout == b"ok", proc.stderr
    (rec,) = _execs(live_run.run_id)
    assert rec["command"] == "printf ok # \\xfe\n# \x1b[2J" and rec["source"] == "src\\xff"
    assert rec["cwd"].startswith(str(tmp_path) + "/dir")  # as the JSON request recorded it
    assert agentsess("verify", live_run.run_id).returncode == 0


def test_a_command_that_removes_its_own_folder_is_still_recorded(live_run, tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    proc = live_run.call("exec", "-c", f"rmdir {folder}; exit 6", cwd=str(folder))
    assert proc.returncode == 6 and b"could not record" not in proc.stderr
    (rec,) = _execs(live_run.run_id)
    assert rec["exit_code"] == 6 and rec["cwd"] == str(folder)


@pytest.mark.parametrize("argv", [["-c", "echo ran; exit 3"], ["--", "sh", "-c", "echo ran; exit 3"],
                                  ["--source", "a b", "-c", "echo ran; exit 3"]])
def test_outside_a_run_the_command_runs_and_exec_says_it_was_not_recorded(argv, tmp_path):
    proc = agentsess("exec", *argv, env={"AGENTSESS_CONTROL": ""})
    assert proc.returncode == 3 and proc.stdout == b"ran\n"
    assert proc.stderr == (b"agentsess: could not record the command: not inside a run: no control socket found; "
                           b"start one with `agentsess run -- CMD`\n")


def test_a_supervisor_out_of_reach_is_named(tmp_path):
    stale = tmp_path / "control.sock"
    stale.write_text("")  # not a socket: the connection is refused
    proc = agentsess("exec", "-c", "exit 7", env={"AGENTSESS_CONTROL": str(stale)})
    assert proc.returncode == 7
    text = proc.stderr.decode()
    assert text.startswith(f"agentsess: could not record the command: cannot reach the run's supervisor at {stale}: ")
    assert text.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["-c", "touch MARK", "--", "touch", "MARK"], "-c takes exactly one COMMAND string"),
    (["--"], "no command"),
    (["--source", "x"], "no command given"),
    (["--bogus", "-c", "touch MARK"], "no such option: --bogus"),
    (["--source", "--", "-c", "touch MARK"], "option '--source' requires an argument"),
])
def test_bad_spellings_run_nothing_and_exit_2(live_run, tmp_path, argv, message):
    proc = live_run.call("exec", *argv, cwd=str(tmp_path))
    assert proc.returncode == 2 and message in proc.stderr.decode(), proc.stderr
    assert proc.stderr.decode().startswith("agentsess: error: ") and proc.stderr.count(b"\n") == 1
    assert not (tmp_path / "MARK").exists() and _execs(live_run.run_id) == []


# -- the frame, forged -----------------------------------------------------------------------

FORGE = r"""
import json, sys
from agentsess.edges.control import find_socket, request_fast
out = []
for words, body in json.loads(sys.argv[1]):
    code, so, se = request_fast(find_socket(), words, body.encode("utf-8", "surrogateescape"))
    out.append([code, so.decode("utf-8", "replace"), se.decode("utf-8", "replace")])
print(json.dumps(out))
"""


def _forge(run: InRun, frames: list) -> list:
    proc = run.run([PY, "-c", FORGE, json.dumps(frames)])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


MALFORMED = [
    (["exec", "0", "0.1", "-"], "no NULs here"),
    (["exec", "0", "0.1", "-"], "/tmp\0only one NUL"),
    (["exec", "-1", "0.1", "-"], "/tmp\0exec\0true"),
    (["exec", "0x1", "0.1", "-"], "/tmp\0exec\0true"),
    (["exec", "٣", "0.1", "-"], "/tmp\0exec\0true"),  # digits to str.isdigit and int(), not ASCII
    (["exec", "²", "0.1", "-"], "/tmp\0exec\0true"),  # a digit to str.isdigit, not to int()
    (["exec", "0", "nan", "-"], "/tmp\0exec\0true"),
    (["exec", "0", "inf", "-"], "/tmp\0exec\0true"),
    (["exec", "0", "-0.5", "-"], "/tmp\0exec\0true"),
    (["exec", "0", "soon", "-"], "/tmp\0exec\0true"),
    (["exec", "0", "0.1", "me"], "/tmp\0exec\0true"),
    (["exec", "0", "0.1"], "/tmp\0exec\0true"),
    (["exec", "0", "0.1", "-", "extra"], "/tmp\0exec\0true"),
    (["exec_start", "x"], "claude-code\0true"),
    (["EXEC", "0", "0.1", "-"], "/tmp\0exec\0true"),
]


def test_malformed_exec_frames_are_refused_and_record_nothing(live_run):
    answers = _forge(live_run, [[w, b] for w, b in MALFORMED])
    for (words, _), (code, out, err) in zip(MALFORMED, answers, strict=True):
        assert code == 2 and out == "", (words, code, err)
        assert "malformed request" in err, (words, err)
    assert _execs(live_run.run_id) == []
    assert agentsess("verify", live_run.run_id).returncode == 0


def test_a_forged_exec_frame_is_recorded_as_what_it_says_and_no_more(live_run):
    """A frame is the agent's word about its own command, like the JSON request it replaces:
    recorded in the caller's run, never another's; NULs split only the first two fields."""
    ((code, out, err),) = _forge(live_run, [[["exec", "9", "1.5", "-"], "/x\0tool\0echo a\0b"]])
    assert (code, out, err) == (0, "", "")
    (rec,) = _execs(live_run.run_id)
    assert rec["command"] == "echo a\0b" and rec["cwd"] == "/x" and rec["source"] == "tool"
    assert rec["exit_code"] == 9 and rec["duration"] == 1.5


def test_a_sub_agent_binding_cannot_be_claimed_by_a_frame(live_run):
    """exec_start binds only a sub-agent's own pending command (none here): a forged frame
    gets nothing to set, and a forged keeper binds nothing."""
    answers = _forge(live_run, [[["exec_start"], "claude-code\0echo hi"],
                                [["exec", "0", "0.1", str(os.getpid())], "/\0claude-code\0echo hi"]])
    assert answers == [[0, "", ""], [0, "", ""]]
    (rec,) = _execs(live_run.run_id)
    assert rec["source"] == "claude-code" and rec["checked"] is None


def test_a_process_outside_the_run_cannot_record_into_it(live_run):
    from agentsess.edges.control import request_fast
    from agentsess.edges.paths import control_socket

    code, out, err = request_fast(control_socket(live_run.run_id), ["exec", "0", "0.1", "-"], b"/\0exec\0rm -rf /")
    assert code == 2 and out == b"" and b"could not record the command" in err and b"not part of run" in err
    assert _execs(live_run.run_id) == []
