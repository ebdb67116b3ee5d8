"""Containment: the child of a run in its own PID and mount namespace, under bubblewrap.

A contained run's child sees the filesystem as the human does, except what holds agentsess's
authority and the human's credentials: the data root, the config file, the key and secret
stores, the session bus, the credential files under HOME and a profile's ``hide`` list are
hidden (an empty tmpfs over a folder, ``/dev/null`` over a file). Its ``/proc`` is its own, so
the supervisor (outside the namespace) is not there to read. Every process of the run lives
in the namespace, and the kernel kills them all when the namespace's first process ends, so
``setsid``, double forks and daemons die with the run.

The run's control socket is the one path the child reaches agentsess by: its folder is hidden
too and the run's own socket is bound back at :func:`inside_socket`.

When bubblewrap or user namespaces are missing, :func:`probe` says why and the run is
*advisory*: same user, same files.
"""

import os

from agentsess.values import Frozen

BWRAP = "bwrap"
# bubblewrap's first process ignores what the supervisor forwards (so that a Ctrl-C or a TERM
# does not tear the namespace down under the command); the command gets them back by default.
RESET_SIGNALS = ["env", "--default-signal=INT,TERM,HUP,QUIT"]
# Folders under the human's HOME that hold key and secret stores agentsess or keyring may use.
KEY_STORES = (
    ".local/share/python_keyring",  # keyrings.alt file backends
    ".local/share/keyrings",  # gnome-keyring
    ".local/share/kwalletd",
    ".local/share/agentsess",  # the default data root, when AGENTSESS_HOME points elsewhere
    ".config/agentsess",  # the default config folder
)


class Availability(Frozen):
    """Whether runs can be contained here, and if not, why (one line)."""

    __slots__ = ("available", "reason", "bwrap")
    available: bool
    reason: str
    bwrap: str | None

    def __init__(self, available: bool, reason: str, bwrap: str | None = None):
        self._set(available=available, reason=reason, bwrap=bwrap)


def _which(name: str) -> str | None:
    for folder in (os.environ.get("PATH") or os.defpath).split(":"):
        path = os.path.join(folder or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


# What a bubblewrap probe's answer depends on: the system's limits on namespaces
NAMESPACE_SETTINGS = (
    "/proc/sys/user/max_user_namespaces",
    "/proc/sys/user/max_pid_namespaces",
    "/proc/sys/user/max_mnt_namespaces",
    "/proc/sys/kernel/unprivileged_userns_clone",
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
)


def _fingerprint(bwrap: str) -> str | None:
    """Everything a probe's success rests on, as one line: this boot, this bubblewrap binary
    (and its setuid bit), this user and the namespaces this process is in, and the system's
    namespace settings. None when one of them cannot be read (then there is no cache)."""
    try:
        st = os.stat(bwrap)
        with open("/proc/sys/kernel/random/boot_id", "rb") as fh:
            boot = fh.read().strip().decode()
        spaces = [os.readlink(f"/proc/self/ns/{ns}") for ns in ("user", "pid", "mnt")]
    except (OSError, UnicodeDecodeError):
        return None
    settings = []
    for name in NAMESPACE_SETTINGS:
        try:
            with open(name, "rb") as fh:
                settings.append(fh.read().strip().decode(errors="replace"))
        except OSError:
            settings.append("-")
    parts = [
        "v1", boot, os.path.realpath(bwrap), f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_mode:o}:{st.st_uid}",
        f"uid={os.getuid()},euid={os.geteuid()}", *spaces, *settings,
    ]
    return " ".join(p.replace(" ", "_") for p in parts)


