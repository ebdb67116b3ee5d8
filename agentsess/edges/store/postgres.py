"""The PostgreSQL backend: one store shared by a fleet of machines.

Selected by ``AGENTSESS_STORE=postgresql://…`` (or the config's ``store``); psycopg 3 is
imported only here (``pip install 'agentsess[postgres]'``). The tables live in the schema
``agentsess`` unless the URL's ``options`` sets a ``search_path``.

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
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agentsess.edges.store import NOTIFY_CHANNEL, Store
from agentsess.edges.store.migrations import POSTGRES
from agentsess.errors import STATE, USAGE, AgentsessError

PASSWORD_SECRET = "store-password"
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


def import_psycopg():
    try:
        import psycopg
    except ImportError:
        raise AgentsessError(
            "the store is a postgresql:// URL but psycopg is not installed; "
            "install it with `pip install 'agentsess[postgres]'`",
            STATE,
        ) from None
    return psycopg


class Target:
    """Where the shared store is: the connection parameters, the schema, and what to mask."""

    def __init__(self, url: str):
        psycopg = import_psycopg()
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise AgentsessError(f"the store URL is not a valid postgresql:// URL: {mask(str(exc), ())}", USAGE) from None
        if params.get("password"):
            raise AgentsessError(
                "the store URL holds a password in clear; remove it from the URL and keep it in the "
                f"keyring (`agentsess secret set {PASSWORD_SECRET}`) or a PGPASSFILE",
                USAGE,
            )
        params.pop("password", None)
        secrets: list[str] = []
        password = _keyring_password()
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

    def connect(self, autocommit: bool = True, **overrides):
        psycopg = import_psycopg()
        from psycopg.rows import dict_row

        params = {**self.params, **overrides}
        try:
            return psycopg.connect(autocommit=autocommit, row_factory=dict_row, **params)
        except psycopg.Error as exc:
            raise self.error("cannot connect to", exc) from None

    def error(self, what: str, exc: BaseException) -> AgentsessError:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return AgentsessError(f"{what} the store {self.label}: {mask(text, self.secrets)}", STATE)


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
    """``?`` placeholders (the shared SQL's) as psycopg's ``%s``."""
    out = _MARKS.get(sql)
    if out is None:
        out = _MARKS[sql] = sql.replace("%", "%%").replace("?", "%s")
    return out


class PostgresStore(Store):
    """One autocommit connection to the shared store."""

    backend = "postgresql"
    shared = True

    def __init__(self, path: str | None = None, *, url: str | None = None):
        from agentsess.edges.store import store_url

        url = url or store_url()
        if url is None:
            raise AgentsessError("no postgresql:// store is configured (AGENTSESS_STORE)", USAGE)
        self.url = url
        self.target = Target(url)
        self.location = self.target.label
        self.psycopg = import_psycopg()
        self.db = self.target.connect()
        self._in_transaction = False
        self._mirror_lag: set[str] = set()
        self.watched: dict = {}  # run id -> FleetWatch: the live runs this process supervises
        try:
            row = self.db.execute("SELECT count(*) AS n FROM migrations").fetchone()
            current = row is not None and row["n"] == len(POSTGRES)
        except self.psycopg.errors.UndefinedTable:
            current = False
        except self.psycopg.Error as exc:
            raise self.target.error("cannot read", exc) from None
        if not current:
            self._migrate()

    def close(self) -> None:
        try:
            self.db.close()
        except self.psycopg.Error:
            pass

    # -- schema -------------------------------------------------------------------------

    def _migrate(self) -> None:
        schema = self.target.schema
        try:
            for name, sql in POSTGRES:
                with self.db.transaction():
                    self.db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                    self.db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    self.db.execute(
                        "CREATE TABLE IF NOT EXISTS migrations "
                        "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
                    )
                    if self.db.execute("SELECT 1 FROM migrations WHERE name = %s", (name,)).fetchone():
                        continue
                    for statement in sql.split(";"):
                        if statement.strip():
                            self.db.execute(statement)  # type: ignore[call-overload]
                    self.db.execute(
                        "INSERT INTO migrations (name, applied_at) VALUES (%s, extract(epoch FROM now()))",
                        (name,),
                    )
        except self.psycopg.Error as exc:
            raise self.target.error("cannot migrate", exc) from None

    # -- statements ---------------------------------------------------------------------

    def _reconnect_if_broken(self) -> None:
        if self.db.closed and not self._in_transaction:
            self.db = self.target.connect()

    def _exec(self, sql: str, args: Any = ()) -> Any:
        self._reconnect_if_broken()
        try:
            return self.db.execute(_sql(sql), tuple(args))  # type: ignore[call-overload]
        except self.psycopg.Error as exc:
            raise self.target.error("a query failed on", exc) from None

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
        except self.psycopg.Error as exc:
            raise self.target.error("a transaction failed on", exc) from None

    def revocation(self, run_id: str) -> tuple[float | None, str | None]:
        """A supervised run's revocation from its watcher (no query, never blocks); else the row's."""
        watch = self.watched.get(run_id)
        if watch is not None:
            return watch.revocation()
        return super().revocation(run_id)

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

        line = _line(rec)
        seq = rec["seq"]
        sql = (
            "WITH ins AS ("
            " INSERT INTO receipts (run_id, seq, type, ts, hash, line, host)"
            " SELECT %s, %s, %s, %s, %s, %s, %s"
            " WHERE %s = 0 OR EXISTS (SELECT 1 FROM receipts WHERE run_id = %s AND seq = %s)"
            " ON CONFLICT (run_id, seq) DO NOTHING RETURNING seq),"
            " upd AS (UPDATE runs SET chain_head = %s, chain_count = %s"
            " WHERE id = %s AND chain_count < %s AND EXISTS (SELECT 1 FROM ins) RETURNING id)"
            " SELECT (SELECT count(*) FROM ins) AS inserted"
        )
        args = (run_id, seq, rec["type"], rec["ts"], rec["hash"], line, host.hostname(),
                seq, run_id, seq - 1, rec["hash"], seq + 1, run_id, seq + 1)
        try:
            self._reconnect_if_broken()
            inserted = self.db.execute(sql, args).fetchone()["inserted"]
        except (self.psycopg.OperationalError, AgentsessError):
            self._mirror_lag.add(run_id)
            return
        except self.psycopg.Error as exc:
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

    def lagging(self) -> set[str]:
        return set(self._mirror_lag)

    def watch_run(self, run_id: str, profile, wake) -> Any:
        from agentsess.edges.store.watcher import FleetWatch

        return FleetWatch(self, run_id, profile, wake)


def _line(rec: dict) -> str:
    from agentsess.edges.streams import canonical

    return canonical(rec).decode()

