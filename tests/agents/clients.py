"""The real agent CLIs, pinned and installed by `.ci/agents.sh` into `.cache/npm-clients`.

A test that needs one calls :func:`client`; where it is missing the test is skipped with the
reason, except in CI (``AGENTSESS_CI=1``), where it fails.
"""

import os
import shutil
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(REPO, ".cache", "npm-clients", "node_modules", ".bin")
PY = sys.executable


def client(name: str) -> str:
    """The absolute path of the pinned ``name`` (claude, codex, gemini)."""
    path = os.path.join(BIN, name)
    if os.access(path, os.X_OK):
        return path
    why = f"{name} is not installed in {BIN}: run .ci/agents.sh (needs npm)"
    if os.environ.get("AGENTSESS_CI") == "1":
        pytest.fail(why)
    pytest.skip(why)


def node_ok() -> None:
    if shutil.which("node") is None:
        why = "node is not installed"
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail(why)
        pytest.skip(why)


def fake_git(bindir, markers) -> str:
    """A `git` that, asked to push, leaves a marker file instead: any spelling that gets past
    the guard shows up as a marker."""
    os.makedirs(bindir, exist_ok=True)
    path = os.path.join(bindir, "git")
    with open(path, "w") as fh:
        fh.write(f"#!/bin/sh\ncase \" $* \" in *' push '*|*' push') touch {markers}/push-$$;; esac\nexit 0\n")
    os.chmod(path, 0o755)
    return path
