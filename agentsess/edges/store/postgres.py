"""The PostgreSQL backend: one store shared by a fleet of machines.

Selected by ``AGENTSESS_STORE=postgresql://…`` (or the config's ``store``). It speaks to
the server through psycopg 3 (``pip install 'agentsess[postgres]'``), imported only here, so
only for a ``postgresql://`` store: SQLite runs never load it. Statements go through
psycopg's ``RawCursor`` (server-side ``$1`` parameters), on autocommit connections, with
prepared statements off (a pooler in transaction mode would break them). The tables live in
the schema ``agentsess`` unless the URL's ``options`` sets a ``search_path``.

The password never comes from the URL: it is the keyring secret ``store-password``
(``agentsess secret set store-password``), else whatever libpq finds itself (``PGPASSFILE``,
``~/.pgpass``, ``PGPASSWORD``). Every message this module produces has the password and any
``password=`` masked.

Receipts are mirrored in ``receipts`` with ``PRIMARY KEY (run_id, seq)``: a second, different
record at a seq the mirror already holds is a forked chain, which the database refuses and
:meth:`PostgresStore.record_receipt` reports. A mirror that fell behind (the store was
unreachable) is caught up from the local stream at the next receipt or by :meth:`sync_mirror`.
"""

import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agentsess.edges.store import NOTIFY_CHANNEL, Store
from agentsess.edges.store.holding import StoreUnreachable, SupervisedWrites, pending_exists, replay
from agentsess.edges.store.migrations import POSTGRES
from agentsess.errors import STATE, USAGE, AgentsessError

PASSWORD_SECRET = "store-password"
UNDEFINED_TABLE = "42P01"
MIGRATION_LOCK = 0x6167656E7473  # "agents": pg_advisory_xact_lock key of the schema's migrations
DEFAULT_SCHEMA = "agentsess"
# every connection: fail fast, notice a dead peer (keepalives, tcp_user_timeout in ms)
CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
    "application_name": "agentsess",
}
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)


__all__ = ["PostgresStore", "StoreUnreachable", "Target", "driver", "mask"]
_IMPORT_LOCK = threading.Lock()  # psycopg imported by one thread at a time (a fallback in a broker thread)


def driver():
    """psycopg, imported on first use; a one-line error when it is not installed or has no libpq."""
    try:
        with _IMPORT_LOCK:
            import psycopg
    except ImportError as exc:
        raise AgentsessError(
            "the store is a postgresql:// URL but psycopg cannot be loaded "
            f"({' '.join(str(exc).split())[:200]}); install it with `pip install 'agentsess[postgres]'`",
            STATE,
        ) from None
    global _QUIET
    if not _QUIET:
        _QUIET = True
        if os.environ.get("AGENTSESS_DEBUG") != "1":
            # psycopg logs a few warnings (a failed rollback or cancel on a lost connection);
            # without a handler Python prints them raw to stderr, beside agentsess's one-line
            # error. They show under AGENTSESS_DEBUG=1.
            import logging

            logging.getLogger("psycopg").addHandler(logging.NullHandler())
            logging.getLogger("psycopg").propagate = False
    return psycopg


_QUIET = False


