"""The SQLite and PostgreSQL schemas are twins (edges/store/migrations.py): each migration is
written twice, once per backend, and nothing else held them together. Here both stores are
opened by agentsess itself (every migration applied, as on a user's first run), read back
from each database's own catalogue, and compared: tables, columns in order (name,
nullability as the database enforces it, type family, default), primary keys and indexes
(columns, uniqueness). It found SQLite's primary keys of text taking NULL (0007 refuses it).

PostgreSQL comes from .ci/postgres.sh (see tests/pg.py): without a server this skips
locally and fails under AGENTSESS_REQUIRE_PG=1 or in CI.
"""

import sqlite3

from pg import admin, pg  # noqa: F401 - the fixture, asked for by name

from agentsess.edges.store import Store
from agentsess.edges.store.migrations import MIGRATIONS, POSTGRES

# what a declared type is, by family: the backends spell the same values differently
FAMILY = {"text": "text", "integer": "integer", "bigint": "integer", "real": "float", "double precision": "float"}

# differences that are meant, each with its reason; anything else fails
ONLY_POSTGRES_INDEXES = {
    # `resolve` matches a typed prefix with LIKE 'prefix%': PostgreSQL uses a btree for that only
    # with text_pattern_ops (its default collation is not C); SQLite's primary key serves it
    "runs_id_pattern": "runs (id text_pattern_ops)",
}


def _default(value) -> str | None:
    """A column default as both catalogues show it: ``0``, ``'x'::text`` and ``'x'`` alike."""
    if value is None:
        return None
    text = str(value).split("::", 1)[0].strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return text


def _refuses_null(db, table: str, column: str) -> bool:
    """Whether SQLite refuses a NULL ``column`` though the column does not say NOT NULL (a
    primary key that is not an INTEGER one may hold NULL there, unless a trigger refuses it)."""
    db.execute("SAVEPOINT probe")
    try:
        db.execute(f'INSERT INTO "{table}" ("{column}") VALUES (NULL)')
    except sqlite3.IntegrityError as exc:
        return str(exc) == f"NOT NULL constraint failed: {table}.{column}"
    finally:
        db.execute("ROLLBACK TO probe")
        db.execute("RELEASE probe")
    return False


def sqlite_schema(path: str) -> dict:
    db = sqlite3.connect(path)
    try:
        tables = {}
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                          "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for table in names:
            info = db.execute(f'PRAGMA table_info("{table}")').fetchall()  # cid, name, type, notnull, dflt, pk
            columns = [(name, not notnull and not _refuses_null(db, table, name), FAMILY.get(kind.lower(), "?" + kind),
                        _default(dflt)) for _, name, kind, notnull, dflt, pk in info]
            key = [name for _, name, _, _, _, pk in sorted(info, key=lambda r: r[5]) if pk]
            indexes = {}
            for _, index, unique, origin, _ in db.execute(f'PRAGMA index_list("{table}")'):
                if origin == "pk":
                    continue  # the primary key's own
                cols = [r[2] for r in db.execute(f'PRAGMA index_info("{index}")')]
                indexes[index] = (cols, bool(unique))
            tables[table] = {"columns": columns, "primary_key": key, "indexes": indexes}
        return tables
    finally:
        db.close()


def postgres_schema(db) -> dict:
    with admin(db.base) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                            "AND table_type = 'BASE TABLE' ORDER BY table_name", (db.schema,)).fetchall()
        tables = {}
        for (table,) in rows:
            info = conn.execute(
                "SELECT column_name, is_nullable, data_type, column_default FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", (db.schema, table)).fetchall()
            key = [r[0] for r in conn.execute(
                "SELECT k.column_name FROM information_schema.table_constraints c "
                "JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name "
                "AND k.table_schema = c.table_schema AND k.table_name = c.table_name "
                "WHERE c.table_schema = %s AND c.table_name = %s AND c.constraint_type = 'PRIMARY KEY' "
                "ORDER BY k.ordinal_position", (db.schema, table)).fetchall()]
            columns = [(name, nullable == "YES", FAMILY.get(kind, "?" + kind), _default(dflt))
                       for name, nullable, kind, dflt in info]
            indexes = {}
            for index, unique, cols in conn.execute(
                    "SELECT i.relname, x.indisunique, array_agg(a.attname ORDER BY k.n) "
                    "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                    "JOIN pg_namespace s ON s.oid = t.relnamespace "
                    "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) "
                    "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
                    "WHERE s.nspname = %s AND t.relname = %s AND NOT x.indisprimary "
                    "GROUP BY i.relname, x.indisunique", (db.schema, table)).fetchall():
                indexes[index] = (list(cols), bool(unique))
            tables[table] = {"columns": columns, "primary_key": key, "indexes": indexes}
        return tables


