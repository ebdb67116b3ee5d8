"""The store's schema as a named, append-only list of migrations, with the SQL for each backend.

Never edit or reorder an entry that has shipped: add a new one at the end. Each is applied
with its record in one transaction when the store opens (on PostgreSQL under
``pg_advisory_xact_lock``, so that two machines opening a new store at once apply it once).
Statements are separated by ``;``. :data:`MIGRATIONS` is the SQLite list as ``(name, sql)``
pairs, :data:`POSTGRES` the PostgreSQL one; both name the same steps in the same order.
"""


def Migration(name: str, sqlite: str, postgres: str) -> tuple[str, str, str]:
    """One step: its name, its SQLite SQL, its PostgreSQL SQL (a plain tuple: no typing import)."""
    return (name, sqlite, postgres)


_APPROVALS = """
        CREATE TABLE approvals (
            run_id TEXT NOT NULL,
            request_id TEXT NOT NULL,
            tool TEXT NOT NULL,
            source TEXT NOT NULL,
            summary TEXT NOT NULL,
            args_sha256 TEXT NOT NULL,
            reason TEXT,
            status TEXT NOT NULL,
            requested_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            answered_at REAL,
            answered_by TEXT,
            answer_reason TEXT,
            grant_until REAL,
            consumed_at REAL,
            PRIMARY KEY (run_id, request_id)
        );
        CREATE INDEX approvals_status ON approvals (status, requested_at);
        CREATE INDEX approvals_call ON approvals (run_id, tool, args_sha256)
        """

def _not_null(table: str, column: str) -> str:
    """SQLite: refuse a NULL ``column`` in ``table`` as a NOT NULL constraint would, in its words."""
    refuse = f"SELECT RAISE(ABORT, 'NOT NULL constraint failed: {table}.{column}')"
    return (f"CREATE TRIGGER {table}_{column}_not_null BEFORE INSERT ON {table} WHEN NEW.{column} IS NULL "
            f"BEGIN {refuse}; END;\n"
            f"CREATE TRIGGER {table}_{column}_stays_not_null BEFORE UPDATE OF {column} ON {table} "
            f"WHEN NEW.{column} IS NULL BEGIN {refuse}; END;\n")