class Target:
    """Where the shared store is: the connection parameters, the schema, and what to mask."""

    def __init__(self, url: str, password: str | None = None):
        pq = driver()
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
        except pq.Error as exc:
            raise AgentsessError(f"the store URL is not a valid postgresql:// URL: {mask(str(exc), ())}", USAGE) from None
        if params.get("password"):
            raise AgentsessError(
                "the store URL holds a password in clear; remove it from the URL and keep it in the "
                f"keyring (`agentsess secret set {PASSWORD_SECRET}`) or a PGPASSFILE",
                USAGE,
            )
        params.pop("password", None)
        secrets: list[str] = []
        if password:
            params["password"] = password
            secrets.append(password)
        self.secrets = tuple(secrets)
        options = str(params.get("options") or "")
        found = re.search(r"search_path\s*=\s*([A-Za-z_][A-Za-z0-9_$]*)", options)
        if found:
            self.schema = found.group(1)
        else:
            self.schema = DEFAULT_SCHEMA
            params["options"] = (options + " -c search_path=" + DEFAULT_SCHEMA).strip()
        for key, value in CONNECT_DEFAULTS.items():
            params.setdefault(key, value)
        self.params = params
        shown = {k: v for k, v in params.items() if k in ("host", "port", "dbname", "user")}
        self.label = "postgresql://{user}@{host}:{port}/{dbname}".format(
            user=shown.get("user", ""), host=shown.get("host", "localhost"),
            port=shown.get("port", "5432"), dbname=shown.get("dbname", ""),
        )

    def connect(self, cancel_fd: int | None = None, **overrides) -> Any:
        """A new autocommit connection (statements commit unless inside ``conn.transaction()``),
        rows as dicts, ``$1`` parameters; with ``cancel_fd``, given up as soon as that fd is
        readable (a watcher's stop) or ``connect_timeout`` passes."""
        pq = driver()
        params = {**self.params, **overrides}
        try:
            if cancel_fd is None:
                from psycopg.rows import dict_row

                return pq.connect(**params, autocommit=True, prepare_threshold=None, row_factory=dict_row,
                                  cursor_factory=pq.RawCursor)
            return _connect_cancellable(params, cancel_fd)
        except pq.Error as exc:
            raise self.error("cannot connect to", exc) from None

    def error(self, what: str, exc: BaseException) -> AgentsessError:
        pq = driver()
        text = " ".join(str(exc).split()) or type(exc).__name__
        kind = StoreUnreachable if isinstance(exc, pq.OperationalError) else AgentsessError
        return kind(f"{what} the store {self.label}: {mask(text, self.secrets)}", STATE)


def _connect_cancellable(params: dict[str, str], cancel_fd: int) -> Any:
    """psycopg's connection, made with libpq's non-blocking connect (``psycopg.pq``) under a
    select that also watches ``cancel_fd``: psycopg's own ``connect()`` cannot be interrupted
    from another thread, and a watcher's stop must not wait out a silent peer."""
    import select
    import time

    import psycopg
    from psycopg import pq
    from psycopg.conninfo import make_conninfo
    from psycopg.rows import dict_row

    deadline = time.monotonic() + float(params.get("connect_timeout") or 10)
    pgconn = pq.PGconn.connect_start(make_conninfo("", **params).encode())
    try:
        state: int = pq.PollingStatus.WRITING  # libpq: wait as if the last poll had said WRITING
        while True:
            if pgconn.status == pq.ConnStatus.BAD or state == pq.PollingStatus.FAILED:
                raise psycopg.OperationalError(f"connection failed: {pgconn.get_error_message()}")
            if state == pq.PollingStatus.OK:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise psycopg.OperationalError("connection timeout expired")
            sock = pgconn.socket
            reading = state == pq.PollingStatus.READING
            ready_r, ready_w, _ = select.select([sock, cancel_fd] if reading else [cancel_fd],
                                                [] if reading else [sock], [], left)
            if cancel_fd in ready_r:
                raise psycopg.OperationalError("connection cancelled")
            if ready_r or ready_w:
                state = pgconn.connect_poll()
        pgconn.nonblocking = 1  # as psycopg's own connect leaves it
        conn = psycopg.Connection(pgconn, row_factory=dict_row)
    except BaseException:
        pgconn.finish()
        raise
    conn.autocommit = True
    conn.prepare_threshold = None
    conn.cursor_factory = psycopg.RawCursor
    return conn


def _keyring_password() -> str | None:
    from agentsess.edges import keychain

    try:
        return keychain.get_secret(PASSWORD_SECRET)
    except AgentsessError:
        return None


