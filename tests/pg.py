"""The throwaway PostgreSQL of the fleet tests (started by .ci/postgres.sh; see .ci/run).

``AGENTSESS_TEST_PG_DSN`` (no password) and ``AGENTSESS_TEST_PG_PASSWORD`` name it. Without
them a PostgreSQL test skips, saying how to start one; under ``AGENTSESS_REQUIRE_PG=1`` or
``AGENTSESS_CI=1`` it fails instead. Each test gets its own schema (through the URL's
``options``), dropped afterwards.
"""

import os
import secrets
import urllib.parse

import pytest

HOW = "start one with `eval \"$(.ci/postgres.sh start)\"`"
# a store agent (docs/store-agent.md) that a test's command started leaves 5 s after its last
# client, not 10 min: every test has a store of its own, so each would keep one
os.environ.setdefault("AGENTSESS_STORE_AGENT_IDLE", "5")


def required() -> bool:
    return os.environ.get("AGENTSESS_REQUIRE_PG") == "1" or os.environ.get("AGENTSESS_CI") == "1"


def dsn() -> str:
    value = os.environ.get("AGENTSESS_TEST_PG_DSN")
    if not value:
        if required():
            pytest.fail("AGENTSESS_TEST_PG_DSN is not set and PostgreSQL is required (AGENTSESS_REQUIRE_PG=1)")
        pytest.skip(f"no PostgreSQL for the tests: {HOW}")
    return value


def password() -> str:
    return os.environ.get("AGENTSESS_TEST_PG_PASSWORD", "")


def schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=" + urllib.parse.quote(f"-csearch_path={schema}")


def write_passfile(path, base: str) -> str:
    """A 0600 PGPASSFILE for the server behind ``base``; returns its path."""
    parts = urllib.parse.urlsplit(base)
    line = f"{parts.hostname}:*:*:{parts.username}:{password()}\n"  # any port: relays too
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(line)
    return str(path)


def admin(base: str):
    import psycopg

    return psycopg.connect(base, password=password(), autocommit=True, connect_timeout=5)


class Database:
    """One test's schema on the shared server."""

    def __init__(self, tmp_path):
        self.base = dsn()
        self.schema = "t_" + secrets.token_hex(6)
        self.url = schema_url(self.base, self.schema)
        self.passfile = write_passfile(tmp_path / "pgpass", self.base)

    def env(self) -> dict:
        return {"AGENTSESS_STORE": self.url, "PGPASSFILE": self.passfile}

    def query(self, sql: str, args=()):
        with admin(self.base) as conn:
            conn.execute(f'SET search_path = "{self.schema}"')
            cur = conn.execute(sql, args)
            return cur.fetchall() if cur.description else None

    def drop(self) -> None:
        try:
            with admin(self.base) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        except Exception:
            pass


@pytest.fixture
def pg(tmp_path, monkeypatch):
    """A fresh schema, with AGENTSESS_STORE and PGPASSFILE set for this test and its children."""
    db = Database(tmp_path)
    for key, value in db.env().items():
        monkeypatch.setenv(key, value)
    yield db
    db.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path, monkeypatch):
    """Each store test once per backend: 'sqlite' (the file) or 'postgresql' (a fresh schema)."""
    if request.param == "sqlite":
        monkeypatch.delenv("AGENTSESS_STORE", raising=False)
        yield None
        return
    db = Database(tmp_path)
    for key, value in db.env().items():
        monkeypatch.setenv(key, value)
    yield db
    db.drop()
