"""The store's interface, once per backend (SQLite and PostgreSQL), and the backend choice."""

import json
import os
import subprocess
import sys
import threading

import pytest

from agentsess.edges import streams
from agentsess.edges.store import Store, store_url
from agentsess.edges.store.migrations import MIGRATIONS, POSTGRES
from agentsess.errors import AgentsessError
from helpers import agentsess as cli
from helpers import write_config
from pg import Database, admin, backend, dsn, password, pg, schema_url  # noqa: F401 - fixtures

A = "run_01aaaaaaaaaaaaaaaaaaaaaaaa"
B = "run_01bbbbbbbbbbbbbbbbbbbbbbbb"
C = "run_01cccccccccccccccccccccccc"


def _row(rid, parent=None, started=1.0, status="running", host="h1"):
    return {"id": rid, "parent_id": parent, "name": "x", "status": status, "command": ["echo", "hi"],
            "cwd": "/", "host": host, "user": "u", "started_at": started, "scopes": ["fs:read"],
            "policy": {"on_revoke": "stop"}}


def test_the_backend_is_the_one_configured(backend):
    with Store() as store:
        assert store.backend == ("sqlite" if backend is None else "postgresql")
        assert store.applied_migrations() == [name for name, _ in MIGRATIONS]
    with Store() as store:  # opening again applies nothing twice
        assert len(store.applied_migrations()) == len(MIGRATIONS)


def test_rows_round_trip_with_json_columns_and_the_user_column(backend):
    with Store() as store:
        store.insert_run(_row(A))
        store.update_run(A, child_pid=42, scopes=["git:push"])
        row = store.get_run(A)
        assert row["command"] == ["echo", "hi"] and row["scopes"] == ["git:push"]
        assert row["user"] == "u" and row["child_pid"] == 42 and row["policy"] == {"on_revoke": "stop"}
        assert store.set_status_if(A, "running", status="exited", ended_at=2.5)
        assert not store.set_status_if(A, "running", status="exited")
        assert store.get_run(A)["status"] == "exited" and store.get_run(A)["ended_at"] == 2.5
        assert store.get_run(B) is None


def test_resolve_listing_tree_and_hosts(backend):
    with Store() as store:
        store.insert_run(_row(A, started=1, host="laptop"))
        store.insert_run(_row(B, parent=A, started=2, host="runner-7"))
        store.insert_run(_row(C, parent=B, started=3, host="runner-7"))
        assert store.resolve("01b") == B and store.resolve("RUN_01C") == C and store.resolve("last") == C
        with pytest.raises(AgentsessError):
            store.resolve("01d")
        assert [r["id"] for r in store.list_runs()] == [C, B, A]
        assert [r["id"] for r in store.list_runs(host="runner-7")] == [C, B]
        assert [r["id"] for r in store.list_runs(limit=1, columns="id, user, host")] == [C]
        assert [r["id"] for r in store.descendants(A)] == [B, C]
        assert store.ancestors(C) == [B, A]
        assert store.count() == 3


def test_revocation_is_one_transaction_with_a_list_row_per_run(backend):
    with Store() as store:
        store.insert_run(_row(A))
        store.insert_run(_row(B, parent=A, status="exited"))
        store.update_run(B, exit_code=3)
        store.insert_run(_row(C, parent=A, status="abandoned"))
        newly = store.mark_revoked({A: "direct", B: f"ancestor {A}"}, 10.0, "me@here", "leak")
        assert newly == {A: True, B: True}
        assert store.mark_revoked({A: "direct"}, 11.0, "me@here", None) == {A: False}
        # a running or exited run becomes revoked (an exited one keeps its exit code)
        assert store.get_run(A)["status"] == "revoked" and store.get_run(B)["status"] == "revoked"
        assert store.get_run(B)["exit_code"] == 3
        assert store.mark_revoked({C: f"ancestor {A}"}, 12.0, "me@here", None) == {C: True}
        assert store.get_run(C)["status"] == "abandoned"  # an abandoned run keeps its status
        store.delete_runs([C])
        assert store.revocation(A) == (10.0, "direct")
        listed = store.revocations_of([A, B, C])
        assert set(listed) == {A, B} and listed[B]["cause"] == f"ancestor {A}"
        assert listed[A]["revoked_by"] == "me@here" and listed[A]["reason"] == "leak"
        assert store.revoked_among([C, B])["id"] == B
        store.delete_runs([B])
        assert store.revocations_of([B]) == {} and store.get_run(B) is None


