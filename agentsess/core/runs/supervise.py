"""Supervising a run: the child under the supervisor (contained or not), the periodic watch
(revocation, expiry, the receipt stream), the control socket's authority, and the exit record.
"""

import os
import signal
import time

from agentsess.core.receipts import recording
from agentsess.core.runs.plan import Plan, Request
from agentsess.core.runs.start import Launch
from agentsess.edges import host, paths
from agentsess.edges.store import Store
from agentsess.edges.streams import ReceiptError
from agentsess.errors import RUN_FAILED, RUN_STOPPED, AgentsessError
from agentsess.timefmt import rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agentsess.core.guard.agents import SpoolReader


def _contained_argv(launch: Launch, request: Request, plan: Plan, sandbox_info_fd: int) -> list[str]:
    """bubblewrap's command line for this run: what to hide, what to bind back."""
    from agentsess.edges import containment, homes

    env = launch.env
    human_home = request.env.get("HOME") or os.path.expanduser("~")
    data_root, config_file = paths.data_root(), paths.config_file()
    unhide = containment.sparable(tuple(plan.profile.unhide or ()), data_root=data_root, config_file=config_file,
                                  human_home=human_home, env=request.env)
    hidden = containment.hidden_paths(
        data_root=data_root, config_file=config_file, human_home=human_home, env=request.env,
        credential_files=homes.readable_credential_files(human_home),
        hide=tuple(plan.profile.hide or ()), unhide=unhide, cwd=request.cwd,
    )
    visible = [paths.run_dir(launch.run_id)]
    writable = [p for p in (launch.spool,) if p] + containment.unhidden_inside(hidden, unhide)
    if env.get("GEMINI_CLI_HOME", "").startswith(paths.run_dir(launch.run_id) + os.sep):
        writable.append(env["GEMINI_CLI_HOME"])  # Gemini writes its state beside the run's settings
    if env.get("HOME") and env["HOME"] != human_home:
        writable.append(env["HOME"])  # the agent's own HOME lives under the (hidden) data root
    bwrap = launch.containment.bwrap
    assert bwrap is not None
    return containment.command(
        bwrap, launch.argv, hidden=hidden, visible=visible, writable=writable,
        control_dir=os.path.dirname(launch.containment.socket), control_socket=launch.containment.socket,
        info_fd=sandbox_info_fd,
    )


