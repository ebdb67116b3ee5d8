"""The few libpq calls the PostgreSQL store makes, through ctypes.

Why not psycopg's own API: importing psycopg costs ~85 ms here (asyncio, logging,
importlib.metadata, its type system), more than the whole start-up budget of `agentsess run`
(≤ 8× `python -c pass`), while ctypes and libpq load in ~2 ms. The store needs little: a
connection from libpq's own connection parameters, statements with text parameters and typed
results, LISTEN/NOTIFY, and the SQLSTATE of an error.

libpq itself is the system's (``libpq.so.5``, Debian's libpq5) or, failing that, the copy
that ``psycopg[binary]`` (the ``agentsess[postgres]`` extra) ships in ``psycopg_binary.libs``.
Every call is blocking; ctypes releases the GIL around each, so the watcher's thread never
holds up the supervisor's loop.
"""

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CONNECTION_OK = 0
CONNECTION_BAD = 1
PGRES_POLLING_FAILED, PGRES_POLLING_READING, PGRES_POLLING_WRITING, PGRES_POLLING_OK = 0, 1, 2, 3
PGRES_COMMAND_OK = 1
PGRES_TUPLES_OK = 2
PG_DIAG_SQLSTATE = ord("C")
UNDEFINED_TABLE = "42P01"
UNIQUE_VIOLATION = "23505"

# result column types converted from text; everything else stays a str
_INTS = {20, 21, 23, 26}
_FLOATS = {700, 701, 1700}
_BOOL = 16
# parameter types sent with each value (0: let the server infer it from the statement)
_OID_INT8, _OID_FLOAT8, _OID_BOOL, _OID_TEXT_ARRAY = 20, 701, 16, 1009


class Error(Exception):
    """A failure reported by libpq or the server; ``sqlstate`` when the server gave one."""

    def __init__(self, message: str, sqlstate: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate


class OperationalError(Error):
    """The connection could not be made or was lost."""


class Unavailable(Exception):
    """No libpq could be loaded."""


class _ConninfoOption(ctypes.Structure):
    _fields_ = [("keyword", ctypes.c_char_p), ("envvar", ctypes.c_char_p), ("compiled", ctypes.c_char_p),
                ("val", ctypes.c_char_p), ("label", ctypes.c_char_p), ("dispchar", ctypes.c_char_p),
                ("dispsize", ctypes.c_int)]


class _Notify(ctypes.Structure):
    _fields_ = [("relname", ctypes.c_char_p), ("be_pid", ctypes.c_int), ("extra", ctypes.c_char_p),
                ("next", ctypes.c_void_p)]


_lib: Any = None


def _candidates():
    """The system's libpq first; psycopg[binary]'s copy is looked for only if that fails."""
    yield from ("libpq.so.5", "libpq.so", "libpq.5.dylib")
    out: list[str] = []
    try:
        import importlib.util

        spec = importlib.util.find_spec("psycopg_binary")  # finds it without importing it
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        libs = os.path.join(os.path.dirname(next(iter(spec.submodule_search_locations))), "psycopg_binary.libs")
        try:
            out += sorted(os.path.join(libs, n) for n in os.listdir(libs) if n.startswith("libpq"))
        except OSError:
            pass
    yield from out


def lib():
    """libpq, loaded once, with the signatures of the calls used here."""
    global _lib
    if _lib is not None:
        return _lib
    last = None
    for name in _candidates():
        try:
            so = ctypes.CDLL(name)
            break
        except OSError as exc:
            last = exc
    else:
        raise Unavailable(str(last))
    p, c, i, u = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint
    sigs = {
        "PQconnectdbParams": (p, [ctypes.POINTER(c), ctypes.POINTER(c), i]),
        "PQconnectStartParams": (p, [ctypes.POINTER(c), ctypes.POINTER(c), i]),
        "PQconnectPoll": (i, [p]),
        "PQconninfoParse": (ctypes.POINTER(_ConninfoOption), [c, ctypes.POINTER(ctypes.c_void_p)]),
        "PQconninfoFree": (None, [p]),
        "PQstatus": (i, [p]),
        "PQerrorMessage": (c, [p]),
        "PQfinish": (None, [p]),
        "PQsocket": (i, [p]),
        "PQexecParams": (p, [p, c, i, ctypes.POINTER(u), ctypes.POINTER(c), p, p, i]),
        "PQresultStatus": (i, [p]),
        "PQresultErrorMessage": (c, [p]),
        "PQresultErrorField": (c, [p, i]),
        "PQntuples": (i, [p]),
        "PQnfields": (i, [p]),
        "PQfname": (c, [p, i]),
        "PQftype": (u, [p, i]),
        "PQgetvalue": (p, [p, i, i]),
        "PQgetlength": (i, [p, i, i]),
        "PQgetisnull": (i, [p, i, i]),
        "PQcmdTuples": (c, [p]),
        "PQclear": (None, [p]),
        "PQconsumeInput": (i, [p]),
        "PQnotifies": (ctypes.POINTER(_Notify), [p]),
        "PQfreemem": (None, [p]),
    }
    for fname, (restype, argtypes) in sigs.items():
        fn = getattr(so, fname)
        fn.restype = restype
        fn.argtypes = argtypes
    _lib = so
    return so


def _text(raw: bytes | None) -> str:
    return " ".join((raw or b"").decode("utf-8", "replace").split())


def parse_conninfo(conninfo: str) -> dict[str, str]:
    """A URL or ``key=value`` string as libpq's own parameters (libpq parses it)."""
    pq = lib()
    err = ctypes.c_void_p()
    opts = pq.PQconninfoParse(conninfo.encode(), ctypes.byref(err))
    if not opts:
        message = ctypes.string_at(err.value).decode("utf-8", "replace").strip() if err.value else "invalid"
        if err.value:
            pq.PQfreemem(err)
        raise Error(message)
    out = {}
    try:
        k = 0
        while opts[k].keyword:
            if opts[k].val is not None:
                out[opts[k].keyword.decode()] = opts[k].val.decode("utf-8", "replace")
            k += 1
    finally:
        pq.PQconninfoFree(ctypes.cast(opts, ctypes.c_void_p))
    return out


def _param(value) -> tuple[int, bytes | None]:
    if value is None:
        return 0, None
    if isinstance(value, bool):
        return _OID_BOOL, b"true" if value else b"false"
    if isinstance(value, int):
        return _OID_INT8, str(value).encode()
    if isinstance(value, float):
        return _OID_FLOAT8, repr(value).encode()
    if isinstance(value, (list, tuple)):
        items = ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value)
        return _OID_TEXT_ARRAY, ("{" + items + "}").encode()
    return 0, str(value).encode()


