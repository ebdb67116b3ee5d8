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
    assert show()["containment"] == "advisory"
    assert b"containment      advisory  (--no-contain)" in agentsess("show-run", "last", check=0).stdout
    write_config('[profiles.open]\ncontain = false\n')
    agentsess("run", "--no-pty", "--profile", "open", "--", "true", check=0)
    assert b"advisory  (profile open has contain = false)" in agentsess("show-run", "last", check=0).stdout


@needs_bwrap
def test_a_contained_run_says_so_in_show_run_and_its_working_tree_is_writable(tmp_path):
    proc = agentsess("run", "--no-pty", "--", "sh", "-c", "echo made-inside > made.txt", cwd=str(tmp_path))
    assert proc.returncode == 0 and b"advisory" not in proc.stderr, proc.stderr
    assert (tmp_path / "made.txt").read_text() == "made-inside\n"
    assert runs_json()[0]["containment"] == "contained" and show()["containment"] == "contained"
    assert b"containment      contained  (bubblewrap" in agentsess("show-run", "last", check=0).stdout


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


# -- contained: every credential place the issue names, however the agent spells the path -------

# (path under HOME, what it holds); each must read as nothing inside a contained run
CREDENTIALS = [
    (".aws/credentials", "aws-credentials-canary"), (".aws/config", "aws-config-canary"),
    (".aws/sso/cache/token.json", "aws-sso-canary"), (".aws/cli/cache/role.json", "aws-cli-cache-canary"),
    (".config/gh/hosts.yml", "gh-hosts-canary"), (".config/gh/config.yml", "gh-config-canary"),
    (".netrc", "netrc-canary"), (".git-credentials", "git-credentials-canary"),
    (".docker/config.json", "docker-canary"), (".kube/config", "kube-canary"), (".kube/prod.yaml", "kube-prod-canary"),
    (".ssh/id_ed25519", "ssh-id-canary"),
    (".ssh/deploy", "-----BEGIN OPENSSH PRIVATE KEY-----\nssh-deploy-canary\n"),
    (".ssh/keys/work.pem", "-----BEGIN RSA PRIVATE KEY-----\nssh-subfolder-canary\n"),
    (".npmrc", "npmrc-canary"), (".pypirc", "pypirc-canary"),
    (".gnupg/private-keys-v1.d/ABCD.key", "gnupg-canary"),
    (".mozilla/firefox/x.default/logins.json", "firefox-canary"),
    (".config/google-chrome/Default/Cookies", "chrome-canary"), (".config/chromium/Default/Login Data", "chromium-canary"),
    (".config/BraveSoftware/Brave-Browser/Default/Cookies", "brave-canary"),
    (".local/share/keyrings/login.keyring", "gnome-keyring-canary"),
    (".local/share/python_keyring/keyring_pass.cfg", "keyrings-alt-canary"),
    (".local/share/python_keyring/crypted_pass.cfg", "keyrings-alt-crypted-canary"),
]
# what stays visible, as the human sees it
VISIBLE = [(".ssh/id_ed25519.pub", "public-key-ok"), (".ssh/known_hosts", "known-hosts-ok"),
           (".ssh/config", "ssh-config-ok"), ("notes.txt", "notes-ok"), (".config/nvim/init.lua", "nvim-ok")]


def _canary(text: str) -> str:
    return next(word for word in text.split() if "canary" in word)


def _fill(home, entries) -> None:
    for rel, text in entries:
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@needs_bwrap
def test_every_credential_place_is_hidden_however_the_path_is_spelled(tmp_path):
    home = tmp_path / "human"
    _fill(home, CREDENTIALS + VISIBLE)
    work = tmp_path / "work"
    work.mkdir()
    (work / "aws-link").symlink_to(home / ".aws" / "credentials")  # planted before the run
    spellings = []
    for rel, _ in CREDENTIALS:
        spellings += [f"{home}/{rel}", f"/proc/self/root{home}/{rel}", f"{home}//./{rel}",
                      f"{home}/.config/../{rel}"]
    script = ("for f in \"$@\"; do cat \"$f\" 2>/dev/null; echo; done; cat aws-link 2>/dev/null; "
              "ln -s ~/.netrc in-run-link; cat in-run-link 2>/dev/null; "
              "grep -rs canary ~ /proc/self/root/$HOME 2>/dev/null; echo END")
    proc = agentsess("run", "--no-pty", "--", "sh", "-c", script, "sh", *spellings,
                     *[f"{home}/{rel}" for rel, _ in VISIBLE], env={"HOME": str(home)}, cwd=str(work))
    out = proc.stdout.decode()
    assert proc.returncode == 0 and out.rstrip().endswith("END"), proc.stderr
    leaked = [rel for rel, text in CREDENTIALS if _canary(text) in out]
    assert leaked == [], leaked
    for _, text in VISIBLE:
        assert text in out
    # the human's own files are untouched, and readable outside the run
    assert (home / ".aws" / "credentials").read_text() == "aws-credentials-canary"