def test_postgres_migrations_run_once_under_the_advisory_lock_from_many_processes(pg):
    code = "from agentsess.edges.store import Store; s = Store(); print(len(s.applied_migrations()))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(6)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert {o[0].strip() for o in outs} == {str(len(POSTGRES)).encode()}
    rows = pg.query("SELECT name FROM migrations ORDER BY name")
    assert [r[0] for r in rows] == [name for name, _ in POSTGRES]


def test_postgres_upgrades_a_store_from_the_first_schema_keeping_its_runs(pg):
    with admin(pg.base) as conn:
        conn.execute(f'CREATE SCHEMA "{pg.schema}"')
        conn.execute(f'SET search_path = "{pg.schema}"')
        conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
        name, sql = POSTGRES[0]
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO migrations VALUES (%s, 0)", (name,))
        conn.execute("INSERT INTO runs (id, name, status, command, cwd, host, \"user\", started_at) "
                     "VALUES (%s, 'old', 'exited', '[\"true\"]', '/', 'h', 'u', 1)", (A,))
    with Store() as store:
        assert store.applied_migrations() == [n for n, _ in POSTGRES]
        row = store.get_run(A)
    assert row["name"] == "old" and row["command"] == ["true"] and row["revoked_at"] is None


def _append(store, run_id, rtype, data=None):
    from agentsess.core.receipts import recording

    return recording.record(store, run_id, rtype, data or {})


def test_postgres_mirrors_every_receipt_and_refuses_a_forked_chain(pg):
    with Store() as store:
        store.insert_run(_row(A))
        streams.create_stream(A)
        for i in range(3):
            _append(store, A, "note", {"i": i})
        lines = store.mirrored(A)
        with open(streams.paths.receipts_file(A), "rb") as fh:
            assert fh.read() == b"".join(lines)
        assert store.get_run(A)["chain_count"] == 3
        # another machine claims seq 3 first: the database holds one record per (run, seq)
        forged = dict(json.loads(lines[-1]), seq=3, prev=json.loads(lines[-1])["hash"], data={"forged": 1})
        forged["hash"] = streams.record_hash(forged)
        pg.query("INSERT INTO receipts (run_id, seq, type, ts, hash, line, host) VALUES (%s, 3, 'note', %s, %s, %s, 'evil')",
                 (A, forged["ts"], forged["hash"], streams.canonical(forged).decode()))
        with pytest.raises(streams.ReceiptError) as err:
            _append(store, A, "note", {"i": 3})
        assert "forked" in err.value.message
        with pytest.raises(Exception) as dup:
            pg.query("INSERT INTO receipts (run_id, seq, type, ts, hash, line, host) VALUES (%s, 0, 'x', 'x', 'x', 'x', 'x')", (A,))
        assert "duplicate key" in str(dup.value)


def test_postgres_catches_a_lagging_mirror_up_from_the_local_stream(pg):
    with Store() as store:
        store.insert_run(_row(A))
        streams.create_stream(A)
        _append(store, A, "note", {"i": 0})
        streams.append(A, "note", {"i": 1})  # written while the store was out of reach
        streams.append(A, "note", {"i": 2})
        assert store.mirrored_count(A) == 1
        _append(store, A, "note", {"i": 3})
        assert store.mirrored_count(A) == 4 and store.get_run(A)["chain_count"] == 4
        with open(streams.paths.receipts_file(A), "rb") as fh:
            assert fh.read() == b"".join(store.mirrored(A))


def test_the_choice_of_store(monkeypatch, tmp_path):
    monkeypatch.delenv("AGENTSESS_STORE", raising=False)
    assert store_url() is None
    write_config('store = "postgresql://fleet@db.example/agentsess"\n')
    assert store_url() == "postgresql://fleet@db.example/agentsess"
    monkeypatch.setenv("AGENTSESS_STORE", "")  # the variable wins: empty means this machine's file
    assert store_url() is None
    monkeypatch.setenv("AGENTSESS_STORE", "sqlite")
    assert store_url() is None
    monkeypatch.setenv("AGENTSESS_STORE", "mysql://x")
    with pytest.raises(AgentsessError) as err:
        store_url()
    assert err.value.exit_code == 2 and "postgresql://" in err.value.message


