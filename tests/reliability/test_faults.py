"""Faults from outside: a full disk under the receipts, a read-only data root, a corrupted store,
and a config edited while a run is live."""

import json
import os
import uuid

import pytest
from helpers import PY, ag, assert_no_traceback, live_with_marker, stderr_lines
from inrun import LIVE, InRun
from reliability_support import checkpoint, remount_read_only, tmpfs, tree_digest

# writes until stopped: neither a closed pipe, a hang-up nor TERM ends it, only agentsess's KILL
WRITER = """
import signal, sys, time
for s in (signal.SIGPIPE, signal.SIGHUP, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
while True:
    try:
        sys.stdout.write('y' * 1000 + '\\n')
        sys.stdout.flush()
    except OSError:
        time.sleep(0.01)
"""


def error_lines(proc) -> list[str]:
    return [line for line in stderr_lines(proc) if line.startswith("agentsess: error:")]


# -- disk full ---------------------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["--no-pty", "--pty"])
def test_a_full_disk_under_the_run_stops_the_child_and_exits_125(tmp_path, monkeypatch, mode):
    with tmpfs(str(tmp_path / "tiny"), "256k") as root:
        monkeypatch.setenv("AGENTSESS_HOME", os.path.join(root, "home"))
        marker = f"filler-{uuid.uuid4().hex}"
        proc = ag("run", mode, "--", PY, "-c", WRITER, marker, timeout=60)
        assert proc.returncode == 125, (proc.returncode, proc.stderr[-2000:])
        assert_no_traceback(proc)
        (line,) = error_lines(proc)
        assert "full" in line or "No space" in line, line
        # every other line is one of agentsess's own notices, never a dump
        assert all(x.startswith("agentsess: ") for x in stderr_lines(proc)), proc.stderr
        assert live_with_marker(marker) == [], "the child kept running after the disk filled"


# -- read-only data root -----------------------------------------------------------------------


WRITES = [
    pytest.param(["run", "--", "true"], None, 125, id="run"),
    pytest.param(["revoke", "last"], None, 4, id="revoke"),
    pytest.param(["secret", "set", "another"], b"value", 4, id="secret-set"),
    pytest.param(["secret", "rm", "kept"], None, 4, id="secret-rm"),
    pytest.param(["key", "rotate"], None, 4, id="key-rotate"),
    pytest.param(["prune", "--older-than", "1s"], None, 4, id="prune"),
]
READS = [
    pytest.param(["runs", "--json"], id="runs"),
    pytest.param(["show-run", "last", "--json"], id="show-run"),
    pytest.param(["verify", "--all", "--json"], id="verify"),
    pytest.param(["export", "last", "--format", "jsonl"], id="export"),
    pytest.param(["secret", "list"], id="secret-list"),
    pytest.param(["jwks"], id="jwks"),
]


@pytest.fixture
def read_only_home(tmp_path, monkeypatch):
    with tmpfs(str(tmp_path / "ro"), "16m") as root:
        home = os.path.join(root, "home")
        monkeypatch.setenv("AGENTSESS_HOME", home)
        assert ag("run", "--", "echo", "before").returncode == 0
        assert ag("secret", "set", "kept", input=b"v").returncode == 0
        checkpoint(home)
        before = tree_digest(home)
        remount_read_only(root)
        yield home
        assert tree_digest(home) == before


def _one_clear_line(proc, home: str, args) -> None:
    assert_no_traceback(proc)
    (line,) = error_lines(proc)
    assert home in line, (args, line)
    assert len(stderr_lines(proc)) == 1, (args, proc.stderr)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args,stdin,code", WRITES)
def test_a_read_only_data_root_refuses_writes_clearly(read_only_home, args, stdin, code):
    proc = ag(*args, input=stdin)
    assert proc.returncode == code, (args, proc.returncode, proc.stderr)
    _one_clear_line(proc, read_only_home, args)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", READS)
def test_a_read_only_data_root_reads_or_says_why(read_only_home, args):
    """Reading may work from a read-only root, or fail with one clear line and exit 4."""
    proc = ag(*args)
    assert_no_traceback(proc)
    if proc.returncode != 0:
        assert proc.returncode == 4, (args, proc.returncode, proc.stderr)
        _one_clear_line(proc, read_only_home, args)


# -- corrupted store ---------------------------------------------------------------------------


