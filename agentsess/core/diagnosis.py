"""`agentsess doctor`: what agentsess uses on this machine, and whether each part works."""

import os


def diagnose() -> dict:
    from agentsess.edges import keychain, keys, paths
    from agentsess.edges.config import load_config
    from agentsess.edges.store import Store
    from agentsess.errors import AgentsessError

    checks = []

    def add(name, level, detail):
        checks.append({"name": name, "level": level, "detail": detail})

    root = paths.data_root()
    add("data root", *_data_root(root))
    try:
        with Store() as store:
            runs = store.count()  # a shared store's location is known once it answered
            add("store", "ok", f"{store.location} ({runs} runs, migrations {', '.join(store.applied_migrations())})")
    except AgentsessError as exc:
        add("store", "fail", exc.message)
    try:
        status = keychain.backend_status()
        backend = status.get("backend")
        level = "fail" if backend == "unavailable" else "warn" if backend == "file" else "ok"
        detail = status.get("detail") or status.get("backend")
        if status.get("backend") == "file":
            detail = f"no OS keyring in use: secrets and signing keys are kept in {status.get('path')} (mode 0600); {detail}"
        add("keyring", level, detail)
    except AgentsessError as exc:
        add("keyring", "fail", exc.message)
    try:
        kid, _ = keys.current_key()
        add("signing key", "ok", f"current key {kid}; {len(keys.key_list())} key(s) published by `agentsess jwks`")
    except AgentsessError as exc:
        add("signing key", "fail", exc.message)
    try:
        config = load_config()
        where = config.path if config.exists else f"{config.path} (absent: built-in default profile)"
        add("config", "ok", f"{where}; profiles: {', '.join(config.profile_names())}")
    except AgentsessError as exc:
        add("config", "fail", exc.message)
    from agentsess.edges import containment

    found = containment.probe()
    if found.available:
        add("containment", "ok", f"runs are contained: {found.reason} ({found.bwrap})")
    else:
        add("containment", "warn", f"runs are advisory (the agent can reach what you can): {found.reason}")
    return {"ok": all(c["level"] != "fail" for c in checks), "checks": checks}


def _data_root(root: str) -> tuple[str, str]:
    """(level, detail) for the data root: usable, read-only (evidence can be read, runs cannot
    start), refused (shared or another user's), or impossible to create."""
    from agentsess.edges import paths
    from agentsess.errors import AgentsessError

    if os.path.isdir(root):
        try:
            paths.check_data_root(root)
        except AgentsessError as exc:
            return "fail", exc.message
        if not paths.writable(root):
            return "warn", f"{root} is read-only: runs, show-run, verify and export read it; run cannot start"
        return "ok", root
    if os.path.lexists(root):
        return "fail", f"{root} exists and is not a folder"
    parent = os.path.dirname(root)
    while parent and not os.path.isdir(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not paths.writable(parent):
        return "fail", f"{root} does not exist and cannot be created ({parent} is not writable)"
    return "ok", f"{root} (not created yet: the first run creates it, mode 0700)"
