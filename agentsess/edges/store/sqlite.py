"""The SQLite backend: one file under the data root, WAL mode, busy timeout; the default."""

import os
import sqlite3

from agentsess.edges import paths
from agentsess.edges.store import Store
from agentsess.edges.store.migrations import MIGRATIONS
from agentsess.errors import STATE, AgentsessError


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



def statements(sql: str):
    """The statements of one migration step: split at each ``;`` that ends one (a trigger's
    body holds ``;``s of its own)."""
    part = ""
    for piece in sql.split(";"):
        part += piece + ";"
        if sqlite3.complete_statement(part):
            if part.strip(" \n;"):
                yield part
            part = ""
    if part.strip(" \n;"):
        yield part  # unfinished: executing it says what is wrong

class SqliteStore(Store):
    """This machine's store file."""

    backend = "sqlite"

    def __init__(self, path: str | None = None, *, url: str | None = None):
        root = paths.data_root()
        self.path = path or paths.store_file()
        self.location = self.path
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
                for statement in statements(sql):
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

    # -- statements ---------------------------------------------------------------------

    def _exec(self, sql: str, args=()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.Error as exc:
            raise _state_error(self.path, exc) from exc

    def _transaction(self) -> "_Transaction":
        return _Transaction(self)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception (no contextlib on the run path)."""

    def __init__(self, store: SqliteStore):
        self.store = store

    def __enter__(self) -> None:
        try:
            self.store.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _state_error(self.store.path, exc) from exc

    def __exit__(self, kind, exc, tb) -> None:
        db = self.store.db
        if kind is not None:
            db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _state_error(self.store.path, exc) from exc
            return
        try:
            db.execute("COMMIT")
        except sqlite3.Error as err:
            raise _state_error(self.store.path, err) from err
