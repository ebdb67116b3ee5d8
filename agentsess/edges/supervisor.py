"""The supervisor owns the child process and the user's terminal while a run is live.

Pty mode: the child gets a new session on a fresh pty with the user's window size; the
user's terminal is raw for the duration (restored on every path); keystrokes and SIGWINCH
reach the child. Pipe mode: the child's stdout and stderr are separate pipes, its stdin is
ours, and it runs in its own process group (made the terminal's foreground group when we
had it), so the terminal's own signals reach it once and ours are forwarded once.

Every chunk the child writes passes through one choke point, :meth:`Supervisor._emit`:
masking, then the output log, then the terminal. Signals arrive through a wakeup fd watched
by the same ``select`` loop as the child's output.
"""

import errno
import os
import select
import signal
import struct
import time

CHUNK = 1 << 20  # most bytes taken from a pipe at once
PTY_BURST = 1 << 16  # from a pty: what is there now, up to 64 KiB (fewer wake-ups; a pty read gives <= 4 KiB)
FLUSH_AFTER = 0.03  # after this idle time, held bytes that cannot start a secret are let out
DRAIN_IDLE = 0.2  # after the child is reaped, stop reading output after this long idle
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
ESCALATING = (signal.SIGTERM, signal.SIGHUP)
HANDLED = FORWARDED + (signal.SIGCHLD, signal.SIGWINCH, signal.SIGUSR1)


class ExecFailed(Exception):
    def __init__(self, code: int, err: int):
        super().__init__(os.strerror(err))
        self.code = code
        self.errno = err


def find_executable(name: str, env_path: str | None) -> str:
    """The path exec would run for ``name``; raises ExecFailed(127|126) like `env`."""
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in (env_path or os.defpath).split(":")]
    denied = None
    for path in candidates:
        if os.path.isdir(path):
            denied = denied or path
            continue
        if os.path.exists(path):
            if os.access(path, os.X_OK):
                return path
            denied = denied or path
    if denied:
        raise ExecFailed(126, errno.EACCES)
    raise ExecFailed(127, errno.ENOENT)


def _winsize(fd: int) -> bytes | None:
    import fcntl
    import termios

    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None


