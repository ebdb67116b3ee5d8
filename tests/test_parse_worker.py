"""The shell parser in another process (core/guard/isolation.py): one fork per call in a
one-shot command, one long-lived worker in the run's supervisor.

The worker is the supervisor's copy that parses the agent's command lines: the adversary
feeds it. A crash or a hang in it must cost only the call in flight (denied where a rule looks
at the arguments), it must hold nothing of the supervisor's but its pipes, ignore signals meant
for the supervisor, leave with the supervisor, and never count as a process the run left.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import forks_of, pid_alive, show, wait_for, write_config
from inrun import InRun

from agentsess.core.guard import commands, isolation

PY = sys.executable


@pytest.fixture
def worker():
    isolation.keep_worker()
    try:
        yield
    finally:
        isolation.stop_worker()


def crash(_arg):
    import ctypes

    ctypes.string_at(0)  # a real segmentation fault, as a bug in tree-sitter would make


def fails(_arg):
    raise ValueError("no")


def echo(arg):
    return arg


def worker_pid() -> int:
    assert isolation._worker is not None and isolation._worker.pid is not None
    return isolation._worker.pid


LINES = ["git push origin main", "cd . && git  push", "sh -c 'git push'", "g$'i't push", "echo $(git push)",
         "a | b; c && d || e", "if true; then git push; fi", "x=1 env Y=2 nohup git push --force",
         "echo \udcff", "cat <<EOF\nhi\nEOF", "for i in 1 2; do rm -rf \"$i\"; done", "((", ""]


def test_the_worker_answers_as_the_parser_does_call_after_call(worker):
    seen = set()
    for line in LINES * 3:
        ok, answer = isolation.isolated(commands._parse_json, line)
        assert ok and answer == json.loads(json.dumps(commands._parse_json(line)))
        seen.add(worker_pid())
    assert len(seen) == 1 and worker_pid() != os.getpid()


def test_a_command_line_larger_than_a_pipe_goes_through_whole(worker):
    # ~250 KB each way (a pipe holds 64 KiB): both ends must keep reading while they write
    line = "\n".join(f"echo {i:03d}{'x' * 270}" for i in range(900))
    assert len(line) > 3 * 65536
    ok, answer = isolation.isolated(commands._parse_json, line)
    assert ok and answer["error"] is None and len(answer["commands"]) == 900
    assert answer["commands"][-1][0] == ["echo", "899" + "x" * 270]


def test_a_crash_costs_the_call_in_flight_only(worker):
    ok, answer = isolation.isolated(echo, "before")
    first = worker_pid()
    assert (ok, answer) == (True, "before")
    assert isolation.isolated(crash, "x") == (False, isolation.FAILED)
    assert not pid_alive(first)
    assert isolation.isolated(echo, "after") == (True, "after")
    assert worker_pid() != first


def test_a_raising_call_is_a_failure_and_the_worker_stays(worker):
    isolation.isolated(echo, "x")
    first = worker_pid()
    assert isolation.isolated(fails, "x") == (False, isolation.FAILED)
    assert isolation.isolated(echo, "y") == (True, "y") and worker_pid() == first


def test_a_hung_worker_is_replaced_after_the_timeout(worker):
    isolation.isolated(echo, "x")
    first = worker_pid()
    os.kill(first, signal.SIGSTOP)
    ok, why = isolation.isolated(echo, "y", timeout=0.5)
    assert not ok and why == "the shell parser took longer than 0.5s"
    assert not pid_alive(first)
    assert isolation.isolated(echo, "z") == (True, "z") and worker_pid() != first


def test_a_worker_that_answers_nonsense_is_replaced(worker):
    isolation.isolated(echo, "x")
    first = worker_pid()
    # what the worker sends back, written by someone else: a length far beyond any answer
    os.write(os.open(f"/proc/{first}/fd/{_answer_fd(first)}", os.O_WRONLY), b"\xff\xff\xff\xff")
    ok, why = isolation.isolated(echo, "y", timeout=2)
    assert not ok
    assert isolation.isolated(echo, "z") == (True, "z") and worker_pid() != first


def _answer_fd(pid: int) -> int:
    pipes = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd") if int(fd) > 2)
    return pipes[-1] if pipes[-1] != isolation._worker.requests else pipes[0]


def test_the_worker_ignores_signals_meant_for_the_supervisor(worker):
    isolation.isolated(echo, "x")
    pid = worker_pid()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH, signal.SIGTSTP):
        os.kill(pid, sig)
    time.sleep(0.2)
    assert isolation.isolated(echo, "still") == (True, "still") and worker_pid() == pid


def test_the_worker_holds_no_descriptor_of_its_parent_but_its_pipes(worker, tmp_path):
    held = open(tmp_path / "secret-file", "w")  # noqa: SIM115 - open across the fork on purpose
    try:
        isolation.isolated(echo, "x")
        pid = worker_pid()
        fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    finally:
        held.close()
    assert {fds[0], fds[1], fds[2]} == {os.devnull}
    rest = [target for fd, target in fds.items() if fd > 2]
    assert len(rest) == 2 and all(t.startswith("pipe:") for t in rest)


def test_the_worker_is_recycled(worker, monkeypatch):
    monkeypatch.setattr(isolation, "RECYCLE", 3)
    pids = []
    for i in range(7):
        assert isolation.isolated(echo, i) == (True, i)
        pids.append(isolation._worker.pid)
    # after every third call the worker goes; the next call starts a fresh one
    assert pids[:2] == [pids[0]] * 2 and pids[2] is None and len({p for p in pids if p}) == 3


def test_the_worker_leaves_when_its_process_dies(tmp_path):
    script = ("import os, sys; from agentsess.core.guard import isolation, commands; isolation.keep_worker(); "
              "isolation.isolated(commands._parse_json, 'ls'); print(isolation._worker.pid, flush=True); os._exit(0)")
    out = subprocess.run([PY, "-c", script], capture_output=True, check=True, timeout=30)
    pid = int(out.stdout)
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the orphaned worker to leave")


def test_without_a_worker_each_call_forks():
    assert isolation._worker is None and not isolation._keep
    assert isolation.isolated(echo, "a") == (True, "a")
    assert isolation.isolated(crash, "a") == (False, isolation.FAILED)


# -- in a live run -------------------------------------------------------------------------

CONFIG = """
[profiles.p]
scopes = ["repo:read"]
default_scopes = ["repo:read"]

