"""Secret storage: the one module that holds signing keys' private halves and user secrets.

Two backends:

- ``system``: the OS keyring through ``keyring`` (service ``agentsess``);
- ``file``: a 0600 JSON file (``paths.secrets_file()``) in the 0700 data root, used where no
  usable OS keyring exists (headless CI) or when ``AGENTSESS_KEYRING=file`` asks for it.

``AGENTSESS_KEYRING=file|system`` forces one. Otherwise the OS keyring is tried; if it is not
usable (keyring's ``fail`` or ``null`` backend, a chainer with nothing to chain, a backend
keyring itself does not recommend, or an error), agentsess falls back to the file, says so
once on stderr, and records that choice in ``keychain.json`` in the data root (a forced
``file`` is recorded too, silently). Later runs read the record and go straight to the file
without importing ``keyring`` (60 ms), so a data root keeps the backend its secrets are in;
only ``AGENTSESS_KEYRING=system`` overrides the record.

Names are namespaced: ``signing-key:<kid>`` for signing keys, ``secret:<name>`` for user
secrets. Keyrings cannot list their entries, so a 0600 index (names, set-at times and the
backend that holds them, never values) sits beside the record and serves ``names()``.

Secret values never appear in errors, reprs or the index.
"""

import json
import os
import sys
import time

from agentsess.edges import paths
from agentsess.errors import STATE, USAGE, AgentsessError
from agentsess.timefmt import rfc3339

SERVICE = "agentsess"
SIGNING_KEY_PREFIX = "signing-key:"
SECRET_PREFIX = "secret:"
SECRET_NAME_MAX = 64

_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_REST = _NAME_FIRST | frozenset("._-")

# (data root, AGENTSESS_KEYRING) -> backend object; a process asks the keyring once.
_chosen: dict = {}


# -- files ----------------------------------------------------------------------------


def record_file() -> str:
    """The small file recording which backend this data root uses (only written for file)."""
    return paths.keychain_record()


def index_file() -> str:
    """Names and set-at times of stored secrets (never values)."""
    return paths.keychain_index()


def _lock_file() -> str:
    return paths.keychain_lock()


def _now_text() -> str:
    return rfc3339(time.time())