@pytest.mark.parametrize("url", [
    "postgresql://fleet:hunter2-secret@127.0.0.1:9/agentsess",
    "postgres://fleet:hunter2-secret@127.0.0.1:9/agentsess",
    "postgresql://fleet@127.0.0.1:9/agentsess?password=hunter2-secret",
    "postgresql://fleet:%68unter2-secret@127.0.0.1:9/agentsess",
    "postgresql://fleet@127.0.0.1:9/agentsess?sslmode=disable&PassWord=hunter2-secret",
    "host=127.0.0.1 port=9 password=hunter2-secret",
])
def test_a_password_in_the_url_is_refused_and_never_shown(url, monkeypatch):
    monkeypatch.setenv("AGENTSESS_STORE", url if url.startswith("postgres") else "postgresql://x@127.0.0.1:9/db")
    if not url.startswith("postgres"):
        from agentsess.edges.store.postgres import Target

        with pytest.raises(AgentsessError) as err:
            Target("postgresql://x@127.0.0.1:9/db?" + url.replace(" ", "&"))
        assert "hunter2" not in err.value.message
        return
    out = cli("runs", env={"AGENTSESS_STORE": url})
    assert out.returncode == 2, out.stderr
    assert b"password in clear" in out.stderr or b"not a valid" in out.stderr
    assert b"hunter2" not in out.stderr + out.stdout and b"unter2" not in out.stderr
    assert out.stderr.count(b"\n") == 1 and out.stderr.startswith(b"agentsess: error: ")


def test_a_password_in_the_config_is_refused_and_never_shown(monkeypatch):
    monkeypatch.delenv("AGENTSESS_STORE", raising=False)
    write_config('store = "postgresql://fleet:hunter2-secret@127.0.0.1:9/agentsess"\n')
    out = cli("runs")
    assert out.returncode == 2 and b"password in clear" in out.stderr and b"hunter2" not in out.stderr
    write_config('store = 42\n')
    out = cli("config", "show")
    assert out.returncode == 2 and b"store" in out.stderr


def test_the_password_from_the_keyring_works_and_a_wrong_one_is_masked(tmp_path):
    base = dsn()
    db = Database(tmp_path)
    env = {"AGENTSESS_STORE": db.url, "PGPASSFILE": str(tmp_path / "none")}
    try:
        out = cli("runs", env=env)
        assert out.returncode == 4 and b"cannot connect" in out.stderr, out.stderr
        wrong = "Wr0ng-" + "p4ss" * 4
        assert cli("secret", "set", "store-password", input=wrong.encode(), env=env).returncode == 0
        out = cli("runs", env=env)
        assert out.returncode == 4 and wrong.encode() not in out.stderr and b"password" in out.stderr
        assert out.stderr.count(b"\n") == 1
        assert cli("secret", "set", "store-password", input=password().encode(), env=env).returncode == 0
        out = cli("runs", env=env)
        assert out.returncode == 0, out.stderr
        assert base  # the server is the shared one
    finally:
        db.drop()


def test_an_unreachable_store_is_a_one_line_state_error():
    out = cli("runs", env={"AGENTSESS_STORE": "postgresql://fleet@127.0.0.1:1/agentsess"})
    assert out.returncode == 4 and out.stderr.startswith(b"agentsess: error: cannot connect to the store")
    assert out.stderr.count(b"\n") == 1


def test_masking_of_passwords_in_messages():
    from agentsess.edges.store.postgres import mask

    assert mask("x password=abc y", ()) == "x password=*** y"
    assert mask("postgresql://u:abc@h/db", ()) == "postgresql://u:***@h/db"
    assert mask("it was s3cr3t!", ("s3cr3t!",)) == "it was ***"
    assert mask("PASSWORD = 'a b' z", ()) == "PASSWORD = *** z"


