"""The MCP proxy's plumbing: the server process, the two pipes and the two threads.

:func:`start_server` starts the stdio MCP server; :class:`LineRelay` moves newline-delimited
lines between the client (our stdin/stdout) and the server, and hands each complete line to
a handler, which alone decides what is written where (:mod:`agentsess.core.guard.mcp`).

Two threads: the caller's thread reads the server's output and calls
``handler.server_line(line)``; a daemon thread reads the client's input and calls
``handler.client_line(line)``, then ``handler.client_done()`` at its end of file. When the
server's output ends, ``handler.finish()`` runs and nothing more is written to the client.
Writes to the client are serialised by a lock; a client that went away is not written to
again (the server is still drained).
"""

import os
import subprocess
import threading

from agentsess.errors import RUN_NOT_EXECUTABLE, RUN_NOT_FOUND, AgentsessError

READ_SIZE = 1 << 18


class LineBuffer:
    """Splits a byte stream into newline-terminated lines (terminator kept), however the
    stream is chunked; each chunk is searched once, so a line of many MB costs O(its size)."""

    __slots__ = ("parts",)

    def __init__(self):
        self.parts: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            self.parts.append(chunk[start : end + 1])
            lines.append(b"".join(self.parts))
            self.parts = []
            start = end + 1
        if start < len(chunk):
            self.parts.append(chunk[start:])
        return lines

    def rest(self) -> bytes:
        """The unterminated tail (at end of file), emptied."""
        tail = b"".join(self.parts)
        self.parts = []
        return tail


def lines(fd: int):
    """Yield each line read from ``fd``, then any unterminated rest at end of file."""
    buffer = LineBuffer()
    while True:
        chunk = os.read(fd, READ_SIZE)
        if not chunk:
            tail = buffer.rest()
            if tail:
                yield tail
            return
        yield from buffer.feed(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def start_server(command: list[str], env=None) -> subprocess.Popen:
    """Start the MCP server ``command`` with pipes for its stdin and stdout (stderr is
    ours); :class:`AgentsessError` with code 127 (not found) or 126 (cannot execute)."""
    try:
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env)
    except FileNotFoundError:
        raise AgentsessError(f"mcp-proxy: cannot start the MCP server: {command[0]}: command not found", RUN_NOT_FOUND) from None
    except OSError as exc:
        raise AgentsessError(
            f"mcp-proxy: cannot start the MCP server: {command[0]}: {exc.strerror or exc}", RUN_NOT_EXECUTABLE
        ) from None


class LineRelay:
    """One session between the client (``client_in``/``client_out``) and a server process."""

    def __init__(self, proc: subprocess.Popen, handler, client_in: int = 0, client_out: int = 1):
        self.proc = proc
        self.handler = handler
        self.client_in = client_in
        self.client_out = client_out
        self.out_lock = threading.Lock()
        self.in_lock = threading.Lock()  # a held call is forwarded from its own thread
        self.client_gone = False  # our stdout broke: keep draining the server, write nothing
        self.finished = False  # the session ended: late writes are dropped
        assert proc.stdin is not None and proc.stdout is not None
        self.server_in: int | None = os.dup(proc.stdin.fileno())
        proc.stdin.close()

    def to_client(self, data: bytes) -> None:
        with self.out_lock:
            if self.client_gone or self.finished:
                return
            try:
                _write_all(self.client_out, data)
            except OSError:
                self.client_gone = True

    def to_server(self, data: bytes) -> None:
        with self.in_lock:
            fd = self.server_in
            if fd is None:
                return
            try:
                _write_all(fd, data)
                return
            except OSError:  # the server exited or closed its stdin; its exit ends the session
                pass
        self.close_server_input()

    def close_server_input(self) -> None:
        with self.in_lock:  # never while a held call's thread writes on it (the number could be reused)
            fd, self.server_in = self.server_in, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _pump_client(self) -> None:
        try:
            for line in lines(self.client_in):
                self.handler.client_line(line)
        except OSError:
            pass
        finally:
            self.close_server_input()
            self.handler.client_done()

    def run(self) -> int:
        """Relay until the server's output ends; the server's exit code (128+N for signal N)."""
        reader = threading.Thread(target=self._pump_client, name="mcp-proxy-client", daemon=True)
        reader.start()
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in lines(stdout.fileno()):
                self.handler.server_line(line)
        finally:
            stdout.close()
        code = self.proc.wait()
        self.handler.finish()
        with self.out_lock:
            self.finished = True
        return 128 - code if code < 0 else code
