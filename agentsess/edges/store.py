"""The run registry and revocation list: SQLite in WAL mode, behind a narrow interface.

Nothing else opens the database. Rows come back as plain dicts; JSON columns (command,
scopes, chain, policy) are decoded. Timestamps are UNIX seconds (float).
"""

import json
import os
import sqlite3

from agentsess import ids
from agentsess.edges import paths
from agentsess.edges.migrations import MIGRATIONS
from agentsess.errors import STATE, USAGE, AgentsessError

JSON_COLUMNS = ("command", "scopes", "chain", "policy")


def _state_error(path: str, exc: Exception) -> AgentsessError:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return AgentsessError(
            f"the store {path} is corrupted ({text}); move it aside to start a new one "
            "(receipt files under runs/ stay verifiable)",
            STATE,
        )
    if "readonly" in text or "unable to open" in text or isinstance(exc, PermissionError):
        return AgentsessError(
            f"cannot write the store {path} ({text}); make the data root writable or set "
            "AGENTSESS_HOME to a writable folder",
            STATE,
        )
    return AgentsessError(f"the store {path} failed: {text}", STATE)


class Store:
    """One connection to the store; use as a context manager or call close()."""

    def __init__(self, path: str | None = None):
        root = paths.data_root()
        self.path = path or paths.store_file()
        # a store on read-only media (evidence kept as it was) opens immutable, for reading only
        self.readonly = os.path.exists(self.path) and not paths.writable(os.path.dirname(self.path))
        try:
            paths.ensure_dir(root)
            if self.readonly:
                from urllib.parse import quote

                self.db = sqlite3.connect(f"file:{quote(self.path)}?immutable=1", uri=True, isolation_level=None)
                self.db.row_factory = sqlite3.Row
                return
            if not os.path.exists(self.path):
                os.close(paths.open_private(self.path, os.O_WRONLY | os.O_CREAT))
            self.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA busy_timeout = 10000")
            self.db.execute("PRAGMA synchronous = NORMAL")
            # user_version counts the migrations applied: the common case costs one query
            if self.db.execute("PRAGMA user_version").fetchone()[0] != len(MIGRATIONS):
                self.db.execute("PRAGMA journal_mode = WAL")  # persistent in the file
                self._migrate()
        except AgentsessError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise _state_error(self.path, exc) from exc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.db.close()

    # -- schema -------------------------------------------------------------------------

    def _migrate(self) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        done = {r[0] for r in self.db.execute("SELECT name FROM migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if self.db.execute("SELECT 1 FROM migrations WHERE name = ?", (name,)).fetchone():
                    self.db.execute("ROLLBACK")
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(
                    "INSERT INTO migrations (name, applied_at) VALUES (?, strftime('%s','now'))",
                    (name,),
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        self.db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    def applied_migrations(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM migrations ORDER BY name")]

    # -- rows ---------------------------------------------------------------------------

    def _exec(self, sql: str, args=()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.Error as exc:
            raise _state_error(self.path, exc) from exc

    def _rows(self, cursor) -> list[dict]:
        return [row for row in map(self._decode, cursor) if row is not None]

    @staticmethod
    def _decode(row: sqlite3.Row | None) -> dict | None:
        if row is None:
            return None
        out = dict(row)
        for key in JSON_COLUMNS:
            if key in out and out[key] is not None:
                out[key] = json.loads(out[key])
        return out

    def insert_run(self, row: dict) -> None:
        row = {k: (json.dumps(v) if k in JSON_COLUMNS and v is not None else v) for k, v in row.items()}
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._exec(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(row.values()))

    def update_run(self, run_id: str, **fields) -> None:
        if not fields:
            return
        fields = {k: (json.dumps(v) if k in JSON_COLUMNS and v is not None else v) for k, v in fields.items()}
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._exec(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    def set_status_if(self, run_id: str, expected: str, **fields) -> bool:
        """Update only while the run still has status ``expected``; True when it did."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        cur = self._exec(
            f"UPDATE runs SET {sets} WHERE id = ? AND status = ?", (*fields.values(), run_id, expected)
        )
        return cur.rowcount == 1

    def set_head(self, run_id: str, head: str, count: int) -> None:
        self._exec(
            "UPDATE runs SET chain_head = ?, chain_count = ? WHERE id = ? AND chain_count < ?",
            (head, count, run_id, count),
        )

    def get_run(self, run_id: str) -> dict | None:
        return self._decode(self._exec("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())

    def resolve(self, ref: str) -> str:
        """A run id from what the user typed: a full id, any unique prefix, or ``last``."""
        if ref == "last":
            row = self._exec("SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 1").fetchone()
            if row is None:
                raise AgentsessError("there are no runs yet; start one with `agentsess run -- CMD`", USAGE)
            return row[0]
        prefix = ids.normalise_prefix(ref)
        if prefix is None:
            raise AgentsessError(
                f"'{ref}' is not a run id: expected run_ followed by letters and digits "
                "(any unique prefix), or 'last'",
                USAGE,
            )
        hi = prefix + "\U0010ffff"
        rows = self._exec(
            "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 11", (prefix, hi)
        ).fetchall()
        if not rows:
            raise AgentsessError(f"no run matches '{ref}'; list runs with `agentsess runs`", USAGE)
        if len(rows) > 1:
            shown = ", ".join(r[0] for r in rows[:10])
            more = " …" if len(rows) > 10 else ""
            raise AgentsessError(f"'{ref}' is ambiguous: it matches {shown}{more}; type more of the id", USAGE)
        return rows[0][0]

    def list_runs(
        self,
        status: str | None = None,
        name: str | None = None,
        since: float | None = None,
        parent_id: str | None = None,
        limit: int | None = None,
        columns: str = "*",
    ) -> list[dict]:
        where: list[str] = []
        args: list = []
        if status:
            where.append("status = ?")
            args.append(status)
        if name:
            where.append("name = ?")
            args.append(name)
        if since is not None:
            where.append("started_at >= ?")
            args.append(since)
        if parent_id:
            where.append("parent_id = ?")
            args.append(parent_id)
        sql = f"SELECT {columns} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._rows(self._exec(sql, args))

    def descendants(self, run_id: str) -> list[dict]:
        """Every run below ``run_id``, parents before children."""
        rows = self._exec(
            """
            WITH RECURSIVE tree(id, depth) AS (
                SELECT id, 1 FROM runs WHERE parent_id = ?
                UNION ALL
                SELECT runs.id, tree.depth + 1 FROM runs JOIN tree ON runs.parent_id = tree.id
            )
            SELECT runs.* FROM runs JOIN tree ON runs.id = tree.id ORDER BY tree.depth, runs.started_at
            """,
            (run_id,),
        )
        return self._rows(rows)

    def revoked_among(self, run_ids: list[str]) -> dict | None:
        """The first of ``run_ids`` (in the given order) that is revoked or abandoned, as a row."""
        if not run_ids:
            return None
        marks = ", ".join("?" for _ in run_ids)
        rows = self._exec(
            f"SELECT id, status, revoked_at, revoke_reason FROM runs WHERE id IN ({marks}) "
            "AND (revoked_at IS NOT NULL OR status = 'abandoned')",
            tuple(run_ids),
        ).fetchall()
        found = {r["id"]: dict(r) for r in rows}
        for rid in run_ids:
            if rid in found:
                return found[rid]
        return None

    def find_by_token(self, token_sha256: str) -> str | None:
        row = self._exec("SELECT id FROM runs WHERE token_sha256 = ?", (token_sha256,)).fetchone()
        return None if row is None else row[0]

    def revocation(self, run_id: str) -> tuple[float | None, str | None]:
        """(revoked_at, revoke_cause) of one run: the supervisor's poll, kept cheap."""
        row = self._exec("SELECT revoked_at, revoke_cause FROM runs WHERE id = ?", (run_id,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def mark_revoked(self, causes: dict, now: float, by: str, reason: str | None) -> dict:
        """Revoke every run in ``causes`` (id -> cause) in one transaction; {id: newly revoked?}.

        A running or exited run's status becomes ``revoked`` (an exited one keeps its exit
        code); an abandoned or denied run keeps its status. Each gets the revocation fields.
        """
        newly = {}
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for run_id, cause in causes.items():
                    cur = self.db.execute(
                        "UPDATE runs SET revoked_at = ?, revoked_by = ?, revoke_reason = ?, revoke_cause = ?, "
                        "status = CASE WHEN status IN ('running', 'exited') THEN 'revoked' ELSE status END "
                        "WHERE id = ? AND revoked_at IS NULL",
                        (now, by, reason, cause, run_id),
                    )
                    newly[run_id] = cur.rowcount == 1
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise _state_error(self.path, exc) from exc
        return newly

    def running(self) -> list[dict]:
        return self._rows(self._exec("SELECT * FROM runs WHERE status = 'running'"))

    def count(self) -> int:
        return self._exec("SELECT count(*) FROM runs").fetchone()[0]

    def delete_runs(self, run_ids: list[str]) -> None:
        for i in range(0, len(run_ids), 500):
            part = run_ids[i : i + 500]
            self._exec(f"DELETE FROM runs WHERE id IN ({', '.join('?' for _ in part)})", tuple(part))
            self._exec(f"DELETE FROM approvals WHERE run_id IN ({', '.join('?' for _ in part)})", tuple(part))

    # -- approvals (issue 16): calls held for a person's answer -------------------------------
    # Plain SQL with ``?`` placeholders only, so the PostgreSQL store can take it as it is.
    # Every answer is one conditional UPDATE: the first of approve, deny and expiry wins.

    def insert_approval(self, row: dict) -> bool:
        """Record a pending request; False if (run_id, request_id) is taken."""
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cur = self._exec(f"INSERT INTO approvals ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING", tuple(row.values()))
        return cur.rowcount == 1

    def get_approval(self, run_id: str, request_id: str) -> dict | None:
        row = self._exec("SELECT * FROM approvals WHERE run_id = ? AND request_id = ?", (run_id, request_id)).fetchone()
        return None if row is None else dict(row)

    def answer_approval(self, run_id: str, request_id: str, status: str, now: float, by: str | None,
                        reason: str | None = None, grant_until: float | None = None) -> bool:
        """Answer a request still pending (``granted``/``denied``: and not yet expired;
        ``expired``: once its time is up); True when this answer won."""
        sql = ("UPDATE approvals SET status = ?, answered_at = ?, answered_by = ?, answer_reason = ?, grant_until = ? "
               "WHERE run_id = ? AND request_id = ? AND status = 'pending' AND ")
        sql += "expires_at <= ?" if status == "expired" else "expires_at > ?"
        cur = self._exec(sql, (status, now, by, reason, grant_until, run_id, request_id, now))
        return cur.rowcount == 1

    def consume_approval(self, run_id: str, request_id: str, now: float) -> bool:
        """Take an answered request's answer for the one call it is for; True only the first time."""
        cur = self._exec(
            "UPDATE approvals SET consumed_at = ? WHERE run_id = ? AND request_id = ? AND status != 'pending' "
            "AND consumed_at IS NULL",
            (now, run_id, request_id),
        )
        return cur.rowcount == 1

    def pending_approvals(self, now: float, run_id: str | None = None) -> list[dict]:
        """Requests still waiting (not expired) of runs still running, oldest first."""
        sql = ("SELECT approvals.* FROM approvals JOIN runs ON runs.id = approvals.run_id "
               "WHERE approvals.status = 'pending' AND approvals.expires_at > ? AND runs.status = 'running'")
        args: list = [now]
        if run_id is not None:
            sql += " AND approvals.run_id = ?"
            args.append(run_id)
        sql += " ORDER BY approvals.requested_at, approvals.request_id"
        return [dict(r) for r in self._exec(sql, tuple(args))]

    def standing_grant(self, run_id: str, tool: str, args_sha256: str, now: float) -> dict | None:
        """A grant given ``--for`` a while that still covers this exact call, if any."""
        row = self._exec(
            "SELECT * FROM approvals WHERE run_id = ? AND tool = ? AND args_sha256 = ? AND status = 'granted' "
            "AND grant_until > ? ORDER BY grant_until DESC LIMIT 1",
            (run_id, tool, args_sha256, now),
        ).fetchone()
        return None if row is None else dict(row)

