"""Notices during a run (revocation, expiry): recorded at once, and in pty mode held while the
child's full-screen program (its alternate screen) is up, then shown once it leaves it or the
run ends. Driven through a real pty (pexpect) with real full-screen children."""

import os
import sys

import pexpect
import pytest
from helpers import cli, running_run_id, show, wait_for, write_config

from agentsess.edges.supervisor import Terminal

PY = sys.executable
KEEP = '[profiles.keep]\non_revoke = "keep"\n'


def spawn(args, rows=24, cols=80):
    env = dict(os.environ)
    env["TERM"] = "xterm"
    return pexpect.spawn(PY, ["-m", "agentsess", "run", *args], env=env, dimensions=(rows, cols), timeout=30)


def finish(child) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus


def notices(run: str = "last") -> list[dict]:
    return [r for r in show(run)["receipts"] if r["type"] == "run.notice"]


def _full_screen(enter: bytes, leave: bytes, flags) -> str:
    """A child that enters the alternate screen (the sequence cut in two by a pause, so in two
    reads), waits for flag ``left``, leaves it, then waits for flag ``end``."""
    return (
        "import os, sys, time\n"
        f"enter, leave, flags = {enter!r}, {leave!r}, {str(flags)!r}\n"
        "def wait(name):\n"
        "    while not os.path.exists(os.path.join(flags, name)): time.sleep(0.02)\n"
        "os.write(1, enter[:4]); time.sleep(0.2); os.write(1, enter[4:])\n"
        "os.write(1, b'FULL SCREEN\\r\\n')\n"
        "wait('leave')\n"
        "os.write(1, leave + b'BACK\\r\\n')\n"
        "wait('end')\n"
    )


@pytest.mark.parametrize(
    "enter,leave",
    [(b"\x1b[?1049h", b"\x1b[?1049l"), (b"\x1b[?1047h", b"\x1b[?1047l"), (b"\x1b[?47h", b"\x1b[?47l"),
     (b"\x1b[?1049;2004h", b"\x1b[?2004;1049l")],
    ids=["1049", "1047", "47", "with-other-modes"],
)
def test_revoke_notice_waits_for_the_full_screen_program_and_is_recorded_at_once(tmp_path, enter, leave):
    write_config(KEEP)
    flags = tmp_path / "flags"
    flags.mkdir()
    child = spawn(["--profile", "keep", "--", PY, "-c", _full_screen(enter, leave, flags)])
    child.expect("FULL SCREEN")
    run_id = running_run_id()
    cli("revoke", run_id, check=0)
    # recorded at once, while the full-screen program is still up ...
    recorded = wait_for(lambda: notices(run_id), what="the run.notice receipt")
    assert "revoked" in recorded[0]["data"]["text"]
    # ... but not written onto its screen
    assert child.expect([r"agentsess: run \S+ was revoked", pexpect.TIMEOUT], timeout=1.5) == 1
    (flags / "leave").touch()
    child.expect("BACK")
    # shown once it left, while the run goes on
    child.expect(r"agentsess: run \S+ was revoked; its credentials are dead")
    assert show(run_id)["ended_at"] is None  # the run goes on
    (flags / "end").touch()
    assert finish(child) == 0


def test_a_notice_outside_the_alternate_screen_is_shown_at_once(tmp_path):
    write_config(KEEP)
    flags = tmp_path / "flags"
    flags.mkdir()
    script = (
        "import os, time\n"
        "os.write(1, b'PLAIN\\r\\n')\n"
        f"while not os.path.exists({str(flags / 'end')!r}): time.sleep(0.02)\n"
    )
    child = spawn(["--profile", "keep", "--", PY, "-c", script])
    child.expect("PLAIN")
    run_id = running_run_id()
    cli("revoke", run_id, check=0)
    child.expect(r"agentsess: run \S+ was revoked")
    (flags / "end").touch()
    assert finish(child) == 0
    assert notices(run_id)