def mask(text: str, secrets) -> str:
    """``text`` with every known secret, ``password=…`` value and URL password replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _PASSWORD_KV.sub(r"\1***", text)
    return _URL_USERINFO.sub(r"\1***\3", text)


_MARKS: dict[str, str] = {}


def _sql(sql: str) -> str:
    """``?`` placeholders (the shared SQL's) as PostgreSQL's ``$1``, ``$2``, …"""
    out = _MARKS.get(sql)
    if out is None:
        parts = sql.split("?")
        out = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
        _MARKS[sql] = out
    return out


class PostgresStore(SupervisedWrites, Store):
    """One autocommit connection to the shared store."""

    backend = "postgresql"
    shared = True

    def __init__(self, path: str | None = None, *, url: str | None = None):
        from agentsess.edges.store import store_url

        url = url or store_url()
        if url is None:
            raise AgentsessError("no postgresql:// store is configured (AGENTSESS_STORE)", USAGE)
        self.url = url
        self._in_transaction = False
        self._init_holding()
        # The TCP connection and its authentication (SCRAM) take ~15 ms: they happen in a
        # thread while the caller goes on (a run plans and mints meanwhile); the first query
        # waits for them. psycopg is imported here, in the caller's thread (two threads
        # importing the same modules at once can deadlock on the import locks), and so is the
        # keyring read.
        self._target: Target | None = None
        self._db: Any = None
        self._current = False
        self._open_error: BaseException | None = None
        driver()
        self._opener: threading.Thread | None = threading.Thread(
            target=self._open, args=(url, _keyring_password()), name="agentsess-store-open", daemon=True
        )
        self._opener.start()

    @property
    def pq(self) -> Any:
        """The psycopg module (its ``Error`` and ``OperationalError``)."""
        return driver()

    def _open(self, url: str, password: str | None) -> None:
        try:
            target = Target(url, password)
            db = target.connect()
            try:
                row = db.execute("SELECT count(*) AS n FROM migrations").fetchone()
                self._current = row is not None and row["n"] == len(POSTGRES)
            except self.pq.Error as exc:
                if exc.sqlstate != UNDEFINED_TABLE:
                    db.close()
                    raise target.error("cannot read", exc) from None
            self._target, self._db = target, db
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by _ready
            self._open_error = exc

    def _ready(self) -> None:
        opener = self._opener
        if opener is None:
            return
        opener.join()
        self._opener = None
        if self._open_error is not None:
            raise self._open_error
        if not self._current:
            self._migrate()
        if pending_exists():
            self._replay_pending()

    @property
    def db(self) -> Any:
        self._ready()
        return self._db

    @db.setter
    def db(self, value: Any) -> None:
        self._db = value

    @property
    def target(self) -> "Target":
        self._ready()
        assert self._target is not None
        return self._target

    @property
    def location(self) -> str:  # type: ignore[override]
        if self._target is not None:
            return self._target.label
        return mask(self.url, ())

    def close(self) -> None:
        if self._opener is not None:
            self._opener.join()
            self._opener = None
        if self._held or self._mirror_lag:
            self._flush_or_keep()
        if self._db is not None:
            self._db.close()

    # -- schema -------------------------------------------------------------------------

    def _migrate(self) -> None:
        schema = self.target.schema
        try:
            for name, sql in POSTGRES:
                with self.db.transaction():
                    self.db.execute("SELECT pg_advisory_xact_lock($1)", (MIGRATION_LOCK,))
                    self.db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    self.db.execute(
                        "CREATE TABLE IF NOT EXISTS migrations "
                        "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
                    )
                    if self.db.execute("SELECT 1 FROM migrations WHERE name = $1", (name,)).fetchone():
                        continue
                    for statement in sql.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute(
                        "INSERT INTO migrations (name, applied_at) VALUES ($1, extract(epoch FROM now()))",
                        (name,),
                    )
        except self.pq.Error as exc:
            raise self.target.error("cannot migrate", exc) from None

    # -- statements ---------------------------------------------------------------------

    def _reconnect_if_broken(self) -> None:
        if self.db.closed and not self._in_transaction:
            self.db = self.target.connect()

    def _exec(self, sql: str, args: Any = ()) -> Any:
        self._reconnect_if_broken()
        try:
            return self.db.execute(_sql(sql), tuple(args))
        except self.pq.OperationalError as exc:
            if self._in_transaction or not self.db.closed:
                raise self.target.error("a query failed on", exc) from None
        except self.pq.Error as exc:
            raise self.target.error("a query failed on", exc) from None
        # the connection broke (a server restart, a cut): once more on a new one
        self.db = self.target.connect()
        try:
            return self.db.execute(_sql(sql), tuple(args))
        except self.pq.Error as exc:
            raise self.target.error("a query failed on", exc) from None

    def _replay_pending(self) -> None:
        from agentsess.edges import paths
        from agentsess.edges.streams import ReceiptError

        folder = paths.store_pending_dir()
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as fh:
                    doc = json.load(fh)
                run_id = doc["run"]
                if path != paths.store_pending_file(run_id, folder):
                    raise ValueError(name)
                for op in doc["ops"]:
                    replay(self, op, run_id, from_file=True)
                try:
                    self.sync_mirror(run_id)
                except (ReceiptError, FileNotFoundError):
                    pass
                os.unlink(path)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            except StoreUnreachable:
                return

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._reconnect_if_broken()
        try:
            with self.db.transaction():
                self._in_transaction = True
                try:
                    yield
                finally:
                    self._in_transaction = False
        except self.pq.Error as exc:
            raise self.target.error("a transaction failed on", exc) from None

    def _notify_revoked(self, run_ids: list[str]) -> None:
        # payloads stay under PostgreSQL's 8000 bytes; a supervisor re-reads the list anyway
        for i in range(0, len(run_ids), 200):
            self._exec("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, ",".join(run_ids[i : i + 200])))

    # -- the receipt mirror ---------------------------------------------------------------

    def record_receipt(self, run_id: str, rec: dict) -> None:
        """Mirror the receipt and move the chain head, in one statement.

        The insert happens only at the next seq (seq 0, or the one after a mirrored seq), so
        a gap is seen at once and filled from the local stream; a conflicting record at a
        mirrored seq is a fork. An unreachable store leaves the mirror behind (the
        supervisor's watcher warns and catches it up) rather than failing the receipt, which
        is already on disk.
        """
        from agentsess.edges import host

        if run_id in self.supervised and self._offline(run_id):  # as SupervisedWrites does
            self._mirror_lag.add(run_id)
            return
        line = _line(rec)
        seq = rec["seq"]
        sql = (
            "WITH ins AS ("
            " INSERT INTO receipts (run_id, seq, type, ts, hash, line, host)"
            " SELECT $1, $2, $3, $4, $5, $6, $7"
            " WHERE $8 = 0 OR EXISTS (SELECT 1 FROM receipts WHERE run_id = $9 AND seq = $10)"
            " ON CONFLICT (run_id, seq) DO NOTHING RETURNING seq),"
            " upd AS (UPDATE runs SET chain_head = $11, chain_count = $12"
            " WHERE id = $13 AND chain_count < $14 AND EXISTS (SELECT 1 FROM ins) RETURNING id)"
            " SELECT (SELECT count(*) FROM ins) AS inserted"
        )
        args = (run_id, seq, rec["type"], rec["ts"], rec["hash"], line, host.hostname(),
                seq, run_id, seq - 1, rec["hash"], seq + 1, run_id, seq + 1)
        try:
            self._reconnect_if_broken()
            inserted = self.db.execute(sql, args).fetchone()["inserted"]
        except (self.pq.OperationalError, AgentsessError):
            self._mirror_lag.add(run_id)
            return
        except self.pq.Error as exc:
            raise self.target.error("cannot mirror a receipt to", exc) from None
        if inserted:
            return
        self.sync_mirror(run_id)

    def sync_mirror(self, run_id: str) -> int:
        """Copy what the mirror lacks of the run's local stream; returns how many were added.

        Raises ReceiptError when the mirror holds a different record at a seq (a fork).
        """
        from agentsess.edges import host, streams

        have = {
            r["seq"]: r["hash"]
            for r in self._exec("SELECT seq, hash FROM receipts WHERE run_id = ?", (run_id,))
        }
        added = 0
        last = None
        for _, raw in streams.read(run_id):
            try:
                rec = json.loads(raw)
            except ValueError:
                break
            seq = rec.get("seq")
            if seq in have:
                if have[seq] != rec.get("hash"):
                    raise streams.ReceiptError(
                        f"the store's mirror of run {run_id} holds a different record at seq {seq}: "
                        "the chain has forked; the mirror refuses the local one"
                    )
            else:
                try:
                    self._exec(
                        "INSERT INTO receipts (run_id, seq, type, ts, hash, line, host) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (run_id, seq, rec["type"], rec["ts"], rec["hash"], _line(rec), host.hostname()),
                    )
                except AgentsessError as exc:
                    if "duplicate key" in exc.message:
                        raise streams.ReceiptError(
                            f"the store's mirror of run {run_id} already holds seq {seq} from elsewhere: "
                            "the chain has forked; the mirror refuses the local one"
                        ) from None
                    raise
                added += 1
            last = rec
        if last is not None:
            self.set_head(run_id, last["hash"], last["seq"] + 1)
        self._mirror_lag.discard(run_id)
        return added

    def watch_run(self, run_id: str, profile, wake) -> Any:
        from agentsess.edges.store.watcher import FleetWatch

        return FleetWatch(self, run_id, profile, wake)

    def revocation_watcher(self, run_ids: list[str], on_change) -> Any:
        """A watcher of the revocation list on its own connection (a FleetWatch's)."""
        from agentsess.edges.store.watcher import RevocationWatcher

        return RevocationWatcher(self.target, run_ids, on_change=on_change)


def _line(rec: dict) -> str:
    from agentsess.edges.streams import canonical

    return canonical(rec).decode()