def test_both_lists_name_the_same_steps_in_the_same_order():
    assert [name for name, _ in MIGRATIONS] == [name for name, _ in POSTGRES]
    assert len({name for name, _ in MIGRATIONS}) == len(MIGRATIONS)


def test_the_sqlite_and_postgresql_schemas_are_twins(request, monkeypatch, agentsess_home):
    db = request.getfixturevalue("pg")  # a fresh schema; skips (or fails in CI) without a server
    with Store() as store:  # PostgreSQL: AGENTSESS_STORE names the test's schema
        assert store.backend == "postgresql" and len(store.applied_migrations()) == len(POSTGRES)
    monkeypatch.delenv("AGENTSESS_STORE")
    with Store() as store:
        assert store.backend == "sqlite" and len(store.applied_migrations()) == len(MIGRATIONS)
        path = store.path
    lite, post = sqlite_schema(path), postgres_schema(db)

    assert sorted(lite) == sorted(post)
    assert {"runs", "revocations", "receipts", "approvals", "migrations"} <= set(lite)  # it read something
    for table in sorted(lite):
        a, b = lite[table], post[table]
        assert a["columns"] == b["columns"], (table, [c for c in a["columns"] if c not in b["columns"]],
                                              [c for c in b["columns"] if c not in a["columns"]])
        assert a["primary_key"] == b["primary_key"], table
        extra = {name: cols for name, cols in b["indexes"].items() if name not in ONLY_POSTGRES_INDEXES}
        assert a["indexes"] == extra, table
    for name in ONLY_POSTGRES_INDEXES:
        assert any(name in post[t]["indexes"] for t in post), f"{name} is gone: drop it from ONLY_POSTGRES_INDEXES"
    assert lite["runs"]["primary_key"] == ["id"] and lite["receipts"]["primary_key"] == ["run_id", "seq"]
    assert len(lite["runs"]["columns"]) > 40 and lite["runs"]["indexes"]


def test_an_older_sqlite_store_refuses_null_keys_once_upgraded(tmp_path):
    """A store made before 0007 takes a NULL run id; opened by this agentsess it no longer does."""
    import pytest

    from agentsess.edges.store.sqlite import statements

    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for name, sql in MIGRATIONS[:-1]:
        for statement in statements(sql):
            db.execute(statement)
        db.execute("INSERT INTO migrations VALUES (?, 0)", (name,))
    db.execute("INSERT INTO revocations (run_id, revoked_at, revoked_by, cause) VALUES (NULL, 1, 'x', 'y')")
    db.execute("DELETE FROM revocations")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.applied_migrations()[-1] == "0007_primary_keys_not_null"
    db = sqlite3.connect(path)
    for sql in ("INSERT INTO revocations (run_id, revoked_at, revoked_by, cause) VALUES (NULL, 1, 'x', 'y')",
                "INSERT INTO runs (id, name, status, command, cwd, host, user, started_at) "
                "VALUES (NULL, 'n', 'running', '[]', '/', 'h', 'u', 1)"):
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL constraint failed"):
            db.execute(sql)
    db.execute("INSERT INTO runs (id, name, status, command, cwd, host, user, started_at) "
               "VALUES ('run_x', 'n', 'running', '[]', '/', 'h', 'u', 1)")
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL constraint failed: runs.id"):
        db.execute("UPDATE runs SET id = NULL")
    db.close()


def test_a_trigger_body_is_one_statement():
    from agentsess.edges.store.sqlite import statements

    sql = "CREATE TABLE t (a);\nCREATE TRIGGER x BEFORE INSERT ON t BEGIN SELECT 1; SELECT 2; END;\n  ;\n"
    assert [s.strip() for s in statements(sql)] == [
        "CREATE TABLE t (a);", "CREATE TRIGGER x BEFORE INSERT ON t BEGIN SELECT 1; SELECT 2; END;"]
