"""Every path agentsess uses, from one place: no other module builds a file name.

``AGENTSESS_HOME`` overrides the data root, ``AGENTSESS_CONFIG`` the config file.
Folders are created 0700 and files 0600. The data root holds::

    store.db                the run registry (SQLite)
    store-pending/RUN.json  a shared store's writes held while it was unreachable
    store-agent.log         the store agent's log (a PostgreSQL store; no secrets in it)
    runs/RUN/               one folder per run:
        receipts.jsonl          its receipt stream
        output.log, timing.log  its masked output and when it was written
        claude-settings.json    Claude Code's hooks for the run
        bin/agentsess-exec      Claude Code's shell prefix
        shell.spool, capture.bash   shell capture (--capture-shell)
    keys/jwks.json, keys/jwks.lock  public signing keys
    secrets.json            the file keyring (when no OS keyring is used)
    keychain.json, keychain-index.json, keychain.lock   the keyring's record, index and lock
    homes/AGENT/            an agent's own HOME (--isolate-home)
    config.cache            the last validated config (no longer written or read)
    containment.probe       what the last successful bubblewrap probe found (see containment)
    notices                 notices already shown
    prune.log               one line per `agentsess prune`
"""

import os
import sys

APP = "agentsess"


def data_root() -> str:
    home = os.environ.get("AGENTSESS_HOME")
    if home:
        return os.path.abspath(home)
    return _user_dir("XDG_DATA_HOME", ".local/share", "user_data_dir")


def _user_dir(variable: str, default: str, platformdirs_name: str) -> str:
    """platformdirs' user folder for agentsess. On Linux, in the plain cases (``$XDG_DATA_HOME``
    and the like absolute, or unset and ``$HOME`` absolute) it is read here without importing
    platformdirs (pathlib, re, configparser: ~10 ms of every `run`); a test keeps the two equal.
    Everything else (a relative value, another system) platformdirs answers."""
    if sys.platform.startswith("linux"):
        base = os.environ.get(variable, "")
        if os.path.isabs(base):
            return os.path.join(base, APP)
        home = os.environ.get("HOME", "")
        if not base and os.path.isabs(home):
            return os.path.join(home, default, APP)
    import platformdirs

    return getattr(platformdirs, platformdirs_name)(APP)


def config_file() -> str:
    path = os.environ.get("AGENTSESS_CONFIG")
    if path:
        return os.path.abspath(path)
    return os.path.join(_user_dir("XDG_CONFIG_HOME", ".config", "user_config_dir"), "config.toml")


def starter_config() -> str:
    """The commented starter config shipped in the package (`agentsess config init`)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "starter.toml")


def store_file() -> str:
    return os.path.join(data_root(), "store.db")


def store_pending_dir() -> str:
    """A shared (PostgreSQL) store's writes held on this machine while it was unreachable."""
    return os.path.join(data_root(), "store-pending")


def store_pending_file(run_id: str, folder: str | None = None) -> str:
    return os.path.join(folder or store_pending_dir(), run_id + ".json")


def store_agent_log() -> str:
    """What the store agent (edges/store/agentserver.py) says: its start, its end, its errors."""
    return os.path.join(data_root(), "store-agent.log")


def config_cache() -> str:
    return os.path.join(data_root(), "config.cache")


def containment_probe() -> str:
    return os.path.join(data_root(), "containment.probe")


def notices_file() -> str:
    return os.path.join(data_root(), "notices")


def prune_log() -> str:
    return os.path.join(data_root(), "prune.log")


def runs_dir() -> str:
    return os.path.join(data_root(), "runs")


def run_dir(run_id: str) -> str:
    return os.path.join(runs_dir(), run_id)


def receipts_file(run_id: str) -> str:
    return os.path.join(run_dir(run_id), "receipts.jsonl")


def output_log(run_id: str) -> str:
    return os.path.join(run_dir(run_id), "output.log")


def timing_log(run_id: str) -> str:
    return os.path.join(run_dir(run_id), "timing.log")


def claude_settings(run_id: str) -> str:
    return os.path.join(run_dir(run_id), "claude-settings.json")


def run_bin_dir(run_id: str) -> str:
    return os.path.join(run_dir(run_id), "bin")


def shell_prefix(run_id: str) -> str:
    return os.path.join(run_bin_dir(run_id), "agentsess-exec")


def subagents_marker(run_id: str) -> str:
    """Present once the run has a sub-agent: the shell prefix then asks whose each command is."""
    return os.path.join(run_bin_dir(run_id), "has-subagents")


def gemini_home(run_id: str) -> str:
    """The folder a Gemini CLI run gets as GEMINI_CLI_HOME (its ``.gemini`` links the user's)."""
    return os.path.join(run_dir(run_id), "gemini-home")


# Gemini CLI's own files in a ``.gemini`` folder: its settings, and those a run links to the
# user's even before they exist (credentials, accounts, state), so they land where they belong
GEMINI_SETTINGS = "settings.json"
GEMINI_KNOWN_FILES = ("oauth_creds.json", "google_accounts.json", "installation_id", "user_id",
                      "trustedFolders.json", "projects.json", "state.json", "mcp-oauth-tokens.json", "GEMINI.md")


def gemini_settings(dot_gemini: str) -> str:
    return os.path.join(dot_gemini, GEMINI_SETTINGS)