@needs_bwrap
def test_credentials_the_environment_moved_and_the_key_agents_are_hidden(tmp_path):
    """GNUPGHOME, KUBECONFIG, AWS_*_FILE, DOCKER_CONFIG and keyrings under XDG_DATA_HOME point
    away from HOME; ssh-agent, gpg-agent and gnome-keyring answer on sockets. None of it is
    reachable inside; a socket the human did not name still is (the test can fail)."""
    import socket as sk

    home, elsewhere, runtime = tmp_path / "human", tmp_path / "elsewhere", tmp_path / "runtime"
    _fill(elsewhere, [("gnupg/private-keys-v1.d/A.key", "moved-gnupg-canary"), ("kube/a", "moved-kube-a-canary"),
                      ("kube/b", "moved-kube-b-canary"), ("aws/creds", "moved-aws-canary"),
                      ("aws/conf", "moved-aws-config-canary"), ("docker/config.json", "moved-docker-canary"),
                      ("data/python_keyring/keyring_pass.cfg", "moved-keyring-canary"),
                      ("data/keyrings/login.keyring", "moved-gnome-keyring-canary"),
                      ("config/gh/hosts.yml", "moved-gh-canary")])
    (home / ".ssh").mkdir(parents=True)
    (runtime / "gnupg").mkdir(parents=True)
    (runtime / "keyring").mkdir()
    listening = []
    paths = {"ssh_agent": str(tmp_path / "ssh-agent.sock"), "gpg_agent": str(runtime / "gnupg" / "S.gpg-agent"),
             "gnome_keyring": str(runtime / "keyring" / "ssh"), "control_master": str(home / ".ssh" / "cm-git@host"),
             "unnamed": str(tmp_path / "unnamed.sock")}
    for path in paths.values():
        s = sk.socket(sk.AF_UNIX)
        s.bind(path)
        s.listen(4)
        listening.append(s)
    env = {"HOME": str(home), "GNUPGHOME": str(elsewhere / "gnupg"),
           "KUBECONFIG": f"{elsewhere}/kube/a:{elsewhere}/kube/b", "AWS_SHARED_CREDENTIALS_FILE": str(elsewhere / "aws/creds"),
           "AWS_CONFIG_FILE": str(elsewhere / "aws/conf"), "DOCKER_CONFIG": str(elsewhere / "docker"),
           "XDG_DATA_HOME": str(elsewhere / "data"), "XDG_CONFIG_HOME": str(elsewhere / "config"),
           "SSH_AUTH_SOCK": paths["ssh_agent"], "XDG_RUNTIME_DIR": str(runtime)}
    probe = ("import json,socket,sys,subprocess\nout={}\nfor name,path in json.loads(sys.argv[1]).items():\n"
             "    s=socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(path); out[name]=True\n"
             "    except OSError:\n        out[name]=False\n"
             "out['files']=subprocess.run(['sh','-c','cat \"$@\" 2>/dev/null; grep -rs canary '+sys.argv[2]+' 2>/dev/null',"
             "'sh',*sys.argv[3:]],capture_output=True).stdout.decode()\nprint(json.dumps(out))")
    files = [str(p) for p in elsewhere.rglob("*") if p.is_file()]
    try:
        proc = agentsess("run", "--no-pty", "--", PY, "-c", probe, json.dumps(paths), str(elsewhere), *files, env=env)
    finally:
        for s in listening:
            s.close()
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert "canary" not in seen.pop("files")
    assert seen == {"ssh_agent": False, "gpg_agent": False, "gnome_keyring": False, "control_master": False,
                    "unnamed": True}, seen


@needs_bwrap
def test_a_variable_naming_the_home_itself_does_not_hide_it(tmp_path):
    home = tmp_path / "human"
    _fill(home, [("notes.txt", "notes-ok"), (".netrc", "netrc-canary")])
    proc = inside("cat ~/notes.txt ~/.netrc 2>/dev/null; pwd", env={"HOME": str(home), "GNUPGHOME": str(home),
                                                                     "KUBECONFIG": str(tmp_path)})
    out = proc.stdout.decode()
    assert "notes-ok" in out and "netrc-canary" not in out, out