[[profiles.p.rules]]
tool = "Bash"
args = "git push*"
decision = "deny"

[[profiles.p.rules]]
tool = "Bash"
scope = "repo:read"
decision = "allow"
"""


def _pre(command: str) -> bytes:
    return json.dumps({"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Bash",
                       "tool_input": {"command": command}}).encode()


def _decision(live: InRun, command: str) -> str:
    out = live.call("hook", "claude-code", "--run", live.run_id, input=_pre(command))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["hookSpecificOutput"]["permissionDecision"]


@pytest.mark.parametrize("mode", [pytest.param([], id="contained"), pytest.param(["--no-contain"], id="advisory")])
def test_a_run_parses_with_one_worker_that_dies_with_the_run(mode):
    write_config(CONFIG)
    with InRun("--profile", "p", "--agent", "none", *mode) as live:
        supervisor = live.proc.pid
        assert _decision(live, "git status") == "allow"
        assert _decision(live, "cd . && git  push --force") == "deny"
        (first,) = forks_of(supervisor)
        assert _decision(live, "ls -la") == "allow"
        assert forks_of(supervisor) == [first]
        # the agent's command killed it (as a crash in tree-sitter would): the next call
        # is decided by a new worker, as strictly as before
        os.kill(first, signal.SIGKILL)
        assert _decision(live, "git push origin main") == "deny"
        assert _decision(live, "git log") == "allow"
        (second,) = forks_of(supervisor)
        assert second != first
        live.finish(0)
    assert not pid_alive(second)
    (exited,) = [r["data"] for r in show(live.run_id)["receipts"] if r["type"] == "run.exited"]
    assert exited["leftover_processes_killed"] == 0


def test_a_worker_that_cannot_start_says_so_and_leaks_nothing():
    # room for one pipe but not two: the first pipe's descriptors must not stay behind
    script = """
import os, resource
from agentsess.core.guard import isolation
def open_fds():
    found = set()
    for name in os.listdir('/proc/self/fd'):
        try:
            os.fstat(int(name))
            found.add(int(name))
        except OSError:
            pass  # the listing's own descriptor
    return found
isolation.keep_worker()
before = open_fds()
limit, free = 0, 0
while free < 3:  # three free descriptors below the limit: one pipe fits, the second does not
    free += limit not in before
    limit += 1
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
print(isolation.isolated(os.getpid, 'x'))
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
print(open_fds() == before)
"""
    out = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    answer, same = out.stdout.splitlines()
    assert answer == "(False, 'the shell parser could not start (Too many open files)')" and same == "True"
