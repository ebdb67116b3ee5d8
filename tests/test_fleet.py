"""A fleet on one shared PostgreSQL store, end to end, across two "hosts".

Each host is a separate data root, config and keyring, and each command on it runs in its
own PID and UTS namespace (``unshare``) with that host's name; the one PostgreSQL server is
reached over TCP on 127.0.0.1. A connection cut goes through a relay on 127.0.0.1 that the
test closes and reopens.
"""

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time

import pytest

from helpers import wait_for
from pg import Database, dsn, required

pytestmark = pytest.mark.timeout(180)


def _unshare_works() -> str | None:
    try:
        out = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--uts", "--", "hostname", "probe"],
                             capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare cannot run here: {exc}"
    if out.returncode != 0:
        return "unshare --pid --mount-proc --uts is not allowed here: " + out.stderr.decode(errors="replace").strip()
    return None


@pytest.fixture(scope="module")
def namespaces():
    problem = _unshare_works()
    if problem:
        if required():
            pytest.fail(problem)
        pytest.skip(problem)


class Host:
    """One machine of the fleet: its own data root, config and keyring, its own hostname."""

    def __init__(self, name: str, tmp_path, db: Database, store_url: str | None = None):
        self.name = name
        root = tmp_path / name
        root.mkdir()
        self.home = root / "home"
        self.config_path = root / "config.toml"
        self.env = {**os.environ, "AGENTSESS_HOME": str(self.home), "AGENTSESS_CONFIG": str(self.config_path),
                    "AGENTSESS_KEYRING": "file", "AGENTSESS_STORE": store_url or db.url,
                    "PGPASSFILE": db.passfile, "AGENTSESS_STORE_AGENT_IDLE": "5"}
        for var in ("AGENTSESS_RUN_ID", "AGENTSESS_TOKEN", "AGENTSESS_PARENT_RUN_ID"):
            self.env.pop(var, None)

    def argv(self, *args) -> list[str]:
        return ["unshare", "--pid", "--fork", "--mount-proc", "--uts", "--", "sh", "-c",
                'hostname "$0" && exec "$@"', self.name, sys.executable, "-m", "agentsess", *args]

    def run(self, *args, timeout=60) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, timeout=timeout)

    def spawn(self, *args) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def json(self, *args):
        out = self.run(*args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def config(self, text: str) -> None:
        self.config_path.write_text(text)

    def receipts_file(self, run_id: str) -> str:
        return str(self.home / "runs" / run_id / "receipts.jsonl")


@pytest.fixture
def fleet(tmp_path, namespaces):
    dsn()
    db = Database(tmp_path)
    yield db
    db.drop()


def _start(host: Host, seen_from: Host, command: str = "echo up; exec sleep 60"):
    proc = host.spawn("run", "--no-pty", "--", "sh", "-c", command)
    assert proc.stdout.readline() == b"up\n", proc.stderr.read1(4000) if proc.poll() is not None else b""

    def find():
        for r in seen_from.json("runs"):
            if r["status"] == "running" and r["host"] == host.name:
                return r["id"]
        return None

    return proc, wait_for(find, 30, what=f"a running run on {host.name}")


def _types(records: list[dict]) -> list[str]:
    return [r["type"] for r in records]


def test_revoke_on_one_host_stops_the_run_on_another(fleet, tmp_path):
    a, b = Host("host-a", tmp_path, fleet), Host("host-b", tmp_path, fleet)
    proc, rid = _start(b, a)
    assert [r["id"] for r in a.json("runs", "--host", "host-b")] == [rid]
    assert a.json("runs", "--host", "host-a") == []
    out = a.run("revoke", rid, "--reason", "incident 7", "--json")
    assert out.returncode == 0, out.stderr
    [result] = json.loads(out.stdout)
    assert result["host"] == "host-b" and result["confirmed"] is True and result["process"] == "stopped"
    assert proc.wait(15) == 124
    assert b"was revoked" in proc.stderr.read()

    shown = a.json("show-run", rid)  # host A has no local files: receipts from the mirror
    assert not os.path.exists(a.receipts_file(rid))
    assert shown["status"] == "revoked" and shown["host"] == "host-b"
    types = _types(shown["receipts"])
    assert types[:2] == ["run.started", "credential.minted"] and types[-2:] == ["run.exited", "run.sealed"]
    [revoked] = [r for r in shown["receipts"] if r["type"] == "run.revoked"]
    assert revoked["data"]["confirmed_by"].endswith("@host-b") and revoked["data"]["reason"] == "incident 7"
    assert revoked["data"]["by"].endswith("@host-a")

    text = a.run("show-run", rid)
    assert text.returncode == 0, text.stderr
    assert b"host-b" in text.stdout and b"run.revoked" in text.stdout and b"confirmed" not in text.stderr
    listed = a.run("runs")
    assert listed.returncode == 0 and b"host-b" in listed.stdout

    exported = a.run("export", rid, "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr
    with open(b.receipts_file(rid), "rb") as fh:
        assert exported.stdout == fh.read()  # byte for byte what host B wrote
    cast = a.run("export", rid)
    assert cast.returncode == 2 and b"on host-b" in cast.stderr and cast.stderr.count(b"\n") == 1

    [on_b] = b.json("verify", rid)
    assert on_b["ok"] and on_b["sealed"] and on_b["source"] == "local" and on_b["mirror"] == "agrees"
    checked = a.run("verify", rid, "--json")
    [on_a] = json.loads(checked.stdout)
    assert on_a["source"] == "mirror" and on_a["records"] == len(types)
    assert checked.returncode == (0 if on_a["ok"] else 1)
    # the chain checks out from the mirror; the seal's key is host B's own (keys are per machine)
    assert on_a["ok"] or "unknown key" in on_a["failure"]


def test_a_revoke_that_finds_no_live_supervisor_says_it_was_not_confirmed(fleet, tmp_path):
    a, b = Host("host-a", tmp_path, fleet), Host("host-b", tmp_path, fleet)
    proc, rid = _start(b, a)
    # host B's supervisor dies without a word (power cut): its row still says running
    with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as fh:
        [supervisor] = fh.read().split()  # unshare's child: the namespace's init, the supervisor
    os.kill(int(supervisor), 9)  # everything in its PID namespace dies with it
    proc.wait(10)
    out = a.run("revoke", rid)
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert "on host-b" in text and "not confirmed by its supervisor" in text


def _pg_ctl(*args) -> None:
    folder = os.environ.get("AGENTSESS_TEST_PG_DIR")
    if not folder:
        if required():
            pytest.fail("AGENTSESS_TEST_PG_DIR is not set: cannot restart the test server")
        pytest.skip("the test server's folder is unknown (AGENTSESS_TEST_PG_DIR): cannot restart it")
    import glob

    pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
    argv = [pg_ctl, "-D", os.path.join(folder, "data"), "-l", os.path.join(folder, "server.log"), "-w", "-t", "60", *args]
    if os.getuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    out = subprocess.run(argv, capture_output=True, timeout=90)
    assert out.returncode == 0, out.stderr


def test_a_server_restart_mid_run_loses_no_revocation(fleet, tmp_path):
    a, b = Host("host-a", tmp_path, fleet), Host("host-b", tmp_path, fleet)
    proc, rid = _start(b, a)
    _pg_ctl("restart", "-m", "fast")
    out = a.run("revoke", rid)  # the notification may reach no one: the watcher re-reads the list
    assert out.returncode == 0, out.stderr
    assert proc.wait(20) == 124
    text = out.stdout.decode()
    assert "on host-b" in text, text
    shown = a.json("show-run", rid)
    assert "run.revoked" in _types(shown["receipts"]) and shown["status"] == "revoked"
    [on_b] = b.json("verify", rid)
    assert on_b["ok"] and on_b["mirror"] == "agrees", on_b


class Relay:
    """A TCP relay on 127.0.0.1 to the test server, which the test can cut and reopen."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.listener = self._listen(0)
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.frozen = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _listen(self, port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        return s

    def _accept(self) -> None:
        listener = self.listener
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.frozen:
                with self.lock:
                    self.conns.append(client)  # held open, never answered
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.2)
                if self.frozen:
                    continue  # bytes stay in the kernel's buffers: the peer hears nothing
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        raise OSError
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def freeze(self) -> None:
        """A silent partition: connections stay open, nothing passes, new ones hang."""
        self.frozen = True

    def cut(self) -> None:
        self.open = False
        self.frozen = False
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread: close alone would not
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        if self.frozen:
            self.frozen = False
            return
        self.listener = self._listen(self.port)
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        if self.open:
            self.cut()


@pytest.fixture
def relay(fleet):
    import urllib.parse

    parts = urllib.parse.urlsplit(fleet.base)
    r = Relay((parts.hostname, parts.port))
    url = fleet.url.replace(f":{parts.port}/", f":{r.port}/", 1)
    yield r, url
    r.close()


def test_a_cut_connection_stops_the_run_under_on_store_unreachable_stop(fleet, relay, tmp_path):
    r, via_relay = relay
    a = Host("host-a", tmp_path, fleet)
    b = Host("host-b", tmp_path, fleet, store_url=via_relay)
    b.config('[defaults]\nstore_unreachable_after = "2s"\non_store_unreachable = "stop"\n')
    proc, rid = _start(b, a)
    r.cut()
    code = proc.wait(30)
    err = proc.stderr.read().decode()
    assert code == 124, err
    assert "unreachable" in err and "on_store_unreachable = stop" in err
    # what host B wrote while cut off is kept there, and reaches the store once it is back
    assert os.listdir(b.home / "store-pending") == [f"{rid}.json"]
    row_now = a.json("show-run", rid)
    assert row_now["status"] == "running" and "run.exited" not in _types(row_now["receipts"])
    r.restore()
    [on_b] = b.json("verify", rid)
    assert on_b["ok"] and on_b["sealed"] and on_b["mirror"] == "agrees", on_b
    assert not os.listdir(b.home / "store-pending")
    shown = a.json("show-run", rid)
    assert shown["status"] == "exited" and shown["ended_at"] is not None
    types = _types(shown["receipts"])
    assert "store.unreachable" in types and types[-2:] == ["run.exited", "run.sealed"]
    [gone] = [x for x in shown["receipts"] if x["type"] == "store.unreachable"]
    assert gone["data"]["policy"] == "stop" and gone["data"]["for"] >= 2


def test_a_cut_connection_keeps_the_run_under_keep_and_records_the_outage(fleet, relay, tmp_path):
    r, via_relay = relay
    a = Host("host-a", tmp_path, fleet)
    b = Host("host-b", tmp_path, fleet, store_url=via_relay)
    b.config('[defaults]\nstore_unreachable_after = "1s"\non_store_unreachable = "keep"\n')
    proc, rid = _start(b, a)
    r.cut()
    time.sleep(3.5)  # an outage of a known length: longer than store_unreachable_after
    assert proc.poll() is None  # keep: the run goes on
    r.restore()

    def recorded():
        return "store.reachable" in _types(a.json("show-run", rid)["receipts"])

    wait_for(recorded, 20, interval=0.2, what="the outage recorded in the mirror")
    out = a.run("revoke", rid, "--json")
    [result] = json.loads(out.stdout)
    assert result["confirmed"] is True
    assert proc.wait(15) == 124
    err = proc.stderr.read().decode()
    assert "unreachable" in err and "goes on (on_store_unreachable = keep)" in err and "reachable again" in err
    shown = a.json("show-run", rid)
    [back] = [x for x in shown["receipts"] if x["type"] == "store.reachable"]
    assert back["data"]["seconds"] >= 1.5 and back["data"]["policy"] == "keep"
    [on_b] = b.json("verify", rid)
    assert on_b["ok"] and on_b["mirror"] == "agrees", on_b


def test_verify_reports_a_local_stream_that_diverges_from_the_mirror(fleet, tmp_path):
    b = Host("host-b", tmp_path, fleet)
    out = b.run("run", "--no-pty", "--", "echo", "hello")
    assert out.returncode == 0, out.stderr
    rid = b.json("runs")[0]["id"]
    path = b.receipts_file(rid)
    with open(path, "rb") as fh:
        original = fh.read()
    # the last record (the seal) removed from the local stream: the mirror still has it
    lines = original.splitlines(keepends=True)
    with open(path, "wb") as fh:
        fh.write(b"".join(lines[:-1]))
    out = b.run("verify", rid, "--json")
    [res] = json.loads(out.stdout)
    assert out.returncode == 1 and not res["ok"] and res["mirror"] == "differs"
    assert "truncated" in res["failure"] and "the store's mirror holds 4 receipts" in res["failure"]
    # a record rewritten in place, hashes recomputed: the mirror names the seq
    first = json.loads(lines[0])
    first["data"]["argv"] = ["echo", "innocent"]
    from agentsess.edges import streams

    first["hash"] = streams.record_hash(first)
    with open(path, "wb") as fh:
        fh.write(streams.canonical(first) + b"\n" + b"".join(lines[1:]))
    out = b.run("verify", rid, "--json")
    [res] = json.loads(out.stdout)
    assert out.returncode == 1 and res["mirror"] == "differs" and "differ at seq 0" in res["failure"]
    # the stream gone from this machine: verification from the mirror, same keys, passes
    os.unlink(path)
    [res] = b.json("verify", rid)
    assert res["ok"] and res["sealed"] and res["source"] == "mirror", res
    shown = b.json("show-run", rid)
    assert _types(shown["receipts"])[-1] == "run.sealed"


def test_revoking_a_parent_on_one_host_stops_its_sub_agent_on_another(fleet, tmp_path):
    a, b = Host("host-a", tmp_path, fleet), Host("host-b", tmp_path, fleet)
    # on host B, a run whose agent starts a sub-agent run (a nested `agentsess run`)
    nested = f"{sys.executable} -m agentsess run --no-pty -- sh -c 'echo up; exec sleep 60'"
    proc = b.spawn("run", "--no-pty", "--", "sh", "-c", nested)
    assert proc.stdout.readline() == b"up\n"

    def both():
        rows = [r for r in a.json("runs") if r["status"] == "running"]
        return rows if len(rows) == 2 else None

    rows = wait_for(both, 30, what="the parent and its sub-agent running on host B")
    [parent] = [r for r in rows if r["parent_id"] is None]
    [child] = [r for r in rows if r["parent_id"] == parent["id"]]
    out = a.run("revoke", parent["id"], "--json")
    assert out.returncode == 0, out.stderr
    results = {r["id"]: r for r in json.loads(out.stdout)}
    assert set(results) == {parent["id"], child["id"]}
    assert all(r["host"] == "host-b" and r["confirmed"] is True for r in results.values()), json.dumps(results)
    assert proc.wait(20) == 124
    shown = a.json("show-run", child["id"])
    [revoked] = [x for x in shown["receipts"] if x["type"] == "run.revoked"]
    assert revoked["data"]["cause"] == "ancestor" and revoked["data"]["ancestor"] == parent["id"]


def test_a_silent_partition_stops_the_run_and_nothing_hangs(fleet, relay, tmp_path):
    r, via_relay = relay
    a = Host("host-a", tmp_path, fleet)
    b = Host("host-b", tmp_path, fleet, store_url=via_relay)
    b.config('[defaults]\nstore_unreachable_after = "2s"\non_store_unreachable = "stop"\n')
    proc, rid = _start(b, a)
    r.freeze()  # no reset, no refusal: queries and connections just get no answer
    assert proc.wait(40) == 124
    assert "on_store_unreachable = stop" in proc.stderr.read().decode()
    assert os.listdir(b.home / "store-pending") == [f"{rid}.json"]
    r.cut()  # the frozen connections go; the relay opens afresh
    r.restore()
    [on_b] = b.json("verify", rid)
    assert on_b["ok"] and on_b["mirror"] == "agrees", on_b
    shown = a.json("show-run", rid)
    assert shown["status"] == "exited" and _types(shown["receipts"])[-2:] == ["run.exited", "run.sealed"]


def test_a_watcher_stops_at_once_even_on_a_silent_peer(fleet, relay, monkeypatch):
    """No watcher thread may outlive stop() inside libpq: at exit it would crash the supervisor."""
    from agentsess.edges.store import Store
    from agentsess.edges.store.watcher import RevocationWatcher

    r, via_relay = relay
    monkeypatch.setenv("PGPASSFILE", fleet.passfile)
    with Store(url=via_relay) as store:
        watcher = RevocationWatcher(store.target, ["run_01aaaaaaaaaaaaaaaaaaaaaaaa"]).start()
        wait_for(lambda: watcher.reads >= 1, 10, what="a first read")
        r.freeze()
        wait_for(lambda: watcher.unreachable_for() > 0, 20, what="a read stuck on the silent peer")
        watcher.stop()
        assert not watcher._thread.is_alive()
        # and one that is still connecting (the peer accepts, then never answers)
        held = len(r.conns)
        connecting = RevocationWatcher(store.target, ["run_01aaaaaaaaaaaaaaaaaaaaaaaa"]).start()
        wait_for(lambda: len(r.conns) > held, 10, what="the connect to reach the relay")
        connecting.stop()
        assert not connecting._thread.is_alive() and connecting.reads == 0
