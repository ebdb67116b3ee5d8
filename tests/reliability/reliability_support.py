"""What only the reliability tests need: data-root hashes and tiny filesystems. The process
helpers are tests/helpers.py, shared by every test."""

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys

import pytest


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
