"""The output log under heavy output: gathered into blocks for its writer thread, yet complete
while the run is live as soon as the child goes quiet, and exactly what was shown at the end."""

import hashlib
import os
import sys

import pexpect
import pytest
from helpers import agentsess, cli, running_run_id, show, spawn, wait_for

PY = sys.executable
BIG = 3 << 20  # many 64 KiB pty bursts and 1 MiB pipe reads: the writer thread's path


def _child(flag) -> str:
    return (
        "import os, sys, time\n"
        f"line = b'x' * 75 + b'\\n'\n"
        f"data = line * ({BIG} // 76)\n"
        "for i in range(0, len(data), 1 << 16): os.write(1, data[i:i + (1 << 16)])\n"
        "os.write(1, b'QUIET NOW\\n')\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.02)\n"
    )


def _log(run_id: str) -> str:
    return os.path.join(os.environ["AGENTSESS_HOME"], "runs", run_id, "output.log")


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


@pytest.mark.parametrize("mode", ["pty", "pipes"])
def test_a_live_runs_log_catches_up_when_the_child_goes_quiet(tmp_path, mode):
    flag = tmp_path / "flag"
    if mode == "pty":
        env = dict(os.environ, TERM="xterm")
        child = pexpect.spawn(PY, ["-m", "agentsess", "run", "--", PY, "-c", _child(flag)], env=env, timeout=60)
        child.expect("QUIET NOW")
        expected = (BIG // 76) * 77 + len("QUIET NOW\r\n")  # the pty turns \n into \r\n
    else:
        child = spawn("run", "--no-pty", "--", PY, "-c", _child(flag), stdout=open(tmp_path / "out", "wb"))
        expected = (BIG // 76) * 76 + len("QUIET NOW\n")
    run_id = running_run_id()
    log = _log(run_id)
    # the child is quiet and the run live: the whole output is in the log, without the run ending
    wait_for(lambda: _size(log) == expected, timeout=20, what=f"{expected} bytes in the live run's log")
    assert show(run_id)["ended_at"] is None
    flag.touch()
    if mode == "pty":
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    else:
        assert child.wait(timeout=60) == 0
        assert (tmp_path / "out").read_bytes() == open(log, "rb").read()
    run = show(run_id)
    data = open(log, "rb").read()
    assert run["output_bytes"] == len(data) == expected
    assert run["output_sha256"] == hashlib.sha256(data).hexdigest()
    assert cli("verify", run_id).returncode == 0


def test_big_output_with_a_secret_is_masked_in_the_log_and_complete():
    from helpers import write_config

    cli("secret", "set", "tok", input=b"s3cr3t-Value-0123456789")
    write_config('[profiles.p.env]\nTOKEN = { secret = "tok" }\n')
    script = (
        "import os\n"
        "chunk = (b'y' * 70 + b'\\n') * 2000\n"
        "for i in range(40): os.write(1, chunk + os.environ['TOKEN'].encode() + b'\\n')\n"
    )
    proc = agentsess("run", "--no-pty", "--profile", "p", "--", PY, "-c", script)
    assert proc.returncode == 0, proc.stderr[-500:]
    run = show()
    data = open(_log(run["id"]), "rb").read()
    assert b"s3cr3t-Value" not in data and b"s3cr3t-Value" not in proc.stdout
    assert data.count(b"[masked:tok]") == 40
    assert data == proc.stdout
    assert run["output_sha256"] == hashlib.sha256(data).hexdigest()