MIGRATIONS_BY_BACKEND: list[tuple[str, str, str]] = [
    Migration(
        '0001_runs',
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            parent_id TEXT,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            command TEXT NOT NULL,
            cwd TEXT NOT NULL,
            host TEXT NOT NULL,
            user TEXT NOT NULL,
            mode TEXT,
            supervisor_pid INTEGER,
            supervisor_started REAL,
            child_pid INTEGER,
            child_pgid INTEGER,
            started_at REAL NOT NULL,
            ended_at REAL,
            exit_code INTEGER,
            signal INTEGER,
            chain_head TEXT,
            chain_count INTEGER NOT NULL DEFAULT 0,
            output_bytes INTEGER,
            output_sha256 TEXT,
            error TEXT
        );
        CREATE INDEX runs_started ON runs (started_at);
        CREATE INDEX runs_status ON runs (status, started_at);
        CREATE INDEX runs_parent ON runs (parent_id);
        CREATE INDEX runs_name ON runs (name, started_at);
        """,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            parent_id TEXT,
            name TEXT NOT NULL,
            status TEXT NOT NULL,
            command TEXT NOT NULL,
            cwd TEXT NOT NULL,
            host TEXT NOT NULL,
            "user" TEXT NOT NULL,
            mode TEXT,
            supervisor_pid BIGINT,
            supervisor_started DOUBLE PRECISION,
            child_pid BIGINT,
            child_pgid BIGINT,
            started_at DOUBLE PRECISION NOT NULL,
            ended_at DOUBLE PRECISION,
            exit_code BIGINT,
            signal BIGINT,
            chain_head TEXT,
            chain_count BIGINT NOT NULL DEFAULT 0,
            output_bytes BIGINT,
            output_sha256 TEXT,
            error TEXT
        );
        CREATE INDEX runs_started ON runs (started_at);
        CREATE INDEX runs_status ON runs (status, started_at);
        CREATE INDEX runs_parent ON runs (parent_id);
        CREATE INDEX runs_name ON runs (name, started_at);
        CREATE INDEX runs_id_pattern ON runs (id text_pattern_ops);
        """,
    ),
    Migration(
        '0002_credentials',
        """
        ALTER TABLE runs ADD COLUMN profile TEXT;
        ALTER TABLE runs ADD COLUMN agent TEXT;
        ALTER TABLE runs ADD COLUMN obo TEXT;
        ALTER TABLE runs ADD COLUMN scopes TEXT;
        ALTER TABLE runs ADD COLUMN chain TEXT;
        ALTER TABLE runs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN jti TEXT;
        ALTER TABLE runs ADD COLUMN token_sha256 TEXT;
        ALTER TABLE runs ADD COLUMN kid TEXT;
        ALTER TABLE runs ADD COLUMN issued_at REAL;
        ALTER TABLE runs ADD COLUMN expires_at REAL;
        ALTER TABLE runs ADD COLUMN policy TEXT;
        CREATE INDEX runs_jti ON runs (jti);
        CREATE INDEX runs_token ON runs (token_sha256);
        """,
        """
        ALTER TABLE runs ADD COLUMN profile TEXT;
        ALTER TABLE runs ADD COLUMN agent TEXT;
        ALTER TABLE runs ADD COLUMN obo TEXT;
        ALTER TABLE runs ADD COLUMN scopes TEXT;
        ALTER TABLE runs ADD COLUMN chain TEXT;
        ALTER TABLE runs ADD COLUMN depth BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN jti TEXT;
        ALTER TABLE runs ADD COLUMN token_sha256 TEXT;
        ALTER TABLE runs ADD COLUMN kid TEXT;
        ALTER TABLE runs ADD COLUMN issued_at DOUBLE PRECISION;
        ALTER TABLE runs ADD COLUMN expires_at DOUBLE PRECISION;
        ALTER TABLE runs ADD COLUMN policy TEXT;
        CREATE INDEX runs_jti ON runs (jti);
        CREATE INDEX runs_token ON runs (token_sha256);
        """,
    ),
    Migration(
        '0003_revocation',
        """
        ALTER TABLE runs ADD COLUMN revoked_at REAL;
        ALTER TABLE runs ADD COLUMN revoked_by TEXT;
        ALTER TABLE runs ADD COLUMN revoke_reason TEXT;
        ALTER TABLE runs ADD COLUMN revoke_cause TEXT;
        ALTER TABLE runs ADD COLUMN session_id TEXT;
        ALTER TABLE runs ADD COLUMN child_started REAL;
        """,
        """
        ALTER TABLE runs ADD COLUMN revoked_at DOUBLE PRECISION;
        ALTER TABLE runs ADD COLUMN revoked_by TEXT;
        ALTER TABLE runs ADD COLUMN revoke_reason TEXT;
        ALTER TABLE runs ADD COLUMN revoke_cause TEXT;
        ALTER TABLE runs ADD COLUMN session_id TEXT;
        ALTER TABLE runs ADD COLUMN child_started DOUBLE PRECISION;
        """,
    ),
    Migration(
        "0004_containment",
        """
        ALTER TABLE runs ADD COLUMN containment TEXT;
        ALTER TABLE runs ADD COLUMN sandbox_pid INTEGER;
        """,
        """
        ALTER TABLE runs ADD COLUMN containment TEXT;
        ALTER TABLE runs ADD COLUMN sandbox_pid BIGINT;
        """,
    ),
    Migration(
        "0005_fleet",
        """
        CREATE TABLE revocations (
            run_id TEXT PRIMARY KEY,
            revoked_at REAL NOT NULL,
            revoked_by TEXT NOT NULL,
            reason TEXT,
            cause TEXT NOT NULL
        );
        CREATE TABLE receipts (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            type TEXT NOT NULL,
            ts TEXT NOT NULL,
            hash TEXT NOT NULL,
            line TEXT NOT NULL,
            host TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        );
        CREATE INDEX runs_host ON runs (host, started_at);
        """,
        """
        CREATE TABLE revocations (
            run_id TEXT PRIMARY KEY,
            revoked_at DOUBLE PRECISION NOT NULL,
            revoked_by TEXT NOT NULL,
            reason TEXT,
            cause TEXT NOT NULL
        );
        CREATE TABLE receipts (
            run_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            type TEXT NOT NULL,
            ts TEXT NOT NULL,
            hash TEXT NOT NULL,
            line TEXT NOT NULL,
            host TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        );
        CREATE INDEX runs_host ON runs (host, started_at);
        """,
    ),
    Migration(
        # issue 16: calls held for a person's answer (`agentsess approve|deny`)
        "0006_approvals",
        _APPROVALS,
        _APPROVALS.replace(" REAL", " DOUBLE PRECISION"),  # the same table, PostgreSQL's float type
    ),
    Migration(
        # SQLite lets a primary key that is not an INTEGER one hold NULL (a quirk it keeps for
        # old databases); PostgreSQL refuses it. The same refusal, without rebuilding the tables
        # (found by tests/test_schema_twins.py)
        "0007_primary_keys_not_null",
        "".join(_not_null(table, column) for table, column in
                (("runs", "id"), ("revocations", "run_id"), ("migrations", "name"))),
        "",  # PostgreSQL's primary keys are NOT NULL already
    ),
]

# the SQLite list as (name, sql) pairs, as it has always been read
MIGRATIONS: list[tuple[str, str]] = [(name, lite) for name, lite, _ in MIGRATIONS_BY_BACKEND]
POSTGRES: list[tuple[str, str]] = [(name, pg) for name, _, pg in MIGRATIONS_BY_BACKEND]