@needs_bwrap
def test_unhide_brings_back_one_file_of_a_folder_hidden_whole(tmp_path):
    home = tmp_path / "human"
    _fill(home, [(".aws/config", "[profile dev]\nregion = eu-west-1\n"), (".aws/credentials", "aws-secret-canary")])
    write_config('[profiles.p]\nunhide = ["~/.aws/config"]\n')
    proc = inside("cat ~/.aws/config ~/.aws/credentials 2>/dev/null; echo", args=("--profile", "p"),
                  env={"HOME": str(home)})
    out = proc.stdout.decode()
    assert "region = eu-west-1" in out and "aws-secret-canary" not in out, out


@pytest.mark.parametrize("mode", MODES)
def test_no_descriptor_the_child_inherits_leads_into_agentsess_state(mode, agentsess_home):
    write_config('[profiles.default]\nscopes = ["fs:*"]\n')
    agentsess("secret", "set", "canary", input=b"fd-canary-value\n", check=0)
    probe = ("import os,json\nout={}\nfor n in os.listdir('/proc/self/fd'):\n    try:\n"
             "        out[n]=os.readlink('/proc/self/fd/'+n)\n    except OSError:\n        pass\nprint(json.dumps(out))")
    proc = agentsess("run", "--no-pty", *mode, "--", PY, "-c", probe)
    assert proc.returncode == 0, proc.stderr
    targets = json.loads(proc.stdout).values()
    root = os.path.realpath(str(agentsess_home))
    assert [t for t in targets if t.startswith(root) or "store.db" in t or "receipts" in t] == [], targets


# -- every process dies with the run, whoever ends it -----------------------------------------

SPAWN_THREE = ("setsid sh -c 'echo $$ >> {pids}; exec sleep {n}0.4242' & "
               "(sh -c 'echo $$ >> {pids}; exec sleep {n}1.4242' &) ; "
               "nohup sh -c 'echo $$ >> {pids}; trap \"\" TERM HUP; exec sleep {n}2.4242' >/dev/null 2>&1 & "
               "while [ $(wc -l < {pids} 2>/dev/null || echo 0) -lt 3 ]; do sleep 0.01; done; ")


def _survivors(n: int) -> list:
    return subprocess.run(["pgrep", "-x", "-f", f"sleep {n}[012]\\.4242"], capture_output=True).stdout.split()


@needs_bwrap
def test_a_contained_runs_processes_die_when_its_supervisor_is_killed(tmp_path):
    pids = tmp_path / "pids"
    script = SPAWN_THREE.format(pids=pids, n=31) + "sleep 300"
    sup = subprocess.Popen([PY, "-m", "agentsess", "run", "--no-pty", "--", "sh", "-c", script],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, what="three daemons")
        assert len(_survivors(31)) == 3
        os.kill(sup.pid, signal.SIGKILL)
        sup.wait(10)
        wait_for(lambda: _survivors(31) == [], timeout=10, what="the daemons to die with the supervisor")
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
        for pid in _survivors(31):
            os.kill(int(pid), signal.SIGKILL)


@pytest.mark.parametrize("mode", MODES)
def test_expiry_under_on_expiry_stop_kills_setsid_and_double_forked_processes(mode, tmp_path):
    write_config('[defaults]\non_expiry = "stop"\nrevoke_grace = "1s"\n')
    pids = tmp_path / "pids"
    n = 32 if mode else 33
    proc = inside(SPAWN_THREE.format(pids=pids, n=n) + "sleep 60", args=("--ttl", "2s", *mode), timeout=60)
    try:
        assert proc.returncode == 124, proc.stderr
        wait_for(lambda: _survivors(n) == [], timeout=10, what="no process of the expired run left")
    finally:
        for pid in _survivors(n):
            os.kill(int(pid), signal.SIGKILL)


@needs_bwrap
def test_revoke_stops_a_contained_run_whose_supervisor_is_stopped(tmp_path):
    marker = tmp_path / "ticks"
    write_config('[profiles.default]\nrevoke_grace = "1s"\n')
    script = f"setsid sh -c 'while true; do echo t >> {marker}; sleep 0.05; done' & sleep 300"
    run = subprocess.Popen([PY, "-m", "agentsess", "run", "--no-pty", "--", "sh", "-c", script],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: marker.exists() and marker.stat().st_size > 0, what="the child running")
        run_id = runs_json()[0]["id"]
        wait_for(lambda: runs_json()[0].get("status") == "running", what="the run's row")
        os.kill(run.pid, signal.SIGSTOP)  # someone stops the supervisor (not the child: it cannot see it)
        out = agentsess("revoke", run_id, check=0)
        assert b"still running" not in out.stdout, out.stdout
        size = marker.stat().st_size
        time.sleep(0.3)
        assert marker.stat().st_size == size, "the contained run goes on after revoke"
    finally:
        os.kill(run.pid, signal.SIGCONT)
        run.communicate(timeout=30)


