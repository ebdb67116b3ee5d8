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
    (
        # issue 16: calls held for a person's answer (`agentsess approve|deny`). Self-contained, in
        # SQL both backends read; on PostgreSQL the REAL columns are DOUBLE PRECISION (see
        # APPROVALS_POSTGRES below).
        "0005_approvals",
        """
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
        """,
    ),
]

# The same step for the PostgreSQL store (branch fleet2's edges/store/migrations.py).
APPROVALS_POSTGRES = MIGRATIONS[-1][1].replace(" REAL", " DOUBLE PRECISION")
