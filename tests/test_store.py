"""The store: migrations from blank and from an earlier schema, modes, run ids."""

import os
import sqlite3
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentsess import ids
from agentsess.edges import paths
from agentsess.edges.store.migrations import MIGRATIONS
from agentsess.edges.store import Store
from agentsess.errors import AgentsessError


def test_migrations_apply_from_blank_in_order():
    with Store() as store:
        assert store.applied_migrations() == [name for name, _ in MIGRATIONS]
        cols = {r[1] for r in store.db.execute("PRAGMA table_info(runs)")}
    for needed in ("id", "parent_id", "status", "command", "cwd", "host", "user", "supervisor_pid",
                   "child_pid", "child_pgid", "started_at", "ended_at", "exit_code", "signal",
                   "chain_head", "chain_count", "output_bytes", "output_sha256", "scopes", "expires_at",
                   "jti", "token_sha256", "revoked_at"):
        assert needed in cols
    assert stat.S_IMODE(os.stat(paths.store_file()).st_mode) == 0o600
    with Store() as store:  # opening again applies nothing twice
        assert len(store.applied_migrations()) == len(MIGRATIONS)


def test_migrations_upgrade_a_store_from_the_first_schema_keeping_its_runs():
    paths.ensure_dir(paths.data_root())
    db = sqlite3.connect(paths.store_file())
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    name, sql = MIGRATIONS[0]
    db.executescript(sql)
    db.execute("INSERT INTO migrations VALUES (?, 0)", (name,))
    db.execute(
        "INSERT INTO runs (id, name, status, command, cwd, host, user, started_at) "
        "VALUES ('run_01aaaaaaaaaaaaaaaaaaaaaaaa', 'old', 'exited', '[\"true\"]', '/', 'h', 'u', 1)"
    )
    db.commit()
    db.close()
    with Store() as store:
        assert store.applied_migrations() == [n for n, _ in MIGRATIONS]
        row = store.get_run("run_01aaaaaaaaaaaaaaaaaaaaaaaa")
    assert row["name"] == "old" and row["command"] == ["true"] and row["revoked_at"] is None


def test_corrupted_store_is_a_state_error_naming_the_file():
    paths.ensure_dir(paths.data_root())
    with open(paths.store_file(), "wb") as fh:
        fh.write(os.urandom(4096))
    with pytest.raises(AgentsessError) as err:
        Store()
    assert err.value.exit_code == 4 and paths.store_file() in err.value.message


def test_run_ids_sort_by_time_and_are_unique():
    a = ids.new_run_id(1_700_000_000.0)
    b = ids.new_run_id(1_700_000_000.001)
    assert a < b and a.startswith("run_") and len(a) == 30
    assert len({ids.new_run_id() for _ in range(2000)}) == 2000


@given(st.text(max_size=40))
def test_prefix_normalisation_accepts_only_id_shapes(text):
    out = ids.normalise_prefix(text)
    if out is not None:
        assert out.startswith("run_")
        assert set(out[4:]) <= set("0123456789abcdefghjkmnpqrstvwxyz")


def test_resolve_prefix_last_and_ambiguity():
    with Store() as store:
        for rid in ("run_01aaaaaaaaaaaaaaaaaaaaaaaa", "run_01aaaaaaaaaaaaaaaaaaaaaaab", "run_01bbbbbbbbbbbbbbbbbbbbbbbb"):
            store.insert_run({"id": rid, "name": "x", "status": "exited", "command": ["x"], "cwd": "/",
                              "host": "h", "user": "u", "started_at": 1 if rid.endswith("a") else 2})
        assert store.resolve("01b") == "run_01bbbbbbbbbbbbbbbbbbbbbbbb"
        assert store.resolve("RUN_01B") == "run_01bbbbbbbbbbbbbbbbbbbbbbbb"
        assert store.resolve("last") in ("run_01aaaaaaaaaaaaaaaaaaaaaaab", "run_01bbbbbbbbbbbbbbbbbbbbbbbb")
        with pytest.raises(AgentsessError) as err:
            store.resolve("01a")
        assert "ambiguous" in err.value.message and "run_01aaaaaaaaaaaaaaaaaaaaaaab" in err.value.message
        with pytest.raises(AgentsessError):
            store.resolve("01c")
