"""Pty mode driven through a real pty (pexpect): the child sees a terminal like without agentsess."""

import os
import sys

import pexpect
import pytest

PY = sys.executable


def spawn(args, rows=24, cols=100, **kw):
    env = dict(os.environ)
    env.setdefault("TERM", "xterm")
    return pexpect.spawn(PY, ["-m", "agentsess", "run", *args], env=env, dimensions=(rows, cols), timeout=20, **kw)


def finish(child) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus


def test_child_gets_its_own_pty():
    script = "import os; print('child', os.ttyname(0)); print('outer', os.readlink(f'/proc/{os.getppid()}/fd/0'))"
    child = spawn(["--no-contain", "--", PY, "-c", script])  # the parent must be the supervisor
    child.expect(r"child (/dev/pts/\d+)")
    inner = child.match.group(1).decode()
    child.expect(r"outer (/dev/pts/\d+)")
    outer = child.match.group(1).decode()
    assert inner != outer
    assert finish(child) == 0


def test_mode_is_recorded_as_pty():
    child = spawn(["--", "true"])
    assert finish(child) == 0
    from helpers import show

    assert show()["mode"] == "pty"


def test_window_size_is_the_users_and_follows_a_resize():
    script = (
        "import os,signal,sys,time\n"
        "def show(*a):\n"
        "    s=os.get_terminal_size(0); print(f'size {s.lines}x{s.columns}', flush=True)\n"
        "signal.signal(signal.SIGWINCH, show)\n"
        "show()\n"
        "sys.stdin.readline()\n"
    )
    child = spawn(["--", PY, "-c", script], rows=24, cols=100)
    child.expect(r"size 24x100")
    child.setwinsize(40, 132)
    child.expect(r"size 40x132")
    child.sendline("")
    assert finish(child) == 0


def test_typed_input_reaches_the_child():
    child = spawn(["--", PY, "-c", "print('got', input('name? '))"])
    child.expect("name\\? ")
    child.sendline("bob")
    child.expect("got bob")
    assert finish(child) == 0


def test_ctrl_c_reaches_the_child_once_through_its_pty():
    script = (
        "import signal,time,sys\n"
        "n=[]\n"
        "signal.signal(signal.SIGINT, lambda s,f: n.append(s))\n"
        "print('ready', flush=True)\n"
        "while not n: time.sleep(0.01)\n"
        "time.sleep(0.3)\n"
        "print('ints', len(n), flush=True)\n"
    )
    child = spawn(["--", PY, "-c", script])
    child.expect("ready")
    child.sendintr()
    child.expect(r"ints (\d+)")
    assert child.match.group(1) == b"1"
    assert finish(child) == 0


@pytest.mark.parametrize("ending", ["exit 0", "exit 3", "kill -TERM $$"])
def test_terminal_settings_are_restored(tmp_path, ending):
    before, after = tmp_path / "before", tmp_path / "after"
    cmd = f"stty -g > {before}; {PY} -m agentsess run -- sh -c '{ending}'; echo rc=$?; stty -g > {after}"
    child = pexpect.spawn("sh", ["-c", cmd], env=dict(os.environ), timeout=20)
    child.expect(r"rc=(\d+)")
    code = int(child.match.group(1))
    child.expect(pexpect.EOF)
    assert before.read_text() == after.read_text()
    assert code == {"exit 0": 0, "exit 3": 3, "kill -TERM $$": 143}[ending]


def test_terminal_restored_when_the_supervisor_is_terminated(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    cmd = (
        f"stty -g > {before}; {PY} -m agentsess run -- sleep 30 & pid=$!; sleep 1; kill -TERM $pid; wait $pid;"
        f" echo rc=$?; stty -g > {after}"
    )
    child = pexpect.spawn("sh", ["-c", cmd], env=dict(os.environ), timeout=30)
    child.expect(r"rc=(\d+)")
    child.expect(pexpect.EOF)
    assert before.read_text() == after.read_text()


def test_full_screen_program_works(tmp_path):
    text = tmp_path / "f.txt"
    text.write_text("".join(f"line {i}\n" for i in range(500)))
    child = spawn(["--", "less", str(text)], rows=24, cols=80)
    child.expect("line 0")
    child.send(" ")  # next page
    child.expect("line 2[0-9]")
    child.send("q")
    assert finish(child) == 0


def test_vim_edits_a_file(tmp_path):
    target = tmp_path / "note.txt"
    child = spawn(["--", "vim", "-u", "NONE", "-N", str(target)], rows=24, cols=80)
    child.expect("note.txt")
    child.send("ihello from vim\x1b")
    child.send(":wq\r")
    assert finish(child) == 0
    assert target.read_text() == "hello from vim\n"


def test_python_repl_works():
    child = spawn(["--", PY, "-q"])
    child.expect(">>> ")
    child.sendline("6*7")
    child.expect("42")
    child.expect(">>> ")
    child.sendline("exit()")
    assert finish(child) == 0


def test_output_log_records_the_pty_session():
    child = spawn(["--", "sh", "-c", "printf 'a\\033[1mbold\\033[0m\\n'"])
    assert finish(child) == 0
    from helpers import show

    run = show()
    log = os.path.join(os.environ["AGENTSESS_HOME"], "runs", run["id"], "output.log")
    with open(log, "rb") as fh:
        assert b"a\x1b[1mbold\x1b[0m" in fh.read()


def test_supervisor_sigkilled_in_pty_mode_takes_the_child_with_it(tmp_path):
    import signal

    from helpers import pid_alive, wait_for
    from inrun import host_pids

    pidfile = tmp_path / "pid"
    child = spawn(["--", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 60.0171"])
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="child pid")
    victim = wait_for(lambda: host_pids("sleep 60.0171"), what="the child as seen from here")[0]
    os.kill(child.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(victim), timeout=5, what="child gone after the pty hung up")
    child.close(force=True)