@pytest.mark.parametrize("mode", MODES)
def test_the_supervisor_is_not_dumpable_in_either_mode(mode, tmp_path):
    """Another process of the same unprivileged user cannot read the supervisor's environment or
    memory through /proc, while it can read a dumpable process's (the test could fail)."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root to drop to an unprivileged user with setpriv")
    import tempfile

    root = __import__("pathlib").Path(tempfile.mkdtemp(prefix="ag-nobody-", dir="/tmp"))
    os.chmod(root, 0o777)
    env = {**os.environ, "AGENTSESS_HOME": str(root / "data"), "AGENTSESS_CONFIG": str(root / "c.toml"),
           "HOME": str(root), "HUMAN_ONLY_TOKEN": "human-canary-5a4b3c"}
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    sup = subprocess.Popen([*nobody, PY, "-m", "agentsess", "run", "--no-pty", *(mode or ["--contain"]), "--",
                            "sleep", "60"],
                           env=env, cwd=str(root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: subprocess.run(["pgrep", "-P", str(sup.pid)], capture_output=True).stdout,
                 what="the supervisor's child")
        if sup.poll() is not None:
            pytest.fail(sup.stderr.read().decode())

        def read_as_nobody(pid: int) -> subprocess.CompletedProcess:
            return subprocess.run([*nobody, "sh", "-c", f"cat /proc/{pid}/environ; head -c 16 /proc/{pid}/mem"],
                                  capture_output=True)

        peek = read_as_nobody(sup.pid)
        assert b"human-canary-5a4b3c" not in peek.stdout and peek.returncode != 0
        other = subprocess.Popen([*nobody, "sleep", "30"], env=env)
        try:
            wait_for(lambda: b"human-canary" in read_as_nobody(other.pid).stdout, what="a dumpable process is readable")
        finally:
            other.kill()
            other.wait()
    finally:
        sup.kill()
        sup.wait()
        shutil.rmtree(root, ignore_errors=True)


# -- inside a run: revoke reaches only descendants; nothing opens agentsess's state ------------

@pytest.mark.parametrize("mode", MODES)
def test_revoke_inside_a_run_reaches_only_its_descendants(mode, tmp_path):
    marker = tmp_path / "nested-ticks"
    agentsess("run", "--", "true", check=0)
    unrelated = runs_json()[0]["id"]
    with InRun(*mode) as run, InRun(*mode) as sibling:
        proc = run.run(["sh", "-c", f"{PY} -m agentsess run --no-pty -- sh -c "
                        f"'while true; do echo t >> {marker}; sleep 0.05; done' >/dev/null 2>&1 & echo started"])
        assert proc.returncode == 0
        child = wait_for(lambda: [r for r in runs_json() if r["parent_id"] == run.run_id], what="the nested run")[0]
        wait_for(lambda: marker.exists() and marker.stat().st_size > 0, what="the nested run's child")
        for target in (run.run_id, sibling.run_id, sibling.run_id[:20], unrelated, "last", "not-a-run"):
            refused = run.call("revoke", target)
            assert refused.returncode == 2 and b"only the run's own descendants" in refused.stderr, (target, refused)
        assert {r["id"]: r for r in runs_json()}[sibling.run_id]["status"] == "running"
        assert show(sibling.run_id)["credential"]["state"] != "revoked"
        # the nested run, by a prefix typed in capitals
        done = run.call("revoke", "--json", "--reason", "loop", child["id"][:20].upper())
        assert done.returncode == 0, done.stderr
        (result,) = json.loads(done.stdout)
        assert result["id"] == child["id"] and result["newly_revoked"] and result["process"] == "stopped", result
        size = marker.stat().st_size
        time.sleep(0.3)
        assert marker.stat().st_size == size
        revoked = [r for r in show(child["id"])["receipts"] if r["type"] == "run.revoked"]
        assert revoked and f"from inside run {run.run_id}: loop" == revoked[0]["data"]["reason"]
        assert {r["id"]: r for r in runs_json()}[run.run_id]["status"] == "running"  # the caller goes on


@pytest.mark.parametrize("mode", MODES)
def test_commands_that_open_agentsess_state_are_refused_inside_a_run(mode):
    agentsess("run", "--", "true", check=0)
    with InRun(*mode) as run:
        for argv in (["runs"], ["runs", "--json"], ["show-run", "last"], ["verify", "--all"], ["export", "last"],
                     ["jwks"], ["key", "list"], ["secret", "list"], ["doctor"], ["key", "rotate"],
                     ["secret", "set", "x"], ["config", "set", "profiles.default.ttl", "12h"]):
            for unset in ((), ("AGENTSESS_CONTROL", "AGENTSESS_RUN_ID", "AGENTSESS_TOKEN")):
                proc = run.call(*argv, input=b"value\n", unset=list(unset))
                assert proc.returncode == 2 and b"refused inside a run" in proc.stderr, (argv, unset, proc.stderr)
                assert proc.stderr.count(b"\n") == 1 and b"Traceback" not in proc.stderr
        debug = run.call("--debug", "key", "rotate")  # a traceback then, but refused all the same
        assert debug.returncode != 0 and b"refused inside a run" in debug.stderr
        # help is still help, and what the run may ask still answers
        assert run.call("runs", "--help").returncode == 0
        assert run.call("whoami").returncode == 0
        assert run.call("config", "path").returncode == 0


def test_a_nested_run_whose_socket_link_was_deleted_is_still_a_child_or_refused():
    """Advisory: the child unsets every variable and deletes its supervisor's socket link, then
    asks for `run --scope '*'`: the store still knows its supervisor is an ancestor."""
    from agentsess.edges.paths import control_dir

    write_config('[profiles.default]\nscopes = ["fs:*"]\ndefault_scopes = ["fs:read"]\n')
    folder = control_dir()
    wipe = ["AGENTSESS_CONTROL", "AGENTSESS_RUN_ID", "AGENTSESS_TOKEN", "AGENTSESS_SCOPES", "AGENTSESS_PARENT_RUN_ID"]
    with InRun("--no-contain") as run:
        sup = run.proc.pid
        links = [n for n in os.listdir(folder) if n.startswith("pid-") and f"-{sup}-" in n]
        assert links
        for name in links:
            os.unlink(os.path.join(folder, name))
        env = {"AGENTSESS_HOME": os.environ["AGENTSESS_HOME"], "AGENTSESS_CONFIG": os.environ["AGENTSESS_CONFIG"]}
        proc = run.call("run", "--no-pty", "--no-contain", "--scope", "*", "--", "true", unset=wipe, env=env)
        assert proc.returncode == 125 and b"exceeds the parent run" in proc.stderr, proc.stderr
        proc = run.call("run", "--no-pty", "--no-contain", "--", "sh", "-c", "echo nested-ok", unset=wipe, env=env)
        assert proc.returncode == 0 and b"nested-ok" in proc.stdout, proc.stderr
        assert {r["parent_id"] for r in runs_json() if r["id"] != run.run_id} == {run.run_id}
        # and with the run's socket itself gone too, it is refused rather than let out
        os.rename(os.path.join(folder, f"{run.run_id}.sock"), os.path.join(folder, f"{run.run_id}.moved"))
        try:
            proc = run.call("run", "--no-pty", "--no-contain", "--", "true", unset=wipe, env=env)
        finally:
            os.rename(os.path.join(folder, f"{run.run_id}.moved"), os.path.join(folder, f"{run.run_id}.sock"))
        assert proc.returncode == 125 and b"control socket is gone" in proc.stderr, proc.stderr
        assert all(r["parent_id"] == run.run_id for r in runs_json() if r["id"] != run.run_id)


# -- whoami, and the advisory notice ----------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_whoami_in_a_nested_run_names_its_parent_chain(mode):
    write_config('[profiles.default]\nscopes = ["fs:*"]\ndefault_scopes = ["fs:read"]\n')
    with InRun(*mode) as run:
        proc = run.call("run", "--no-pty", "--", PY, "-m", "agentsess", "whoami", "--json")
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout[proc.stdout.index(b"{"):])
        assert info["parents"] and info["parents"][0]["id"] == run.run_id and info["id"] != run.run_id
        assert info["agent"] and info["profile"] == "default" and info["scopes"] == ["fs:read"]
        assert info["expires_at"].endswith("Z") and info["seconds_left"] > 0
        assert info["containment"] == ("advisory" if mode else "contained")
        text = run.call("run", "--no-pty", "--", PY, "-m", "agentsess", "whoami").stdout.decode()
        assert f"parents    {run.run_id}" in text and "expires" in text and "left)" in text


def test_whoami_outside_a_run_is_one_line_and_json():
    text = agentsess("whoami")
    assert text.returncode == 1 and text.stdout.count(b"\n") == 1 and text.stderr == b""
    js = agentsess("whoami", "--json")
    assert js.returncode == 1 and json.loads(js.stdout) == {"inside_run": False}


def test_an_advisory_run_says_so_once_on_stderr():
    proc = agentsess("run", "--no-pty", "--no-contain", "--", "sh", "-c", "echo out; echo err >&2")
    assert proc.stderr.count(b"advisory run") == 1, proc.stderr
    assert b"advisory" not in proc.stdout


@needs_bwrap
def test_a_contained_run_with_on_exit_keep_says_its_processes_end_with_it(tmp_path):
    write_config('[profiles.keeper]\non_exit = "keep"\n')
    pids = tmp_path / "pids"
    proc = inside(SPAWN_THREE.format(pids=pids, n=34), args=("--profile", "keeper"))
    try:
        assert proc.returncode == 0 and b"on_exit = keep needs an advisory run" in proc.stderr, proc.stderr
        wait_for(lambda: _survivors(34) == [], timeout=10, what="the contained run's processes gone")
    finally:
        for pid in _survivors(34):
            os.kill(int(pid), signal.SIGKILL)


# -- the CI flag: contained tests never skip there ---------------------------------------------

def test_without_bubblewrap_contained_tests_skip_here_and_fail_in_ci(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sh", "true", "pgrep"):
        found = shutil.which(tool)
        if found:
            (bare / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(bare)}
    env.pop("AGENTSESS_CI", None)
    here = os.path.dirname(os.path.abspath(__file__))
    argv = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", os.path.join(here, "test_containment.py")]
    local = subprocess.run([*argv[:-2], "-rs", "-k", "hidden", os.path.join(here, "test_containment.py")],
                           env=env, capture_output=True, cwd=os.path.dirname(here), timeout=120)
    assert local.returncode == 0 and b"skipped" in local.stdout, local.stdout[-2000:]
    assert b"bubblewrap with user namespaces is not available here" in local.stdout
    ci = subprocess.run(argv, env={**env, "AGENTSESS_CI": "1"}, capture_output=True, cwd=os.path.dirname(here),
                        timeout=120)
    assert ci.returncode != 0 and b"CI must run the contained tests" in ci.stdout + ci.stderr, ci.stdout[-2000:]


@pytest.mark.parametrize("mode", MODES)
def test_commands_inside_a_run_open_no_store_receipts_or_keys_of_their_own(mode, tmp_path):
    """Every client command inside a run, with a fresh HOME where agentsess's default data root
    would be: each one answers, and nothing of agentsess's appears under that HOME."""
    from agentsess.edges.paths import control_dir, inside_control_socket

    home = tmp_path / "fresh-home"
    home.mkdir()
    write_config('[profiles.default]\nscopes = ["fs:*"]\ndefault_scopes = ["fs:read"]\n')
    event = json.dumps({"hook_event_name": "PreToolUse", "tool_name": "Read", "tool_input": {"file_path": "x"}})
    with InRun(*mode, env={"HOME": str(home)}) as run:
        expected = os.path.join(control_dir(), f"{run.run_id}.sock") if mode else inside_control_socket()
        assert run.env["AGENTSESS_CONTROL"] == expected
        assert run.call("check", "fs:read").returncode == 0
        assert run.call("hook", "claude-code", "--run", run.run_id, input=event.encode()).returncode == 0
        assert run.call("exec", "--", "true").returncode == 0
        assert run.call("whoami").returncode == 0
        assert run.call("token", "verify").returncode == 0
        run_id = run.run_id
    made = [os.path.join(d, f) for d, _dirs, files in os.walk(home) for f in files]
    assert made == [], made
    types = [r["type"] for r in show(run_id)["receipts"]]
    assert types.count("action.checked") >= 2 and "action.exec" in types