COMMANDS = [
    (["run", "--", "true"], 125),
    (["runs", "--json"], 4),
    (["runs"], 4),
    (["show-run", "last"], 4),
    (["verify", "--all", "--json"], 4),
    (["revoke", "last"], 4),
    (["export", "last"], 4),
    (["prune", "--older-than", "1d"], 4),
]
CORRUPTIONS = [
    pytest.param(how, args, code, id=f"{how}-{args[0]}{'-json' if '--json' in args else ''}")
    for how in ("random bytes", "garbage pages")
    for args, code in COMMANDS
]


def _corrupt(path: str, how: str) -> None:
    if how == "random bytes":
        data = os.urandom(8192)
    else:  # a valid header and schema page, garbage after it
        with open(path, "rb") as fh:
            data = fh.read()
        assert len(data) > 4096, "the store is smaller than expected"
        data = data[:4096] + os.urandom(len(data) - 4096)
    with open(path, "wb") as fh:
        fh.write(data)


@pytest.fixture
def corrupted_store(request):
    home = os.environ["AGENTSESS_HOME"]
    assert ag("run", "--", "echo", "before").returncode == 0
    checkpoint(home)
    store = os.path.join(home, "store.db")
    _corrupt(store, request.param)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(store + suffix):
            os.remove(store + suffix)
    return home, store


@pytest.mark.timeout(60)
@pytest.mark.parametrize("corrupted_store,args,code", CORRUPTIONS, indirect=["corrupted_store"])
def test_a_corrupted_store_is_named_and_left_alone(corrupted_store, args, code):
    home, store = corrupted_store
    before = tree_digest(home)
    proc = ag(*args)
    assert_no_traceback(proc)
    assert proc.returncode == code, (args, proc.returncode, proc.stderr)
    (line,) = error_lines(proc)
    assert store in line and "corrupt" in line, (args, line)
    assert len(stderr_lines(proc)) == 1, (args, proc.stderr)
    assert tree_digest(home) == before, args


@pytest.mark.timeout(60)
@pytest.mark.parametrize("corrupted_store", ["random bytes", "garbage pages"], indirect=True)
def test_the_hook_fails_closed_on_a_corrupted_store(corrupted_store):
    home, store = corrupted_store
    before = tree_digest(home)
    event = json.dumps({"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "ls"}})
    proc = ag("hook", "claude-code", "--run", "run_01m8mdmdjzq7yghawwkq8q2d22", input=event.encode())
    assert proc.returncode == 2
    assert_no_traceback(proc)
    (line,) = stderr_lines(proc)
    # a hook never opens the store (it asks its run's supervisor): outside a live run it blocks
    assert line.startswith("agentsess: denied:"), line
    assert tree_digest(home) == before


# -- config edited while a run is live ---------------------------------------------------------

RULES = """
[profiles.p]
scopes = ["repo:*"]
default_scopes = ["repo:read"]

[[profiles.p.rules]]
tool = "Bash"
args = "git push*"
decision = "{push}"
reason = "pushing is {push}"
"""


def _decide(run_id: str, command: str) -> str:
    """The hook, called from inside run ``run_id`` as Claude Code would call it."""
    event = {"session_id": "s", "hook_event_name": "PreToolUse", "tool_name": "Bash",
             "tool_input": {"command": command}, "cwd": "/"}
    proc = LIVE[run_id].call("hook", "claude-code", "--run", run_id, input=json.dumps(event).encode())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["hookSpecificOutput"]["permissionDecision"]


def _start_live(profile: str):
    run = InRun("--profile", profile)
    return run, {"id": run.run_id}


@pytest.mark.timeout(120)
def test_a_live_run_keeps_its_config_snapshot_and_new_runs_see_the_edit():
    config = os.environ["AGENTSESS_CONFIG"]
    with open(config, "w") as fh:
        fh.write(RULES.format(push="allow"))
    old_sup, old = _start_live("p")
    new_sup = None
    try:
        assert _decide(old["id"], "git push origin main") == "allow"
        with open(config, "w") as fh:
            fh.write(RULES.format(push="deny"))
        assert _decide(old["id"], "git push origin main") == "allow"  # the live run's snapshot
        new_sup, new = _start_live("p")
        assert _decide(new["id"], "git push origin main") == "deny"  # the edit is in force for new runs
        assert _decide(old["id"], "git push origin main") == "allow"
        shown = json.loads(ag("show-run", old["id"], "--json").stdout)
        checked = [r["data"] for r in shown["receipts"] if r["type"] == "action.checked"]
        assert [c["decision"] for c in checked] == ["allow", "allow", "allow"]
    finally:
        for run in (old_sup, new_sup):
            if run is not None:
                run.close()
