"""The pty relay: once a pty-mode child writes faster than one burst, a forked copy of the
supervisor reads the child's pty and hands the bytes to the supervisor through a pipe (see
``Supervisor._start_relay``). Nothing about the run may change with it: every byte is masked,
shown and logged in order; keystrokes, resizes and signals behave as before; the relay never
outlives the run, never counts as the agent's leftover process, and a relay that is killed
(by the agent in an advisory run, or the OOM killer) costs nothing but the bytes it held: the
supervisor reads the pty itself again."""

import hashlib
import os
import re
import signal
import sys

import pexpect
from helpers import children, cli, forks_of, live_with_marker, pid_alive, show, wait_for, write_config

PY = sys.executable
LINE = b"y" * 75 + b"\n"
NOTICE = re.compile(rb"agentsess: [^\r\n]*\r+\n")  # a notice written before raw mode: \r\r\n


def _spawn(args, **kw) -> pexpect.spawn:
    env = dict(os.environ, TERM="xterm")
    return pexpect.spawn(PY, ["-m", "agentsess", "run", *args], env=env, timeout=60, dimensions=(24, 80), **kw)


def relays(supervisor: int) -> list[int]:
    """The supervisor's relay (no hook is parsed in these runs: no parser worker either)."""
    return forks_of(supervisor)


def _log(run_id: str) -> bytes:
    with open(os.path.join(os.environ["AGENTSESS_HOME"], "runs", run_id, "output.log"), "rb") as fh:
        return fh.read()


def _log_is_what_was_shown(shown: bytes, run_id: str) -> bytes:
    log = _log(run_id)
    assert NOTICE.sub(b"", shown) == log, shown[:300]
    run = show(run_id)
    assert run["output_bytes"] == len(log)
    assert run["output_sha256"] == hashlib.sha256(log).hexdigest()
    assert cli("verify", run_id).returncode == 0
    return log


def _read_until(child: pexpect.spawn, marker: bytes, shown: bytes = b"") -> bytes:
    while marker not in shown:
        shown += child.read_nonblocking(1 << 16, timeout=30)
    return shown


def _rest(child: pexpect.spawn) -> bytes:
    out = child.read()
    child.close()
    return out


def test_a_flood_is_relayed_and_the_relay_is_gone_with_the_run_and_no_leftover():
    # on_exit = "stop": the run counts and kills what is left below the supervisor at its end;
    # the relay is reaped before that and must not be counted as the agent's leftover
    write_config('[profiles.default]\non_exit = "stop"\n')
    code = (
        "import os, sys\n"
        f"data = {LINE!r} * 840\n"
        "for _ in range(60): os.write(1, data)\n"  # ~3.8 MiB in 64 KiB writes
        "os.write(1, b'RELAYED?\\n')\n"
        "sys.stdin.readline()\n"
        "os.write(1, b'DONE\\n')\n"
    )
    child = _spawn(["--", PY, "-c", code])
    shown = _read_until(child, b"RELAYED?")
    relay = relays(child.pid)
    assert len(relay) == 1, "a flood of output is read by one relay"
    child.send("go\r")
    shown += _rest(child)
    assert child.exitstatus == 0
    assert not pid_alive(relay[0])
    run_id = show()["id"]
    log = _log_is_what_was_shown(shown, run_id)
    assert log.count(LINE.replace(b"\n", b"\r\n")) == 840 * 60
    assert log.endswith(b"DONE\r\n")
    exited = [r for r in show(run_id)["receipts"] if r["type"] == "run.exited"][0]
    assert exited["data"]["leftover_processes_killed"] == 0