class Watch:
    """The supervisor's periodic check: revocation, expiry, and the receipt stream's presence.

    Each notice it gives is recorded at once (``run.notice``) and shown through ``say``: the
    supervisor's one notice function (held while the child's full-screen program is up), or, for
    a nested run, the answer its own supervisor shows."""

    def __init__(self, store: Store, run_id: str, plan: Plan, say=None):
        from agentsess.edges.supervisor import notice

        self.store = store
        self.say = say or notice  # where the user's notices go: the terminal, or back to a nested run's supervisor
        self.run_id = run_id
        self.plan = plan
        self.profile = plan.profile
        self.receipts_path = paths.receipts_file(run_id)
        self.revoked = False
        self.stopped = False
        self.warned = False
        self.expired = False
        self.spool: SpoolReader | None = None
        self.leftovers = 0
        self.fleet = None  # fleet (issue 17): the shared store's watch of this run, see supervise
        self.confirmed = False  # a nested run on a shared store: run.revoked written by us

    def tell(self, text: str) -> None:
        """A notice for the user while the run is live: recorded now, shown when it can be."""
        recording.record(self.store, self.run_id, "run.notice", {"text": text})
        self.say(text)

    def ingest_spool(self) -> None:
        if self.spool is not None:
            for data in self.spool.read():
                recording.record(self.store, self.run_id, "action.exec", data)

    def _confirm_revoked(self, cause: str | None) -> None:
        """A nested run on a shared store: its parent's supervisor (this authority) writes the
        ``run.revoked`` receipt that confirms the stop to the machine that revoked."""
        if self.confirmed:
            return
        self.confirmed = True
        row = (self.store.revocations_of([self.run_id]) or {}).get(self.run_id) or {}
        cause = cause or "direct"
        ancestor = cause.split(" ", 1)[1] if cause.startswith("ancestor ") else None
        try:
            recording.record(
                self.store, self.run_id, "run.revoked",
                {"cause": "ancestor" if ancestor else "direct", "ancestor": ancestor,
                 "by": row.get("revoked_by"), "reason": row.get("reason"),
                 "at": rfc3339(row["revoked_at"]) if row.get("revoked_at") else None,
                 "confirmed_by": f"supervisor {os.getpid()}@{host.hostname()}"},
            )
        except ReceiptError:
            pass

    def confirm_at_end(self) -> None:
        """A nested run ending on a shared store (stopped, say, by its revoked parent) before
        its watch saw the revocation: the stop is still confirmed."""
        if self.fleet is None and not self.confirmed and getattr(self.store, "shared", False):
            revoked_at, cause = self.store.revocation(self.run_id)
            if revoked_at is not None:
                self.revoked = True
                self.end_approvals()
                self._confirm_revoked(cause)

    def end_approvals(self) -> None:
        """Requests of this run nobody answered wait no more once it is revoked or ends: marked
        ``ended``, each with an ``approval.expired`` receipt that says why. A shared store out of
        reach holds them as they are: no answer can reach the run through it either, and the run
        must still end, record its exit and seal."""
        try:
            if not self.store.open_approvals(self.run_id):
                return
            from agentsess.core.guard import approvals

            revoked = self.revoked or self.store.revocation(self.run_id)[0] is not None
            approvals.end_pending(self.store, self.run_id,
                                  approvals.REVOKED_REASON if revoked else approvals.ENDED_REASON)
        except AgentsessError:
            pass

    def __call__(self, sup) -> None:
        if not os.path.exists(self.receipts_path):
            raise ReceiptError(
                f"the receipt stream {self.receipts_path} was deleted; stopping the run (fail closed)"
            )
        self.ingest_spool()
        if self.fleet is not None:  # fleet (issue 17): confirm a revocation, apply on_store_unreachable
            self.fleet.tick(self, sup)
        if not self.revoked:
            revoked_at, cause = self.store.revocation(self.run_id)
            if revoked_at is not None:
                self.revoked = True
                self.end_approvals()
                if self.fleet is None and getattr(self.store, "shared", False):
                    self._confirm_revoked(cause)
                if self.profile.on_revoke == "stop":
                    self.tell(f"run {self.run_id} was revoked ({cause or 'direct'}); stopping it")
                    self.stopped = True
                    sup.stop(self.profile.revoke_grace)
                else:
                    self.tell(f"run {self.run_id} was revoked; its credentials are dead (on_revoke = keep)")
        now = time.time()
        left = self.plan.expires_at - now
        if not self.warned and not self.expired and left <= self.profile.expiry_warning and left > 0:
            self.warned = True
            self.tell(f"the credential of run {self.run_id} expires in {int(left)}s")
        if not self.expired and left <= 0:
            self.expired = True
            recording.record(
                self.store,
                self.run_id,
                "credential.expired",
                {"expired_at": rfc3339(self.plan.expires_at), "on_expiry": self.profile.on_expiry},
            )
            if self.profile.on_expiry == "stop" and not self.stopped:
                self.tell(f"the credential of run {self.run_id} expired; stopping it (on_expiry = stop)")
                self.stopped = True
                sup.stop(self.profile.revoke_grace)
            else:
                self.tell(f"the credential of run {self.run_id} expired; the process goes on without it")


