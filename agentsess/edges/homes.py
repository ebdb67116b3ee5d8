"""Home folders: the human's credentials on disk, and the agent's own HOME.

:data:`HUMAN_CREDENTIAL_FILES` lists where the human's credentials live under their home
(paths relative to HOME; a trailing ``/`` marks a folder). An agent run as the human
can read all of them; ``agentsess doctor`` names the ones that exist
(:func:`readable_credential_files`), and :func:`isolated_home` gives the agent a HOME of
its own so that tools looking in ``~`` find none of them.
"""

import os

from agentsess.edges import paths
from agentsess.errors import STATE, USAGE, AgentsessError

HUMAN_CREDENTIAL_FILES = (
    ".aws/credentials",
    ".aws/config",
    ".config/gh/hosts.yml",
    ".config/hub",
    ".netrc",
    ".git-credentials",
    ".config/git/credentials",
    ".docker/config.json",
    ".kube/config",
    ".config/gcloud/",
    ".azure/",
    ".npmrc",
    ".pypirc",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".gem/credentials",
    ".terraform.d/credentials.tfrc.json",
    ".vault-token",
    ".pgpass",
    ".pg_service.conf",  # libpq connection services: may hold passwords
    ".postgresql/",  # libpq's client certificate and key
    ".ssh/",  # the private keys in it, whatever their name, and its sockets (see _ssh_keys)
    ".gnupg/",
    ".password-store/",
    ".local/share/keyrings/",
    # browser profiles: saved passwords and session cookies
    ".mozilla/firefox/",
    ".config/google-chrome/",
    ".config/chromium/",
    ".config/BraveSoftware/",
    ".config/microsoft-edge/",
    ".config/vivaldi/",
    ".config/opera/",
    "snap/firefox/common/.mozilla/firefox/",
    "snap/chromium/common/chromium/",
    ".var/app/org.mozilla.firefox/.mozilla/firefox/",
    ".var/app/com.google.Chrome/config/google-chrome/",
    ".var/app/org.chromium.Chromium/config/chromium/",
    "Library/Application Support/Google/Chrome/",
    "Library/Application Support/Firefox/",
    "Library/Keychains/",
)

XDG_DIRS = (
    ("XDG_CONFIG_HOME", ".config"),
    ("XDG_DATA_HOME", ".local/share"),
    ("XDG_CACHE_HOME", ".cache"),
    ("XDG_STATE_HOME", ".local/state"),
)

# Variables that lead tools to the human's own configuration and credentials even when
# HOME is the agent's: under an isolated home each is re-pointed to the same place inside it
# (its default there; REGISTRY_AUTH_FILE's default is outside HOME, in XDG_RUNTIME_DIR).
# npm reads its npm_config_* variables in any case, so both spellings are re-pointed.
HOME_POINTERS = (
    ("GIT_CONFIG_GLOBAL", ".gitconfig"),
    ("GH_CONFIG_DIR", ".config/gh"),
    ("CARGO_HOME", ".cargo"),
    ("REGISTRY_AUTH_FILE", ".config/containers/auth.json"),
    ("NPM_CONFIG_USERCONFIG", ".npmrc"),
    ("npm_config_userconfig", ".npmrc"),
    ("GNUPGHOME", ".gnupg"),
    ("PGPASSFILE", ".pgpass"),
    ("PIP_CONFIG_FILE", ".config/pip/pip.conf"),  # index URLs with passwords
    ("BOTO_CONFIG", ".boto"),  # boto and gsutil credentials
    ("TF_CLI_CONFIG_FILE", ".terraformrc"),  # Terraform registry credentials
    ("HELM_REGISTRY_CONFIG", ".config/helm/registry/config.json"),
    ("HELM_REPOSITORY_CONFIG", ".config/helm/repositories.yaml"),
)

