"""Every path agentsess uses, from one place.

``AGENTSESS_HOME`` overrides the data root, ``AGENTSESS_CONFIG`` the config file.
Folders are created 0700 and files 0600.
"""

import os

APP = "agentsess"


def data_root() -> str:
    home = os.environ.get("AGENTSESS_HOME")
    if home:
        return os.path.abspath(home)
    from platformdirs import user_data_dir

    return user_data_dir(APP)


def config_file() -> str:
    path = os.environ.get("AGENTSESS_CONFIG")
    if path:
        return os.path.abspath(path)
    from platformdirs import user_config_dir

    return os.path.join(user_config_dir(APP), "config.toml")


def store_file() -> str:
    return os.path.join(data_root(), "store.db")


def runs_dir() -> str:
    return os.path.join(data_root(), "runs")


def run_dir(run_id: str) -> str:
    return os.path.join(runs_dir(), run_id)


def receipts_file(run_id: str) -> str:
    return os.path.join(run_dir(run_id), "receipts.jsonl")


def output_log(run_id: str) -> str:
    return os.path.join(run_dir(run_id), "output.log")


def keys_dir() -> str:
    return os.path.join(data_root(), "keys")


def secrets_file() -> str:
    return os.path.join(data_root(), "secrets.json")


def agent_home(agent: str) -> str:
    return os.path.join(data_root(), "homes", agent)


def ensure_dir(path: str) -> str:
    """Create ``path`` with mode 0700 (missing parents too); tighten ``path`` if it exists."""
    if not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent and parent != path and not os.path.isdir(parent):
            ensure_dir(parent)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    st = os.stat(path)
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


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
