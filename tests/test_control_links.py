"""The control folder is shared by every PID namespace that shares /tmp: a supervisor's pid
link must not make processes of another namespace believe they are inside its run.

Found while benchmarking: a test elsewhere ran a supervisor as pid 1 of its own namespace
(`unshare --pid`, a container); its link `pid-1.sock` matched pid 1 of the host, the init
every host process descends from, so every `agentsess` on the machine took itself for a
process of that run (`secret set` refused as "inside a run", runs started as its sub-agents).
"""

import os
import shutil
import subprocess
import sys

import pytest
from helpers import agentsess, wait_for

PY = sys.executable
BWRAP = shutil.which("bwrap")


def _as_pid_1_works() -> bool:
    if BWRAP is None:
        return False
    probe = subprocess.run([BWRAP, "--bind", "/", "/", "--dev-bind", "/dev", "/dev", "--unshare-pid", "--as-pid-1",
                            "--", "true"], capture_output=True)
    return probe.returncode == 0


AS_PID_1 = _as_pid_1_works()
if not AS_PID_1 and os.environ.get("AGENTSESS_CI") == "1":
    raise RuntimeError("CI must run this test: bubblewrap cannot run a process as pid 1 of a namespace")


@pytest.mark.skipif(not AS_PID_1, reason="bubblewrap with PID namespaces (--as-pid-1) is not available here")
def test_a_supervisor_that_is_pid_1_elsewhere_does_not_capture_this_namespace(tmp_path):
    marker = tmp_path / "ready"
    # a supervisor that is pid 1 of its own PID namespace, same /tmp, same user, same data root
    outer = subprocess.Popen(
        [BWRAP, "--bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc", "--unshare-pid", "--as-pid-1",
         "--die-with-parent", "--", PY, "-m", "agentsess", "run", "--no-pty", "--no-contain", "--", "sh", "-c", f"touch {marker}; sleep 30"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(marker.exists, timeout=30, what="the namespaced run's child")
        # out here, nothing is inside a run: state may change, and a run is a top-level run
        agentsess("secret", "set", "outside", input=b"value-outside\n", check=0)
        who = agentsess("whoami")
        assert b"not inside" in (who.stdout + who.stderr).lower() or who.returncode != 0
        proc = agentsess("run", "--no-pty", "--no-contain", "--", "sh", "-c", 'echo "parent=${AGENTSESS_PARENT_RUN_ID:-}"',
                         check=0)
        assert b"parent=\n" in proc.stdout
    finally:
        outer.kill()
        outer.communicate(timeout=30)


def test_a_link_left_by_a_killed_supervisor_does_not_capture_the_process_that_reuses_its_pid():
    from agentsess.edges import host, paths

    # a supervisor killed with SIGKILL leaves its pid link behind; this process stands in for
    # the unrelated process that gets the same pid later (same pid, another start time)
    folder = paths.control_dir()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    started = host.process_start(os.getpid())
    stale = paths.control_link(os.getpid(), started + 1, folder)
    live = paths.control_link(os.getpid(), started, folder)
    try:
        with open(stale, "w"):
            pass
        agentsess("config", "set", "profiles.t.ttl", "5m", check=0)  # not taken for a command inside a run
        os.rename(stale, live)  # the same name as a supervisor that is this very process
        refused = agentsess("config", "set", "profiles.t.ttl", "6m")
        assert refused.returncode != 0 and b"inside a run" in refused.stderr
    finally:
        for path in (stale, live):
            try:
                os.unlink(path)
            except OSError:
                pass
