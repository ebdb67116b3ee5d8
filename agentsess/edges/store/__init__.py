"""The run registry, the revocation list and the receipt mirror, behind a narrow interface.

Nothing else opens the database. Two backends hold the same schema (:mod:`.migrations`) in
plain SQL: SQLite in WAL mode (:mod:`.sqlite`, the default, one machine) and PostgreSQL
(:mod:`.postgres`, a fleet of machines sharing one store). ``Store()`` opens the one chosen
by ``AGENTSESS_STORE`` or the config's top-level ``store = "postgresql://…"``; anything else
is the SQLite file under the data root. The PostgreSQL code (and psycopg) loads only for a
``postgresql://`` URL, and not even then in an ``agentsess`` command: its process talks to the
store agent (:mod:`.agent`, :mod:`.agentserver`), which holds the connections.

Rows come back as plain dicts; JSON columns (command, scopes, chain, policy) are decoded.
Timestamps are UNIX seconds (float). The SQL below is written once with ``?`` placeholders;
each backend runs it through its own ``_exec``.
"""

import json
import os

from agentsess import ids
from agentsess.errors import USAGE, AgentsessError

JSON_COLUMNS = ("command", "scopes", "chain", "policy")
FINISHED = ("exited", "revoked", "abandoned", "denied")
SCHEMES = ("postgresql://", "postgres://")
NOTIFY_CHANNEL = "agentsess_revoke"

__all__ = ["FINISHED", "JSON_COLUMNS", "Store", "is_shared", "open_store", "store_url"]


def _config_store_url() -> str | None:
    """The config file's top-level ``store``, read without tomllib unless the file names one."""
    from agentsess.edges import paths

    path = paths.config_file()
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    if b"store" not in raw:
        return None  # the common case: no parse, no tomllib import
    import tomllib

    try:
        value = tomllib.loads(raw.decode("utf-8")).get("store")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # load_config reports a broken file with its line and column
    if value is None:
        return None
    if not isinstance(value, str):
        raise AgentsessError(f"{path}: store: expected a postgresql:// URL as a string", USAGE)
    return value


def store_url() -> str | None:
    """The shared store's URL, or None for this machine's SQLite file.

    ``AGENTSESS_STORE`` wins over the config's ``store``; an empty value or ``sqlite`` means
    the SQLite file.
    """
    value = os.environ.get("AGENTSESS_STORE")
    source = "AGENTSESS_STORE"
    if value is None:
        value = _config_store_url()
        source = "the config's store"
    if not value or value == "sqlite":
        return None
    if not value.startswith(SCHEMES):
        raise AgentsessError(
            f"{source} must be a postgresql:// URL (or empty for this machine's SQLite store); "
            f"got a value starting {value[:12]!r}",
            USAGE,
        )
    return value


def is_shared() -> bool:
    """True when the store is a shared (PostgreSQL) one."""
    return store_url() is not None


def open_store(url: str | None = None, path: str | None = None) -> "Store":
    """The configured store: PostgreSQL for a ``postgresql://`` URL, else SQLite at ``path``."""
    return Store(path, url=url)