def _controlling_fd() -> int | None:
    """One of our standard fds on a terminal whose foreground group is ours, if any."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return fd
        except OSError:
            continue
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except InterruptedError:
            continue
        view = view[n:]


def _read_burst(fd: int, limit: int = CHUNK) -> bytes | None:
    """Everything readable on non-blocking ``fd`` now, up to ``limit``: a pty hands out a few KiB
    per read, and masking, logging and showing once per burst instead of per read is what
    keeps pty mode near `script`'s speed. Returns b"" at end of file (EIO on a pty), None
    when there was nothing to read after all."""
    parts = []
    size = 0
    while size < limit:
        try:
            part = os.read(fd, limit - size)
        except BlockingIOError:
            if not parts:
                return None  # a spurious wake-up: nothing to read after all
            break
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EBADF):
                raise
            part = b""
        if not part:
            break  # end of file: reported now if nothing came before it, else on the next read
        parts.append(part)
        size += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _keep_heap() -> None:
    """Keep freed buffers in the heap for reuse: without this, glibc maps every MB-sized read
    afresh and returns it at once, and the page faults cost as much system time as the copies
    themselves (mallopt M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: blocks up to 64 MiB come from the heap
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: do not give the heap back at once
        libc.mallopt(-2, 16 << 20)  # M_TOP_PAD: grow it in 16 MiB steps
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Runs one child transparently. ``run()`` returns ``(exit_code, signal)``."""

    def __init__(
        self,
        argv: list[str],
        env: dict,
        *,
        use_pty: bool,
        log=None,
        maskers=None,
        mask_terminal: bool = True,
        tick=None,
        tick_interval: float = 0.5,
        grace: float = 5.0,
    ):
        self.argv = argv
        self.env = env
        self.use_pty = use_pty
        self.log = log
        # one masker per output stream (1: stdout or pty, 2: stderr); None means passthrough
        self.maskers = maskers or {}
        self.mask_terminal = mask_terminal
        self.tick = tick
        self.tick_interval = tick_interval
        self.grace = grace
        self.pid = None
        self.pgid = None
        self.status = None
        self.kill_at = None
        self.term_count = 0
        self.on_start = None
        self._outputs = {}  # fd we read -> (stream number, terminal fd)
        self._terminal_ok = {1: True, 2: True}
        self._pending_flush = None
        self._subreaper = False
        self._heap_kept = False

    # -- spawning ---------------------------------------------------------------------

    def _child(self, slave: int | None, out_w, err_w, errpipe_w: int, fg_fd: int | None) -> None:
        """In the forked child: never returns."""
        try:
            for sig in HANDLED:
                signal.signal(sig, signal.SIG_DFL)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTTOU, signal.SIGTTIN, signal.SIGTSTP):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            if slave is not None:
                import fcntl
                import termios

                os.setsid()
                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                for fd in (0, 1, 2):
                    os.dup2(slave, fd)
                if slave > 2:
                    os.close(slave)
            else:
                os.setpgid(0, 0)
                if fg_fd is not None:
                    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                    try:
                        os.tcsetpgrp(fg_fd, os.getpgrp())
                    except OSError:
                        pass
                    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                try:
                    import ctypes

                    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
                except Exception:
                    pass
            os.execvpe(self.argv[0], self.argv, self.env)
        except OSError as exc:
            code = 127 if exc.errno == errno.ENOENT else 126
            try:
                os.write(errpipe_w, f"{code}:{exc.errno}".encode())
            finally:
                os._exit(code)
        except BaseException:
            os._exit(125)
        os._exit(125)

    def _spawn(self) -> None:
        errpipe_r, errpipe_w = os.pipe2(os.O_CLOEXEC)
        slave = out_w = err_w = None
        fg_fd = None
        if self.use_pty:
            master, slave = os.openpty()
            size = _winsize(1) or _winsize(0) or _winsize(2)
            if size:
                import fcntl
                import termios

                fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
                if self.log is not None:
                    rows, cols = struct.unpack("HHHH", size)[:2]
                    self.log.resize(cols, rows)
            self._outputs = {master: (1, 1)}
            self.master = master
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            for fd in (out_r, err_r):
                try:
                    import fcntl

                    fcntl.fcntl(fd, 1031, CHUNK)  # F_SETPIPE_SZ: fewer, larger reads
                except OSError:
                    pass
            self._outputs = {out_r: (1, 1), err_r: (2, 2)}
            self.master = None
            fg_fd = _controlling_fd()
        pid = os.fork()
        if pid == 0:
            os.close(errpipe_r)
            self._child(slave, out_w, err_w, errpipe_w, fg_fd)
        os.close(errpipe_w)
        for fd in (slave, out_w, err_w):
            if fd is not None:
                os.close(fd)
        self.pid = pid
        if not self.use_pty:
            try:
                os.setpgid(pid, pid)
            except OSError:
                pass
            self._fg_fd = fg_fd
            if fg_fd is not None:
                self._give_terminal(fg_fd, pid)
        else:
            self._fg_fd = None
        self.pgid = pid
        for fd in self._outputs:
            os.set_blocking(fd, False)
        # exec failure report (or EOF once exec succeeded)
        report = b""
        while True:
            try:
                part = os.read(errpipe_r, 64)
            except InterruptedError:
                continue
            if not part:
                break
            report += part
        os.close(errpipe_r)
        if report:
            code, err = report.decode().split(":")
            os.waitpid(pid, 0)
            for fd in self._outputs:
                os.close(fd)
            if self._fg_fd is not None:
                self._give_terminal(self._fg_fd, os.getpgrp())
            raise ExecFailed(int(code), int(err))

    @staticmethod
    def _give_terminal(fd: int, pgrp: int) -> None:
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(fd, pgrp)
        except OSError:
            pass
        finally:
            signal.signal(signal.SIGTTOU, old)

    # -- control ----------------------------------------------------------------------

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the child's process group; False when the group is gone."""
        if self.pgid is None:
            return False
        try:
            os.killpg(self.pgid, sig)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return False

    def group_alive(self) -> bool:
        return self.signal_group(0)

    def stop(self, grace: float | None = None, signal: int = signal.SIGTERM) -> None:
        """Signal (TERM) the child's process group now and KILL it after ``grace`` seconds."""
        self._become_subreaper()
        self.signal_group(signal)
        deadline = time.monotonic() + (self.grace if grace is None else grace)
        if self.kill_at is None or deadline < self.kill_at:
            self.kill_at = deadline

    def kill(self) -> None:
        self._become_subreaper()
        self.signal_group(signal.SIGKILL)
        self.kill_at = None

    # -- the loop ---------------------------------------------------------------------

    def _emit(self, stream: int, data: bytes, flush: bool | str = False) -> None:
        """The one choke point for the child's output: mask, log, show."""
        masker = self.maskers.get(stream)
        if masker is not None:
            if flush == "idle":
                masked = masker.release()  # only what cannot start a secret (see masking)
            else:
                masked = masker.flush() if flush else masker.feed(data)
            if masker.releasable:
                self._pending_flush = time.monotonic() + FLUSH_AFTER
        else:
            masked = data
        if masked and self.log is not None:
            self.log.write(stream, masked)
        shown = masked if (self.mask_terminal or masker is None) else data
        if shown and self._terminal_ok.get(stream):
            try:
                _write_all(stream, shown)
            except BrokenPipeError:
                self._terminal_ok[stream] = False
            except OSError as exc:
                if exc.errno not in (errno.EIO, errno.EBADF):
                    raise
                self._terminal_ok[stream] = False

    def _flush_maskers(self, idle: bool = False) -> None:
        self._pending_flush = None
        for stream, masker in self.maskers.items():
            if masker is not None and masker.pending:
                self._emit(stream, b"", flush="idle" if idle else True)

    def _resize(self) -> None:
        size = _winsize(1) or _winsize(0)
        if size and self.master is not None:
            import fcntl
            import termios

            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
            if self.log is not None:
                rows, cols = struct.unpack("HHHH", size)[:2]
                self.log.resize(cols, rows)
            self.signal_group(signal.SIGWINCH)

    def _reap(self) -> None:
        """Collect exited children: ours, and orphans handed to us once we are a subreaper."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                if self.status is None:
                    self.status = 0
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = status

    def _become_subreaper(self) -> None:
        """Orphans of the child's group become ours to reap, so "the group is gone" is seen at
        once instead of when init gets round to reaping them (PR_SET_CHILD_SUBREAPER)."""
        if self._subreaper:
            return
        self._subreaper = True
        try:
            import ctypes

            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
        except Exception:
            pass

    def _on_signal(self, sig: int) -> None:
        if sig == signal.SIGCHLD:
            self._reap()
        elif sig == signal.SIGWINCH:
            self._resize()
        elif sig == signal.SIGUSR1:
            if self.tick is not None:
                self.tick(self)
        elif sig in FORWARDED:
            if sig in ESCALATING:
                self.term_count += 1
                if self.term_count >= 2:
                    self.kill()
                    return
                self.stop(signal=sig)
            else:
                self.signal_group(sig)

    def run(self) -> tuple[int | None, int | None]:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_handlers = {sig: signal.signal(sig, lambda s, f: None) for sig in HANDLED}
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        raw_fd, raw_attrs = None, None
        try:
            self._spawn()
            if self.on_start is not None:
                self.on_start(self)
            stdin_fd = None
            if self.use_pty:
                stdin_fd = 0
                try:
                    if os.isatty(0):
                        import termios
                        import tty

                        raw_attrs = termios.tcgetattr(0)
                        tty.setraw(0, termios.TCSANOW)
                        raw_fd = 0
                except OSError:
                    pass
                try:
                    os.fstat(0)
                except OSError:
                    stdin_fd = None
            try:
                self._loop(wake_r, stdin_fd)
            except BaseException:
                if self.status is None:
                    self.kill()
                    _, self.status = os.waitpid(self.pid, 0)
                raise
        finally:
            if raw_fd is not None:
                import termios

                try:
                    termios.tcsetattr(raw_fd, termios.TCSAFLUSH, raw_attrs)
                except OSError:
                    pass
            if getattr(self, "_fg_fd", None) is not None:
                self._give_terminal(self._fg_fd, os.getpgrp())
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            os.close(wake_r)
            os.close(wake_w)
            for fd in list(self._outputs):
                try:
                    os.close(fd)
                except OSError:
                    pass
        status = self.status or 0
        if os.WIFSIGNALED(status):
            return None, os.WTERMSIG(status)
        return os.WEXITSTATUS(status), None

    def _loop(self, wake_r: int, stdin_fd: int | None) -> None:
        outputs = self._outputs
        next_tick = time.monotonic() + self.tick_interval
        idle_since = None
        self._reap()
        while True:
            now = time.monotonic()
            if self.status is not None:
                if idle_since is None:
                    idle_since = now
                drained = not outputs or now - idle_since >= DRAIN_IDLE
                if drained and (self.kill_at is None or not self.group_alive()):
                    break
            if self.kill_at is not None and now >= self.kill_at:
                self.kill()
            if self.tick is not None and now >= next_tick:
                next_tick = now + self.tick_interval
                self.tick(self)
            if self.status is not None and self.kill_at is not None and not self.group_alive():
                self.kill_at = None
            deadlines = [next_tick if self.tick is not None else now + 1.0]
            if self.kill_at is not None:
                deadlines.append(self.kill_at)
            if self._pending_flush is not None:
                deadlines.append(self._pending_flush)
            if self.status is not None:
                deadlines.append((idle_since or now) + DRAIN_IDLE)
            timeout = max(0.0, min(deadlines) - now)
            watch = [wake_r, *outputs]
            if stdin_fd is not None:
                watch.append(stdin_fd)
            try:
                ready, _, _ = select.select(watch, [], [], timeout)
            except InterruptedError:
                continue
            if not ready:
                if self._pending_flush is not None and time.monotonic() >= self._pending_flush:
                    self._flush_maskers(idle=True)
                continue
            for fd in ready:
                if fd == wake_r:
                    try:
                        sigs = os.read(wake_r, 64)
                    except BlockingIOError:
                        sigs = b""
                    for sig in sigs:
                        self._on_signal(sig)
                elif fd == stdin_fd:
                    try:
                        data = os.read(stdin_fd, 65536)
                    except OSError:
                        data = b""
                    if not data:
                        stdin_fd = None
                    elif self.master is not None:
                        try:
                            _write_all(self.master, data)
                        except OSError:
                            stdin_fd = None
                else:
                    data = _read_burst(fd, PTY_BURST if fd == self.master else CHUNK)
                    if data is None:
                        continue
                    stream = outputs[fd][0]
                    if data:
                        if len(data) >= 1 << 16 and not self._heap_kept:
                            self._heap_kept = True  # much output: worth keeping buffers
                            _keep_heap()
                        idle_since = None
                        self._emit(stream, data)
                        if not self._terminal_ok.get(stream, True) and self.master is None:
                            os.close(fd)  # the reader went away: the child gets SIGPIPE, as in a pipeline
                            del outputs[fd]
                    else:
                        os.close(fd)
                        del outputs[fd]
                        masker = self.maskers.get(stream)
                        if masker is not None and masker.pending:
                            self._emit(stream, b"", flush=True)
        self._flush_maskers()
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)
