"""The command line as a whole: version, help, the command table, the hot-path parser."""

import importlib.metadata

import agentsess
from conftest import agentsess as ag


def test_version_is_written_once_and_printed():
    assert importlib.metadata.version("agentsess") == agentsess.__version__
    for flag in ("--version", "-V"):
        out = ag(flag, check=0)
        assert out.stdout.decode() == f"agentsess {agentsess.__version__}\n"
        assert out.stderr == b""
