"""The store agent (edges/store/agent.py, agentserver.py): `run` on a PostgreSQL store talks to
a per-user agent that holds the connections, started on demand and shared by runs.

The agent is trusted only after checks an adversary would try to get past: the socket file's
type and owner, the peer's uid, and the hello. A planted, stale or foreign socket is replaced,
never trusted; a contained run's child cannot reach it; killing it loses no revocation.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from agentsess.edges.store import store_url
from helpers import agentsess, wait_for
from pg import password, pg  # noqa: F401 - fixture

PY = sys.executable
pytestmark = pytest.mark.timeout(120)
RUN = ("run", "--no-pty", "--no-contain")


def _path() -> str:
    from agentsess.edges.store.agent import socket_path

    return socket_path(store_url())


def _log() -> str:
    path = os.path.join(os.environ["AGENTSESS_HOME"], "store-agent.log")
    try:
        with open(path) as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


def _hello(path: str) -> dict | None:
    from agentsess.edges.store.agent import FrameError, recv, send

    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(path)
        send(s, {"m": "hello", "protocol": 1})
        return recv(s)["r"]
    except (OSError, FrameError, KeyError):
        return None
    finally:
        s.close()


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


@pytest.fixture
def agent(pg):  # noqa: F811
    """A PostgreSQL store whose agent this test starts; the agent is stopped at the end (its
    socket file removed: it leaves within a second)."""
    path = _path()
    yield path
    hello = _hello(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    if hello:
        wait_for(lambda: not _alive(hello["pid"]), 10, what="the agent to leave")
    try:
        os.unlink(path[: -len(".sock")] + ".lock")  # the test's own: nobody else takes it
    except FileNotFoundError:
        pass


def _run_ok(*argv, env=None):
    out = agentsess(*RUN, "--", *argv, env=env)
    assert out.returncode == 0, out.stderr
    assert b"store agent" not in out.stderr and b"Traceback" not in out.stderr, out.stderr
    return out


# -- started on demand, shared ----------------------------------------------------------------


def test_run_starts_the_agent_on_demand_and_the_next_run_shares_it(agent, pg):  # noqa: F811
    assert not os.path.exists(agent)
    _run_ok("true")
    first = _hello(agent)
    assert first and first["agent"] == "agentsess-store-agent" and _alive(first["pid"])
    assert first["location"].startswith("postgresql://agentsess@127.0.0.1:")
    _run_ok("echo", "second")
    assert _hello(agent)["pid"] == first["pid"]  # the same agent served the second run
    assert _log().count("serving") == 1
    rows = pg.query("SELECT command, status FROM runs ORDER BY started_at")
    assert [r[1] for r in rows] == ["exited", "exited"] and json.loads(rows[1][0]) == ["echo", "second"]
    # its socket is the user's alone, and nothing secret is on its command line or in its log
    st = os.lstat(agent)
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == os.getuid()
    assert os.stat(os.path.dirname(agent)).st_mode & 0o077 == 0
    with open(f"/proc/{first['pid']}/cmdline", "rb") as fh:
        cmdline = fh.read()
    assert password().encode() not in cmdline and b"postgresql://" not in cmdline
    assert password() not in _log()
    mode = os.stat(os.path.join(os.environ["AGENTSESS_HOME"], "store-agent.log")).st_mode & 0o777
    assert mode == 0o600


def test_two_runs_racing_start_one_agent(agent):
    procs = [subprocess.Popen([PY, "-m", "agentsess", *RUN, "--", "true"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert b"store agent" not in err
    assert _log().count("serving") == 1, _log()
    assert _hello(agent) is not None


def test_the_store_interface_through_the_agent(agent, monkeypatch):
    from agentsess.edges import streams
    from agentsess.edges.store import Store
    from agentsess.edges.store.agent import AgentStore
    from agentsess.errors import AgentsessError

    monkeypatch.setenv("AGENTSESS_STORE_AGENT", "1")
    a, b = "run_01aaaaaaaaaaaaaaaaaaaaaaaa", "run_01bbbbbbbbbbbbbbbbbbbbbbbb"
    row = {"id": a, "parent_id": None, "name": "x", "status": "running", "command": ["echo", "hi"], "cwd": "/",
           "host": "h1", "user": "u", "started_at": 1.5, "scopes": ["fs:read"], "policy": {"on_revoke": "stop"}}
    with Store() as store:
        assert isinstance(store, AgentStore) and store.backend == "postgresql" and store.shared
        store.insert_run(row)
        store.insert_run({**row, "id": b, "parent_id": a, "started_at": 2.5})
        store.update_run(a, child_pid=42, scopes=["git:push"])
        got = store.get_run(a)
        assert got["scopes"] == ["git:push"] and got["child_pid"] == 42 and got["policy"] == {"on_revoke": "stop"}
        assert store.set_status_if(a, "running", status="exited")
        assert not store.set_status_if(a, "running", status="exited")
        assert store.resolve("01b") == b and store.ancestors(b) == [a] and store.count() == 2
        with pytest.raises(AgentsessError, match="no run matches"):
            store.resolve("01z")
        assert [r["id"] for r in store.list_runs(limit=1, columns="id, host")] == [b]
        assert store.mark_revoked({b: "direct"}, 10.0, "me@here", "why") == {b: True}
        assert store.revocation(b) == (10.0, "direct")
        assert store.revocations_of([a, b])[b]["reason"] == "why"
        assert store.revoked_among([a, b])["id"] == b
        # receipts: the mirror's lines come back as the bytes they are; a fork is refused
        streams.create_stream(a)
        rec = streams.append(a, "run.started", {"x": "é\u2028"})
        store.record_receipt(a, rec)
        assert store.mirrored(a) == [streams.canonical(rec) + b"\n"]
        forged = {**rec, "data": {"x": "other"}}
        forged["hash"] = streams.record_hash(forged)
        with open(streams.paths.receipts_file(a), "wb") as fh:
            fh.write(streams.canonical(forged) + b"\n")
        with pytest.raises(streams.ReceiptError, match="forked"):
            store.sync_mirror(a)
        # one transaction per method, in the agent: a failing call leaves the connection usable
        with pytest.raises(AgentsessError):
            store.insert_run(row)  # the id is taken
        assert store.get_run(a)["status"] == "exited"


def test_an_unreachable_server_is_a_one_line_error_through_the_agent(agent, monkeypatch):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setenv("AGENTSESS_STORE", f"postgresql://agentsess@127.0.0.1:{port}/postgres")
    path = _path()
    try:
        out = agentsess(*RUN, "--", "true")
        assert out.returncode in (4, 125), out.stderr
        assert out.stderr.startswith(b"agentsess: error: ") and out.stderr.count(b"\n") == 1, out.stderr
        assert b"cannot connect" in out.stderr and password().encode() not in out.stderr
        assert _hello(path) is not None  # the agent serves on: the next run finds the store back
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_an_agent_that_cannot_start_leaves_the_run_on_the_direct_store_said_once(agent, monkeypatch):
    monkeypatch.setenv("AGENTSESS_STORE_AGENT_IDLE", "not-seconds")  # the agent refuses to start
    out = agentsess(*RUN, "--", "echo", "direct")
    assert out.returncode == 0, out.stderr
    assert out.stderr.count(b"the store agent could not be started") == 1, out.stderr
    assert b"connecting to the store directly" in out.stderr and b"Traceback" not in out.stderr
    assert out.stdout == b"direct\n"
    assert "AGENTSESS_STORE_AGENT_IDLE must be a number of seconds" in _log()
    assert not os.path.exists(agent)


def test_a_store_the_agent_refuses_is_the_direct_store_s_one_line_error(agent, monkeypatch):
    monkeypatch.setenv("AGENTSESS_STORE", "postgresql://fleet:hunter2-secret@127.0.0.1:9/agentsess")
    path = _path()
    out = agentsess(*RUN, "--", "true")
    assert out.returncode == 125, out.stderr  # as with the direct store: agentsess refused
    assert out.stderr.startswith(b"agentsess: error: ") and out.stderr.count(b"\n") == 1, out.stderr
    assert b"password in clear" in out.stderr and b"unter2" not in out.stderr
    assert b"unter2" not in _log().encode() and "password in clear" in _log()
    assert not os.path.exists(path)


# -- what sits at the socket's path is never trusted unchecked -------------------------------


def _listener(path: str, answer: bytes | None):
    """A same-user listener at ``path`` that is not the agent: records what it is sent."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)
    got: list[bytes] = []

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.settimeout(10)
            try:
                got.append(conn.recv(65536))
                if answer is not None:
                    conn.sendall(answer)
                    conn.close()
                else:
                    time.sleep(6)  # accepts, never answers
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    return srv, got


