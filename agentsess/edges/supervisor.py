"""The supervisor owns the child process and the user's terminal while a run is live.

Pty mode: the child gets a new session on a fresh pty with the user's window size; the
user's terminal is raw for the duration (restored on every path); keystrokes and SIGWINCH
reach the child. Pipe mode: the child's stdout and stderr are separate pipes, its stdin is
ours, and it runs in its own process group (made the terminal's foreground group when we
had it), so the terminal's own signals reach it once and ours are forwarded once.

Every chunk the child writes passes through one choke point, :meth:`Supervisor._emit`:
masking, then the output log, then the terminal (:class:`Terminal`, which also holds
agentsess's notices while the child's full-screen program is up; :func:`notice`). Signals arrive through a wakeup fd watched
by the same ``select`` loop as the child's output. A pty child that writes faster than one
burst gets a relay: a forked copy of the supervisor that only moves the pty's bytes into a pipe
this loop reads, so that reading the pty never waits for masking (:meth:`Supervisor._start_relay`).
"""

import contextlib
import errno
import gc
import os
import re
import select
import signal
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

CHUNK = 1 << 20  # most bytes taken from a pipe at once
PTY_BURST = 1 << 16  # from a pty: what is there now, up to 64 KiB (fewer wake-ups; a pty read gives <= 4 KiB)
RELAY_BURST = 1 << 18  # the pty relay hands what is there now to the supervisor, up to 256 KiB a write
FLUSH_AFTER = 0.03  # after this idle time, held bytes that cannot start a secret are let out
DRAIN_IDLE = 0.2  # after the child is reaped, stop reading output after this long idle
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
ESCALATING = (signal.SIGTERM, signal.SIGHUP)
HANDLED = FORWARDED + (signal.SIGCHLD, signal.SIGWINCH, signal.SIGUSR1)
# prctl(2) options and fcntl(2) commands the standard library does not name
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031
# the alternate screen (xterm private modes 47, 1047, 1049), set (h) or reset (l); a private mode
# sequence may set several modes at once (ESC [ ? 1049 ; 2004 h)
_SCREEN = re.compile(rb"\x1b\[\?([0-9;]*)([hl])")
_SCREEN_MODES = frozenset((b"47", b"1047", b"1049"))
_SCREEN_CUT = re.compile(rb"\x1b(?:\[(?:\?[0-9;]{0,32})?)?\Z")  # such a sequence cut off by a read


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
    parts: list[bytes] = []
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


def _relay(master: int, out: int) -> int:
    """The pty relay's loop (see :meth:`Supervisor._start_relay`): the child's output, as it
    comes, from the pty ``master`` to the supervisor's pipe ``out``, in bursts. Returns the
    relay's exit code: 0 at the pty's end, 1 when the supervisor no longer reads."""
    wait, burst, write = select.select, _read_burst, _write_all
    while True:
        wait([master], [], [])
        data = burst(master, RELAY_BURST)
        if data is None:
            continue
        if not data:
            return 0
        try:
            write(out, data)
        except OSError:
            return 1


@contextlib.contextmanager
def raw_terminal(fd: int):
    """The terminal on ``fd`` in raw mode for the block, restored on every way out; a no-op
    when ``fd`` is not a terminal."""
    import termios
    import tty

    try:
        saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    except (OSError, termios.error):
        saved = None
    if saved is not None:
        tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        if saved is not None:
            try:
                termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
            except (OSError, termios.error):
                pass


@contextlib.contextmanager
def signal_wakeup(signals):
    """Route ``signals`` to a non-blocking pipe for the block (a self-pipe the ``select`` loop
    watches); yields its read end. Handlers and the old wake-up fd are restored after."""
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_handlers = {sig: signal.signal(sig, lambda s, f: None) for sig in signals}
    old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    try:
        yield wake_r
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        os.close(wake_r)
        os.close(wake_w)


