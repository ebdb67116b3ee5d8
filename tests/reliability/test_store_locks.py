"""The store's POSIX locks in a supervisor: a run's last writes must never vanish.

The flake this pins (`test_twenty_concurrent_runs_with_nested_runs_stay_consistent`, "the file
holds 5 records, the store's head says 3", under load 8-14): a contained run's supervisor
closed bubblewrap's info pipe twice, once when it read the namespace's pid and again at the
end. In between, an authority thread's store connection (a nested run asking its parent) could
be given the same descriptor number; the second close then closed SQLite's descriptor, and
closing any descriptor of a file drops every POSIX lock the process holds on it. The next
agentsess process to close its own connection took itself for the last one, checkpointed and
deleted the WAL under the supervisor, whose exit, status and chain head then went into a
deleted file: receipts written, store not.

Here the moment is made certain instead of waited for: the supervisor runs in a small driver
that counts the supervisor's closes of that pipe end, puts a descriptor on the store at its
number right after the namespace's pid is read (as the authority thread did by chance; a
thread blocked in accept() may hold that number reserved, then only the count is checked),
and lets another process open and close the store just before the run's exit is recorded,
while a third stays connected. On the old code this lost the run's exit every time. (The
driver never closes its descriptor: that would drop the locks just the same.)
"""

import json
import os
import shutil
import subprocess

import pytest
from helpers import PY, ag

BWRAP = shutil.which("bwrap")


def _bwrap_works() -> bool:
    if BWRAP is None:
        return False
    probe = subprocess.run([BWRAP, "--bind", "/", "/", "--unshare-pid", "--", "true"], capture_output=True)
    return probe.returncode == 0


CONTAINED = _bwrap_works()
if not CONTAINED and os.environ.get("AGENTSESS_CI") == "1":
    raise RuntimeError("CI must run the contained tests: bubblewrap is missing or cannot create namespaces")

DRIVER = r"""
import errno, json, os, subprocess, sys, time
from agentsess.core.runs import supervise
from agentsess.edges import paths

state = {"closes": [], "placed": False}
contained_argv, sandbox_pid, finish = supervise._contained_argv, supervise._sandbox_pid, supervise.finish
real_close = os.close

def close(fd):
    if sys._getframe(1).f_code.co_filename == supervise.__file__:
        state["closes"].append(fd)
    return real_close(fd)

def spy_argv(launch, request, plan, info_fd):
    state["info_w"] = info_fd
    return contained_argv(launch, request, plan, info_fd)

def spy_sandbox(*args):
    pid = sandbox_pid(*args)
    number = state["info_w"]
    # a descriptor on the store at that number, as an authority thread's store connection (a
    # nested run asking its parent) may get it; none of these is ever closed here. Best
    # effort: a thread blocked in accept() may hold the lowest free number reserved.
    held = os.open(paths.store_file(), os.O_RDONLY | os.O_CLOEXEC)
    for _ in range(50):
        if held == number:
            state["placed"] = True
            break
        try:
            os.dup2(held, number, inheritable=False)
            state["placed"] = True
            break
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            time.sleep(0.001)
    return pid

def spy_finish(*args, **kw):
    try:
        state["target"] = os.readlink(f"/proc/self/fd/{state['info_w']}")
    except OSError:
        state["target"] = None
    # another agentsess process opens and closes the store (a `runs`, a hook's run ending)
    subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                    "c.execute('SELECT count(*) FROM runs').fetchone(); c.close()", paths.store_file()], check=True)
    # and another one stays (a run still going): the supervisor cannot be the last connection
    # at its close, so whatever it wrote into a deleted WAL would stay there
    state["holder"] = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
         "c.execute('SELECT count(*) FROM runs').fetchone(); print('ready', flush=True); sys.stdin.read()",
         paths.store_file()], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    state["holder"].stdout.readline()
    return finish(*args, **kw)

os.close = close
supervise._contained_argv, supervise._sandbox_pid, supervise.finish = spy_argv, spy_sandbox, spy_finish
from agentsess.cli.entry import main
sys.argv = ["agentsess-driver"]
code = main(["run", "--no-pty", "--", "true"])
state["holder"].communicate(b"")
info_w = state["info_w"]
print(json.dumps({"info_w_closes": state["closes"].count(info_w), "placed": state["placed"],
                  "target": state.get("target")}), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.skipif(not CONTAINED, reason="bubblewrap with user namespaces is not available here")
def test_a_supervisor_never_closes_a_descriptor_that_is_not_its_own(tmp_path):
    ag("run", "--no-pty", "--", "true", check=0)  # the store and its WAL exist
    proc = subprocess.run([PY, "-c", DRIVER], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    seen = json.loads(proc.stderr.decode(errors="replace").strip().splitlines()[-1])
    assert seen["info_w_closes"] == 1, seen  # bubblewrap's info pipe is closed once, not twice
    if seen["placed"]:
        assert (seen["target"] or "").endswith("store.db"), seen  # the store's descriptor stayed its own
    runs = json.loads(ag("runs", "--json", "--limit", "0", check=0).stdout)
    assert [r["status"] for r in runs] == ["exited", "exited"]  # the exit was recorded
    verdict = json.loads(ag("verify", "--all", "--json", check=0).stdout)
    assert all(r["ok"] and r["sealed"] for r in verdict), verdict
