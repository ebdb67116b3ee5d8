"""A run started inside a run: its parent's supervisor plans, mints and records it; this
process only supervises the child.

`agentsess run` inside a run finds its parent's control socket (never the data root, the
keys or the store, which a contained run cannot see) and asks for a child run. The parent's
authority answers with the child's run id, command, environment and masking values, and
passes the child's output log files along (SCM_RIGHTS). This process runs the child in a
pty or pipes as any run, asks the authority every half second whether the run was revoked
or expired, and reports the exit; the authority writes every receipt and the seal.
"""

import os
import signal

from agentsess.core.runs.plan import Request
from agentsess.edges.supervisor import notice
from agentsess.errors import RUN_FAILED, RUN_STOPPED, USAGE, AgentsessError

FIELDS = ("name", "use_pty", "profile", "scopes", "ttl", "pass_env", "keep_env", "isolate_home", "mask_terminal",
          "capture_shell", "integration", "cwd")


def _ask(socket: str, message: dict) -> dict:
    from agentsess.edges.control import ControlError, request

    try:
        answer = request(socket, message)
    except ControlError as exc:
        raise AgentsessError(f"cannot start a nested run: {exc}", RUN_FAILED) from None
    if not answer.get("ok"):
        raise AgentsessError(str(answer.get("error") or "refused"), int(answer.get("code") or RUN_FAILED))
    return answer


class NestedWatch:
    """The supervisor's tick for a nested run: the parent's authority decides."""

    def __init__(self, socket: str, grace: float):
        self.socket = socket
        self.grace = grace
        self.stopped = False

    def __call__(self, sup) -> None:
        from agentsess.edges.control import ControlError, request

        try:
            answer = request(self.socket, {"op": "status"}, timeout=10)
        except ControlError:
            answer = {"ok": True, "stop": True, "grace": 0.0,
                      "notices": ["the parent run's supervisor is gone; stopping this run"]}
        for line in answer.get("notices") or ():
            sup.notice(line)  # recorded by the parent's authority; held while a full-screen child is up
        if answer.get("stop") and not self.stopped:
            self.stopped = True
            sup.stop(answer.get("grace", self.grace))


def enclosing_run(store) -> dict | None:
    """The live run of this machine whose supervisor is an ancestor of this process (nearest
    first), found in the store: how a `run` whose control socket was hidden from it (the
    variable unset, the socket's link deleted: an advisory child can do both) still knows it
    is inside a run. None outside every run."""
    from agentsess.edges import host

    rows = store.list_runs(status="running", host=host.hostname(),
                           columns="id, parent_id, supervisor_pid, supervisor_started")
    by_process = {(r.get("supervisor_pid"), r.get("supervisor_started")): r for r in rows}
    if not by_process:
        return None
    for pid, started in host.lineage(os.getpid()):
        row = by_process.get((pid, started))
        if row is not None:
            return row
    return None


def socket_of(store, row: dict) -> str | None:
    """The control socket that answers for ``row``'s processes: its own supervisor's, or for a
    nested run its nearest ancestor's that serves one; None if none is there."""
    from agentsess.edges.paths import control_socket

    for run_id in [row["id"], *store.ancestors(row["id"])]:
        path = control_socket(run_id)
        if os.path.exists(path):
            return path
    return None


def start_nested(request: Request, socket: str) -> int:
    from agentsess.core.guard.masking import Masker
    from agentsess.edges.outputlog import OutputLog
    from agentsess.edges.supervisor import ExecFailed, Supervisor, find_executable, kill_descendants

    try:
        find_executable(request.argv[0], request.env.get("PATH"))
    except ExecFailed as exc:
        what = "command not found" if exc.code == 127 else "command not executable"
        raise AgentsessError(f"{what}: {request.argv[0]}", exc.code) from None
    fields = {name: getattr(request, name) for name in FIELDS}
    fields.update(argv=request.argv, env=dict(request.env))
    answer = _ask(socket, {"op": "run", "control": socket, "request": fields})
    fds = answer.get("fds") or []
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        raise AgentsessError("cannot start a nested run: the parent's supervisor sent no output log", USAGE)
    run_id = answer["run_id"]
    for line in answer.get("notices") or ():
        notice(line)
    masked = {name: value.encode() for name, value in (answer.get("masked") or {}).items()}
    log = OutputLog(run_id, (fds[0], fds[1]))
    watch = NestedWatch(socket, float(answer.get("grace") or 5))
    sup = Supervisor(
        answer["argv"], answer["env"], use_pty=bool(answer["use_pty"]), log=log,
        maskers={1: Masker(masked), 2: Masker(masked)}, mask_terminal=bool(answer.get("mask_terminal", True)),
        tick=watch, grace=watch.grace,
    )
    def started(s) -> None:
        _ask(socket, {"op": "run_started", "child_pid": s.pid})

    sup.on_start = started
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # `revoke` may signal us before the supervisor's handler
    code = sig = None
    failure = None
    try:
        code, sig = sup.run()
        for late in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(late, signal.SIG_IGN)
    except ExecFailed as exc:
        code, failure = exc.code, f"cannot execute {request.argv[0]}: {exc}"
    finally:
        log.close()
        if watch.stopped or answer.get("on_exit") != "keep":
            kill_descendants()
    done = _ask(socket, {"op": "run_exited", "exit_code": code, "signal": sig, "output_bytes": log.size,
                         "output_sha256": log.digest(), "stopped": watch.stopped, "error": failure})
    for line in done.get("notices") or ():
        notice(line)
    result = done.get("exit")
    if isinstance(result, int):
        return result
    return RUN_STOPPED if watch.stopped else RUN_FAILED