class Store:
    """One connection to the store; use as a context manager or call close().

    ``Store()`` returns the configured backend's subclass (as ``pathlib.Path()`` does), so
    ``from agentsess.edges.store import Store`` is all a caller needs.
    """

    backend = "base"
    shared = False
    location = ""
    readonly = False  # True for a SQLite store on read-only media, opened immutable

    def __new__(cls, path: str | None = None, *, url: str | None = None):
        if cls is not Store:
            return object.__new__(cls)
        if url is None and path is None:
            url = store_url()
        if url is not None and url.startswith(SCHEMES):
            from agentsess.edges.store import agent

            if agent.wanted():  # a command: through the store agent, without psycopg here
                through = agent.attach(url)
                if through is not None:
                    return through
            from agentsess.edges.store.postgres import PostgresStore

            return object.__new__(PostgresStore)
        from agentsess.edges.store.sqlite import SqliteStore

        return object.__new__(SqliteStore)

    def __init__(self, path: str | None = None, *, url: str | None = None):  # pragma: no cover
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- what each backend provides -------------------------------------------------------

    def close(self) -> None:
        raise NotImplementedError

    def _exec(self, sql: str, args=()):
        """Run one statement; returns a cursor whose rows support ``row["column"]``."""
        raise NotImplementedError

    def _transaction(self):
        """A context manager: one transaction (typing and contextlib stay off the run path)."""
        raise NotImplementedError

    def applied_migrations(self) -> list[str]:
        return [r["name"] for r in self._exec("SELECT name FROM migrations ORDER BY name")]

    def _notify_revoked(self, run_ids: list[str]) -> None:
        """Inside mark_revoked's transaction: tell the other machines (PostgreSQL only)."""

    def _mirror(self, run_id: str, rec: dict) -> None:
        """Keep a copy of a receipt in the shared store (PostgreSQL only)."""

    # -- rows -----------------------------------------------------------------------------

    @staticmethod
    def _decode(row) -> dict | None:
        if row is None:
            return None
        out = dict(row)
        for key in JSON_COLUMNS:
            if key in out and out[key] is not None:
                out[key] = json.loads(out[key])
        return out

    @staticmethod
    def _encode(fields: dict) -> dict:
        return {k: (json.dumps(v) if k in JSON_COLUMNS and v is not None else v) for k, v in fields.items()}

    @staticmethod
    def _col(name: str) -> str:
        if not name.isidentifier():
            raise ValueError(f"not a column name: {name!r}")
        return f'"{name}"'  # "user" is a reserved word in PostgreSQL

    def insert_run(self, row: dict) -> None:
        row = self._encode(row)
        cols = ", ".join(self._col(k) for k in row)
        marks = ", ".join("?" for _ in row)
        self._exec(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(row.values()))

    def update_run(self, run_id: str, **fields) -> None:
        if not fields:
            return
        fields = self._encode(fields)
        sets = ", ".join(f"{self._col(k)} = ?" for k in fields)
        self._exec(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    def set_status_if(self, run_id: str, expected: str, **fields) -> bool:
        """Update only while the run still has status ``expected``; True when it did."""
        fields = self._encode(fields)
        sets = ", ".join(f"{self._col(k)} = ?" for k in fields)
        cur = self._exec(
            f"UPDATE runs SET {sets} WHERE id = ? AND status = ?", (*fields.values(), run_id, expected)
        )
        return cur.rowcount == 1

    def set_head(self, run_id: str, head: str, count: int) -> None:
        self._exec(
            "UPDATE runs SET chain_head = ?, chain_count = ? WHERE id = ? AND chain_count < ?",
            (head, count, run_id, count),
        )

    def record_receipt(self, run_id: str, rec: dict) -> None:
        """A receipt was appended to the run's local stream: move the chain head, mirror it."""
        self.set_head(run_id, rec["hash"], rec["seq"] + 1)
        self._mirror(run_id, rec)

    def get_run(self, run_id: str) -> dict | None:
        return self._decode(self._exec("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone())

    def resolve(self, ref: str) -> str:
        """A run id from what the user typed: a full id, any unique prefix, or ``last``."""
        if ref == "last":
            row = self._exec("SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 1").fetchone()
            if row is None:
                raise AgentsessError("there are no runs yet; start one with `agentsess run -- CMD`", USAGE)
            return row["id"]
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
            shown = ", ".join(r["id"] for r in rows[:10])
            more = " …" if len(rows) > 10 else ""
            raise AgentsessError(f"'{ref}' is ambiguous: it matches {shown}{more}; type more of the id", USAGE)
        return rows[0]["id"]

    def list_runs(
        self,
        status: str | None = None,
        name: str | None = None,
        since: float | None = None,
        parent_id: str | None = None,
        limit: int | None = None,
        columns: str = "*",
        host: str | None = None,
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
        if host:
            where.append("host = ?")
            args.append(host)
        if columns != "*":
            columns = ", ".join(self._col(c.strip()) for c in columns.split(","))
        sql = f"SELECT {columns} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._decode(r) for r in self._exec(sql, args)]  # type: ignore[misc]

    def children(self, run_id: str) -> list[dict]:
        rows = self._exec("SELECT * FROM runs WHERE parent_id = ? ORDER BY started_at, id", (run_id,))
        return [self._decode(r) for r in rows]  # type: ignore[misc]

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
        return [self._decode(r) for r in rows]  # type: ignore[misc]

    def ancestors(self, run_id: str) -> list[str]:
        """The ids above ``run_id``, its parent first."""
        out: list[str] = []
        row = self._exec("SELECT parent_id FROM runs WHERE id = ?", (run_id,)).fetchone()
        while row is not None and row["parent_id"] and row["parent_id"] not in out and len(out) < 64:
            out.append(row["parent_id"])
            row = self._exec("SELECT parent_id FROM runs WHERE id = ?", (row["parent_id"],)).fetchone()
        return out

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
        return None if row is None else row["id"]

    def revocation(self, run_id: str) -> tuple[float | None, str | None]:
        """(revoked_at, revoke_cause) of one run: the supervisor's poll, kept cheap."""
        row = self._exec("SELECT revoked_at, revoke_cause FROM runs WHERE id = ?", (run_id,)).fetchone()
        return (None, None) if row is None else (row["revoked_at"], row["revoke_cause"])

    def revocations_of(self, run_ids: list[str]) -> dict[str, dict]:
        """The revocation list's rows for ``run_ids``: {run id: {revoked_at, revoked_by, reason, cause}}."""
        if not run_ids:
            return {}
        marks = ", ".join("?" for _ in run_ids)
        rows = self._exec(
            f"SELECT run_id, revoked_at, revoked_by, reason, cause FROM revocations WHERE run_id IN ({marks})",
            tuple(run_ids),
        )
        return {r["run_id"]: dict(r) for r in rows}

    def mark_revoked(self, causes: dict, now: float, by: str, reason: str | None) -> dict:
        """Revoke every run in ``causes`` (id -> cause) in one transaction; {id: newly revoked?}.

        A running or exited run's status becomes ``revoked`` (an exited one keeps its exit
        code); an abandoned or denied run keeps its status. Each gets the revocation fields
        (its credentials are dead from now on). Each newly revoked run
        gets a row in the revocation list, and a shared store notifies every machine's
        supervisors in the same transaction.
        """
        newly = {}
        with self._transaction():
            for run_id, cause in causes.items():
                cur = self._exec(
                    "UPDATE runs SET revoked_at = ?, revoked_by = ?, revoke_reason = ?, revoke_cause = ?, "
                    "status = CASE WHEN status IN ('running', 'exited') THEN 'revoked' ELSE status END "
                    "WHERE id = ? AND revoked_at IS NULL",
                    (now, by, reason, cause, run_id),
                )
                newly[run_id] = cur.rowcount == 1
                if newly[run_id]:
                    self._exec(
                        "INSERT INTO revocations (run_id, revoked_at, revoked_by, reason, cause) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (run_id, now, by, reason, cause),
                    )
            fresh = [rid for rid, yes in newly.items() if yes]
            if fresh:
                self._notify_revoked(fresh)
        return newly

    def running(self) -> list[dict]:
        return [self._decode(r) for r in self._exec("SELECT * FROM runs WHERE status = 'running'")]  # type: ignore[misc]

    def count(self) -> int:
        return self._exec("SELECT count(*) AS n FROM runs").fetchone()["n"]

    def delete_runs(self, run_ids: list[str]) -> None:
        for i in range(0, len(run_ids), 500):
            part = tuple(run_ids[i : i + 500])
            marks = ", ".join("?" for _ in part)
            with self._transaction():
                self._exec(f"DELETE FROM receipts WHERE run_id IN ({marks})", part)
                self._exec(f"DELETE FROM revocations WHERE run_id IN ({marks})", part)
                self._exec(f"DELETE FROM approvals WHERE run_id IN ({marks})", part)
                self._exec(f"DELETE FROM runs WHERE id IN ({marks})", part)

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

    def open_approvals(self, run_id: str) -> list[dict]:
        """Every request of a run still marked pending, whatever its time or the run's status."""
        sql = "SELECT * FROM approvals WHERE run_id = ? AND status = 'pending' ORDER BY requested_at, request_id"
        return [dict(r) for r in self._exec(sql, (run_id,))]

    def end_approval(self, run_id: str, request_id: str, now: float, reason: str) -> bool:
        """Mark a request still pending ``ended`` (its run ended or was revoked); True when this won."""
        cur = self._exec(
            "UPDATE approvals SET status = 'ended', answered_at = ?, answered_by = 'agentsess', answer_reason = ? "
            "WHERE run_id = ? AND request_id = ? AND status = 'pending'",
            (now, reason, run_id, request_id),
        )
        return cur.rowcount == 1

    def standing_grant(self, run_id: str, tool: str, args_sha256: str, now: float) -> dict | None:
        """A grant given ``--for`` a while that still covers this exact call, if any."""
        row = self._exec(
            "SELECT * FROM approvals WHERE run_id = ? AND tool = ? AND args_sha256 = ? AND status = 'granted' "
            "AND grant_until > ? ORDER BY grant_until DESC LIMIT 1",
            (run_id, tool, args_sha256, now),
        ).fetchone()
        return None if row is None else dict(row)

    # -- the receipt mirror ---------------------------------------------------------------

    def mirrored(self, run_id: str) -> list[bytes]:
        """The mirror's copy of a run's stream: its canonical lines (with newline), by seq."""
        rows = self._exec("SELECT line FROM receipts WHERE run_id = ? ORDER BY seq", (run_id,))
        return [r["line"].encode() + b"\n" for r in rows]

    def mirrored_count(self, run_id: str) -> int:
        return self._exec("SELECT count(*) AS n FROM receipts WHERE run_id = ?", (run_id,)).fetchone()["n"]

    def mirrored_types(self, run_id: str, rtype: str) -> list[dict]:
        """The mirrored receipts of one type for a run, decoded, by seq."""
        rows = self._exec(
            "SELECT line FROM receipts WHERE run_id = ? AND type = ? ORDER BY seq", (run_id, rtype)
        )
        return [json.loads(r["line"]) for r in rows]

    def watch_run(self, run_id: str, profile, wake):
        """A watcher of the shared store for a live run's supervisor (None for SQLite)."""
