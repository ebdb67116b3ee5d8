"""A run's output log: the (masked) bytes the child wrote, and when.

``output.log`` holds the bytes exactly as shown (masked); ``timing.log`` one line per chunk,
``<seconds since start> <stream> <bytes>`` with stream ``1`` (stdout or pty) or ``2``
(stderr), and ``<seconds> r <cols>x<rows>`` for a window resize: enough to replay the run
(`agentsess export --format asciicast`). The log keeps a running SHA-256 and byte count,
which the run's final receipt records.

Once the output runs to big chunks (16 KiB or more), writing ``output.log`` and hashing it
move to a writer thread (both release the GIL), so that the supervisor's own thread only
reads, masks and shows; the queue between them is bounded (8 blocks). The supervisor's thread
gathers chunks into blocks of up to 1 MiB for it (a pty hands out a few KiB per read: one
hand-over per block, not per chunk), held no longer than :data:`BATCH_FOR` seconds, and the
supervisor hands over what is gathered whenever the child goes quiet (:meth:`OutputLog.flush`),
so a live run's log (`show-run --follow`) lags its terminal by at most that. A write error
there surfaces on the next :meth:`OutputLog.write` or at :meth:`OutputLog.close`.
"""

import hashlib
import os
import time

TYPE_CHECKING = False  # not typing's: 3 ms of every run's start-up
if TYPE_CHECKING:
    from typing import Any

from agentsess.edges import paths
from agentsess.edges.streams import ReceiptError

THREAD_AFTER = 1 << 14  # a chunk this big: writing and hashing move to the writer thread
BATCH = 1 << 20  # bytes gathered into one block for the writer thread
BATCH_FOR = 0.05  # seconds a gathered block waits at most


def open_files(run_id: str) -> tuple[int, int]:
    """File descriptors of a new run's output and timing logs (created 0600, empty)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    data = paths.open_private(paths.output_log(run_id), flags)
    return data, paths.open_private(paths.timing_log(run_id), flags)


class OutputLog:
    """Writes a run's output log. ``fds`` are already-open (output, timing) descriptors: how a
    nested run's supervisor, which cannot open its parent's data root, gets its log."""

    def __init__(self, run_id: str, fds: tuple[int, int] | None = None):
        self.path = paths.output_log(run_id)
        self.timing_path = paths.timing_log(run_id)
        data_fd, timing_fd = fds if fds is not None else open_files(run_id)
        self._data = os.fdopen(data_fd, "wb", 0)
        self._timing = os.fdopen(timing_fd, "w", 1 << 16)
        self.sha = hashlib.sha256()
        self.size = 0
        self.start = time.monotonic()
        self.size_hint: tuple[int, int] | None = None
        self._queue: "Any" = None  # the writer thread's queue.Queue, once output comes in big chunks
        self._thread: "Any" = None
        self._failed: OSError | None = None
        self._batch: list[bytes] = []  # chunks gathered for the writer thread
        self._batched = 0
        self._batch_since = 0.0

    def _store(self, data: bytes) -> None:
        self._data.write(data)
        self.sha.update(data)

    def _writer(self) -> None:
        queue = self._queue
        while True:
            data = queue.get()
            if data is None:
                return
            if self._failed is None:
                try:
                    self._store(data)
                except OSError as exc:
                    self._failed = exc

    def _error(self, exc: OSError) -> ReceiptError:
        return ReceiptError(f"cannot write the output log {self.path}: {exc.strerror or exc}")

    def write(self, stream: int, data: bytes) -> None:
        if self._failed is not None:
            raise self._error(self._failed)
        try:
            now = time.monotonic()
            self._timing.write(f"{now - self.start:.6f} {stream} {len(data)}\n")
            if self._queue is None and len(data) >= THREAD_AFTER:
                import queue
                import threading

                self._queue = queue.Queue(8)
                self._thread = threading.Thread(target=self._writer, name="output-log", daemon=True)
                self._thread.start()
            if self._queue is not None:
                if not self._batch:
                    self._batch_since = now
                self._batch.append(bytes(data))
                self._batched += len(data)
                if self._batched >= BATCH or now - self._batch_since >= BATCH_FOR:
                    self.flush()
            else:
                self._store(data)
        except OSError as exc:
            raise self._error(exc) from None
        self.size += len(data)

    @property
    def flush_due(self) -> float | None:
        """When (time.monotonic) gathered chunks are due to be handed over; None: none are."""
        return self._batch_since + BATCH_FOR if self._batch else None

    def flush(self) -> None:
        """Hand what is gathered to the writer thread (the supervisor calls this when the child
        goes quiet)."""
        if self._batch:
            batch = self._batch
            self._batch, self._batched = [], 0
            self._queue.put(batch[0] if len(batch) == 1 else b"".join(batch))

    def _drain(self) -> None:
        """Wait until the writer thread has written and hashed everything handed to it."""
        if self._thread is not None:
            self.flush()
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def resize(self, cols: int, rows: int) -> None:
        if self.size_hint is None:
            self.size_hint = (cols, rows)
        try:
            self._timing.write(f"{time.monotonic() - self.start:.6f} r {cols}x{rows}\n")
        except OSError as exc:
            raise ReceiptError(f"cannot write the output log {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        self._drain()
        for fh in (self._timing, self._data):
            try:
                fh.close()
            except OSError:
                pass

    def digest(self) -> str:
        self._drain()
        return self.sha.hexdigest()


def file_digest(path: str) -> tuple[int, str]:
    """(size, sha256 hex) of a finished output log, read in chunks."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 20)
            if not block:
                break
            sha.update(block)
            size += len(block)
    return size, sha.hexdigest()


def tail_lines(path: str, count: int = 20, max_bytes: int = 1 << 16) -> bytes:
    """The last ``count`` lines of a log without reading the whole file."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            start = max(0, size - max_bytes)
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return b""
    lines = data.splitlines(keepends=True)
    if start > 0 and lines:
        lines = lines[1:]
    return b"".join(lines[-count:])


def read_timing(path: str):
    """Yield ``(seconds, kind, value)`` from a timing log: kind "1"/"2" with a byte count,
    or "r" with ``(cols, rows)``. Damaged lines are skipped; time never goes backwards."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    last = 0.0
    with fh:
        for line in fh:
            parts = line.split()
            if len(parts) != 3:
                continue
            try:
                secs = float(parts[0])
            except ValueError:
                continue
            if not secs >= last:  # also refuses nan
                secs = last
            last = secs
            kind = parts[1].decode("ascii", "replace")
            if kind == "r":
                cols, sep, rows = parts[2].partition(b"x")
                if not (sep and cols.isdigit() and rows.isdigit()):
                    continue
                yield secs, kind, (int(cols), int(rows))
            elif kind in ("1", "2") and parts[2].isdigit():
                yield secs, kind, int(parts[2])
