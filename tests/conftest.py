"""Every test gets its own data root, config file and file-backed keyring."""

import os
import subprocess
import sys

import pytest


@pytest.fixture(autouse=True)
def agentsess_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("AGENTSESS_HOME", str(home))
    monkeypatch.setenv("AGENTSESS_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("AGENTSESS_KEYRING", "file")
    for var in ("AGENTSESS_RUN_ID", "AGENTSESS_TOKEN", "AGENTSESS_PARENT_RUN_ID", "AGENTSESS_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    return home


def agentsess(*args, input=None, env=None, timeout=60, check=None, **kw):
    """Run `python -m agentsess ARGS` as a real process; returns CompletedProcess (bytes)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "agentsess", *args],
        input=input,
        capture_output=True,
        env=full_env,
        timeout=timeout,
        **kw,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


@pytest.fixture
def cli():
    return agentsess
