"""Helpers shared by the reliability tests: real agentsess processes, process groups, data-root
hashes and tiny filesystems."""

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
import time

import pytest

PY = sys.executable


def ag(*args, input=None, env=None, timeout=60, **kw) -> subprocess.CompletedProcess:
    """``python -m agentsess ARGS`` as a real process (bytes in and out)."""
    full = dict(os.environ)
    if env:
        full.update(env)
    full = {k: v for k, v in full.items() if v is not None}
    return subprocess.run([PY, "-m", "agentsess", *args], input=input, capture_output=True, env=full,
                          timeout=timeout, **kw)


def spawn(*args, env=None, **kw) -> subprocess.Popen:
    full = dict(os.environ)
    if env:
        full.update(env)
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen([PY, "-m", "agentsess", *args], env=full, **kw)


def wait_for(predicate, timeout=30.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


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


def _stat(pid: int):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[2])


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


def tree_digest(*roots: str) -> dict:
    """{path: sha256} of every file under ``roots`` (a file root is hashed itself), leaving out
    SQLite's -wal and -shm files, which readers may create, checkpoint and delete."""
    out = {}
    for root in roots:
        if os.path.isfile(root):
            with open(root, "rb") as fh:
                out[root] = hashlib.sha256(fh.read()).hexdigest()
            continue
        for folder, _, files in os.walk(root):
            for name in files:
                if name.endswith(("-wal", "-shm", "-journal")):
                    continue
                path = os.path.join(folder, name)
                with open(path, "rb") as fh:
                    out[path] = hashlib.sha256(fh.read()).hexdigest()
    return out


def checkpoint(home: str | None = None) -> None:
    """Fold the WAL into store.db so that later readers have nothing left to move into it."""
    path = os.path.join(home or os.environ["AGENTSESS_HOME"], "store.db")
    db = sqlite3.connect(path, timeout=30)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def stderr_lines(proc) -> list[str]:
    return [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]


def assert_no_traceback(proc) -> None:
    text = proc.stderr.decode(errors="replace") + proc.stdout.decode(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert 'File "' not in text, text[-3000:]


@contextlib.contextmanager
def tmpfs(path: str, size: str):
    """Mount a tmpfs of ``size`` at ``path`` for the duration, or skip the test saying why."""
    if not sys.platform.startswith("linux"):
        pytest.skip("needs Linux tmpfs")
    os.makedirs(path, exist_ok=True)
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                              capture_output=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount(8) here to make a tiny filesystem")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode(errors='replace').strip() or 'not permitted'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True, timeout=30)


def remount_read_only(path: str) -> None:
    proc = subprocess.run(["mount", "-o", "remount,ro", path], capture_output=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot remount {path} read-only ({proc.stderr.decode(errors='replace').strip()})")