def test_a_short_run_has_no_relay():
    child = _spawn(["--", "sh", "-c", "echo hello; read line; echo bye"])
    child.expect("hello")
    assert relays(child.pid) == []
    child.send("x\r")
    child.expect("bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_keystrokes_and_a_resize_reach_the_child_while_relayed():
    code = (
        "import os, signal, sys, fcntl, termios, struct\n"
        f"data = {LINE!r} * 840\n"
        "for _ in range(40): os.write(1, data)\n"
        "got = []\n"
        "signal.signal(signal.SIGWINCH, lambda s, f: got.append(1))\n"
        "os.write(1, b'FLOODED\\n')\n"
        "signal.sigtimedwait([signal.SIGWINCH], 20) if not got else None\n"
        "rows, cols = struct.unpack('hhhh', fcntl.ioctl(0, termios.TIOCGWINSZ, b'\\0' * 8))[:2]\n"
        "print(f'SIZE {rows}x{cols}', flush=True)\n"
        "print('TYPED', sys.stdin.readline().strip(), flush=True)\n"
    )
    child = _spawn(["--", PY, "-c", code])
    _read_until(child, b"FLOODED")
    assert len(relays(child.pid)) == 1
    child.setwinsize(33, 111)
    child.expect(r"SIZE 33x111")
    child.send("hello relay\r")
    child.expect(r"TYPED hello relay")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_signals_to_the_supervisors_group_do_not_stop_the_relay():
    # SIGINT/SIGTERM sent to the whole process group of `agentsess run` (a `kill -- -PGID`)
    # reach the child once, through the supervisor; the relay ignores them and goes on
    code = (
        "import os, signal, time\n"
        f"data = {LINE!r} * 840\n"
        "seen = []\n"
        "signal.signal(signal.SIGINT, lambda s, f: seen.append(s))\n"
        "for _ in range(40): os.write(1, data)\n"
        "os.write(1, b'WAITING\\n')\n"
        "deadline = time.time() + 20\n"
        "while not seen and time.time() < deadline: time.sleep(0.01)\n"
        "for _ in range(40): os.write(1, data)\n"
        "os.write(1, f'GOT {len(seen)}\\n'.encode())\n"
    )
    child = _spawn(["--", PY, "-c", code])
    shown = _read_until(child, b"WAITING")
    relay = relays(child.pid)
    assert len(relay) == 1
    os.killpg(os.getpgid(child.pid), signal.SIGINT)
    mark = len(shown)
    while len(shown) < mark + (1 << 20):  # the child floods again, once it got the signal
        shown += child.read_nonblocking(1 << 16, timeout=30)
    assert relays(child.pid) == relay  # the same relay, still at work
    shown = _read_until(child, b"GOT ", shown)
    shown += _rest(child)
    assert b"GOT 1\r\n" in shown  # the child got it once
    assert child.exitstatus == 0
    log = _log_is_what_was_shown(shown, show()["id"])
    assert log.count(LINE.replace(b"\n", b"\r\n")) == 840 * 80


def test_a_killed_relay_costs_no_more_than_what_it_held():
    # the agent of an advisory run can signal its supervisor's processes: killing the relay
    # must neither stop the output nor let anything past masking; the supervisor reads the pty
    # itself again, and the log is still exactly what was shown
    secret = "relay-Secr3t-" + "q" * 20
    cli("secret", "set", "relay-secret", input=secret.encode())
    write_config('[profiles.default.env]\nRELAY_SECRET = { secret = "relay-secret" }\n')
    code = (
        "import os, sys\n"
        f"data = {LINE!r} * 840\n"
        "for _ in range(40): os.write(1, data)\n"
        "os.write(1, b'KILL ME\\n')\n"
        "sys.stdin.readline()\n"
        "for _ in range(40): os.write(1, data)\n"
        "os.write(1, ('AFTER ' + os.environ['RELAY_SECRET'] + '\\n').encode())\n"
    )
    child = _spawn(["--no-contain", "--", PY, "-c", code])
    shown = _read_until(child, b"KILL ME")
    relay = relays(child.pid)
    assert len(relay) == 1
    os.kill(relay[0], signal.SIGKILL)
    wait_for(lambda: relay[0] not in children(child.pid), timeout=10, what="the relay reaped")
    child.send("go\r")
    shown += _rest(child)
    assert child.exitstatus == 0
    assert secret.encode() not in shown
    assert b"AFTER [masked:relay-secret]\r\n" in shown
    log = _log_is_what_was_shown(shown, show()["id"])
    assert secret.encode() not in log
    assert relays(child.pid) == []  # one relay at most: none is started again


def test_supervisor_killed_while_relayed_takes_child_and_relay_with_it():
    # the child floods (the relay starts), then goes quiet: the relay waits on the pty and
    # writes nothing, so only its parent-death signal can end it; it must, or it would hold
    # the pty open and the child would never get the hang-up that a dead supervisor means
    code = (
        "import os, time\n"
        f"data = {LINE!r} * 840\n"
        "os.write(1, f'PID {os.getpid()}\\n'.encode())\n"
        "for _ in range(40): os.write(1, data)\n"
        "os.write(1, b'QUIET\\n')\n"
        "time.sleep(60.0311)\n"
    )
    child = _spawn(["--no-contain", "--", PY, "-c", code])
    child.expect(rb"PID (\d+)\r\n")
    quiet = int(child.match.group(1))
    _read_until(child, b"QUIET")
    relay = relays(child.pid)
    assert len(relay) == 1
    os.kill(child.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(relay[0]), timeout=10, what="the relay gone")
    wait_for(lambda: not pid_alive(quiet), timeout=10, what="the child gone after the pty hung up")
    child.close(force=True)


def test_secrets_split_across_relay_bursts_and_wrapped_are_still_masked():
    # the relay cuts the stream where it likes; masking (in the supervisor, after the relay)
    # still sees one stream: a secret written in two pieces with a pause longer than the idle
    # flush, and its base64 wrapped at 76 columns, are masked on the terminal and in the log
    import base64

    secret = "relay-split-" + "k" * 30
    cli("secret", "set", "split-secret", input=secret.encode())
    write_config('[profiles.default.env]\nSPLIT_SECRET = { secret = "split-secret" }\n')
    code = (
        "import base64, os, sys, time\n"
        f"data = {LINE!r} * 840\n"
        "for _ in range(40): os.write(1, data)\n"
        "os.write(1, b'FLOODED\\n')\n"
        "sys.stdin.readline()\n"
        "s = os.environ['SPLIT_SECRET'].encode()\n"
        "os.write(1, b'A ' + s[:9]); time.sleep(0.2); os.write(1, s[9:] + b' Z\\n')\n"
        "os.write(1, base64.encodebytes(b'x' * 50 + s + b'y' * 50))\n"
        "for _ in range(10): os.write(1, data)\n"
        "os.write(1, b'END\\n')\n"
    )
    child = _spawn(["--", PY, "-c", code])
    shown = _read_until(child, b"FLOODED")
    assert len(relays(child.pid)) == 1
    child.send("go\r")
    shown = _read_until(child, b"END\r\n", shown)
    shown += _rest(child)
    assert child.exitstatus == 0
    log = _log_is_what_was_shown(shown, show()["id"])
    wrapped = base64.encodebytes(b"x" * 50 + secret.encode() + b"y" * 50).replace(b"\n", b"\r\n")
    for where in (shown, log):
        assert secret.encode() not in where
        assert b"A " + secret.encode()[:9] not in where  # the first piece was held through the pause
        assert b"A [masked:split-secret] Z\r\n" in where
        assert wrapped not in where and b"[masked:split-secret]" in where.split(b"Z\r\n", 1)[1]


def test_a_leftover_holding_the_pty_ends_the_run_and_only_it_is_counted():
    # the child floods, leaves a process of its own session holding its pty open (so the pty
    # never ends and the relay never sees its end), and exits: the run ends once the output is
    # idle, as without the relay; the relay is killed and reaped before the leftover processes
    # are counted (and killed: on_exit = "stop"), so only the agent's own leftover counts
    write_config('[profiles.default]\non_exit = "stop"\n')
    code = (
        "import os, subprocess\n"
        f"data = {LINE!r} * 840\n"
        "for _ in range(40): os.write(1, data)\n"
        "subprocess.Popen(['sleep', '60.0293'], start_new_session=True)\n"
        "os.write(1, b'LEFT ONE\\n')\n"
    )
    child = _spawn(["--no-contain", "--", PY, "-c", code])
    try:
        shown = _read_until(child, b"LEFT ONE")
        relay = relays(child.pid)
        shown += _rest(child)
        assert child.exitstatus == 0
        assert relay and not pid_alive(relay[0])
        exited = [r for r in show()["receipts"] if r["type"] == "run.exited"][0]
        assert exited["data"]["leftover_processes_killed"] == 1  # the sleep (the supervisor is its subreaper)
    finally:
        for pid in live_with_marker("sleep 60.0293"):
            os.kill(pid, signal.SIGKILL)
