"""Code fed by the adversary, run in another process: tree-sitter-bash parsing a command line.

tree-sitter-bash is C code, and the command line is the model's. A crash or a hang in it must
not take the hook down (a hook killed by a signal lets the call through in Claude Code), so
:func:`isolated` runs the work in a forked process and hands back its JSON-able result, or why
there is none: a crash, a hang past the timeout, or nonsense.

A one-shot command forks once per call. A long-lived process (the run's supervisor) keeps a
:class:`Worker` instead (:func:`keep_worker`): one forked copy of itself that answers call after
call. Forking the supervisor cost 3–8 ms of every Bash hook, most of it copying its pages on
write; a call to the worker costs a pipe round trip. It is still another process: a crash or a
hang costs the call in flight (answered as a failure, so the call is denied wherever a rule
looks at its arguments), and the next call starts a new worker. After :data:`RECYCLE` calls a
worker is replaced, so no state builds up in it for long.
"""

import _thread
import json
import os

PARSE_TIMEOUT = 5.0
RECYCLE = 500  # calls a worker answers before a fresh one takes over
FAILED = "the shell parser failed on this command"

_keep = False  # keep_worker() was called: calls go to the worker (started at the first)
_worker: "Worker | None" = None
_starting = _thread.allocate_lock()  # `_thread`, not `threading`: `run` must not import it


def keep_worker() -> None:
    """From now on, isolated calls of this process go to one long-lived worker."""
    global _keep
    _keep = True


def stop_worker() -> None:
    """Stop this process's worker (if any); later calls fork once each again."""
    global _keep, _worker
    with _starting:
        _keep = False
        worker, _worker = _worker, None
    if worker is not None:
        worker.stop()


def _the_worker() -> "Worker | None":
    global _worker
    with _starting:
        if _keep and _worker is None:
            _worker = Worker()
        return _worker


def isolated(fn, arg, timeout: float | None = None, prepare=None):
    """``fn(arg)`` computed in another process, its JSON-able result handed back:
    ``(True, result)``, or ``(False, why)`` when that process crashed, hung past ``timeout``
    or answered nonsense. ``fn`` is a module-level function (a worker finds it by name);
    ``prepare()`` runs here before a one-shot fork, so that every child inherits what it
    loads (a worker loads it once, in itself)."""
    timeout = PARSE_TIMEOUT if timeout is None else timeout
    worker = _the_worker() if _keep else None
    if worker is not None:
        return worker.call(fn, arg, timeout)
    if prepare is not None:
        prepare()
    return _forked(fn, arg, timeout)


def _forked(fn, arg, timeout: float):
    import select
    import time

    try:
        r, w = os.pipe()
        pid = os.fork()
    except OSError as exc:
        return False, f"the shell parser could not start ({exc.strerror})"
    if pid == 0:  # the child: compute, answer on the pipe, leave without running anything else
        try:
            os.close(r)
            view = memoryview(json.dumps(fn(arg)).encode())
            while view:
                view = view[os.write(w, view):]
            os._exit(0)
        except BaseException:  # noqa: BLE001 - whatever happens, the child never returns
            os._exit(3)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                timed_out = True
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        if timed_out:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        status: int | None
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            # a supervisor reaps every child of its own (it is a subreaper): the answer on the
            # pipe then decides, and a child that died mid-answer left no complete JSON object
            status = None
    if timed_out:
        return False, f"the shell parser took longer than {timeout:g}s"
    if status is not None and (not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0):
        return False, FAILED
    try:
        return True, json.loads(b"".join(chunks))
    except ValueError:
        return False, FAILED


class _Lost(Exception):
    """The worker died, hung or answered nonsense: the call in flight fails, the worker goes."""