class _Lock:
    """An exclusive flock on a 0600 lock file for read-modify-write of our JSON files."""

    __slots__ = ("path", "fd")

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def __enter__(self):
        try:
            paths.ensure_dir(os.path.dirname(self.path))
            self.fd = paths.open_private(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise AgentsessError(
                f"cannot lock {self.path} ({exc.strerror or exc}); make the data root writable "
                "or set AGENTSESS_HOME to a writable folder",
                STATE,
            ) from None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the lock
        self.fd = -1


def _read_json(path: str, what: str):
    """The JSON object in ``path``; None if the file does not exist."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AgentsessError(
            f"cannot read the {what} {path} ({exc.strerror or exc}); make the data root "
            "readable or set AGENTSESS_HOME to another folder",
            STATE,
        ) from None
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise AgentsessError(
            f"the {what} {path} is damaged (not a JSON object); move it aside to start afresh",
            STATE,
        )
    return doc


def _write_json(path: str, doc: dict, what: str) -> None:
    try:
        paths.ensure_dir(os.path.dirname(path))
        paths.write_private(path, json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n")
    except OSError as exc:
        raise AgentsessError(
            f"cannot write the {what} {path} ({exc.strerror or exc}); make the data root "
            "writable or set AGENTSESS_HOME to a writable folder",
            STATE,
        ) from None


# -- backends -------------------------------------------------------------------------


class _FileBackend:
    name = "file"
    __slots__ = ("path", "reason")

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason

    def _load(self) -> dict:
        doc = _read_json(self.path, "secrets file")
        if doc is None:
            return {}
        secrets = doc.get("secrets")
        if not isinstance(secrets, dict):
            raise AgentsessError(
                f"the secrets file {self.path} is damaged (no 'secrets' object); "
                "move it aside to start afresh",
                STATE,
            )
        return secrets

    def get(self, name: str):
        value = self._load().get(name)
        return value if isinstance(value, str) else None

    def set(self, name: str, value: str) -> None:
        with _Lock(_lock_file()):
            secrets = self._load()
            secrets[name] = value
            _write_json(self.path, {"version": 1, "secrets": secrets}, "secrets file")

    def delete(self, name: str) -> bool:
        with _Lock(_lock_file()):
            secrets = self._load()
            if name not in secrets:
                return False
            del secrets[name]
            _write_json(self.path, {"version": 1, "secrets": secrets}, "secrets file")
            return True

    def status(self) -> dict:
        return {
            "backend": "file",
            "detail": f"a 0600 file in the data root ({self.reason})",
            "path": self.path,
        }


class _SystemBackend:
    name = "system"
    __slots__ = ("keyring", "label")

    def __init__(self, keyring_backend, label: str):
        self.keyring = keyring_backend
        self.label = label

    def _failed(self, action: str, name: str, exc: Exception) -> AgentsessError:
        # keyring's messages name the service and user at most, never the password.
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        why = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return AgentsessError(
            f"the OS keyring ({self.label}) could not {action} {name} ({why}); unlock the "
            "keyring, or set AGENTSESS_KEYRING=file to keep secrets in a 0600 file",
            STATE,
        )

    def get(self, name: str):
        try:
            return self.keyring.get_password(SERVICE, name)
        except Exception as exc:
            raise self._failed("read", name, exc) from None

    def set(self, name: str, value: str) -> None:
        try:
            self.keyring.set_password(SERVICE, name, value)
        except Exception as exc:
            raise self._failed("store", name, exc) from None

    def delete(self, name: str) -> bool:
        if self.get(name) is None:
            return False
        try:
            self.keyring.delete_password(SERVICE, name)
        except Exception as exc:
            from keyring.errors import PasswordDeleteError

            if isinstance(exc, PasswordDeleteError):
                return False
            raise self._failed("delete", name, exc) from None
        return True

    def status(self) -> dict:
        return {"backend": "system", "detail": f"OS keyring {self.label}", "path": None}


# -- choosing a backend ---------------------------------------------------------------


def _label(kr) -> str:
    cls = type(kr)
    return f"{cls.__module__.rpartition('.')[2]}.{cls.__name__}"


def _explicitly_configured() -> bool:
    """True if the user named a keyring backend (env or keyringrc.cfg), so its priority is moot."""
    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        return True
    try:
        from keyring.util import platform_

        cfg = os.path.join(str(platform_.config_root()), "keyringrc.cfg")
        with open(cfg, encoding="utf-8") as f:
            return "default-keyring" in f.read()
    except Exception:
        return False


def _probe_keyring():
    """(keyring backend, label) if the OS keyring is usable, else (None, why not)."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null

        kr = keyring.get_keyring()
    except Exception as exc:
        return None, f"keyring failed to load: {type(exc).__name__}"
    label = _label(kr)
    try:
        if isinstance(kr, (fail.Keyring, null.Keyring)):
            return None, label
        if isinstance(kr, chainer.ChainerBackend):
            chained = list(kr.backends)
            if not chained:
                return None, f"{label} with no backends"
            priority = max(b.priority for b in chained)
            label = f"{label} of {', '.join(_label(b) for b in chained)}"
        else:
            priority = kr.priority
        if priority < 1 and not _explicitly_configured():
            return None, f"{label}, priority {priority:g}"
    except Exception as exc:
        return None, f"{label} failed: {type(exc).__name__}"
    return kr, label


def _read_record(root: str):
    try:
        return _read_json(paths.keychain_record(root), "keychain record")
    except AgentsessError:
        return None  # a damaged record is rewritten by the next fallback


def _claim_record(root: str, reason: str) -> bool:
    """Write the file-backend record unless one exists; True if this call wrote it."""
    path = paths.keychain_record(root)
    if _read_record(root) is not None:
        return False  # recorded already (and nothing written: the data root may be read-only)
    doc = {"backend": "file", "reason": reason, "chosen_at": _now_text()}
    data = json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = paths.open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic and exclusive: exactly one process claims
            return True
        except FileExistsError:
            if _read_record(root) is not None:
                return False
            os.replace(tmp, path)  # the existing record was damaged
            return True
        except OSError:  # no hard links on this filesystem
            if os.path.exists(path):
                return False
            os.replace(tmp, path)
            return True
    except OSError as exc:
        raise AgentsessError(
            f"cannot write {path} ({exc.strerror or exc}); make the data root writable or "
            "set AGENTSESS_HOME to a writable folder",
            STATE,
        ) from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _notice(text: str) -> None:
    try:
        sys.stderr.write(f"agentsess: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _file_backend(root: str, reason: str, forced: bool) -> _FileBackend:
    path = paths.secrets_file()
    try:
        paths.ensure_dir(root)
    except OSError as exc:
        raise AgentsessError(
            f"cannot create the data root {root} ({exc.strerror or exc}); set AGENTSESS_HOME "
            "to a writable folder",
            STATE,
        ) from None
    # A forced choice is recorded quietly (the user asked for it; `doctor` names the file).
    # A fallback is a surprise, so it is said once per data root: by whoever records it.
    if _claim_record(root, reason) and not forced:
        _notice(
            f"no usable OS keyring ({reason}); keeping secrets in {path} (mode 0600). "
            "Set AGENTSESS_KEYRING=system to require a keyring."
        )
    return _FileBackend(path, reason)


def _backend():
    root = paths.data_root()
    mode = os.environ.get("AGENTSESS_KEYRING", "").strip().lower()
    key = (root, mode)
    backend = _chosen.get(key)
    if backend is not None:
        return backend
    if mode == "file":
        backend = _file_backend(root, "AGENTSESS_KEYRING=file", forced=True)
    elif mode == "system":
        kr, label = _probe_keyring()
        if kr is None:
            raise AgentsessError(
                f"AGENTSESS_KEYRING=system but no usable OS keyring ({label}); install and "
                "unlock one (or name a backend with PYTHON_KEYRING_BACKEND), or set "
                "AGENTSESS_KEYRING=file to keep secrets in a 0600 file",
                STATE,
            )
        backend = _SystemBackend(kr, label)
    elif mode in ("", "auto"):
        record = _read_record(root)
        if record is not None and record.get("backend") == "file":
            reason = record.get("reason")
            backend = _FileBackend(paths.secrets_file(), str(reason or "chosen earlier"))
        else:
            kr, label = _probe_keyring()
            if kr is not None:
                backend = _SystemBackend(kr, label)
            else:
                backend = _file_backend(root, label, forced=False)
    else:
        raise AgentsessError(
            f"AGENTSESS_KEYRING must be 'file' or 'system', not {mode[:20]!r}; "
            "unset it to let agentsess choose",
            USAGE,
        )
    _chosen[key] = backend
    return backend


# -- index ----------------------------------------------------------------------------


def _load_index() -> dict:
    doc = _read_json(index_file(), "secrets index")
    if doc is None:
        return {}
    entries = doc.get("entries")
    return entries if isinstance(entries, dict) else {}


def _update_index(name: str, backend_name: str, present: bool) -> None:
    with _Lock(_lock_file()):
        entries = _load_index()
        if present:
            entries[name] = {"set_at": _now_text(), "backend": backend_name}
        elif entries.pop(name, None) is None:
            return
        _write_json(index_file(), {"version": 1, "entries": entries}, "secrets index")


# -- raw API (namespaced names) -------------------------------------------------------


def _check_raw(name) -> None:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise AgentsessError("a keychain entry name must be a non-empty string", USAGE)


def get(name: str):
    """The value stored under ``name``, or None."""
    _check_raw(name)
    return _backend().get(name)


def set(name: str, value: str) -> None:  # noqa: A001 - the keychain's own vocabulary
    """Store ``value`` under ``name``, replacing any earlier value."""
    _check_raw(name)
    if not isinstance(value, str):
        raise AgentsessError("a keychain value must be a string", USAGE)
    backend = _backend()
    backend.set(name, value)
    _update_index(name, backend.name, True)


def delete(name: str) -> bool:
    """Remove ``name``; True if it was there."""
    _check_raw(name)
    backend = _backend()
    found = backend.delete(name)
    _update_index(name, backend.name, False)
    return found


def names() -> list:
    """``(name, set_at)`` of every entry the current backend holds, sorted by name."""
    backend = _backend()
    out = []
    for name, entry in _load_index().items():
        if isinstance(entry, dict) and entry.get("backend", backend.name) == backend.name:
            out.append((name, str(entry.get("set_at", ""))))
    out.sort()
    return out


def backend_status() -> dict:
    """``{"backend", "detail", "path"}`` for ``agentsess doctor``; never raises for state."""
    try:
        return dict(_backend().status())
    except AgentsessError as exc:
        return {"backend": "unavailable", "detail": exc.message, "path": None}


# -- user secrets ---------------------------------------------------------------------


def check_secret_name(name) -> str:
    """Return ``name`` if it is a valid secret name; raise AgentsessError(USAGE) otherwise."""
    rule = (
        "use letters, digits, '.', '_' and '-', starting with a letter or digit, "
        f"at most {SECRET_NAME_MAX} characters"
    )
    if not isinstance(name, str) or not name:
        raise AgentsessError(f"a secret name cannot be empty; {rule}", USAGE)
    if len(name) > SECRET_NAME_MAX:
        # Not echoed: an over-long "name" is often a value pasted in the wrong place.
        raise AgentsessError(f"secret name is {len(name)} characters long; {rule}", USAGE)
    if name[0] not in _NAME_FIRST:
        raise AgentsessError(f"bad secret name {name!r}: {rule}", USAGE)
    for ch in name:
        if ch not in _NAME_REST:
            raise AgentsessError(f"bad secret name {name!r}: {ch!r} is not allowed; {rule}", USAGE)
    return name


def set_secret(name: str, value: str) -> None:
    """Store a user secret (e.g. a GitHub token) under ``secret:<name>``."""
    check_secret_name(name)
    if not isinstance(value, str) or not value:
        raise AgentsessError(f"the value of secret {name} is empty; give a non-empty value", USAGE)
    set(SECRET_PREFIX + name, value)


def get_secret(name: str):
    """The value of user secret ``name``, or None."""
    check_secret_name(name)
    return get(SECRET_PREFIX + name)


def remove_secret(name: str) -> bool:
    """Remove user secret ``name``; True if it existed."""
    check_secret_name(name)
    return delete(SECRET_PREFIX + name)


def list_secrets() -> list:
    """``(name, set_at)`` of the user secrets (names without the namespace; never values)."""
    n = len(SECRET_PREFIX)
    return [(name[n:], at) for name, at in names() if name.startswith(SECRET_PREFIX)]
