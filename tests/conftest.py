"""Every test gets its own data root, config file and file-backed keyring. The process
helpers every test uses are tests/helpers.py."""

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
