"""Receipt streams: one JSON Lines file per run, each record hash-chained to the one before.

A record is ``{"v", "seq", "ts", "run", "type", "data", "prev", "hash"}``; ``hash`` is the
SHA-256 of the canonical JSON of every other field, ``prev`` the hash of the record before
(64 zeros for seq 0). Appends take an exclusive lock on the file, read the chain head from
the file's last line, and write the new line with a single ``write``: several processes
(the supervisor, hooks, ``revoke``) can append to one stream. Nothing else writes these files.
"""

import errno
import fcntl
import json
import os
import time

from agentsess.digest import sha256_hex
from agentsess.edges import paths
from agentsess.encoding import canonical
from agentsess.errors import RUN_FAILED, STATE, AgentsessError
from agentsess.timefmt import rfc3339

VERSION = 1
GENESIS = "0" * 64
SEAL = "run.sealed"


def record_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return sha256_hex(canonical(body))


class ReceiptError(AgentsessError):
    """The receipt stream could not be written: the run must fail closed."""

    def __init__(self, message: str):
        super().__init__(message, RUN_FAILED)


def _last_line(fd: int, size: int) -> bytes:
    if size == 0:
        return b""
    window = 8192
    while True:
        start = max(0, size - window)
        chunk = os.pread(fd, size - start, start)
        body = chunk[:-1] if chunk.endswith(b"\n") else chunk
        cut = body.rfind(b"\n")
        if cut >= 0 or start == 0:
            return body[cut + 1 :]
        window *= 4


def create_stream(run_id: str) -> str:
    """Make the run's folder (0700) and an empty receipt file (0600); returns its path."""
    paths.ensure_dir(paths.run_dir(run_id))
    path = paths.receipts_file(run_id)
    try:
        os.close(paths.open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        pass
    return path


def append(run_id: str, rtype: str, data, now: float | None = None) -> dict | None:
    """Append one record to ``run_id``'s stream and return it (with ``seq`` and ``hash``).

    ``data`` is a dict, or a callable given the current last record (None for an empty
    stream) under the stream's lock, returning the dict to append or None to append nothing.
    """
    path = paths.receipts_file(run_id)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ReceiptError(f"the receipt stream {path} is missing (deleted?); the run cannot be recorded") from None
    except OSError as exc:
        raise ReceiptError(f"cannot open the receipt stream {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        last = _last_line(fd, size)
        head = None
        if last:
            try:
                head = json.loads(last)
                seq, prev = head["seq"] + 1, head["hash"]
            except (ValueError, KeyError, TypeError):
                raise ReceiptError(f"the receipt stream {path} ends in a damaged record; not appending") from None
        else:
            seq, prev = 0, GENESIS
        if callable(data):
            data = data(head)
            if data is None:
                return None
        record = {
            "v": VERSION,
            "seq": seq,
            "ts": rfc3339(time.time() if now is None else now, micro=True),
            "run": run_id,
            "type": rtype,
            "data": data,
            "prev": prev,
        }
        record["hash"] = record_hash(record)
        line = canonical(record) + b"\n"
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as exc:
            os.ftruncate(fd, size)
            raise ReceiptError(f"cannot write the receipt stream {path}: {exc.strerror or exc}") from None
        return record
    finally:
        os.close(fd)


def read(run_id: str):
    """Yield ``(line_number, raw_line)`` for every line of the run's stream (raw bytes)."""
    path = paths.receipts_file(run_id)
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            yield number, line


def load(run_id: str) -> list[dict]:
    """Every record that parses, in file order (for display; `verify` checks them)."""
    out = []
    try:
        for _, line in read(run_id):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    except FileNotFoundError:
        pass
    return out


def load_since(run_id: str, offset: int = 0, ident: tuple[int, int] | None = None):
    """The records appended to the run's stream since byte ``offset`` of the file ``ident``
    (what an earlier call returned): ``(ident, offset read up to, records, restarted)``, the
    records those that parse, in file order, and only whole lines (a line being written is
    read next time). A different file (replaced) or a shorter one (truncated) is read from its
    start, and ``restarted`` says so: what the caller kept from before no longer holds."""
    try:
        fh = open(paths.receipts_file(run_id), "rb")
    except FileNotFoundError:
        return None, 0, [], ident is not None or offset != 0
    with fh:
        st = os.fstat(fh.fileno())
        now = (st.st_dev, st.st_ino)
        restarted = now != ident or st.st_size < offset
        if restarted:
            offset = 0
        fh.seek(offset)
        data = fh.read(max(0, st.st_size - offset))
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return now, offset + end, out, restarted


def copy_stream(run_id: str, out) -> int:
    """Copy the run's stream to binary file ``out`` byte for byte; returns its size."""
    path = paths.receipts_file(run_id)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise AgentsessError(
            f"run {run_id} has no receipt stream ({path} is missing); `agentsess verify {run_id}` says more",
            STATE,
        ) from None
    size = 0
    with fh:
        while block := fh.read(1 << 20):
            out.write(block)
            size += len(block)
    return size