def _replaced(path: str, not_pid: int | None = None) -> dict:
    hello = _hello(path)
    assert hello and hello["agent"] == "agentsess-store-agent" and hello["pid"] != not_pid
    return hello


def _ensure_dir(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)


def test_a_stale_socket_file_is_replaced(agent):
    _ensure_dir(agent)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(agent)  # bound, never listening, closed: connections are refused
    dead.close()
    _run_ok("true")
    _replaced(agent)


def test_a_symlink_at_the_path_is_replaced_even_to_a_live_agent(agent, tmp_path, monkeypatch):
    _run_ok("true")
    real = _replaced(agent)
    moved = str(tmp_path / "elsewhere.sock")
    os.rename(agent, moved)  # the live agent's socket, now reached only through a symlink
    os.symlink(moved, agent)
    _run_ok("true")
    assert _replaced(agent)["pid"] != real["pid"] and not os.path.islink(agent)


def test_the_agent_serves_only_the_store_s_methods(agent):
    from agentsess.edges.store.agent import recv, send

    _run_ok("true")
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(agent)
    for request, said in [
        ({"m": "_exec", "a": ["DROP SCHEMA agentsess CASCADE"]}, "no such request"),
        ({"m": "__class__"}, "no such request"),
        ({"m": "close"}, "no such request"),
        ({"m": "get_run", "a": "run_x"}, "malformed"),
        ({"m": "update_run", "a": ["run_x"], "k": {"status = 'x' --": 1}}, "refused update_run"),
        ({"m": "get_run", "a": [], "k": {"__init__": 1}}, "refused get_run"),
    ]:
        send(s, request)
        answer = recv(s)
        assert said in answer["e"], (request, answer)
    send(s, {"m": "count"})
    assert recv(s) == {"r": 1}  # the connection, and the agent, serve on
    s.sendall((1 << 31).to_bytes(4, "big"))  # a frame too large: the agent hangs up on it
    assert s.recv(10) == b""
    s.close()
    assert _hello(agent) is not None