def test_an_advisory_runs_setsid_daemon_dies_when_its_killed_supervisor_is_found_abandoned(tmp_path):
    """Advisory: the agent (or anyone) SIGKILLs the supervisor; its setsid daemon, outside the
    child's process group, is killed once agentsess finds the run abandoned. (A daemon that
    also scrubbed its environment is not found: the README says so.)"""
    pids = tmp_path / "pids"
    script = SPAWN_THREE.format(pids=pids, n=35) + "sleep 300"
    sup = subprocess.Popen([PY, "-m", "agentsess", "run", "--no-pty", "--no-contain", "--", "sh", "-c", script],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, what="three daemons")
        run_id = runs_json()[0]["id"]
        os.kill(sup.pid, signal.SIGKILL)
        sup.wait(10)
        time.sleep(0.2)
        assert len(_survivors(35)) == 3  # nothing has looked yet: they outlive the supervisor
        assert agentsess("verify", run_id).returncode == 0  # this look finds it abandoned
        assert {r["id"]: r for r in runs_json()}[run_id]["status"] == "abandoned"
        wait_for(lambda: _survivors(35) == [], timeout=10, what="the daemons killed with the abandoned run")
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
        for pid in _survivors(35):
            os.kill(int(pid), signal.SIGKILL)


@needs_bwrap
def test_the_config_folder_of_agentsess_is_hidden_whole(tmp_path):
    folder = tmp_path / "cfg" / "agentsess"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text('[profiles.default]\nttl = "1h"\n# config-canary\n')
    (folder / "config.toml.bak").write_text("backup-canary")
    proc = agentsess("run", "--no-pty", "--", "sh", "-c", f"cat {folder}/* 2>/dev/null; ls -A {folder}; echo END",
                     env={"AGENTSESS_CONFIG": str(folder / "config.toml")})
    out = proc.stdout.decode()
    assert proc.returncode == 0 and out.strip() == "END", (out, proc.stderr)


