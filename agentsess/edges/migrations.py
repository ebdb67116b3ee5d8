"""The store's schema as a named, append-only list of migrations.

Never edit or reorder an entry that has shipped: add a new one at the end. Each is applied
with its record in one transaction when the store opens.
"""

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_runs",
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
    ),
    (
        "0002_credentials",
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
    ),
    (
        "0003_revocation",
        """
        ALTER TABLE runs ADD COLUMN revoked_at REAL;
        ALTER TABLE runs ADD COLUMN revoked_by TEXT;
        ALTER TABLE runs ADD COLUMN revoke_reason TEXT;
        ALTER TABLE runs ADD COLUMN revoke_cause TEXT;
        ALTER TABLE runs ADD COLUMN session_id TEXT;
        ALTER TABLE runs ADD COLUMN child_started REAL;
        """,
    ),
    (
        "0004_containment",
        """
        ALTER TABLE runs ADD COLUMN containment TEXT;
        ALTER TABLE runs ADD COLUMN sandbox_pid INTEGER;
        """,
    ),
]