class Worker:
    """A forked copy of this process that answers :func:`isolated` calls one after another.

    A request is ``[module, function name, argument]`` as JSON, an answer ``0`` and the result
    as JSON (``1`` when the function raised), each behind its length (4 bytes, big-endian), on
    two pipes only this process holds the other ends of. One call at a time (a lock): a call
    takes microseconds, and only the run's own agent can make one slow.

    In the worker, every signal but a fault's is blocked: a terminal's ^C is the supervisor's
    to forward, and the handlers it inherited would write to the supervisor's wake-up pipe. It holds no
    descriptor of the supervisor's but its two pipes (a control socket or a pty master held
    open by it would keep a run's clients or terminal waiting). It is stopped with SIGKILL
    through a pidfd (never a reused pid), and leaves by itself when its request pipe closes
    (the supervisor is gone). It inherits the supervisor's not-dumpable flag (no exec)."""

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()
        self.pid: int | None = None
        self.pidfd = self.requests = self.answers = -1
        self.calls = 0

    def call(self, fn, arg, timeout: float):
        import time

        request = json.dumps([fn.__module__, fn.__qualname__, arg]).encode()
        with self.lock:
            if self.pid is None:
                why = self._start()
                if why is not None:
                    return False, why
            deadline = time.monotonic() + timeout
            try:
                self._send(len(request).to_bytes(4, "big") + request, deadline)
                size = int.from_bytes(self._receive(4, deadline), "big")
                answer = self._receive(size, deadline)
            except _Lost as exc:
                self.stop()
                return False, str(exc) or f"the shell parser took longer than {timeout:g}s"
            self.calls += 1
            if self.calls >= RECYCLE:
                self.stop()
        if answer[:1] != b"0":
            return False, FAILED
        try:
            return True, json.loads(answer[1:])
        except ValueError:
            return False, FAILED

    def _start(self) -> str | None:
        fds: list[int] = []
        try:
            fds += os.pipe()
            fds += os.pipe()
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            return f"the shell parser could not start ({exc.strerror})"
        req_r, req_w, ans_r, ans_w = fds
        if pid == 0:
            try:
                _serve(req_r, ans_w)
            finally:
                os._exit(0)
        os.close(req_r)
        os.close(ans_w)
        try:
            self.pidfd = os.pidfd_open(pid)
        except OSError:
            self.pidfd = -1  # no pidfd (an old kernel): the worker is still stopped by its pipe
        os.set_blocking(req_w, False)
        os.set_blocking(ans_r, False)
        self.pid, self.requests, self.answers, self.calls = pid, req_w, ans_r, 0
        return None

    def _send(self, data: bytes, deadline: float) -> None:
        import select
        import time

        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [self.requests], [], left)[1]:
                raise _Lost()  # past the deadline
            try:
                view = view[os.write(self.requests, view):]
            except BlockingIOError:
                continue
            except OSError:
                raise _Lost(FAILED) from None

    def _receive(self, size: int, deadline: float) -> bytes:
        import select
        import time

        if size > 64 << 20:
            raise _Lost(FAILED)
        chunks, got = [], 0
        while got < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.answers], [], [], left)[0]:
                raise _Lost()  # past the deadline
            try:
                chunk = os.read(self.answers, min(size - got, 1 << 20))
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                raise _Lost(FAILED)  # the worker died mid-call
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def stop(self) -> None:
        """SIGKILL the worker and let go of it (safe to call twice)."""
        if self.pid is None:
            return
        import signal

        pid, self.pid = self.pid, None
        if self.pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for fd in (self.requests, self.answers, self.pidfd):
            if fd >= 0:
                os.close(fd)
        self.pidfd = self.requests = self.answers = -1
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # the supervisor's own reaper collected it


def _serve(requests: int, answers: int) -> None:
    """The worker's life: answer requests until the request pipe closes."""
    import signal
    import sys

    global _keep, _worker
    _keep, _worker = False, None  # the parent's, copied: calls made in here fork once each

    # signals sent to it are blocked; a fault of its own (SIGSEGV, SIGBUS…) still ends it
    faults = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT, signal.SIGTRAP,
              signal.SIGSYS}
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - faults)
    from agentsess.edges.supervisor import close_all_but

    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    close_all_but((requests, answers))  # /dev/null's own descriptor too
    os.set_blocking(requests, True)
    os.set_blocking(answers, True)
    while True:
        head = _read_exact(requests, 4)
        body = _read_exact(requests, int.from_bytes(head, "big")) if head is not None else None
        if body is None:
            return
        try:
            module, name, arg = json.loads(body)
            fn = getattr(sys.modules[module], name)
            out = b"0" + json.dumps(fn(arg)).encode()
        except BaseException:  # noqa: BLE001 - a failed call is an answer, never the worker's end
            out = b"1"
        view = memoryview(len(out).to_bytes(4, "big") + out)
        while view:
            view = view[os.write(answers, view):]


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, got = [], 0
    while got < size:
        chunk = os.read(fd, size - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