def test_a_regular_file_at_the_path_is_replaced(agent):
    _ensure_dir(agent)
    with open(agent, "w") as fh:
        fh.write("not a socket")
    _run_ok("true")
    _replaced(agent)


def _frame(obj) -> bytes:
    data = json.dumps(obj).encode()
    return len(data).to_bytes(4, "big") + data


ANOTHER_AGENT = _frame({"r": {"agent": "agentsess-store-agent", "protocol": 1, "key": "0" * 24, "pid": 1}})


def _older_agent(path: str) -> bytes:
    from agentsess.edges.store.agent import key

    return _frame({"r": {"agent": "agentsess-store-agent", "protocol": 1, "key": key(store_url()),
                         "version": "0.0.1", "pid": 1}})


@pytest.mark.parametrize("answer", [b"\x00\x00\x00\x02{}", b"HTTP/1.0 200 OK\r\n\r\n", ANOTHER_AGENT,
                                    b"\xff\xff\xff\xff" + b"x" * 64, _frame({"r": ["not", "a", "hello"]}), b"older",
                                    None],
                         ids=["wrong-hello", "not-a-frame", "another-store-s-agent", "huge-frame", "a-list",
                              "an-agent-of-another-version", "silent"])
def test_a_listener_that_is_not_the_agent_is_replaced_and_hears_only_the_hello(agent, answer):
    _ensure_dir(agent)
    if answer == b"older":
        answer = _older_agent(agent)
    srv, got = _listener(agent, answer)
    try:
        _run_ok("echo", "hi")
        _replaced(agent)
        # it heard at most the hello (nothing secret in it), never a store call
        assert got and all(b'"m":"hello"' in g for g in got), got
        assert not any(b"insert_run" in g or b"a_secret" in g for g in got)
    finally:
        srv.close()