@needs_bwrap
def test_unhide_never_shows_agentsess_own_state(agentsess_home, tmp_path):
    agentsess("secret", "set", "canary", input=b"unhide-canary-value\n", check=0)
    root = str(agentsess_home)
    cfg = os.environ["AGENTSESS_CONFIG"]
    write_config(f'[profiles.p]\nunhide = ["{root}", "{root}/secrets.json", "{cfg}", "{os.path.dirname(root)}"]\n'
                 '# config-unhide-canary\n')
    proc = inside(f"cat {root}/secrets.json {cfg} 2>/dev/null; ls -A {root}; echo END", args=("--profile", "p"))
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert "unhide-canary-value" not in out and "config-unhide-canary" not in out, out
    assert out.split("END")[0].split() == ["runs"]


@needs_bwrap
def test_a_contained_child_cannot_edit_its_row_or_plant_a_key(agentsess_home):
    """The child writes where the store, the file keyring and jwks.json are: it only ever
    writes into its own empty, throw-away folder; the run's row and the keys are untouched."""
    write_config('[profiles.default]\nscopes = ["fs:read"]\n')
    root = str(agentsess_home)
    script = (
        "import json,os,sqlite3,sys\nroot=sys.argv[1]\nout=[]\n"
        "try:\n    db=sqlite3.connect(os.path.join(root,'store.db'))\n"
        "    db.execute(\"UPDATE runs SET scopes='[\\\"*\\\"]', revoked_at=NULL\"); db.commit(); out.append('updated')\n"
        "except Exception as e:\n    out.append(type(e).__name__)\n"
        "for name in ('secrets.json','keys/jwks.json'):\n    p=os.path.join(root,name)\n"
        "    try:\n        os.makedirs(os.path.dirname(p),exist_ok=True); open(p,'w').write('{\"planted\": true}'); out.append('wrote')\n"
        "    except OSError as e:\n        out.append(e.strerror)\n"
        "print(json.dumps(out))")
    agentsess("run", "--", "true", check=0)  # the store and keys exist
    keys_before = agentsess("jwks", check=0).stdout
    proc = agentsess("run", "--no-pty", "--", PY, "-c", script, root)
    assert proc.returncode == 0, proc.stderr
    run = show()
    assert run["scopes"] == [] and agentsess("verify", run["id"]).returncode == 0
    assert agentsess("jwks", check=0).stdout == keys_before
    assert b"planted" not in open(os.path.join(root, "secrets.json"), "rb").read()
    assert not os.path.exists(os.path.join(root, "keys", "jwks.json")) or \
        b"planted" not in open(os.path.join(root, "keys", "jwks.json"), "rb").read()