# The human's credential folders hidden whole (their caches hold live credentials too: AWS SSO
# and CLI caches, every kubeconfig, gh's whole config), and the folders where screen and an
# emacs server keep what lets a client in
CREDENTIAL_FOLDERS = (".aws", ".kube", ".config/gh", ".screen", ".emacs.d/server")
# Variables that move a credential file or folder away from HOME, and what to hide there
# ("" the path itself; a name: that file inside it). A list variable (KUBECONFIG) is split.
RELOCATED = (
    ("GNUPGHOME", ""), ("AWS_SHARED_CREDENTIALS_FILE", ""), ("AWS_CONFIG_FILE", ""), ("KUBECONFIG", ""),
    ("DOCKER_CONFIG", "config.json"), ("GH_CONFIG_DIR", ""), ("NPM_CONFIG_USERCONFIG", ""),
    ("npm_config_userconfig", ""), ("CLOUDSDK_CONFIG", ""), ("AZURE_CONFIG_DIR", ""), ("REGISTRY_AUTH_FILE", ""),
    ("PGPASSFILE", ""), ("SSH_AUTH_SOCK", ""), ("XDG_CONFIG_HOME", "gh"), ("XDG_CONFIG_HOME", "gcloud"),
    ("XDG_CONFIG_HOME", "agentsess"), ("XDG_DATA_HOME", "python_keyring"), ("XDG_DATA_HOME", "keyrings"),
    ("XDG_DATA_HOME", "kwalletd"), ("XDG_DATA_HOME", "agentsess"),
)
# Programs that run commands, or type, for whoever reaches their socket, outside any sandbox:
# terminal multiplexers (`tmux new-window CMD`), editors' servers (`nvim --server`,
# `emacsclient --eval`), terminals' remote control, VS Code's CLI hook. Named by the variable
# that tells a program inside them where the socket is (its first field, before a comma),
# and found in their default folders.
SERVER_VARIABLES = ("TMUX", "NVIM", "NVIM_LISTEN_ADDRESS", "WEZTERM_UNIX_SOCKET", "KITTY_LISTEN_ON",
                    "VSCODE_IPC_HOOK_CLI", "VSCODE_IPC_HOOK", "ZELLIJ_SOCKET_DIR", "SCREENDIR")


def relocated_credentials(env: dict) -> list[str]:
    """Credential paths the human's environment moved out of HOME, the key agents' sockets,
    and the sockets of programs that would run a command outside the run for whoever asks:
    the user's whole runtime folder (the session bus, systemd's private socket, gpg-agent,
    gnome-keyring, Wayland, editors' servers live there), tmux's, zellij's, screen's and
    emacs's folders in /tmp, and every socket a variable of :data:`SERVER_VARIABLES` names."""
    out = []
    for var, name in RELOCATED:
        for value in (env.get(var) or "").split(os.pathsep if var == "KUBECONFIG" else "\0"):
            if os.path.isabs(value):
                out.append(os.path.join(value, name) if name else value)
    gpg = (env.get("GPG_AGENT_INFO") or "").split(":", 1)[0]  # gpg 1: SOCKET:PID:1
    if os.path.isabs(gpg):
        out.append(gpg)
    uid = os.getuid()
    out += [p for p in (env.get("XDG_RUNTIME_DIR") or "", f"/run/user/{uid}") if os.path.isabs(p)]
    tmp = [d for d in {"/tmp", env.get("TMUX_TMPDIR") or "/tmp", env.get("TMPDIR") or "/tmp"} if os.path.isabs(d)]
    out += [os.path.join(d, f"{name}{uid}") for d in tmp for name in ("tmux-", "zellij-", "emacs")]
    user = env.get("USER") or env.get("LOGNAME") or ""
    if user and "/" not in user:
        out += [f"/run/screen/S-{user}", f"/var/run/screen/S-{user}"]
    for var in SERVER_VARIABLES:
        value = (env.get(var) or "").split(",", 1)[0]
        value = value[len("unix:"):] if value.startswith("unix:") else value  # kitty: unix:/path
        if os.path.isabs(value):
            out.append(os.path.dirname(value) if var == "TMUX" else value)  # tmux: all the user's servers
    return out


# Git config files whose [credential] sections and http.extraHeader are left behind when
# carried: they would hand the agent the human's git credentials through a helper.
_GIT_CONFIGS = (".gitconfig", ".config/git/config")