def available() -> Availability:
    """:func:`probe`, remembered: once bubblewrap has contained a probe on this boot, with
    this binary, user, namespaces and namespace settings, runs take that answer from the data
    root instead of starting bubblewrap twice (~7 ms of every contained run's start).

    Only success is remembered, so the file can never make a run advisory: a stale or planted
    file at worst makes agentsess try bubblewrap, and a run whose bubblewrap then fails to
    create its namespaces fails (exit 125, the command never ran) and forgets the file
    (:func:`forget`). Failure is probed afresh every time, so installing bubblewrap helps at once.
    """
    from agentsess.edges import paths

    bwrap = _which(BWRAP)
    if bwrap is None:
        return probe()
    fingerprint = _fingerprint(bwrap)
    path = paths.containment_probe()
    if fingerprint is not None:
        try:
            with open(path, "rb") as fh:
                if fh.read(4096).decode(errors="replace").strip() == fingerprint:
                    return Availability(True, PROBED, bwrap)
        except OSError:
            pass
    found = probe()
    if found.available and fingerprint is not None:
        try:
            paths.ensure_dir(os.path.dirname(path))
            paths.write_private(path, fingerprint.encode() + b"\n")
        except OSError:
            pass
    elif not found.available:
        forget()
    return found


def forget() -> None:
    """Drop the remembered probe (bubblewrap failed where it had worked)."""
    from agentsess.edges import paths

    try:
        os.unlink(paths.containment_probe())
    except OSError:
        pass


PROBED = "bubblewrap with PID and mount namespaces"


def probe() -> Availability:
    """Try bubblewrap once with the namespaces a run needs (about 3 ms; posix_spawn, so that
    `run` does not pay for importing subprocess)."""
    import select

    bwrap = _which(BWRAP)
    if bwrap is None:
        return Availability(False, "bubblewrap (bwrap) is not installed; install the bubblewrap package")
    argv = [bwrap, "--bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc", "--unshare-pid",
            "--die-with-parent", "--", *RESET_SIGNALS, "true"]
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(bwrap, argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)])
    except OSError as exc:
        os.close(err_r)
        return Availability(False, f"bubblewrap failed to start: {exc.strerror or exc}")
    finally:
        os.close(err_w)
        os.close(devnull)
    err = b""
    try:
        while select.select([err_r], [], [], 10)[0]:
            part = os.read(err_r, 4096)
            if not part:
                break
            err += part
        else:
            os.kill(pid, 9)
    finally:
        os.close(err_r)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        why = err.decode(errors="replace").strip().splitlines()
        detail = why[-1] if why else f"exit {code}"
        return Availability(False, f"bubblewrap cannot create namespaces here ({detail})")
    return Availability(True, PROBED, bwrap)


def bus_socket(env: dict) -> str | None:
    """The filesystem path of the session bus in ``env``, if it is a path socket."""
    for item in (env.get("DBUS_SESSION_BUS_ADDRESS") or "").replace(";", ",").split(","):
        if "path=" in item:
            return item.split("path=", 1)[1]
    uid_bus = f"/run/user/{os.getuid()}/bus"
    return uid_bus if os.path.exists(uid_bus) else None


def _covers(path: str, kept: list[str]) -> bool:
    """True when hiding ``path`` would hide one of ``kept`` (it is one of them, or holds one)."""
    return any(k == path or k.startswith(path.rstrip("/") + "/") for k in kept)


def hidden_paths(*, data_root: str, config_file: str, human_home: str, env: dict,
                 credential_files: list[str], hide: tuple = (), unhide: tuple = (),
                 cwd: str | None = None) -> list[str]:
    """Every existing path a contained child must not see, in mount order (parents first).

    Paths that only the human's environment names (``GNUPGHOME=…``, ``KUBECONFIG=…``) are
    never hidden when that would cover the human's HOME or the run's working folder."""
    from agentsess.edges import homes

    kept = [os.path.realpath(p) for p in (human_home, cwd or os.getcwd())]
    wanted = [data_root, config_file]
    folder = os.path.dirname(config_file)  # a folder of agentsess's own (…/agentsess/config.toml): all of it
    if os.path.basename(folder) == "agentsess" and not _covers(os.path.realpath(folder), kept):
        wanted.append(folder)
    wanted += [os.path.join(human_home, rel) for rel in KEY_STORES + homes.CREDENTIAL_FOLDERS]
    bus = bus_socket(env)
    if bus:
        wanted.append(bus)
    wanted += credential_files
    wanted += [p for p in homes.relocated_credentials(env) if not _covers(os.path.realpath(p), kept)]
    wanted += [os.path.expanduser(p) if p.startswith("~") else p for p in hide]
    spared = {os.path.realpath(os.path.expanduser(p)) for p in unhide}
    seen, out = set(), []
    for path in wanted:
        real = os.path.realpath(path)
        if real in seen or real in spared or real == "/" or not os.path.lexists(real):
            continue
        seen.add(real)
        out.append(real)
    # a folder hidden later would cover what an earlier bind put inside it: parents first; and
    # nothing is covered inside a folder already hidden (it would show up there by its name)
    out.sort(key=lambda p: (p.count("/"), p))
    folders = [p for p in out if os.path.isdir(p)]
    return [p for p in out if not any(p.startswith(f.rstrip("/") + "/") for f in folders)]


