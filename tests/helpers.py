"""The one set of process helpers: real `python -m agentsess` processes, waiting on conditions,
reading what runs recorded, and watching process groups. Every test module imports these."""

import json
import os
import sqlite3
import subprocess
import sys
import time

PY = sys.executable


def _env(extra: dict | None) -> dict:
    """The test's environment plus ``extra``; a value of None unsets that variable."""
    full = dict(os.environ)
    full.update(extra or {})
    return {k: v for k, v in full.items() if v is not None}


def agentsess(*args, input=None, env=None, timeout=60, check=None, **kw) -> subprocess.CompletedProcess:
    """Run `python -m agentsess ARGS` as a real process; returns CompletedProcess (bytes).
    ``check``: the exit code it must have (the assertion shows stdout and stderr)."""
    proc = subprocess.run(
        [PY, "-m", "agentsess", *args], input=input, capture_output=True, env=_env(env), timeout=timeout, **kw
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


ag = agentsess


def cli(*args, input=None, env=None, check=None) -> subprocess.CompletedProcess:
    """`agentsess ARGS` in this process, through the same entry point and error boundary, with
    typer's CliRunner isolating stdin, stdout, stderr and the environment: for commands that
    need no process, terminal or signal of their own (reading runs back, help, config).
    Returns what :func:`agentsess` returns, so a test can use either."""
    from typer.testing import CliRunner

    from agentsess.cli.entry import main

    with CliRunner().isolation(input=input, env=env) as (out, err, _):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's --help
            code = exc.code if isinstance(exc.code, int) else 0
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue(), err.getvalue()
    proc = subprocess.CompletedProcess(["agentsess", *args], code, stdout, stderr)
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def spawn(*args, env=None, **kw) -> subprocess.Popen:
    """`python -m agentsess ARGS` started and left running (stdin /dev/null unless given)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen([PY, "-m", "agentsess", *args], env=_env(env), **kw)


def wait_for(predicate, timeout=30.0, interval=0.02, what="condition"):
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


# -- what runs recorded ---------------------------------------------------------------------------


def runs_json(**env) -> list[dict]:
    out = cli("runs", "--json", "--limit", "0", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def show(run: str = "last") -> dict:
    out = cli("show-run", run, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def running_run_id(timeout=15.0) -> str:
    """The id of the (single) running run, once its child has started."""

    def find():
        for r in runs_json():
            if r["status"] == "running":
                return r["id"]
        return None

    return wait_for(find, timeout, what="a running run")


def store_rows(sql: str, args=(), home: str | None = None) -> list[dict]:
    """Rows from the store, read-only (the test never writes it)."""
    path = os.path.join(home or os.environ["AGENTSESS_HOME"], "store.db")
    if not os.path.exists(path):
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(sql, args)]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def run_of_supervisor(pid: int, home: str | None = None) -> dict | None:
    rows = store_rows("SELECT * FROM runs WHERE supervisor_pid = ? AND child_pgid IS NOT NULL", (pid,), home)
    return rows[0] if rows else None


def write_config(text: str) -> None:
    """Replace this test's config file (AGENTSESS_CONFIG, set by conftest) with ``text``."""
    with open(os.environ["AGENTSESS_CONFIG"], "w") as fh:
        fh.write(text)


# -- processes ------------------------------------------------------------------------------------


def _stat(pid: int):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[2])


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has stopped running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def live_in_group(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (a zombie has stopped running; who
    reaps it is init's business)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st and st[1] == pgid and st[0] not in ("Z", "X"):
                out.append(int(name))
    return out



def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def children(pid: int) -> list[int]:
    """The live (not zombie) children of ``pid``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] not in (b"Z", b"X"):
            out.append(int(name))
    return out


def forks_of(pid: int) -> list[int]:
    """The children of ``pid`` that run its own program (a fork keeps the command line): a
    supervisor's pty relay and its parser worker; the run's child is bubblewrap or the command."""
    own = _cmdline(pid)
    return [child for child in children(pid) if own and _cmdline(child) == own]

def live_with_marker(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    out = []
    needle = marker.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        st = _stat(int(name))
        if needle in cmd and st and st[0] not in ("Z", "X"):
            out.append(int(name))
    return out


# -- what a process said --------------------------------------------------------------------------


def stderr_lines(proc) -> list[str]:
    return [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]


def assert_no_traceback(proc) -> None:
    text = proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert 'File "' not in text, text[-3000:]