def shell_spool(run_id: str) -> str:
    return os.path.join(run_dir(run_id), "shell.spool")


def capture_script(run_id: str) -> str:
    return os.path.join(run_dir(run_id), "capture.bash")


def ca_bundle(folder: str) -> str:
    """The CA bundle a proxy-mode run's child trusts, in a folder the child can read."""
    return os.path.join(folder, "ca-bundle.pem")


def keys_dir() -> str:
    return os.path.join(data_root(), "keys")


def jwks_file() -> str:
    return os.path.join(keys_dir(), "jwks.json")


def jwks_lock() -> str:
    return os.path.join(keys_dir(), "jwks.lock")


def secrets_file() -> str:
    return os.path.join(data_root(), "secrets.json")


def keychain_record(root: str | None = None) -> str:
    """Which keyring backend the data root ``root`` (default: this one) uses."""
    return os.path.join(root or data_root(), "keychain.json")


def keychain_index() -> str:
    return os.path.join(data_root(), "keychain-index.json")


def keychain_lock() -> str:
    return os.path.join(data_root(), "keychain.lock")


def agent_home(agent: str) -> str:
    return os.path.join(data_root(), "homes", agent)


def ensure_dir(path: str) -> str:
    """Create ``path`` with mode 0700 (missing parents too). An existing folder inside the
    data root is agentsess's own and is tightened to 0700; the data root itself, when it was
    already there, is never chmodded (``AGENTSESS_HOME=/tmp`` must not break ``/tmp``): it is
    refused when another user owns it or others may write to it (:func:`check_data_root`)."""
    path = os.path.abspath(path)
    created = False
    if not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent and parent != path and not os.path.isdir(parent):
            ensure_dir(parent)
        try:
            os.mkdir(path, 0o700)
            created = True
        except FileExistsError:
            pass
    st = os.stat(path)
    root = data_root()
    if path == root and not created:
        check_data_root(path, st)
    elif created or _inside(path, root):
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
    return path


def _inside(path: str, root: str) -> bool:
    return path.startswith(root.rstrip(os.sep) + os.sep)


def check_data_root(path: str | None = None, st: os.stat_result | None = None) -> None:
    """Refuse a data root another user owns, or one others may write to (a shared folder
    such as ``/tmp``): agentsess's signing keys, store and receipts must be the user's alone.
    A folder only others may read (0755) is used as it is: its contents are 0700 and 0600."""
    from agentsess.errors import STATE, AgentsessError

    path = path or data_root()
    if st is None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
    uid = os.getuid()
    if st.st_uid != uid:
        raise AgentsessError(
            f"the data root {path} belongs to uid {st.st_uid}, not to you (uid {uid}): set "
            "AGENTSESS_HOME to a folder of your own",
            STATE,
        )
    if st.st_mode & 0o022:
        raise AgentsessError(
            f"the data root {path} is writable by other users (mode {st.st_mode & 0o7777:04o}): set "
            "AGENTSESS_HOME to a folder of your own (a new one is created 0700)",
            STATE,
        )


def writable(path: str) -> bool:
    """True when this process may create files in folder ``path`` (False on read-only media)."""
    return os.access(path, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)


def open_private(path: str, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND) -> int:
    """Open a file created 0600 (umask cannot widen it); returns a file descriptor."""
    fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
    return fd


def write_private(path: str, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, mode 0600 (temp file + os.replace)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# -- control sockets: per user, not per data root (a run's child is not told the data root) ---


def control_dir() -> str:
    """The private folder of this user's control sockets: in the runtime folder when it is
    ours, else in /tmp (created 0700 by the supervisor, checked by every client)."""
    uid = os.getuid()
    runtime = f"/run/user/{uid}"
    try:
        if os.stat(runtime).st_uid == uid:
            return os.path.join(runtime, "agentsess")
    except OSError:
        pass
    return f"/tmp/agentsess-{uid}"


def control_socket(run_id: str, folder: str | None = None) -> str:
    return os.path.join(folder or control_dir(), f"{run_id}.sock")


def control_link(pid: int, started: int | None, folder: str | None = None) -> str:
    """The name a supervisor's socket also has by the supervisor's pid and start time (for
    nested lookups). The start time keeps a link a killed supervisor left behind from naming
    the unrelated process that gets its pid later.

    A pid means something only in its PID namespace, and the folder is shared by every
    namespace of the machine that shares /tmp: the name carries this process's namespace, so
    a supervisor that is pid 1 of a container (or of ``unshare --pid``) is not taken for the
    host's init, the ancestor of every process outside it."""
    return os.path.join(folder or control_dir(), f"pid-{_pid_namespace()}-{pid}-{started}.sock")


def _pid_namespace() -> str:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "0"
    digits = "".join(ch for ch in link if ch.isdigit())
    return digits or "0"


def inside_control_socket(folder: str | None = None) -> str:
    """Where a contained child finds its run's control socket: fixed, whatever the run."""
    return os.path.join(folder or control_dir(), "control.sock")


def store_agent_socket(key: str, folder: str | None = None) -> str:
    """The store agent's socket for one store (``key``: its URL, data root, host, user)."""
    return os.path.join(folder or control_dir(), f"store-{key}.sock")


def store_agent_lock(key: str, folder: str | None = None) -> str:
    """Held while one process starts that store agent (two racing runs start one)."""
    return os.path.join(folder or control_dir(), f"store-{key}.lock")