def _need_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail(f"CI must run this test: {name} is not installed")
        pytest.skip(f"{name} is not installed")
    return path


@needs_bwrap
def test_a_contained_child_cannot_have_the_humans_tmux_run_a_command_outside(agentsess_home, tmp_path):
    """The human runs agentsess inside tmux: `tmux new-window CMD` from the child would run CMD
    outside the sandbox, where the data root is. The human's tmux servers are out of reach; a
    tmux of the agent's own still works inside."""
    _need_program("tmux")
    agentsess("secret", "set", "canary", input=b"tmux-canary-value\n", check=0)
    name = f"ag-{os.getpid()}-{time.monotonic_ns()}"
    subprocess.run(["tmux", "-L", name, "new-session", "-d", "sleep 120"], check=True)
    try:
        sock = subprocess.run(["tmux", "-L", name, "display", "-p", "#{socket_path}"], capture_output=True,
                              check=True).stdout.decode().strip()
        escaped = tmp_path / "escaped"
        script = (f"tmux new-window -d 'cat {agentsess_home}/secrets.json > {escaped}'; echo human=$?; "
                  f"tmux -L {name} new-window -d 'cat {agentsess_home}/secrets.json > {escaped}'; echo named=$?; "
                  "tmux -L own new-session -d 'sleep 5' && tmux -L own ls >/dev/null; echo own=$?; "
                  "tmux -L own kill-server")
        proc = inside(script, env={"TMUX": f"{sock},1,0"})
        out = proc.stdout.decode()
        assert "human=1" in out and "named=1" in out and "own=0" in out, (out, proc.stderr)
        time.sleep(0.5)
        assert not escaped.exists()
        # the same command outside the run does reach the human's server (the test can fail)
        subprocess.run(["tmux", "-L", name, "new-window", "-d", f"echo reached > {escaped}"], check=True)
        wait_for(escaped.exists, what="the human's tmux to run a command")
    finally:
        subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True)


