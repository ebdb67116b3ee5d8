"""The run's authority out of the agent's reach: contained runs, the control socket, nesting.

The agent is the adversary here: every test is something a hostile child tries from inside
its run. Contained tests need bubblewrap; they skip without it, and fail in CI
(AGENTSESS_CI=1), where .ci/run installs it.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import agentsess, pid_alive, runs_json, show, wait_for, write_config
from inrun import InRun

PY = sys.executable


def _bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    probe = subprocess.run(["bwrap", "--bind", "/", "/", "--unshare-pid", "--", "true"], capture_output=True)
    return probe.returncode == 0


CONTAINED = _bwrap_works()
if not CONTAINED and os.environ.get("AGENTSESS_CI") == "1":
    raise RuntimeError("CI must run the contained tests: bubblewrap is missing or cannot create namespaces")
needs_bwrap = pytest.mark.skipif(not CONTAINED, reason="bubblewrap with user namespaces is not available here")
MODES = [pytest.param([], id="contained", marks=needs_bwrap), pytest.param(["--no-contain"], id="advisory")]


def inside(*sh: str, args=(), env=None, **kw) -> subprocess.CompletedProcess:
    """`agentsess run --no-pty ARGS -- sh -c SCRIPT`."""
    return agentsess("run", "--no-pty", *args, "--", "sh", "-c", " ".join(sh), env=env, **kw)


# -- contained: what the child cannot see -----------------------------------------------------

@needs_bwrap
def test_a_contained_child_cannot_read_agentsess_state(agentsess_home, tmp_path):
    write_config('[profiles.default]\nttl = "1h"\n')
    agentsess("secret", "set", "canary", input=b"canary-secret-value-123\n", check=0)
    assert agentsess("run", "--", "true").returncode == 0  # the store, keys and config cache exist now
    root = str(agentsess_home)
    cfg = os.environ["AGENTSESS_CONFIG"]
    script = (
        f"ls -A {root}; cat {root}/store.db {root}/secrets.json {root}/keys/* {cfg} {cfg}.cache 2>&1;"
        f" grep -rl canary-secret-value-123 {root} 2>/dev/null; echo END"
    )
    proc = inside(script)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert "canary-secret-value-123" not in out
    assert "SQLite format" not in out and "private" not in out.lower()
    assert out.split("END")[0].split()[:1] == ["runs"]  # only the run's own folder is bound back
    assert show()["receipts"][0]["data"]["containment"] == "contained"


@needs_bwrap
def test_a_contained_child_cannot_read_the_supervisors_environment():
    proc = inside("echo ppid=$PPID; cat /proc/$PPID/environ | tr '\\0' '\\n' | grep -c AGENTSESS_HOME || true",
                  env={"AGENTSESS_PROBE_SECRET": "x"})
    out = proc.stdout.decode()
    # in its own PID namespace the parent is the namespace's init, not the supervisor
    assert "ppid=1" in out and out.strip().endswith("0"), out


@needs_bwrap
def test_the_humans_credential_files_and_key_stores_are_hidden(tmp_path):
    home = tmp_path / "human"
    for rel, text in [(".aws/credentials", "aws-canary"), (".netrc", "netrc-canary"),
                      (".ssh/id_ed25519", "ssh-canary"), (".config/gh/hosts.yml", "gh-canary"),
                      (".local/share/python_keyring/keyring_pass.cfg", "keyring-canary"),
                      (".postgresql/postgresql.key", "pgkey-canary"), (".pg_service.conf", "pgservice-canary"),
                      (".ssh/id_ed25519.pub", "public-key-ok"), ("notes.txt", "visible-ok")]:
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc = inside(f"cat {home}/.aws/credentials {home}/.netrc {home}/.ssh/id_ed25519 {home}/.config/gh/hosts.yml "
                  f"{home}/.local/share/python_keyring/keyring_pass.cfg {home}/.ssh/id_ed25519.pub "
                  f"{home}/.postgresql/postgresql.key {home}/.pg_service.conf "
                  f"{home}/notes.txt 2>/dev/null; echo",
                  env={"HOME": str(home)})
    out = proc.stdout.decode()
    for canary in ("aws-canary", "netrc-canary", "ssh-canary", "gh-canary", "keyring-canary", "pgkey-canary",
                   "pgservice-canary"):
        assert canary not in out
    assert "public-key-ok" in out and "visible-ok" in out


@needs_bwrap
def test_a_profile_hides_and_unhides_paths(tmp_path):
    secret_dir = tmp_path / "vault"
    secret_dir.mkdir()
    (secret_dir / "token").write_text("vault-canary")
    home = tmp_path / "human"
    (home / ".netrc").parent.mkdir(parents=True)
    (home / ".netrc").write_text("netrc-needed")
    write_config(f'[profiles.p]\nhide = ["{secret_dir}"]\nunhide = ["~/.netrc"]\n')
    proc = inside(f"cat {secret_dir}/token ~/.netrc 2>/dev/null; echo", args=("--profile", "p"), env={"HOME": str(home)})
    out = proc.stdout.decode()
    assert "vault-canary" not in out and "netrc-needed" in out


@needs_bwrap
def test_the_session_bus_is_hidden(tmp_path):
    bus = tmp_path / "bus"
    bus.write_text("pretend socket")
    proc = inside(f'echo "addr=$DBUS_SESSION_BUS_ADDRESS"; cat {bus}; echo',
                  env={"DBUS_SESSION_BUS_ADDRESS": f"unix:path={bus},guid=abc"})
    out = proc.stdout.decode()
    assert "addr=\n" in out and "pretend socket" not in out


# -- every process dies with the run ---------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_setsid_and_double_forked_processes_die_with_the_run(mode, tmp_path):
    pids = tmp_path / "pids"
    script = (f"setsid sh -c 'echo $$ >> {pids}; exec sleep 300.4242' & "
              f"(sh -c 'echo $$ >> {pids}; exec sleep 301.4242' &) ; "
              f"nohup sh -c 'echo $$ >> {pids}; trap \"\" TERM HUP; exec sleep 302.4242' >/dev/null 2>&1 & "
              f"while [ $(wc -l < {pids} 2>/dev/null || echo 0) -lt 3 ]; do sleep 0.01; done")
    proc = inside(script, args=mode)
    assert proc.returncode == 0, proc.stderr
    seen = [int(p) for p in pids.read_text().split()]
    assert len(seen) == 3
    # in a contained run these are namespace pids; what matters is that no sleep survives
    survivors = subprocess.run(["pgrep", "-f", "sleep 30[012].4242"], capture_output=True).stdout.split()
    assert survivors == []
    run = show()
    if mode:
        assert run["receipts"][-2]["data"]["leftover_processes_killed"] >= 3


def test_on_exit_keep_lets_an_advisory_run_leave_a_process(tmp_path):
    write_config('[profiles.keeper]\non_exit = "keep"\n')
    pidfile = tmp_path / "pid"
    proc = inside(f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 303' >/dev/null 2>&1 & "
                  f"while [ ! -s {pidfile} ]; do sleep 0.01; done", args=("--no-contain", "--profile", "keeper"))
    assert proc.returncode == 0
    pid = int(pidfile.read_text())
    try:
        assert pid_alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("mode", MODES)
def test_revoke_kills_a_setsid_descendant(mode, tmp_path):
    marker = tmp_path / "ticks"
    script = (f"setsid sh -c 'trap \"\" TERM; while true; do echo t >> {marker}; sleep 0.05; done' & "
              "sleep 300")
    run = subprocess.Popen([PY, "-m", "agentsess", "run", "--no-pty", *mode, "--", "sh", "-c", script],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: marker.exists() and marker.stat().st_size > 0, what="the descendant running")
        run_id = runs_json()[0]["id"]
        out = agentsess("revoke", run_id, check=0)
        assert b"stopped" in out.stdout
        run.communicate(timeout=30)
        size = marker.stat().st_size
        time.sleep(0.3)
        assert marker.stat().st_size == size, "the setsid descendant is still writing"
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()


def test_revoke_stops_the_child_of_a_stopped_supervisor(tmp_path):
    """An advisory child SIGSTOPs its supervisor, then revoke must still stop the child."""
    marker = tmp_path / "ticks"
    script = f"kill -STOP $PPID; while true; do echo t >> {marker}; sleep 0.05; done"
    write_config('[profiles.default]\nrevoke_grace = "1s"\n')
    run = subprocess.Popen([PY, "-m", "agentsess", "run", "--no-pty", "--no-contain", "--", "sh", "-c", script],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: marker.exists() and marker.stat().st_size > 0, what="the child running")
        run_id = runs_json()[0]["id"]
        out = agentsess("revoke", run_id, check=0)
        assert b"still running" not in out.stdout, out.stdout
        size = marker.stat().st_size
        time.sleep(0.3)
        assert marker.stat().st_size == size, "the child is still running after revoke"
        run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            os.kill(run.pid, signal.SIGCONT)
            run.kill()
            run.communicate()


# -- the control socket: who may ask ----------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_only_the_runs_own_processes_are_answered(mode):
    with InRun(*mode) as run:
        before = len(show(run.run_id)["receipts"])
        stolen = {k: v for k, v in run.env.items() if k.startswith("AGENTSESS_")}
        # the run's whole environment, copied to a process that is not part of the run ...
        outside = agentsess("check", "fs:read", env=stolen)
        assert outside.returncode == 2
        # ... and pointed at the socket where the supervisor listens on the host
        from agentsess.edges.control import control_dir

        stolen["AGENTSESS_CONTROL"] = os.path.join(control_dir(), f"{run.run_id}.sock")
        outside = agentsess("check", "fs:read", env=stolen)
        assert outside.returncode == 2 and b"is not part of run" in outside.stderr
        assert len(show(run.run_id)["receipts"]) == before


@pytest.mark.parametrize("mode", MODES)
def test_a_run_cannot_act_for_another_run(mode):
    agentsess("run", "--", "true", check=0)
    finished = runs_json()[0]
    event = json.dumps({"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "ls"}})
    with InRun(*mode) as run:
        proc = run.call("hook", "claude-code", "--run", finished["id"], input=event.encode())
        assert proc.returncode == 2 and b"not " + finished["id"].encode() in proc.stderr
        proc = run.call("exec", "--", "true", env={"AGENTSESS_RUN_ID": finished["id"]})
        assert proc.returncode == 0
    assert [r["type"] for r in show(finished["id"])["receipts"]][-1] == "run.sealed"
    assert agentsess("verify", finished["id"]).returncode == 0


@pytest.mark.parametrize("mode", MODES)
def test_state_changing_commands_are_refused_inside_a_run(mode):
    with InRun(*mode) as run:
        for argv in (["config", "set", "profiles.default.ttl", "12h"], ["config", "init"], ["key", "rotate"],
                     ["secret", "rm", "x"], ["prune", "--all"]):
            proc = run.call(*argv, input=b"value\n")
            assert proc.returncode == 2 and b"refused inside a run" in proc.stderr, (argv, proc.stderr)


@pytest.mark.parametrize("mode", MODES)
def test_whoami_inside_and_outside_a_run(mode):
    outside = agentsess("whoami")
    assert outside.returncode == 1 and b"not inside a run" in outside.stdout
    write_config('[profiles.w]\nscopes = ["fs:*", "git:*"]\ndefault_scopes = ["fs:read"]\n')
    with InRun("--profile", "w", "--ttl", "10m", *mode) as run:
        info = json.loads(run.call("whoami", "--json").stdout)
        assert info["inside_run"] and info["id"] == run.run_id and info["profile"] == "w"
        assert info["scopes"] == ["fs:read"] and info["ceiling"] == ["fs:*", "git:*"]
        assert 0 < info["seconds_left"] <= 600 and info["parents"] == []
        assert info["containment"] == ("advisory" if mode else "contained")
        text = run.call("whoami").stdout.decode()
        assert run.run_id in text and "fs:read" in text


@pytest.mark.parametrize("mode", MODES)
def test_token_verify_inside_a_run_asks_the_supervisor(mode):
    with InRun(*mode) as run:
        proc = run.call("token", "verify", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["claims"]["sid"] == run.run_id


# -- nesting: known from the process tree, not the environment ---------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_a_nested_run_with_its_environment_wiped_is_still_a_child(mode):
    write_config('[profiles.default]\nscopes = ["fs:*"]\ndefault_scopes = ["fs:read"]\n')
    with InRun(*mode) as run:
        proc = run.call("run", "--no-pty", "--scope", "*", "--", "true",
                        unset=["AGENTSESS_CONTROL", "AGENTSESS_RUN_ID", "AGENTSESS_TOKEN", "AGENTSESS_SCOPES"])
        assert proc.returncode == 125 and b"exceeds the parent run" in proc.stderr, proc.stderr
        proc = run.call("run", "--no-pty", "--", "sh", "-c", "echo child-ran",
                        unset=["AGENTSESS_CONTROL", "AGENTSESS_RUN_ID", "AGENTSESS_TOKEN"])
        assert proc.returncode == 0 and b"child-ran" in proc.stdout, proc.stderr
        runs = {r["id"]: r for r in runs_json()}
        children = [r for r in runs.values() if r["parent_id"] == run.run_id]
        assert {c["status"] for c in children} == {"denied", "exited"}
        child = next(c for c in children if c["status"] == "exited")
        assert agentsess("verify", child["id"]).returncode == 0
        assert [r["type"] for r in show(child["id"])["receipts"]][-1] == "run.sealed"


@pytest.mark.parametrize("mode", MODES)
def test_revoking_the_parent_stops_a_nested_run(mode, tmp_path):
    marker = tmp_path / "nested-ticks"
    with InRun(*mode) as run:
        proc = run.run(["sh", "-c", f"{PY} -m agentsess run --no-pty -- sh -c "
                        f"'while true; do echo t >> {marker}; sleep 0.05; done' >/dev/null 2>&1 & echo started"])
        assert proc.returncode == 0
        wait_for(lambda: marker.exists() and marker.stat().st_size > 0, what="the nested run's child")
        child = wait_for(lambda: [r for r in runs_json() if r["parent_id"] == run.run_id], what="the child row")[0]
        agentsess("revoke", run.run_id, check=0)
        wait_for(lambda: {r["id"]: r for r in runs_json()}[child["id"]]["status"] != "running", what="child ended")
        size = marker.stat().st_size
        time.sleep(0.3)
        assert marker.stat().st_size == size
        assert agentsess("verify", child["id"]).returncode == 0


def test_a_nested_run_gets_only_secrets_its_parent_holds():
    agentsess("secret", "set", "other-key", input=b"other-secret-value\n", check=0)
    write_config('[profiles.other.env]\nOTHER = { secret = "other-key" }\n')
    with InRun("--no-contain") as run:
        proc = run.call("run", "--no-pty", "--profile", "other", "--", "sh", "-c", "echo $OTHER")
        assert proc.returncode == 125 and b"does not hold" in proc.stderr
        assert b"other-secret-value" not in proc.stdout


def test_advisory_runs_say_so_and_record_it():
    proc = agentsess("run", "--no-pty", "--no-contain", "--", "true")
    assert proc.returncode == 0
    assert b"advisory run: --no-contain" in proc.stderr
    assert runs_json()[0]["containment"] == "advisory"
    started = show()["receipts"][0]["data"]
    assert started["containment"] == "advisory" and started["containment_reason"] == "--no-contain"


def test_the_child_is_never_told_where_agentsess_keeps_its_state():
    proc = inside("env | grep -E '^AGENTSESS_(HOME|CONFIG|KEYRING|STORE)=' || echo none", args=("--no-contain",),
                  env={"AGENTSESS_STORE": "sqlite"})  # a valid value: this machine's SQLite store
    assert proc.stdout.strip() == b"none"


def test_the_supervisor_is_not_dumpable(tmp_path):
    """As an unprivileged user, the child cannot read its supervisor's environment."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root to drop to an unprivileged user with setpriv")
    import tempfile

    root = tempfile.mkdtemp(prefix="ag-nobody-", dir="/tmp")
    os.chmod(root, 0o777)
    root = __import__("pathlib").Path(root)
    env = {"AGENTSESS_HOME": str(root / "data"), "AGENTSESS_CONFIG": str(root / "c.toml"), "HOME": str(root),
           "HUMAN_ONLY_TOKEN": "human-canary-9f8e7d"}
    try:
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PY, "-m", "agentsess", "run",
             "--no-pty", "--no-contain", "--", "sh", "-c", "cat /proc/$PPID/environ; echo rc=$?"],
            capture_output=True, env={**os.environ, **env}, cwd=str(root), timeout=60,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert b"rc=" in proc.stdout, proc.stderr
    assert b"human-canary-9f8e7d" not in proc.stdout and b"rc=1" in proc.stdout


@pytest.mark.parametrize("mode", MODES)
def test_isolate_home_runs_still_reach_their_supervisor(mode, agentsess_home):
    """With its own HOME the agent's hooks and checks still land in this run, and no second
    store or signing key appears in the agent's home."""
    write_config('[profiles.iso]\nisolate_home = true\nscopes = ["fs:*"]\ndefault_scopes = ["fs:read"]\n')
    with InRun("--profile", "iso", *mode) as run:
        assert run.call("check", "fs:read").returncode == 0
        home = run.env["HOME"]
        assert home != os.environ.get("HOME")
    checked = [r for r in show(run.run_id)["receipts"] if r["type"] == "action.checked"]
    assert [c["data"]["decision"] for c in checked] == ["allow"]
    for dirpath, _dirs, files in os.walk(home):
        assert "store.db" not in files and "secrets.json" not in files, dirpath


def test_doctor_says_which_mode_runs_get():
    proc = agentsess("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["containment"]["level"] == ("ok" if CONTAINED else "warn")