def test_sqlite_paths_never_import_psycopg(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AGENTSESS_STORE"}
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "agentsess", "run", "--no-pty", "--", "true"],
                         env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert b"psycopg" not in out.stderr and b"agentsess.edges.store.sqlite" in out.stderr
    assert b"agentsess.edges.store.watcher" not in out.stderr


def test_a_watcher_sees_a_revocation_from_another_connection(pg):
    from agentsess.edges.store.watcher import RevocationWatcher

    with Store() as store:
        store.insert_run(_row(A))
        woke = threading.Event()
        watcher = RevocationWatcher(store.target, [A], on_change=woke.set).start()
        try:
            assert not woke.wait(1.0) and watcher.revoked is None and watcher.reads >= 1
            with Store() as other:
                other.mark_revoked({A: "direct"}, 5.0, "them@there", "why")
            assert woke.wait(5.0)
            assert watcher.revoked["cause"] == "direct" and watcher.revoked["revoked_by"] == "them@there"
            import select

            assert select.select([watcher.fileno()], [], [], 0)[0]
        finally:
            watcher.stop()


def test_schema_urls_keep_stores_apart(tmp_path, monkeypatch):
    one, two = Database(tmp_path), Database(tmp_path)
    monkeypatch.setenv("PGPASSFILE", one.passfile)
    try:
        with Store(url=one.url) as a, Store(url=two.url) as b:
            a.insert_run(_row(A))
            assert b.get_run(A) is None and a.get_run(A)["id"] == A
    finally:
        one.drop()
        two.drop()
    assert schema_url("postgresql://h/db", "s").endswith("options=-csearch_path%3Ds")


