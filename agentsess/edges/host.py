"""Facts about the machine and processes: who and where a run happens, pid liveness."""

import os


def user() -> str:
    name = os.environ.get("USER") or os.environ.get("LOGNAME")
    if name:
        return name
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


def hostname() -> str:
    return os.uname().nodename


def process_start(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if no such process."""
    fields = _stat(pid)
    try:
        return None if fields is None else int(fields[19])
    except (IndexError, ValueError):
        return None


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid``, None if there is no such process."""
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def child_known_as(parent: int, pid: int) -> int | None:
    """The child of ``parent`` (a pid as this process sees it) that calls itself ``pid`` in
    its own PID namespace (the last entry of its ``NSpid``), None if it has no such child: a
    pid a contained process names, translated."""
    for name in os.listdir("/proc"):
        if not name.isdigit() or parent_of(int(name)) != parent:
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"NSpid:"):
                        if int(line.split()[-1]) == pid:
                            return int(name)
                        break
        except (OSError, ValueError):
            continue
    return None


def processes_of_run(run_id: str) -> list[int]:
    """This user's processes (other than this one) whose environment still names run
    ``run_id`` (``AGENTSESS_RUN_ID``): what a run whose supervisor died left behind outside
    its process group. A process that scrubbed its environment is not found."""
    mark = b"\0AGENTSESS_RUN_ID=" + run_id.encode() + b"\0"
    uid, me, found = os.getuid(), os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/environ", "rb") as fh:
                if mark in b"\0" + fh.read() + b"\0":
                    found.append(int(name))
        except OSError:
            continue
    return found


def ancestors(pid: int):
    """Parent pids of ``pid``, nearest first, up to pid 1. Pid 1 is included: in a PID
    namespace (a container, ``unshare --pid``) it may be a run's own supervisor."""
    for parent, _ in lineage(pid):
        yield parent


def lineage(pid: int):
    """``(pid, start time)`` of each ancestor of ``pid``, nearest first, up to pid 1: a pid
    together with its start time names one process, even after the pid is used again."""
    stat = _stat(pid)
    for _ in range(256):
        if stat is None:
            return
        parent = int(stat[1])
        if parent < 1:
            return
        stat = _stat(parent)
        if stat is None:
            return
        yield parent, int(stat[19])
        if parent == 1:
            return


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (field 3 first), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return stat[stat.rfind(b")") + 2 :].split()


def same_process(pid: int | None, started: int | float | None) -> bool:
    """True while ``pid`` still names the process that started at ``started``."""
    if not pid:
        return False
    now = process_start(pid)
    if now is None:
        return False
    return started is None or int(started) == now


def git_info(cwd: str) -> dict | None:
    """The git repository and commit that ``cwd`` is in, read from .git without running git."""
    path = os.path.abspath(cwd)
    while True:
        dotgit = os.path.join(path, ".git")
        if os.path.exists(dotgit):
            break
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    gitdir = dotgit
    try:
        if os.path.isfile(dotgit):
            with open(dotgit) as fh:
                line = fh.read().strip()
            if line.startswith("gitdir:"):
                gitdir = os.path.join(path, line[7:].strip())
        with open(os.path.join(gitdir, "HEAD")) as fh:
            head = fh.read().strip()
    except OSError:
        return {"repo": path, "commit": None, "branch": None}
    branch, commit = None, None
    if head.startswith("ref:"):
        ref = head[4:].strip()
        branch = ref.rsplit("refs/heads/", 1)[-1]
        common = gitdir
        try:
            with open(os.path.join(gitdir, "commondir")) as fh:
                common = os.path.join(gitdir, fh.read().strip())
        except OSError:
            pass
        for base in (gitdir, common):
            try:
                with open(os.path.join(base, ref)) as fh:
                    commit = fh.read().strip()
                break
            except OSError:
                continue
        if commit is None:
            try:
                with open(os.path.join(common, "packed-refs")) as fh:
                    for line in fh:
                        if line.rstrip().endswith(" " + ref):
                            commit = line.split()[0]
                            break
            except OSError:
                pass
    else:
        commit = head
    return {"repo": path, "commit": commit, "branch": branch}