def sparable(unhide: tuple, *, data_root: str, config_file: str, human_home: str, env: dict) -> tuple:
    """The profile's ``unhide`` entries that may be shown: none that is, holds or lies inside
    agentsess's own state (the data root, the config, their default folders, the control
    folder), whatever the profile says."""
    from agentsess.edges.paths import control_dir

    own = [data_root, config_file, os.path.join(human_home, ".local/share/agentsess"),
           os.path.join(human_home, ".config/agentsess"), control_dir()]
    own += [os.path.join(env[v], "agentsess") for v in ("XDG_DATA_HOME", "XDG_CONFIG_HOME") if os.path.isabs(env.get(v) or "")]
    if os.path.basename(os.path.dirname(config_file)) == "agentsess":
        own.append(os.path.dirname(config_file))
    own = [os.path.realpath(o) for o in own]
    kept = []
    for p in unhide:
        real = os.path.realpath(os.path.expanduser(p))
        if not any(real == o or real.startswith(o + "/") or o.startswith(real.rstrip("/") + "/") for o in own):
            kept.append(p)
    return tuple(kept)


def unhidden_inside(hidden: list[str], unhide: tuple = ()) -> list[str]:
    """The profile's ``unhide`` paths that lie inside a folder hidden whole (``~/.aws/config``
    when ``~/.aws`` is hidden): bound back over the empty folder, as the human sees them."""
    out = []
    for p in unhide:
        real = os.path.realpath(os.path.expanduser(p))
        if os.path.lexists(real) and real not in hidden and any(real.startswith(h + "/") for h in hidden):
            out.append(real)
    return out


def inside_socket(control_dir: str) -> str:
    """Where a contained child finds its run's control socket: fixed, whatever the run."""
    from agentsess.edges.paths import inside_control_socket

    return inside_control_socket(control_dir)


def command(bwrap: str, argv: list[str], *, hidden: list[str], visible: list[str], writable: list[str],
            control_dir: str, control_socket: str, info_fd: int) -> list[str]:
    """The bubblewrap command line that runs ``argv`` contained.

    ``hidden`` paths are covered (a folder by an empty private tmpfs, anything else by /dev/null);
    ``visible`` paths under a hidden folder are bound back read-only, ``writable`` ones
    read-write; the control folder is covered and the run's socket bound at
    :func:`inside_socket`. bubblewrap writes its namespace's first pid to ``info_fd``.
    """
    out = [bwrap, "--bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc", "--unshare-pid",
           "--die-with-parent", "--info-fd", str(info_fd)]
    for path in hidden:
        if os.path.isdir(path) and not os.path.islink(path):
            out += ["--perms", "0700", "--tmpfs", path]  # private, as tmux and ssh want their folders
        else:
            out += ["--ro-bind", "/dev/null", path]
    for path in visible:
        out += ["--ro-bind", path, path]
    for path in writable:
        out += ["--bind", path, path]
    out += ["--perms", "0700", "--tmpfs", control_dir, "--bind", control_socket, inside_socket(control_dir)]
    out += ["--", *RESET_SIGNALS, *argv]
    return out


def exit_status(code: int | None, sig: int | None) -> tuple[int | None, int | None]:
    """bubblewrap reports a command killed by signal N as exit code 128+N: give back the signal."""
    if sig is None and code is not None and 128 < code <= 128 + 64:
        return None, code - 128
    return code, sig
