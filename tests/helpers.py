"""Shared helpers for tests that drive real agentsess processes."""

import json
import os
import subprocess
import sys
import time


def spawn(*args, env=None, **kw) -> subprocess.Popen:
    full = dict(os.environ)
    if env:
        full.update(env)
    return subprocess.Popen([sys.executable, "-m", "agentsess", *args], env=full, **kw)


def wait_for(predicate, timeout=15.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def runs_json(**env) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "agentsess", "runs", "--json", "--limit", "0"],
        capture_output=True, env={**os.environ, **env}, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def show(run: str = "last") -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "agentsess", "show-run", run, "--json"], capture_output=True, timeout=60
    )
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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def write_config(text: str) -> None:
    """Replace this test's config file (AGENTSESS_CONFIG, set by conftest) with ``text``."""
    with open(os.environ["AGENTSESS_CONFIG"], "w") as fh:
        fh.write(text)