def _value(raw: bytes, oid: int):
    if oid in _INTS:
        return int(raw)
    if oid in _FLOATS:
        return float(raw)
    if oid == _BOOL:
        return raw == b"t"
    return raw.decode("utf-8", "replace")


class Result:
    """A statement's rows (dicts by column name) and how many rows it changed."""

    def __init__(self, rows: list[dict], rowcount: int, description: list[str]):
        self.rows = rows
        self.rowcount = rowcount
        self.description = description

    def fetchone(self) -> dict | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[dict]:
        return self.rows

    def __iter__(self):
        return iter(self.rows)


class Connection:
    """One libpq connection (autocommit, as libpq is); ``$1`` placeholders."""

    def __init__(self, params: dict[str, str], cancel_fd: int | None = None):
        """Connect; with ``cancel_fd``, asynchronously, giving up as soon as that fd is readable
        (a watcher's stop) or ``connect_timeout`` passes."""
        self.pq = lib()
        keys = [k.encode() for k in params] + [None]
        values = [str(v).encode() for v in params.values()] + [None]
        kw = (ctypes.c_char_p * len(keys))(*keys)
        vals = (ctypes.c_char_p * len(values))(*values)
        if cancel_fd is None:
            self.pgconn = self.pq.PQconnectdbParams(kw, vals, 0)
        else:
            self.pgconn = self.pq.PQconnectStartParams(kw, vals, 0)
        if not self.pgconn:
            raise OperationalError("out of memory")
        if cancel_fd is not None and self.pq.PQstatus(self.pgconn) != CONNECTION_BAD:
            self._poll_connect(cancel_fd, float(params.get("connect_timeout") or 10))
        if self.pq.PQstatus(self.pgconn) != CONNECTION_OK:
            message = _text(self.pq.PQerrorMessage(self.pgconn)) or "cancelled"
            self.pq.PQfinish(self.pgconn)
            self.pgconn = None
            raise OperationalError(message)

    def _poll_connect(self, cancel_fd: int, timeout: float) -> None:
        import select
        import time

        deadline = time.monotonic() + timeout
        state = PGRES_POLLING_WRITING
        while state not in (PGRES_POLLING_OK, PGRES_POLLING_FAILED):
            left = deadline - time.monotonic()
            sock = self.pq.PQsocket(self.pgconn)
            if left <= 0 or sock < 0:
                return
            want_read = [sock, cancel_fd] if state == PGRES_POLLING_READING else [cancel_fd]
            want_write = [sock] if state == PGRES_POLLING_WRITING else []
            ready_r, ready_w, _ = select.select(want_read, want_write, [], left)
            if cancel_fd in ready_r:
                return
            if ready_r or ready_w:
                state = self.pq.PQconnectPoll(self.pgconn)

    @property
    def closed(self) -> bool:
        return self.pgconn is None or self.pq.PQstatus(self.pgconn) != CONNECTION_OK

    def fileno(self) -> int:
        return self.pq.PQsocket(self.pgconn) if self.pgconn else -1

    def close(self) -> None:
        if self.pgconn:
            self.pq.PQfinish(self.pgconn)
            self.pgconn = None

    def interrupt(self) -> None:
        """From another thread: make a call blocked on this connection return at once (its
        socket is shut down; the connection is then broken). The caller must keep the
        connection from being closed meanwhile."""
        sock = self.fileno()
        if sock >= 0:
            import socket

            try:
                dup = socket.socket(fileno=os.dup(sock))
            except OSError:
                return
            try:
                dup.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                dup.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def execute(self, sql: str, args=()) -> Result:
        if not self.pgconn:
            raise OperationalError("the connection is closed")
        pq = self.pq
        n = len(args)
        converted = [_param(a) for a in args]
        types = (ctypes.c_uint * max(n, 1))(*[t for t, _ in converted])
        values = (ctypes.c_char_p * max(n, 1))(*[v for _, v in converted])
        res = pq.PQexecParams(self.pgconn, sql.encode(), n, types, values, None, None, 0)
        if not res:
            raise OperationalError(_text(pq.PQerrorMessage(self.pgconn)) or "no result")
        try:
            status = pq.PQresultStatus(res)
            if status not in (PGRES_COMMAND_OK, PGRES_TUPLES_OK):
                message = _text(pq.PQresultErrorMessage(res)) or _text(pq.PQerrorMessage(self.pgconn))
                state = pq.PQresultErrorField(res, PG_DIAG_SQLSTATE)
                if self.closed:
                    raise OperationalError(message or "the connection was lost")
                raise Error(message, state.decode() if state else None)
            ncols = pq.PQnfields(res)
            names = [pq.PQfname(res, k).decode() for k in range(ncols)]
            oids = [pq.PQftype(res, k) for k in range(ncols)]
            rows = []
            for r in range(pq.PQntuples(res)):
                row: dict[str, Any] = {}
                for k in range(ncols):
                    if pq.PQgetisnull(res, r, k):
                        row[names[k]] = None
                    else:
                        raw = ctypes.string_at(pq.PQgetvalue(res, r, k), pq.PQgetlength(res, r, k))
                        row[names[k]] = _value(raw, oids[k])
                rows.append(row)
            affected = pq.PQcmdTuples(res)
            return Result(rows, int(affected) if affected else -1, names)
        finally:
            pq.PQclear(res)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.execute("BEGIN")
        try:
            yield
        except BaseException:
            if not self.closed:
                try:
                    self.execute("ROLLBACK")
                except Error:
                    pass
            raise
        self.execute("COMMIT")

    def notifies(self) -> list[tuple[str, str]]:
        """The notifications that have arrived: (channel, payload); raises if the connection broke."""
        pq = self.pq
        if not self.pgconn or not pq.PQconsumeInput(self.pgconn):
            raise OperationalError(_text(pq.PQerrorMessage(self.pgconn)) if self.pgconn else "closed")
        out = []
        while True:
            note = pq.PQnotifies(self.pgconn)
            if not note:
                break
            out.append((note.contents.relname.decode(), (note.contents.extra or b"").decode("utf-8", "replace")))
            pq.PQfreemem(ctypes.cast(note, ctypes.c_void_p))
        if self.closed:
            raise OperationalError("the connection was lost")
        return out