@needs_bwrap
def test_sockets_that_run_commands_for_their_caller_are_out_of_reach(tmp_path):
    """An editor's server, a terminal's remote control, VS Code's hook, systemd's private socket
    in the runtime folder: each would run a command outside the run for whoever connects."""
    import socket as sk

    runtime = tmp_path / "runtime"
    (runtime / "systemd").mkdir(parents=True)
    paths = {"NVIM": str(tmp_path / "nvim.sock"), "KITTY_LISTEN_ON": str(tmp_path / "kitty.sock"),
             "WEZTERM_UNIX_SOCKET": str(tmp_path / "wez.sock"), "VSCODE_IPC_HOOK_CLI": str(tmp_path / "vscode.sock"),
             "systemd": str(runtime / "systemd" / "private"), "unnamed": str(tmp_path / "other.sock")}
    listening = []
    for path in paths.values():
        s = sk.socket(sk.AF_UNIX)
        s.bind(path)
        s.listen(4)
        listening.append(s)
    env = {"NVIM": paths["NVIM"], "KITTY_LISTEN_ON": "unix:" + paths["KITTY_LISTEN_ON"],
           "WEZTERM_UNIX_SOCKET": paths["WEZTERM_UNIX_SOCKET"], "VSCODE_IPC_HOOK_CLI": paths["VSCODE_IPC_HOOK_CLI"],
           "XDG_RUNTIME_DIR": str(runtime)}
    probe = ("import json,socket,sys\nout={}\nfor name,path in json.loads(sys.argv[1]).items():\n"
             "    s=socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(path); out[name]=True\n"
             "    except OSError:\n        out[name]=False\nprint(json.dumps(out))")
    try:
        proc = agentsess("run", "--no-pty", "--", PY, "-c", probe, json.dumps(paths), env=env)
    finally:
        for s in listening:
            s.close()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {name: name == "unnamed" for name in paths}


@needs_bwrap
def test_a_session_bus_on_an_abstract_socket_is_named_as_out_of_reach_of_hiding():
    proc = inside("true", env={"DBUS_SESSION_BUS_ADDRESS": "unix:abstract=/tmp/dbus-abc,guid=1"})
    assert proc.returncode == 0 and b"abstract socket, which a contained child can still reach" in proc.stderr
    assert b"abstract" not in inside("true", env={"DBUS_SESSION_BUS_ADDRESS": "unix:path=/tmp/nothing"}).stderr


@pytest.mark.parametrize("mode", MODES)
def test_the_python_api_inside_a_run_asks_the_supervisor(mode):
    """A tool the agent runs calls agentsess.verify_token: the supervisor answers (the tool's
    process opens no store: in a contained run it would find an empty one and say no)."""
    write_config('[profiles.default]\nscopes = ["fs:*"]\ndefault_scopes = ["fs:read"]\n')
    probe = ("import agentsess,json,os\nt=os.environ['AGENTSESS_TOKEN']\nv=agentsess.verify_token(t,['fs:read'])\n"
             "w=agentsess.verify_token(t,'fs:write')\nf=agentsess.verify_token(t[:-4]+'AAAA')\n"
             "print(json.dumps([bool(v),v.claims['sid'],w.reason,f.reason]))")
    with InRun(*mode) as run:
        proc = run.run([PY, "-c", probe])
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == [True, run.run_id, "missing scope", "bad signature"]



def test_the_readme_command_table_lists_every_command():
    from agentsess.cli.commands import COMMANDS

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    table = [line for line in readme.splitlines() if line.startswith("| `")]
    missing = [c.name for c in COMMANDS if not any(line.startswith(f"| `{c.name}") or f"`, `{c.name}" in line
                                                    for line in table)]
    assert missing == [], missing