def test_the_postgresql_store_loads_psycopg_and_no_hand_written_libpq(pg):
    # the direct store (the store agent off; `run` goes through the agent: tests/test_store_agent.py)
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "agentsess", "run", "--no-pty", "--", "true"],
                         capture_output=True, timeout=60, env={**os.environ, "AGENTSESS_STORE_AGENT": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert b"| psycopg\n" in out.stderr and b"agentsess.edges.store.postgres" in out.stderr
    assert b"agentsess.edges.store.libpq" not in out.stderr and b"agentsess.edges.store.sqlite" not in out.stderr


def test_parameters_and_results_round_trip(pg):
    import psycopg

    from agentsess.edges.store.postgres import Target

    with Target(pg.url).connect() as conn:
        row = conn.execute(
            "SELECT $1::bigint + 1 AS i, $2 AS t, $3::float8 AS f, $4::bool AS b, $5::text AS n, "
            "$6 = ANY($7) AS member, $8 AS percent, count(*) AS c FROM (SELECT 1) x",
            (2**40, "quote ' \" \\ é \u2028 %s %(x)s ?", 0.1, True, None, 'a"b', ["x", 'a"b', "c\\d"], "100%"),
        ).fetchone()
        assert row == {"i": 2**40 + 1, "t": "quote ' \" \\ é \u2028 %s %(x)s ?", "f": 0.1, "b": True, "n": None,
                       "member": True, "percent": "100%", "c": 1}
        with pytest.raises(psycopg.Error) as err:
            conn.execute("SELECT * FROM no_such_table")
        assert err.value.sqlstate == "42P01" and not conn.closed
        with pytest.raises(psycopg.Error):
            with conn.transaction():
                conn.execute("CREATE TEMP TABLE t (x int)")
                conn.execute("SELECT 1/0")
        assert conn.execute("SELECT to_regclass('pg_temp.t') AS r").fetchone()["r"] is None  # rolled back
        assert conn.autocommit and conn.prepare_threshold is None
        # every connection fails fast and notices a dead peer (keepalives, tcp_user_timeout)
        assert conn.info.get_parameters()["application_name"] == "agentsess"
        for param in ("keepalives=1", "keepalives_idle=5", "tcp_user_timeout=10000", "connect_timeout=5"):
            assert param in conn.info.dsn.split()


def test_a_watchers_connection_is_made_with_the_same_parameters_and_can_be_cancelled(pg):
    import socket

    from agentsess.edges.store.postgres import Target

    target = Target(pg.url)
    r, w = os.pipe()
    r_idle, w_idle = os.pipe()
    try:
        with target.connect(cancel_fd=r) as conn:
            assert conn.autocommit and conn.execute("SHOW search_path").fetchone() == {"search_path": pg.schema}
            assert "tcp_user_timeout=10000" in conn.info.dsn and "keepalives_idle=5" in conn.info.dsn
        # a peer that accepts and never answers: the connect goes on until the pipe is written
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        accepted = threading.Thread(target=lambda: (silent.accept(), os.write(w, b"x")), daemon=True)
        accepted.start()
        with pytest.raises(AgentsessError) as err:
            target.connect(cancel_fd=r, port=str(port), connect_timeout="60")
        assert "connection cancelled" in err.value.message and err.value.exit_code == 4
        assert password() not in err.value.message
        # and, with nobody to cancel it, a silent peer is given up after connect_timeout
        with pytest.raises(AgentsessError) as err:
            target.connect(cancel_fd=r_idle, port=str(port), connect_timeout="1")
        assert "timeout expired" in err.value.message and "cannot connect to the store" in err.value.message
        silent.close()
    finally:
        for fd in (r, w, r_idle, w_idle):
            os.close(fd)


def test_without_psycopg_the_error_says_what_to_install(pg, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    with pytest.raises(AgentsessError) as err:
        with Store() as store:
            store.count()
    assert err.value.exit_code == 4 and "agentsess[postgres]" in err.value.message


def test_a_psycopg_without_its_libpq_is_a_one_line_error(pg):
    # the real psycopg, told to use an implementation that is not installed: it cannot load
    out = cli("runs", env={"PSYCOPG_IMPL": "c"})
    assert out.returncode == 4, out.stderr
    assert out.stderr.startswith(b"agentsess: error: ") and out.stderr.count(b"\n") == 1
    assert b"agentsess[postgres]" in out.stderr and password().encode() not in out.stderr


def test_doctor_names_the_shared_store_without_its_password(pg):
    assert cli("secret", "set", "store-password", input=password().encode()).returncode == 0
    out = cli("doctor", "--json")
    report = json.loads(out.stdout)
    [store] = [c for c in report["checks"] if c["name"] == "store"]
    assert store["level"] == "ok" and store["detail"].startswith("postgresql://agentsess@127.0.0.1:")
    assert "0005_fleet" in store["detail"]
    assert password().encode() not in out.stdout + out.stderr


def test_a_notification_alone_revokes_nothing(pg):
    """Anyone who can reach the database can NOTIFY: a watcher only trusts the revocation list."""
    from agentsess.edges.store.watcher import RevocationWatcher

    with Store() as store:
        store.insert_run(_row(A))
        woke = threading.Event()
        watcher = RevocationWatcher(store.target, [A], on_change=woke.set).start()
        try:
            wait = __import__("helpers").wait_for
            wait(lambda: watcher.reads >= 1, 10, what="the first read")
            before = watcher.reads
            pg.query("SELECT pg_notify('agentsess_revoke', %s)", (A,))
            wait(lambda: watcher.reads > before, 10, what="a re-read after the notification")
            assert watcher.revoked is None and not woke.is_set()
        finally:
            watcher.stop()


def test_the_child_never_sees_the_store_password(pg):
    secret = password()
    assert cli("secret", "set", "store-password", input=secret.encode()).returncode == 0
    out = cli("run", "--no-pty", "--", "env", env={"PGPASSWORD": secret, "PGPASSFILE": "/nonexistent"})
    assert out.returncode == 0, out.stderr
    assert secret.encode() not in out.stdout + out.stderr
    env = dict(line.split("=", 1) for line in out.stdout.decode().splitlines() if "=" in line)
    # nested runs ask their parent's supervisor: the child never learns where the store is
    assert "PGPASSWORD" not in env and "AGENTSESS_STORE" not in env


def test_a_run_that_ends_before_its_watcher_saw_the_revocation_still_confirms_it(pg):
    import types

    with Store() as store:
        store.insert_run(_row(B))
        store.insert_run(_row(A, parent=B))
        streams.create_stream(A)
        fleet = store.watch_run(A, types.SimpleNamespace(), wake=None)  # its thread never ran
        with Store() as other:
            other.mark_revoked({B: "direct", A: f"ancestor {B}"}, 7.0, "them@there", "cascade")
        fleet.stop()
        [rec] = store.mirrored_types(A, "run.revoked")
    assert rec["data"]["cause"] == "ancestor" and rec["data"]["confirmed_by"].startswith("supervisor ")
    assert rec["data"]["by"] == "them@there"


def test_a_forged_pending_file_cannot_clear_a_revocation(pg):
    from agentsess.edges import paths

    with Store() as store:
        store.insert_run(_row(A))
        store.mark_revoked({A: "direct"}, 3.0, "me@here", None)
    folder = os.path.join(paths.data_root(), "store-pending")
    os.makedirs(folder)
    forged = {"run": A, "ops": [["update", {"revoked_at": None, "status": "running"}],
                                ["status_if", "revoked", {"status": "exited", "revoked_at": None}],
                                ["update", {"exit_code": 0}]]}
    with open(os.path.join(folder, f"{A}.json"), "w") as fh:
        json.dump(forged, fh)
    with Store() as store:
        row = store.get_run(A)
    assert row["revoked_at"] == 3.0 and row["status"] == "revoked" and row["exit_code"] == 0
    assert not os.listdir(folder)


def test_a_flood_of_notifications_neither_piles_up_nor_hides_a_revocation(pg):
    """Anyone on the database can NOTIFY the channel, as often as they like: the watcher takes
    each in (psycopg hands it to the watcher's handler, none waits in the connection), re-reads
    the list, and still sees the one real revocation."""
    from agentsess.edges.store.watcher import RevocationWatcher

    wait = __import__("helpers").wait_for
    with Store() as store:
        store.insert_run(_row(A))
        woke = threading.Event()
        watcher = RevocationWatcher(store.target, [A], on_change=woke.set).start()
        try:
            wait(lambda: watcher.reads >= 1, 10, what="the first read")
            with admin(pg.base) as conn:
                for i in range(300):
                    payload = [A, "", "x" * 7000, "\u00e9\u2028\x7f", f"{A},{B}", f"'; DROP TABLE runs; --{i}"][i % 6]
                    conn.execute("SELECT pg_notify('agentsess_revoke', %s)", (payload,))
            wait(lambda: watcher.notified >= 300, 20, what="every notification taken in")
            assert watcher.revoked is None and not woke.is_set()
            with watcher._conn_lock:
                conn = watcher._conn
                assert conn is not None and not conn._notifies_backlog  # nothing piles up
            with Store() as other:
                other.mark_revoked({A: "direct"}, 9.0, "them@there", None)
            assert woke.wait(10)
            assert watcher.revoked["run_id"] == A and watcher.notified >= 301
        finally:
            watcher.stop()
        assert store.get_run(A)["status"] == "revoked"


@pytest.mark.parametrize("debug", ["", "1"])
def test_psycopgs_own_warnings_show_only_under_agentsess_debug(pg, debug):
    code = ("from agentsess.edges.store import Store; import logging; s = Store(); s.count(); "
            "logging.getLogger('psycopg').warning('error ignored in rollback on <conn>'); s.close()")
    env = {**os.environ, "AGENTSESS_DEBUG": debug}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (b"error ignored in rollback" in out.stderr) == bool(debug)


def test_runs_shows_each_run_s_host_and_filters_by_it(backend):
    with Store() as store:
        store.insert_run(_row(A, started=1.0, status="exited", host="laptop"))
        store.insert_run(_row(B, started=2.0, status="exited", host="runner-7"))
    out = cli("runs", check=0).stdout.decode()
    header, *lines = out.splitlines()
    assert header.split()[:4] == ["id", "status", "name", "host"]
    assert [line.split()[0] for line in lines] == [B, A]
    assert [line.split()[3] for line in lines] == ["runner-7", "laptop"]
    only = cli("runs", "--host", "laptop", check=0).stdout.decode().splitlines()
    assert [line.split()[0] for line in only[1:]] == [A]
    assert [r["id"] for r in json.loads(cli("runs", "--host", "runner-7", "--json", check=0).stdout)] == [B]
    assert "no runs yet" in cli("runs", "--host", "elsewhere", check=0).stdout.decode()
    assert "--host H" in cli("runs", "--help", check=0).stdout.decode()