root_only = pytest.mark.skipif(os.getuid() != 0, reason="planting another user's socket needs root")


@root_only
def test_a_socket_owned_by_another_user_is_never_connected_to(agent):
    _ensure_dir(agent)
    srv, got = _listener(agent, b"\x00\x00\x00\x02{}")
    os.lchown(agent, 65534, 65534)
    try:
        _run_ok("true")
        _replaced(agent)
        assert got == []  # not even a connection
    finally:
        srv.close()


@root_only
def test_a_listener_of_another_user_gets_not_even_the_hello(agent, tmp_path):
    if shutil.which("runuser") is None:
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail("runuser (util-linux) is required in CI")
        pytest.skip("runuser is not installed")
    _ensure_dir(agent)
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None:
        pytest.skip("no system python3 for the other user's listener")
    import tempfile

    folder = tempfile.mkdtemp(prefix="agentsess-nobody-", dir="/tmp")  # beside the control folder
    os.chmod(folder, 0o777)
    planted = os.path.join(folder, "l.sock")
    code = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(4); "
            "print('up', flush=True); c,_=s.accept(); c.settimeout(8); "
            "d=b''\ntry:\n  d=c.recv(100)\nexcept OSError: pass\nprint('got', len(d), flush=True)")
    proc = subprocess.Popen(["runuser", "-u", "nobody", "--", system_python, "-c", code, planted],
                            stdout=subprocess.PIPE, cwd="/")
    try:
        assert proc.stdout.readline() == b"up\n"
        os.rename(planted, agent)  # a socket whose listener is another user, in this user's folder
        os.lchown(agent, os.getuid(), os.getgid())  # and the file made to look like ours
        _run_ok("true")
        _replaced(agent)
        assert proc.stdout.readline() == b"got 0\n"  # refused on SO_PEERCRED before any byte
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


# -- a contained child cannot reach it -------------------------------------------------------


def _bwrap_works() -> bool:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    return subprocess.run([bwrap, "--bind", "/", "/", "--unshare-pid", "--", "true"], capture_output=True).returncode == 0


def test_the_child_of_a_contained_run_cannot_reach_the_agent(agent):
    if not _bwrap_works():
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail("bubblewrap with user namespaces is required in CI")
        pytest.skip("bubblewrap with user namespaces is not available here")
    probe = ("import os,socket,sys; p=sys.argv[1]; print(sorted(os.listdir(os.path.dirname(p))));\n"
             "s=socket.socket(socket.AF_UNIX)\ntry:\n  s.connect(p); print('reached')\n"
             "except OSError as e: print('refused', type(e).__name__)")
    out = agentsess("run", "--no-pty", "--", PY, "-c", probe, agent)
    assert out.returncode == 0, out.stderr
    assert _hello(agent) is not None  # the agent served this very run, outside the sandbox
    listed, result = out.stdout.decode().splitlines()
    assert "store-" not in listed and result.startswith("refused"), out.stdout


# -- a killed agent loses no revocation ------------------------------------------------------