def _prctl(option: int, arg: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(option, arg, 0, 0, 0)
    except Exception:
        pass


def not_dumpable() -> None:
    """No core dumps, no ptrace and no /proc/PID/{environ,mem} for same-user processes."""
    _prctl(PR_SET_DUMPABLE, 0)


def become_subreaper() -> None:
    """Orphaned descendants become this process's children (PR_SET_CHILD_SUBREAPER), so none
    escapes to init by a double fork or setsid."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def close_all_but(keep, top: int | None = None) -> None:
    """In a forked helper (the pty relay, the parser worker): close every descriptor from 3 up
    (below ``top``, the open-file limit) except those in ``keep``."""
    top = os.sysconf("SC_OPEN_MAX") if top is None else top
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, max(top, low))


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (read from /proc), deepest last."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields and fields[0] == b"Z":
            continue
        parents.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def kill_descendants(rounds: int = 50) -> int:
    """SIGKILL every process below this one until none is left; returns how many were killed."""
    killed = 0
    me = os.getpid()
    for _ in range(rounds):
        left = descendants(me)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.005)
    return killed


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


class Terminal:
    """The user's terminal as a run's supervisor writes to it: the child's (masked) output on
    streams 1 and 2, and agentsess's own notices.

    :meth:`notice` is the one way anything in the supervisor tells the user something while the
    run is live (revocation, expiry, an approval waiting). In pty mode a notice is held while the
    child's alternate screen is up (a full-screen program: ``ESC [ ? 1049 h``, ``?1047``, ``?47``,
    tracked in what is shown, across reads) and written once the child leaves it, or when the run
    ends (:meth:`close`): written onto a full-screen program, it would corrupt its screen.
    Notices may come from other threads (the control socket's); output and notices are
    written under one lock, so a notice never lands inside a chunk of output.

    Showing is done on the supervisor's thread. (A writer thread for the terminal was measured:
    reading the child's pty and writing ours then overlap, but its hand-overs cost ~15% more CPU
    time per MB, which on a busy machine is slower; see bench/README.md.)
    """

    def __init__(self, screen: bool = False, fds: dict | None = None):
        import _thread  # not threading: `run` never imports it (see tests/test_startup.py)

        self.fds = fds or {1: 1, 2: 2}  # stream -> the descriptor it is shown on
        self._lock = _thread.allocate_lock()  # notices may come from the control socket's threads
        self.ok = {1: True, 2: True}  # False once writing to it failed (EPIPE, EIO): stop showing
        self.screen = screen  # track the child's alternate screen (pty mode)
        self.alternate = False  # the child's alternate screen is up
        self.held: list[bytes] = []  # notices waiting for the child to leave it
        self._tail = b""  # a cut-off private mode sequence at the end of the last chunk

    # -- output ----------------------------------------------------------------------------

    def show(self, stream: int, data: bytes) -> None:
        """Show the child's (masked) output ``data`` on ``stream``."""
        with self._lock:
            self._show(stream, data)

    def _show(self, stream: int, data: bytes) -> None:
        if self.screen:
            self._track(data)
        if self.ok.get(stream):
            self._write(stream, data, False)
        if self.held and not self.alternate:
            self._release()

    def _track(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
            self._tail = b""
        if data.find(b"\x1b") < 0:
            return
        if data.find(b"\x1b[?") >= 0:
            for m in _SCREEN.finditer(data):
                if _SCREEN_MODES.intersection(m.group(1).split(b";")):
                    self.alternate = m.group(2) == b"h"
        cut = _SCREEN_CUT.search(data, max(0, len(data) - 40))
        if cut is not None:
            self._tail = data[cut.start():]

    # -- notices ---------------------------------------------------------------------------

    def notice(self, text: str) -> None:
        """One line for the user on stderr: now, or once the child's alternate screen is down."""
        line = _notice_line(text, self.fds[2])
        with self._lock:
            if self.alternate:
                self.held.append(line)
            else:
                self._write(2, line, True)

    def _release(self) -> None:
        held, self.held = self.held, []
        for line in held:
            self._write(2, line, True)

    # -- writing -----------------------------------------------------------------------------

    def _write(self, stream: int, data: bytes, notice: bool) -> None:
        if notice:
            try:
                _write_all(self.fds[2], data)
            except OSError:
                pass  # a notice that cannot be shown is still recorded by whoever gave it
            return
        if not self.ok.get(stream):
            return
        try:
            _write_all(self.fds[stream], data)
        except BrokenPipeError:
            self.ok[stream] = False
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EBADF):
                raise
            self.ok[stream] = False

    def close(self) -> None:
        """The run is over: held notices are shown now."""
        with self._lock:
            self.alternate = False
            self._release()