def supervise(store: Store, request: Request, plan: Plan, launch: Launch) -> int:
    """Run the child under the supervisor until it ends; then record how it ended."""
    from agentsess.core.guard.masking import Masker
    from agentsess.edges.outputlog import OutputLog
    from agentsess.edges.supervisor import ExecFailed, Supervisor, kill_descendants

    run_id = launch.run_id
    profile = plan.profile
    mask_terminal = profile.mask_terminal if request.mask_terminal is None else request.mask_terminal
    log = OutputLog(run_id)
    watch = Watch(store, run_id, plan)
    from agentsess.core.guard.redaction import mask_receipt, secret_masker

    exact = secret_masker(launch.masked)  # every action receipt this supervisor writes
    recording.mask_actions(lambda data: mask_receipt(data, exact))
    if launch.spool is not None:
        from agentsess.core.guard.agents import SpoolReader

        watch.spool = SpoolReader(launch.spool, exact)
    from agentsess.edges.control import ControlServer

    contained = launch.containment
    argv, info_r, info_w = launch.argv, None, None
    # Each of the supervisor's own descriptors is closed exactly once. A second close of a
    # number that something else has reused since (an authority thread's store connection)
    # closes that instead, and closing any descriptor of the store drops every POSIX lock
    # this process holds on it: another process then takes itself for the last connection,
    # checkpoints and deletes the WAL under this one, and the run's last writes (its exit,
    # its chain head) vanish while the receipts were written.
    own_fds: list[int] = []

    def close_own(fd: int | None) -> None:
        if fd is not None and fd in own_fds:
            own_fds.remove(fd)
            try:
                os.close(fd)
            except OSError:
                pass

    if contained.contained:
        info_r, info_w = os.pipe2(os.O_CLOEXEC)
        own_fds += [info_r, info_w]
        argv = _contained_argv(launch, request, plan, info_w)
    sup = Supervisor(
        argv,
        launch.env,
        use_pty=launch.use_pty,
        log=log,
        maskers={1: Masker(launch.masked), 2: Masker(launch.masked)},
        mask_terminal=mask_terminal,
        tick=watch,
        grace=profile.revoke_grace,
        keep_fds=(info_w,) if info_w is not None else (),
        die_with_supervisor=contained.contained,
        wrapper=contained.contained,
    )

    # The control socket listens before the child starts (a request made from then on waits in
    # its backlog); the authority that answers is built, and the accepting begins, once the
    # child is on its way: that work overlaps the child's exec instead of delaying it.
    server = ControlServer(run_id)
    authorities: list = []

    def started(s) -> None:
        from agentsess.core.runs.authority import Authority

        # a held approval's one-line notice goes where the run's notices go
        authority = Authority(run_id, contained.mode, say=watch.say)
        authorities.append(authority)
        from agentsess.core.guard.isolation import keep_worker

        keep_worker()  # the hooks' command lines are parsed by one worker, not a fork each
        server.serve(authority.handle, authority.fast)
        sandbox = None
        if info_r is not None:
            close_own(info_w)  # bubblewrap holds the write end now: EOF once it has written
            sandbox = _sandbox_pid(info_r)
        s.sandbox_pid = sandbox
        store.update_run(run_id, child_pid=s.pid, child_pgid=s.pgid, child_started=host.process_start(s.pid),
                         sandbox_pid=sandbox)
        collect_again()

    sup.on_start = started
    # fleet (issue 17): with a shared store, a watcher thread (edges/store/watcher.py) sees
    # revocations made on any machine and wakes this loop with SIGUSR1; None with SQLite
    watch.fleet = store.watch_run(run_id, profile, lambda: os.kill(os.getpid(), signal.SIGUSR1))
    if watch.fleet is not None:
        watch.fleet.start()
    failure = None
    code = sig = None
    try:
        server.listen()
        code, sig = sup.run()
        if contained.contained:
            from agentsess.edges.containment import exit_status, forget

            code, sig = exit_status(code, sig)
            if sup.sandbox_pid is None:  # bubblewrap ended before it made the namespace
                forget()  # a remembered probe that no longer holds: the next run probes again
                failure = (f"bubblewrap could not contain the run (it exited {code if sig is None else -sig}"
                           " before creating the namespaces); the command did not run")
                code = sig = None
        # the child is gone: a late signal must not cost the run its exit receipt and seal
        for late in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(late, signal.SIG_IGN)
    except ExecFailed as exc:
        code = exc.code
        failure = f"cannot execute {request.argv[0]}: {exc}"
    except ReceiptError as exc:
        failure = exc.message
    finally:
        server.close()
        for authority in authorities:
            authority.end_nested(store)
        if authorities:
            from agentsess.core.guard.isolation import stop_worker

            stop_worker()  # before the leftovers are counted: the worker is not one of the run's
        collect_again()
        for fd in list(own_fds):
            close_own(fd)
        if watch.stopped or profile.on_exit == "stop":
            watch.leftovers = kill_descendants()
        log.close()
        if watch.fleet is not None:  # fleet (issue 17)
            watch.fleet.stop()
        if launch.broker is not None:
            launch.broker.stop()  # issue 13: refuse from now on; its receipts land before run.exited
    try:
        watch.ingest_spool()
    except ReceiptError:
        pass
    return finish(store, plan, watch, log, code, sig, failure)


def collect_again() -> None:
    """The collector back on (`run` starts without it: see ``cli.run``); what start-up built
    lives as long as the supervisor, so it is frozen out of every later collection."""
    import gc

    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _sandbox_pid(info_r: int) -> int | None:
    """The pid (as we see it) of the namespace's first process, from bubblewrap's info fd
    (its write end already closed here)."""
    import json

    data = b""
    while True:
        try:
            part = os.read(info_r, 4096)
        except InterruptedError:
            continue
        if not part:
            break
        data += part
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def finish(store: Store, plan: Plan, watch: "Watch", log, code, sig, failure) -> int:
    """Record the exit (row, ``run.exited``, seal) and choose `run`'s exit code."""
    run_id = watch.run_id
    watch.end_approvals()  # before the run ends: its receipts are still the supervisor's to write
    ended = time.time()
    store.update_run(
        run_id, ended_at=ended, exit_code=code, signal=sig, output_bytes=log.size,
        output_sha256=log.digest(), error=failure,
    )
    store.set_status_if(run_id, "running", status="exited")
    if failure and code is None:
        code = RUN_FAILED
    try:
        recording.record(
            store,
            run_id,
            "run.exited",
            {
                "exit_code": code, "signal": sig, "duration": round(ended - plan.issued_at, 6),
                "output_bytes": log.size, "output_sha256": log.digest(), "revoked": watch.revoked,
                "stopped_by_agentsess": watch.stopped, "error": failure,
                "leftover_processes_killed": watch.leftovers,
            },
        )
        recording.seal(store, run_id)
    except ReceiptError as exc:
        watch.say(failure or exc.message)
        return RUN_FAILED
    if failure:
        watch.say(failure)
        return code if code in (126, 127) else RUN_FAILED
    if watch.stopped:
        return RUN_STOPPED
    if sig is not None:
        return 128 + sig
    return code