def readable_credential_files(home: str) -> list:
    """Absolute paths of the entries of :data:`HUMAN_CREDENTIAL_FILES` under ``home``
    that exist and that this process can read, in list order. For ``.ssh`` these are
    the private key files themselves (and its sockets); other folders are named when they can
    be listed."""
    found = []
    for rel in HUMAN_CREDENTIAL_FILES:
        path = os.path.join(home, rel.rstrip("/"))
        if rel == ".ssh/":
            found.extend(_ssh_keys(path))
        elif rel.endswith("/"):
            if os.path.isdir(path) and os.access(path, os.R_OK | os.X_OK):
                found.append(path)
        elif os.path.isfile(path) and os.access(path, os.R_OK):
            found.append(path)
    return found


# What ~/.ssh holds that is not a secret: public keys, host keys, the client's own settings
SSH_PUBLIC = ("known_hosts", "known_hosts.old", "authorized_keys", "authorized_keys2", "config", "environment")
# How a private key file begins (OpenSSH, PEM/PKCS#8, PuTTY, ssh.com): its name does not matter
_PRIVATE_MARKS = (b"PRIVATE KEY", b"PuTTY-User-Key-File", b"SSH2 ENCRYPTED PRIVATE KEY")


def _ssh_keys(folder: str, depth: int = 3) -> list:
    """What in ``folder`` (``~/.ssh``) gives the human's SSH access: private keys whatever
    their name (``id_*`` by name, any other file by how it begins), in sub-folders too, and
    sockets (a ControlMaster socket is a logged-in connection)."""
    import stat

    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    keys = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISSOCK(st.st_mode):
            keys.append(path)
        elif stat.S_ISDIR(st.st_mode):
            if depth > 1 and not os.path.islink(path):
                keys.extend(_ssh_keys(path, depth - 1))
        elif stat.S_ISREG(st.st_mode) and not name.endswith(".pub") and name not in SSH_PUBLIC:
            if not os.access(path, os.R_OK):
                continue
            if name.startswith("id_") or _looks_private(path):
                keys.append(path)
    return keys


