"""The output log is gathered into blocks (up to 1 MiB, 50 ms) before it is written, yet nothing
the terminal showed is missing from it when the child crashes (SIGKILL of itself mid-burst) or
is stopped by a revocation while it writes as fast as it can: the log is, byte for byte, what
the terminal showed (agentsess's own notices aside), and the run's receipt digests exactly it."""

import hashlib
import os
import re
import signal
import sys

import pexpect
from helpers import cli, running_run_id, show

PY = sys.executable
BIG = 3 << 20  # many 64 KiB pty bursts: the writer thread's path, several 1 MiB blocks
LINE = b"z" * 75 + b"\n"
NOTICE = re.compile(rb"agentsess: [^\r\n]*\r\n")


def _log(run_id: str) -> bytes:
    with open(os.path.join(os.environ["AGENTSESS_HOME"], "runs", run_id, "output.log"), "rb") as fh:
        return fh.read()


def _spawn(code: str) -> pexpect.spawn:
    env = dict(os.environ, TERM="xterm")
    return pexpect.spawn(PY, ["-m", "agentsess", "run", "--", PY, "-c", code], env=env, timeout=90)


def _shown(child: pexpect.spawn) -> bytes:
    out = child.read()  # everything up to EOF
    child.close()
    return out


def _digests_match(run_id: str, log: bytes) -> None:
    run = show(run_id)
    assert run["output_bytes"] == len(log)
    assert run["output_sha256"] == hashlib.sha256(log).hexdigest()
    assert cli("verify", run_id).returncode == 0


def test_a_child_that_crashes_mid_burst_loses_nothing_from_the_log():
    # the child writes 3 MiB in 64 KiB writes and SIGKILLs itself at once: what it wrote is
    # still in its pty's buffers, and the last gathered block was not handed over yet
    code = (
        "import os, signal\n"
        f"data = {LINE!r} * ({BIG} // 76) + b'LAST LINE\\n'\n"
        "for i in range(0, len(data), 1 << 16): os.write(1, data[i:i + (1 << 16)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = _spawn(code)
    shown = _shown(child)
    assert child.exitstatus == 128 + signal.SIGKILL
    run_id = show()["id"]
    log = _log(run_id)
    expected = LINE.replace(b"\n", b"\r\n") * (BIG // 76) + b"LAST LINE\r\n"
    assert log == expected  # all of it, in order: the pty turns \n into \r\n
    assert NOTICE.sub(b"", shown) == log
    _digests_match(run_id, log)


def test_a_run_revoked_while_it_floods_its_terminal_logs_all_it_showed():
    # the child writes without pause until it is stopped: the revocation's SIGTERM lands
    # between any two bursts, with blocks gathered and queued for the writer thread
    code = (
        "import os, sys\n"
        f"data = {LINE!r} * 840\n"
        "os.write(1, b'FLOODING\\n')\n"
        "while True: os.write(1, data)\n"
    )
    child = _spawn(code)
    shown = b""
    while len(shown) < BIG:  # the terminal keeps reading: the run goes on at full speed
        shown += child.read_nonblocking(1 << 16, timeout=30)
    run_id = running_run_id()
    assert cli("revoke", run_id).returncode == 0
    shown += _shown(child)
    log = _log(run_id)
    assert show(run_id)["status"] == "revoked"
    assert log.startswith(b"FLOODING\r\n")
    body = log[len(b"FLOODING\r\n"):]
    assert len(body) > BIG and body.strip(b"z\r\n") == b""  # the child's bytes only (its last write may be cut)
    assert NOTICE.sub(b"", shown) == log  # the terminal showed exactly the log, plus the notice
    _digests_match(run_id, log)