def test_killing_the_agent_mid_run_loses_no_revocation(agent, pg, tmp_path):  # noqa: F811
    proc = subprocess.Popen([PY, "-m", "agentsess", *RUN, "--", "sh", "-c", "echo up; exec sleep 60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"up\n"
        first = _hello(agent)
        assert first is not None
        assert _parent(first["pid"]) != proc.pid  # started before the child: not the run's process
        os.kill(first["pid"], signal.SIGKILL)
        wait_for(lambda: not _alive(first["pid"]), 10, what="the agent gone")
        # the run's watch starts another at once; with the run's child alive, it stays below the
        # supervisor (an orphan of the run's could otherwise escape while it is not a subreaper)
        second = wait_for(lambda: (_hello(agent) or {}).get("pid"), 15, what="the agent restarted")
        assert second != first["pid"] and _parent(second) == proc.pid
        # "host A": another data root, the direct store, revokes the run
        host_a = {"AGENTSESS_HOME": str(tmp_path / "host-a"), "AGENTSESS_CONFIG": str(tmp_path / "a.toml")}
        [row] = [r for r in json.loads(agentsess("runs", "--json", env=host_a, check=0).stdout)
                 if r["status"] == "running"]
        out = agentsess("revoke", row["id"], "--json", env=host_a)
        assert out.returncode == 0, out.stderr
        [result] = json.loads(out.stdout)
        assert proc.wait(20) == 124
        assert result["confirmed"] is True, result
        again = _hello(agent)
        assert again is not None and again["pid"] != first["pid"]  # restarted by the supervisor
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    types = [r["type"] for r in json.loads(agentsess("show-run", row["id"], "--json", check=0).stdout)["receipts"]]
    assert "run.revoked" in types and types[-2:] == ["run.exited", "run.sealed"]
    [mine] = json.loads(agentsess("verify", row["id"], "--json", check=0).stdout)
    assert mine["ok"] and mine["mirror"] == "agrees", mine


# -- it leaves ---------------------------------------------------------------------------------


def test_the_agent_leaves_when_idle(agent, monkeypatch):
    monkeypatch.setenv("AGENTSESS_STORE_AGENT_IDLE", "1")
    _run_ok("true")
    pid = _hello(agent)["pid"]
    wait_for(lambda: not _alive(pid), 20, what="the idle agent to leave")
    assert not os.path.exists(agent) and "exits: idle for 1s" in _log()
    assert not os.path.exists(agent[: -len(".sock")] + ".lock")  # nothing left in the control folder


def test_a_live_run_keeps_its_agent_however_long(agent, monkeypatch):
    monkeypatch.setenv("AGENTSESS_STORE_AGENT_IDLE", "1")
    proc = subprocess.Popen([PY, "-m", "agentsess", *RUN, "--", "sh", "-c", "echo up; read x; echo done"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"up\n"
    pid = _hello(agent)["pid"]
    time.sleep(3)  # three idle periods: the run's connections hold it
    assert _alive(pid) and "exits" not in _log()
    out, err = proc.communicate(b"\n", timeout=30)
    assert proc.returncode == 0 and out == b"done\n", err


def test_the_agent_leaves_when_its_socket_file_is_removed(agent):
    _run_ok("true")
    pid = _hello(agent)["pid"]
    os.unlink(agent)
    wait_for(lambda: not _alive(pid), 10, what="the agent to leave")
    assert "its socket file is gone" in _log()


# -- the store out of reach, through the agent (one host, no namespaces) ----------------------


@pytest.fixture
def via_relay(agent, pg, monkeypatch):  # noqa: F811
    """The store reached through a relay the test cuts or freezes (tests/test_fleet.py's)."""
    import urllib.parse

    from test_fleet import Relay

    parts = urllib.parse.urlsplit(pg.base)
    relay = Relay((parts.hostname, parts.port))
    monkeypatch.setenv("AGENTSESS_STORE", pg.url.replace(f":{parts.port}/", f":{relay.port}/", 1))
    path = _path()
    yield relay
    relay.close()
    if os.path.exists(path):
        os.unlink(path)


def _running(pg) -> str:  # noqa: F811
    rows = wait_for(lambda: pg.query("SELECT id FROM runs WHERE status = 'running'"), 20, what="a running run")
    return rows[0][0]


def test_a_cut_store_stops_a_run_under_stop_through_the_agent(via_relay, pg, tmp_path):  # noqa: F811
    write = os.environ["AGENTSESS_CONFIG"]
    with open(write, "w") as fh:
        fh.write('[defaults]\nstore_unreachable_after = "2s"\non_store_unreachable = "stop"\n')
    proc = subprocess.Popen([PY, "-m", "agentsess", *RUN, "--", "sh", "-c", "echo up; exec sleep 60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"up\n"
    rid = _running(pg)
    via_relay.cut()
    assert proc.wait(30) == 124
    err = proc.stderr.read().decode()
    assert "unreachable" in err and "on_store_unreachable = stop" in err and "Traceback" not in err, err
    home = os.environ["AGENTSESS_HOME"]
    assert os.listdir(os.path.join(home, "store-pending")) == [f"{rid}.json"]
    via_relay.restore()
    [mine] = json.loads(agentsess("verify", rid, "--json", check=0).stdout)
    assert mine["ok"] and mine["sealed"] and mine["mirror"] == "agrees", mine
    types = [r[0] for r in pg.query("SELECT type FROM receipts WHERE run_id = %s ORDER BY seq", (rid,))]
    assert "store.unreachable" in types and types[-2:] == ["run.exited", "run.sealed"]


def test_a_silent_store_stops_a_run_under_stop_through_the_agent(via_relay, pg):  # noqa: F811
    with open(os.environ["AGENTSESS_CONFIG"], "w") as fh:
        fh.write('[defaults]\nstore_unreachable_after = "2s"\non_store_unreachable = "stop"\n')
    proc = subprocess.Popen([PY, "-m", "agentsess", *RUN, "--", "sh", "-c", "echo up; exec sleep 60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"up\n"
    rid = _running(pg)
    via_relay.freeze()  # the agent's connections hang; the agent itself still answers
    assert proc.wait(40) == 124
    assert "on_store_unreachable = stop" in proc.stderr.read().decode()
    via_relay.cut()
    via_relay.restore()
    [mine] = json.loads(agentsess("verify", rid, "--json", check=0).stdout)
    assert mine["ok"] and mine["mirror"] == "agrees", mine


def test_a_run_in_its_own_pid_namespace_connects_directly(pg):  # noqa: F811
    if subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode != 0:
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail("unshare --pid is required in CI")
        pytest.skip("unshare --pid is not allowed here")
    out = subprocess.run(["unshare", "--pid", "--fork", "--", PY, "-X", "importtime", "-m", "agentsess", *RUN,
                          "--", "true"], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert b"| psycopg\n" in out.stderr, out.stderr[-3000:]
    assert not os.path.exists(_path())  # pid 1 of its namespace: an agent would die with it


def test_every_command_is_a_client_and_a_program_importing_agentsess_connects_directly(agent):
    _run_ok("true")
    pid = _hello(agent)["pid"]
    out = subprocess.run([PY, "-X", "importtime", "-m", "agentsess", "runs", "--json"], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert b"psycopg" not in out.stderr and len(json.loads(out.stdout)) == 1
    assert _hello(agent)["pid"] == pid  # the same agent
    code = ("from agentsess.edges.store import Store; s = Store(); print(type(s).__name__, s.count()); "
            "import sys; print('psycopg' in sys.modules)")
    lib = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert lib.stdout.split() == ["PostgresStore", "1", "True"], lib.stderr
    forced = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "AGENTSESS_STORE_AGENT": "1"})
    assert forced.stdout.split() == ["AgentStore", "1", "False"], forced.stderr