def _looks_private(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return any(mark in head for mark in _PRIVATE_MARKS)


def isolated_home(agent: str, human_home: str, carry=(".gitconfig",)) -> dict:
    """Create (0700) or reuse the agent's own HOME; return the variables that select it.

    The folder is ``paths.agent_home(agent)`` and persists across runs, with the XDG
    config, data, cache and state folders inside it. Each path in ``carry`` (relative to
    the human's HOME; a file or a folder) is copied from the human's home if it exists
    there and the agent has no such file yet: nothing the agent already has is ever
    overwritten. Carried git config files lose their ``[credential]`` sections and
    ``extraHeader`` settings. A carry path that is or holds one of
    :data:`HUMAN_CREDENTIAL_FILES`, or that leads outside the home, is refused with an
    :class:`AgentsessError` naming it, before anything is copied.

    Returns ``{"HOME": ..., "XDG_CONFIG_HOME": ..., "XDG_DATA_HOME": ...,
    "XDG_CACHE_HOME": ..., "XDG_STATE_HOME": ...}`` and each variable of
    :data:`HOME_POINTERS` (``GIT_CONFIG_GLOBAL``, ``GH_CONFIG_DIR``, ``CARGO_HOME``,
    ``REGISTRY_AUTH_FILE``, ``NPM_CONFIG_USERCONFIG`` in either case, ``GNUPGHOME``,
    ``PGPASSFILE``, ``PIP_CONFIG_FILE``, ``BOTO_CONFIG``, ``TF_CLI_CONFIG_FILE``, Helm's…)
    pointing at its place inside the agent's home, whatever the human's value was: left
    as it was, it would lead the agent's tools back to the human's files.
    """
    if not agent or agent in (".", "..") or "/" in agent or "\0" in agent:
        raise AgentsessError(f"invalid agent name {agent!r}: it must be one path segment", USAGE)
    human_home = os.path.abspath(human_home)
    sources = [_checked_carry(rel, human_home) for rel in carry]

    # Each level made 0700 in turn: os.makedirs gives intermediate folders the umask's mode.
    root = paths.ensure_dir(paths.data_root())
    home = _ensure_tree(root, os.path.relpath(paths.agent_home(agent), root))
    env = {"HOME": home}
    for var, rel in XDG_DIRS:
        env[var] = _ensure_tree(home, rel)
    for var, rel in HOME_POINTERS:
        env[var] = os.path.join(home, rel)

    for rel, src in sources:
        if not os.path.lexists(src):
            continue
        dest = os.path.join(home, rel)
        if os.path.isdir(src):
            _copy_tree(src, dest, home)
        else:
            _copy_file(src, dest, home, rel)
    return env


def _checked_carry(rel: str, human_home: str):
    """(normalised ``rel``, absolute source path) of a carry entry, or AgentsessError."""
    norm = os.path.normpath(rel) if rel else ""
    if not rel or os.path.isabs(rel) or norm == "." or norm == ".." or norm.startswith("../"):
        raise AgentsessError(
            f"refusing to carry {rel!r} into the agent's home: give a path inside your home, "
            "relative to it",
            USAGE,
        )
    src = os.path.join(human_home, norm)
    candidates = [norm]
    real = os.path.realpath(src)
    real_home = os.path.realpath(human_home)
    if real.startswith(real_home + os.sep):
        candidates.append(os.path.relpath(real, real_home))
    if os.path.isdir(src):
        # Links inside a carried folder are followed when copying: check where they lead.
        for root, dirs, files in os.walk(src):
            for name in dirs + files:
                path = os.path.join(root, name)
                if os.path.islink(path):
                    target = os.path.realpath(path)
                    if target.startswith(real_home + os.sep):
                        candidates.append(os.path.relpath(target, real_home))
    for cand in candidates:
        hit = _credential_overlap(cand)
        if hit:
            raise AgentsessError(
                f"refusing to carry {rel} into the agent's home: it holds the human's "
                f"credentials ({hit}); remove it from the profile's carry list",
                USAGE,
            )
    return norm, src


def _credential_overlap(rel: str):
    """The credential entry that ``rel`` is, lies inside, or contains; else None."""
    for entry in HUMAN_CREDENTIAL_FILES:
        cred = entry.rstrip("/")
        if rel == cred or rel.startswith(cred + "/") or cred.startswith(rel + "/"):
            return cred
    return None


def _ensure_tree(home: str, rel: str) -> str:
    """Make ``home/rel`` folder by folder (0700), refusing symbolic links on the way: the
    agent's home outlives its runs, and a link planted there must not lead our writes
    or chmods into the human's files."""
    path = home
    for part in rel.split("/"):
        path = os.path.join(path, part)
        if os.path.islink(path):
            raise AgentsessError(
                f"{path} is a symbolic link; the agent's home must hold real folders: "
                "remove the link",
                STATE,
            )
        paths.ensure_dir(path)
    return path


def _copy_tree(src: str, dest: str, home: str) -> None:
    for root, dirs, files in os.walk(src):
        dirs.sort()
        sub = os.path.relpath(root, src)
        target = dest if sub == "." else os.path.join(dest, sub)
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(target, name), home)
            _copy_file(os.path.join(root, name), os.path.join(target, name), home, rel)


def _copy_file(src: str, dest: str, home: str, rel: str) -> None:
    if os.path.lexists(dest):
        return  # the agent's own copy wins, always
    parent = os.path.dirname(dest)
    if parent != home:
        _ensure_tree(home, os.path.relpath(parent, home))
    with open(src, "rb") as f:
        data = f.read()
    if rel in _GIT_CONFIGS:
        data = strip_git_credentials(data)
    mode = (os.stat(src).st_mode & 0o700) | 0o600
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(dest, flags, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def strip_git_credentials(config: bytes) -> bytes:
    """``config`` (a git config file) without its ``[credential]`` sections (helpers that
    would serve the human's git credentials) and ``extraHeader`` settings (which carry
    tokens in ``Authorization`` headers)."""
    out = []
    skipping = False
    for line in config.splitlines(keepends=True):
        body = line.strip()
        if body.startswith(b"["):
            close = body.find(b"]")
            header = (body[1:close] if close > 0 else body[1:]).split()
            skipping = bool(header) and header[0].split(b".", 1)[0].lower() == b"credential"
            if skipping:
                continue
            body = body[close + 1 :].strip() if close > 0 else b""
            if body and _is_extra_header(body):  # "[http] extraHeader = ..." on one line
                out.append(line.strip()[: close + 1] + b"\n")
            else:
                out.append(line)
            continue
        if skipping or _is_extra_header(body):
            continue
        out.append(line)
    return b"".join(out)


def _is_extra_header(body: bytes) -> bool:
    return body.split(b"=", 1)[0].strip().lower() == b"extraheader"