_live: list = []  # the terminal of the run this process supervises now, if any


def notice(text: str) -> None:
    """Tell the user ``text`` (one line on stderr, ``agentsess: …``): through the live run's
    terminal when this process supervises one (held while its child's full-screen program is up,
    see :class:`Terminal`), else at once. The one notice function of a run's supervisor: the
    watch (revocation, expiry) and whatever asks the user something during a run use it."""
    if _live:
        _live[-1].notice(text)
        return
    try:
        _write_all(2, _notice_line(text))
    except OSError:
        pass


def _notice_line(text: str, fd: int = 2) -> bytes:
    try:
        end = "\r\n" if os.isatty(fd) else "\n"
    except OSError:
        end = "\n"
    return f"agentsess: {text}{end}".encode(errors="replace")


class Supervisor:
    """Runs one child transparently. ``run()`` returns ``(exit_code, signal)``.

    ``keep_fds`` stay open in the child (for bubblewrap's info fd); with
    ``die_with_supervisor`` the child gets SIGKILL when this process dies (pipe mode always
    has it; a pty child gets SIGHUP from its terminal instead). A ``wrapper`` child ignores
    the forwarded signals itself (its command, in the same process group, receives them).
    """

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
        keep_fds: tuple = (),
        die_with_supervisor: bool = False,
        wrapper: bool = False,
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
        self.keep_fds = tuple(keep_fds)
        self.die_with_supervisor = die_with_supervisor or not use_pty
        # argv[0] runs the real command below it (bubblewrap): it ignores the forwarded signals,
        # which reach the command through the process group
        self.wrapper = wrapper
        self.pid: int | None = None
        self.pgid: int | None = None
        self.sandbox_pid: int | None = None  # a contained run's namespace: all of it dies with this pid
        self.status: int | None = None
        self.kill_at: float | None = None
        self.term_count = 0
        self.on_start: Callable[[Supervisor], None] | None = None
        self.master: int | None = None
        self._fg_fd: int | None = None
        self._stdin_fd: int | None = None
        self._outputs: dict[int, int] = {}  # fd we read -> stream number (1 or 2)
        self.terminal = Terminal(screen=use_pty)
        self._pending_flush: float | None = None
        self._idle_since: float | None = None
        self._next_tick = 0.0
        self._subreaper = False
        self._heap_kept = False
        self._relayed = False  # a pty relay was started (see _start_relay): never a second one
        self._relay_pid: int | None = None  # the relay, until reaped
        self._relay_out: int | None = None  # the pipe we read it from, while we do

    # -- spawning ---------------------------------------------------------------------

    def _child(self, slave: int | None, out_w: int | None, err_w: int | None, errpipe_w: int) -> None:
        """In the forked child: never returns."""
        try:
            for sig in HANDLED:
                signal.signal(sig, signal.SIG_DFL)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTTOU, signal.SIGTTIN, signal.SIGTSTP):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            if slave is not None:
                self._child_on_pty(slave)
            else:
                assert out_w is not None and err_w is not None
                self._child_on_pipes(out_w, err_w)
            if self.die_with_supervisor:
                _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if self.wrapper:
                for sig in FORWARDED:
                    signal.signal(sig, signal.SIG_IGN)
            for fd in self.keep_fds:
                os.set_inheritable(fd, True)
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

    @staticmethod
    def _child_on_pty(slave: int) -> None:
        import fcntl
        import termios

        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)

    def _child_on_pipes(self, out_w: int, err_w: int) -> None:
        os.setpgid(0, 0)
        if self._fg_fd is not None:
            signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                os.tcsetpgrp(self._fg_fd, os.getpgrp())
            except OSError:
                pass
            signal.signal(signal.SIGTTOU, signal.SIG_DFL)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)

    def _open_pty(self) -> int:
        """A pty sized like the user's terminal; returns the slave (the master is ours)."""
        master, slave = os.openpty()
        size = _winsize(1) or _winsize(0) or _winsize(2)
        if size:
            import fcntl
            import termios

            fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
            if self.log is not None:
                rows, cols = struct.unpack("HHHH", size)[:2]
                self.log.resize(cols, rows)
        self._outputs = {master: 1}
        self.master = master
        return slave

    def _open_pipes(self) -> tuple[int, int]:
        """Separate stdout and stderr pipes; returns their write ends (the read ends are ours)."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        for fd in (out_r, err_r):
            try:
                import fcntl

                fcntl.fcntl(fd, F_SETPIPE_SZ, CHUNK)  # fewer, larger reads
            except OSError:
                pass
        self._outputs = {out_r: 1, err_r: 2}
        self._fg_fd = _controlling_fd()
        return out_w, err_w

    def _spawn(self) -> None:
        errpipe_r, errpipe_w = os.pipe2(os.O_CLOEXEC)
        slave = out_w = err_w = None
        if self.use_pty:
            slave = self._open_pty()
        else:
            out_w, err_w = self._open_pipes()
        pid = os.fork()
        if pid == 0:
            os.close(errpipe_r)
            self._child(slave, out_w, err_w, errpipe_w)
        os.close(errpipe_w)
        for fd in (slave, out_w, err_w):
            if fd is not None:
                os.close(fd)
        self.pid = self.pgid = pid
        if not self.use_pty:
            try:
                os.setpgid(pid, pid)
            except OSError:
                pass
            if self._fg_fd is not None:
                self._give_terminal(self._fg_fd, pid)
        for fd in self._outputs:
            os.set_blocking(fd, False)
        self._await_exec(errpipe_r)

    def _await_exec(self, errpipe_r: int) -> None:
        """Wait for exec: EOF on the close-on-exec pipe, or the child's report of why it failed."""
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
            assert self.pid is not None
            os.waitpid(self.pid, 0)
            for fd in self._outputs:
                os.close(fd)
            self._outputs = {}
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
        except (ProcessLookupError, PermissionError):
            return False

    def group_alive(self) -> bool:
        return self.signal_group(0)

    def stop(self, grace: float | None = None, sig: int = signal.SIGTERM) -> None:
        """Signal (TERM) the child's process group now and KILL it after ``grace`` seconds."""
        self._become_subreaper()
        self.signal_group(sig)
        deadline = time.monotonic() + (self.grace if grace is None else grace)
        if self.kill_at is None or deadline < self.kill_at:
            self.kill_at = deadline

    def kill(self) -> None:
        """KILL the child's group and, for a contained run, its whole namespace."""
        self._become_subreaper()
        self.signal_group(signal.SIGKILL)
        if self.sandbox_pid is not None:
            try:
                os.kill(self.sandbox_pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.kill_at = None

    def _become_subreaper(self) -> None:
        """Orphans of the child's group become ours to reap, so "the group is gone" is seen at
        once instead of when init gets round to reaping them."""
        if not self._subreaper:
            self._subreaper = True
            become_subreaper()

    # -- output -----------------------------------------------------------------------

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
        if shown:
            self.terminal.show(stream, shown)

    def notice(self, text: str) -> None:
        """Tell the user something while the run is live (see :meth:`Terminal.notice`)."""
        self.terminal.notice(text)

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

    # -- signals and exit ---------------------------------------------------------------

    def _reap(self) -> None:
        """Collect exited children: ours, and orphans handed to us as a subreaper."""
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
            elif pid == self._relay_pid:
                self._relay_pid = None  # its pipe's end tells the loop (see _on_output)

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
                self.stop(sig=sig)
            else:
                self.signal_group(sig)

    def run(self) -> tuple[int | None, int | None]:
        _live.append(self.terminal)
        try:
            return self._run()
        finally:
            _live.remove(self.terminal)

    def _run(self) -> tuple[int | None, int | None]:
        with signal_wakeup(HANDLED) as wake_r:
            try:
                self._spawn()
                if self.on_start is not None:
                    self.on_start(self)
                self._stdin_fd = self._stdin_to_forward()
                with raw_terminal(0) if self.use_pty else contextlib.nullcontext():
                    self._supervise(wake_r)
            finally:
                self.terminal.close()  # notices held for a full-screen child: shown now
                if self._fg_fd is not None:
                    self._give_terminal(self._fg_fd, os.getpgrp())
                self._stop_relay()
                for fd in list(self._outputs):
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        status = self.status or 0
        if os.WIFSIGNALED(status):
            return None, os.WTERMSIG(status)
        return os.WEXITSTATUS(status), None

    def _stdin_to_forward(self) -> int | None:
        """Our stdin, when keystrokes go to the child's pty (pipe mode: the child reads it itself)."""
        if not self.use_pty:
            return None
        try:
            os.fstat(0)
        except OSError:
            return None
        return 0

    def _supervise(self, wake_r: int) -> None:
        try:
            self._loop(wake_r)
        except BaseException:
            if self.status is None and self.pid is not None:
                self.kill()
                _, self.status = os.waitpid(self.pid, 0)
            raise

    # -- the loop ---------------------------------------------------------------------

    def _loop(self, wake_r: int) -> None:
        self._next_tick = time.monotonic() + self.tick_interval
        self._reap()
        while not self._finished():
            self._on_time()
            timeout = max(0.0, self._next_deadline() - time.monotonic())
            watch = [wake_r, *self._outputs]
            if self._stdin_fd is not None:
                watch.append(self._stdin_fd)
            try:
                ready, _, _ = select.select(watch, [], [], timeout)
            except InterruptedError:
                continue
            if not ready:
                if self._pending_flush is not None and time.monotonic() >= self._pending_flush:
                    self._flush_maskers(idle=True)
                if self.log is not None:
                    self.log.flush()  # the child is quiet: its log catches up
                continue
            for fd in ready:
                if fd == wake_r:
                    self._on_wakeup(wake_r)
                elif fd == self._stdin_fd:
                    self._on_input(fd)
                else:
                    self._on_output(fd)
        self._flush_maskers()
        if self.status is None and self.pid is not None:
            _, self.status = os.waitpid(self.pid, 0)

    def _finished(self) -> bool:
        """The child is reaped, its output drained (or idle), and nothing is left to kill."""
        if self.status is None:
            return False
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        drained = not self._outputs or now - self._idle_since >= DRAIN_IDLE
        return drained and (self.kill_at is None or not self.group_alive())

    def _on_time(self) -> None:
        now = time.monotonic()
        if self.kill_at is not None and now >= self.kill_at:
            self.kill()
        if self.tick is not None and now >= self._next_tick:
            self._next_tick = now + self.tick_interval
            self.tick(self)
        if self.status is not None and self.kill_at is not None and not self.group_alive():
            self.kill_at = None

    def _next_deadline(self) -> float:
        now = time.monotonic()
        deadlines = [self._next_tick if self.tick is not None else now + 1.0]
        if self.kill_at is not None:
            deadlines.append(self.kill_at)
        if self._pending_flush is not None:
            deadlines.append(self._pending_flush)
        due = self.log.flush_due if self.log is not None else None
        if due is not None:
            deadlines.append(due)
        if self.status is not None:
            deadlines.append((self._idle_since or now) + DRAIN_IDLE)
        return min(deadlines)

    def _on_wakeup(self, wake_r: int) -> None:
        try:
            sigs = os.read(wake_r, 64)
        except BlockingIOError:
            sigs = b""
        for sig in sigs:
            self._on_signal(sig)

    def _on_input(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            self._stdin_fd = None
        elif self.master is not None:
            try:
                _write_all(self.master, data)
            except OSError:
                self._stdin_fd = None

    def _on_output(self, fd: int) -> None:
        master = fd == self.master
        data = _read_burst(fd, PTY_BURST if master else CHUNK)
        if data is None:
            return
        stream = self._outputs[fd]
        if data:
            if len(data) >= 1 << 16 and not self._heap_kept:
                self._heap_kept = True  # much output: worth keeping buffers
                _keep_heap()
            self._idle_since = None
            self._emit(stream, data)
            if master and len(data) >= PTY_BURST and not self._relayed:
                self._start_relay()  # the child writes faster than a burst: read its pty in a relay
            elif not self.terminal.ok.get(stream, True) and self.master is None:
                self._close_output(fd)  # the reader went away: the child gets SIGPIPE, as in a pipeline
            return
        if fd == self._relay_out and self.master is not None:
            # the relay ended: at the pty's end (the next read of it says so), or killed; either
            # way, whatever is left is read from the pty here, as before the relay
            self._close_output(fd)
            self._relay_out = None
            self._outputs[self.master] = stream
            return
        self._close_output(fd)
        masker = self.maskers.get(stream)
        if masker is not None and masker.pending:
            self._emit(stream, b"", flush=True)

    def _close_output(self, fd: int) -> None:
        os.close(fd)
        del self._outputs[fd]

    # -- the pty relay ------------------------------------------------------------------

    def _start_relay(self) -> None:
        """From now on a relay process reads the child's pty, and this loop reads the relay.

        A pty master hands out at most 4 KiB per read, and a read that finds it empty waits
        for the kernel's flush worker; every moment this thread spends masking, logging and
        showing a burst is a moment nobody reads the pty, so the child's writes wait (the
        whole chain is serial). The relay, a forked copy of this process that does nothing but
        move bytes (pty to pipe, in bursts of up to :data:`RELAY_BURST`), keeps reading while
        this thread works, and this thread reads the pipe in blocks of up to 1 MiB.

        Started once the child writes faster than one burst (a short or interactive run never
        has it). Nothing changes for the output: every byte still passes :meth:`_emit`, in
        order (this thread stopped reading the pty before the relay began); keystrokes,
        resizes and the pty's end are as before (the master stays ours too). The relay is
        outside the child's process group, ignores the signals we forward, dies with this
        process (parent-death signal: the pty then hangs up as before), holds only the master
        and the pipe, and cannot be traced (it inherits non-dumpable). When its pipe ends (the
        pty ended, or the relay was killed), this loop reads the pty itself again; at the end
        of the run it is killed and reaped, before anything counts leftover processes."""
        assert self.master is not None
        master = self.master
        self._relayed = True
        try:
            import ctypes

            prctl = ctypes.CDLL(None).prctl  # resolved here: the relay calls it, never loads it
        except (ImportError, OSError, AttributeError):
            return  # a relay that might outlive us would keep the pty open: none then
        try:
            r, w = os.pipe2(os.O_CLOEXEC)
        except OSError:
            return  # no relay: this loop goes on reading the pty itself
        try:
            import fcntl

            fcntl.fcntl(r, F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass
        parent = os.getpid()
        top = os.sysconf("SC_OPEN_MAX")
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return
        if pid == 0:  # the relay: never returns
            code = 1
            try:
                gc.disable()  # a collection would touch (and copy) the whole inherited heap
                signal.set_wakeup_fd(-1)
                for sig in HANDLED:
                    signal.signal(sig, signal.SIG_IGN if sig in FORWARDED or sig == signal.SIGUSR1 else signal.SIG_DFL)
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() == parent:  # else we were orphaned before the line above
                    close_all_but((master, w), top)  # the store, sockets, the log: none of the relay's business
                    code = _relay(master, w)
            finally:
                os._exit(code)
        os.close(w)
        os.set_blocking(r, False)
        self._relay_pid, self._relay_out = pid, r
        self._outputs[r] = self._outputs.pop(master)

    def _stop_relay(self) -> None:
        """The run is over: the relay (if it still runs, say for a pty a leftover process
        holds open) is killed and reaped; the pty master is closed."""
        pid, self._relay_pid = self._relay_pid, None
        if pid is not None:  # not reaped yet, so the pid is still its own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        if self._relay_out is not None and self.master is not None:
            # still reading the relay: the master is open and not among the outputs (which
            # the caller closes); once the relay's pipe ended it is one of them, or closed
            try:
                os.close(self.master)
            except OSError:
                pass