def test_expiry_notices_held_until_the_run_ends_when_the_program_never_leaves():
    """The credential expires (on_expiry = stop) while a full-screen child is up: the child is
    stopped inside its alternate screen; the notices come after its last output, when the run
    ends, and their receipts were written before the run's end."""
    write_config('[profiles.short]\non_expiry = "stop"\nexpiry_warning = "1m"\nrevoke_grace = "1s"\n')
    script = "import os, time\nos.write(1, b'\\x1b[?1049hFULL SCREEN\\r\\n')\ntime.sleep(60)\n"
    child = spawn(["--profile", "short", "--ttl", "2s", "--", PY, "-c", script])
    child.expect("FULL SCREEN")
    child.expect(pexpect.EOF)
    after = child.before.decode(errors="replace")
    child.close()
    assert "agentsess: the credential of run" in after
    assert after.index("expires in") < after.index("expired; stopping it")
    receipts = show()["receipts"]
    types = [r["type"] for r in receipts]
    texts = [r["data"]["text"] for r in receipts if r["type"] == "run.notice"]
    assert any("expires in" in t for t in texts) and any("expired; stopping it" in t for t in texts)
    assert types.index("run.notice") < types.index("credential.expired") < types.index("run.exited")


def test_revoke_notice_waits_for_less_to_quit(tmp_path):
    """A real full-screen program: less (xterm's terminfo enters the alternate screen)."""
    write_config(KEEP)
    text = tmp_path / "f.txt"
    text.write_text("".join(f"line {i}\n" for i in range(500)))
    child = spawn(["--profile", "keep", "--", "less", str(text)])
    child.expect("line 0")
    run_id = running_run_id()
    cli("revoke", run_id, check=0)
    wait_for(lambda: notices(run_id), what="the run.notice receipt")
    assert child.expect([r"agentsess: run", pexpect.TIMEOUT], timeout=1.5) == 1
    child.send("q")
    child.expect(r"agentsess: run \S+ was revoked")
    assert finish(child) == 0


# -- the terminal's view of the child's screen, read by read ------------------------------------------


def _terminal(tmp_path):
    out = open(tmp_path / "out", "wb+", buffering=0)
    term = Terminal(screen=True, fds={1: out.fileno(), 2: out.fileno()})
    return term, out


@pytest.mark.parametrize("cut", range(1, 9))
def test_alternate_screen_is_tracked_across_any_read_boundary(tmp_path, cut):
    term, out = _terminal(tmp_path)
    enter, leave = b"text\x1b[?1049h", b"more\x1b[?1049lafter"
    term.show(1, enter[: 4 + cut])
    term.show(1, enter[4 + cut :])
    assert term.alternate
    term.notice("held")
    data = leave[: 4 + cut], leave[4 + cut :]
    term.show(1, data[0])
    assert term.alternate == (cut < 8)  # the sequence is complete only with its final byte
    term.show(1, data[1])
    assert not term.alternate
    out.seek(0)
    shown = out.read()
    assert shown.index(b"\x1b[?1049l") < shown.index(b"agentsess: held")


@pytest.mark.parametrize(
    "data,up",
    [(b"\x1b[?1049h", True), (b"\x1b[?1049h\x1b[?1049l", False), (b"\x1b[?1h\x1b[?25l", False),
     (b"\x1b[?10490h", False), (b"\x1b[1049h", False), (b"\x1b[?1;47h", True), (b"\x1b[?47l\x1b[?1047h", True)],
)
def test_only_the_alternate_screen_modes_count(tmp_path, data, up):
    term, _ = _terminal(tmp_path)
    term.show(1, data)
    assert term.alternate is up


def test_held_notices_are_shown_when_the_run_ends(tmp_path):
    term, out = _terminal(tmp_path)
    term.show(1, b"\x1b[?1049h")
    term.notice("one")
    term.notice("two")
    out.seek(0)
    assert b"agentsess" not in out.read()
    term.close()
    out.seek(0)
    assert out.read().endswith(b"agentsess: one\nagentsess: two\n")


def test_notices_from_another_thread_are_held_too(tmp_path):
    """The control socket's threads (an approval waiting) tell the user through the same terminal."""
    import threading

    term, out = _terminal(tmp_path)
    term.show(1, b"\x1b[?1049h")
    t = threading.Thread(target=term.notice, args=("approve run_x? agentsess approve 1",))
    t.start()
    t.join()
    assert term.held
    term.show(1, b"\x1b[?1049l")
    out.seek(0)
    assert out.read().endswith(b"\x1b[?1049lagentsess: approve run_x? agentsess approve 1\n")


def test_the_notice_function_outside_a_run_writes_at_once(capfd):
    from agentsess.edges.supervisor import notice

    notice("hello")
    assert capfd.readouterr().err == "agentsess: hello\n"
