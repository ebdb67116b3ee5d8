"""`agentsess run -- true` start-up (issue 12): what the run path may import, bubblewrap started
once per run, and a process that leaves without the interpreter's teardown yet with everything
it wrote written.

No timing is asserted here (bench/run.py measures); these pin the causes of the time instead.
The agent is still the adversary: a planted or stale probe file must never make a run weaker.
"""

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
from helpers import agentsess, runs_json, write_config
from pg import pg  # noqa: F401 - fixture

PY = sys.executable
BWRAP = shutil.which("bwrap")


def _bwrap_works() -> bool:
    if BWRAP is None:
        return False
    probe = subprocess.run([BWRAP, "--bind", "/", "/", "--unshare-pid", "--", "true"], capture_output=True)
    return probe.returncode == 0


CONTAINED = _bwrap_works()
if not CONTAINED and os.environ.get("AGENTSESS_CI") == "1":
    raise RuntimeError("CI must run the contained tests: bubblewrap is missing or cannot create namespaces")
needs_bwrap = pytest.mark.skipif(not CONTAINED, reason="bubblewrap with user namespaces is not available here")
MODES = [pytest.param([], id="contained", marks=needs_bwrap), pytest.param(["--no-contain"], id="advisory")]

# modules `run` must not load: each was paid on every run once (typer/rich: 50+ ms; dataclasses
# pulls in inspect, ast, dis, tokenize; socket and threading came with the control server)
NEVER_ON_RUN = {"typer", "rich", "click", "pydantic", "dataclasses", "inspect", "ast", "dis", "tokenize",
                "threading", "socket", "selectors", "subprocess", "asyncio", "concurrent", "logging",
                "keyring", "platformdirs", "urllib", "http", "email", "uuid", "tempfile", "shutil"}


def _imports(argv: list[str], env: dict | None = None) -> set[str]:
    proc = subprocess.run([PY, "-X", "importtime", "-m", "agentsess", *argv], capture_output=True,
                          env={**os.environ, **(env or {})}, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    names = set()
    for line in proc.stderr.decode(errors="replace").splitlines():
        if line.startswith("import time:") and "|" in line and "imported package" not in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize("mode", MODES)
def test_run_imports_none_of_the_heavy_modules(mode):
    write_config('[profiles.other]\nscopes = ["a:*"]\n')  # a config to parse, as users have one
    names = _imports(["run", "--no-pty", *mode, "--", "true"])
    assert "agentsess.core.runs.supervise" in names and "agentsess.edges.control" in names  # it did run
    assert _top(names) & NEVER_ON_RUN == set()


def test_run_without_a_config_does_not_import_typing_or_toml():
    names = _imports(["run", "--no-pty", "--no-contain", "--", "true"],
                     env={"AGENTSESS_CONFIG": os.path.join(os.environ["AGENTSESS_HOME"], "absent.toml")})
    assert _top(names) & (NEVER_ON_RUN | {"typing", "tomllib"}) == set()


@pytest.mark.parametrize("mode", MODES)
def test_the_control_socket_answers_from_the_first_moment_of_the_child(mode):
    """The authority is built after the child started; the socket listens before: a child that
    asks at once (its very first act) is answered, not refused or left hanging."""
    proc = agentsess("run", "--no-pty", *mode, "--", PY, "-m", "agentsess", "whoami", "--json", check=0)
    who = json.loads(proc.stdout)
    assert who["inside_run"] and who["id"] == runs_json()[0]["id"]


# -- bubblewrap once per run ----------------------------------------------------------------


def _logging_bwrap(folder, log) -> str:
    """A `bwrap` on PATH that notes each start and then is the real one."""
    folder.mkdir(exist_ok=True)
    path = folder / "bwrap"
    path.write_text(f'#!/bin/sh\necho start >> "{log}"\nexec "{BWRAP}" "$@"\n')
    path.chmod(0o755)
    return str(folder)


def _starts(log) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _probe_file(home) -> str:
    return os.path.join(str(home), "containment.probe")


@needs_bwrap
def test_a_contained_run_starts_bubblewrap_once_after_the_first(agentsess_home, tmp_path):
    log = tmp_path / "bwrap.log"
    env = {"PATH": _logging_bwrap(tmp_path / "bin", log) + os.pathsep + os.environ["PATH"]}
    agentsess("run", "--no-pty", "--", "true", env=env, check=0)
    assert _starts(log) == 2  # the probe, then the run
    st = os.stat(_probe_file(agentsess_home))
    assert stat.S_IMODE(st.st_mode) == 0o600
    for runs in (3, 4):
        agentsess("run", "--no-pty", "--", "true", env=env, check=0)
        assert _starts(log) == runs  # the run only
    assert {r["containment"] for r in runs_json()} == {"contained"}


@needs_bwrap
@pytest.mark.parametrize("planted", ["", "v1 garbage\n", "x" * 10000, "\x00\xff\n"])
def test_a_planted_probe_file_is_probed_again(agentsess_home, tmp_path, planted):
    log = tmp_path / "bwrap.log"
    env = {"PATH": _logging_bwrap(tmp_path / "bin", log) + os.pathsep + os.environ["PATH"]}
    agentsess("run", "--no-pty", "--", "true", env=env, check=0)  # the data root exists
    with open(_probe_file(agentsess_home), "w", encoding="latin-1") as fh:
        fh.write(planted)
    before = _starts(log)
    agentsess("run", "--no-pty", "--", "true", env=env, check=0)
    assert _starts(log) == before + 2 and runs_json()[0]["containment"] == "contained"


@needs_bwrap
def test_a_new_bubblewrap_binary_is_probed_again(agentsess_home, tmp_path):
    log = tmp_path / "bwrap.log"
    folder = _logging_bwrap(tmp_path / "bin", log)
    env = {"PATH": folder + os.pathsep + os.environ["PATH"]}
    agentsess("run", "--no-pty", "--", "true", env=env, check=0)
    with open(os.path.join(folder, "bwrap"), "a") as fh:
        fh.write("# upgraded\n")  # another binary (size and mtime change)
    agentsess("run", "--no-pty", "--", "true", env=env, check=0)
    assert _starts(log) == 4


def _failing_bwrap(folder) -> str:
    folder.mkdir(exist_ok=True)
    path = folder / "bwrap"
    path.write_text('#!/bin/sh\necho "bwrap: No permissions to create new namespace" >&2\nexit 1\n')
    path.chmod(0o755)
    return str(folder)


def test_a_remembered_probe_that_no_longer_holds_fails_closed(agentsess_home, tmp_path):
    """bubblewrap worked, then stops working (a sysctl the fingerprint does not know, a kernel
    policy): the remembered answer is wrong. The run must not run its command uncontained,
    nor report bubblewrap's failure as the command's exit code."""
    folder = _failing_bwrap(tmp_path / "bin")
    env = {"PATH": folder + os.pathsep + os.environ["PATH"]}
    marker = tmp_path / "ran"
    agentsess("run", "--no-pty", "--", "true", env=env, check=0)  # advisory: the probe failed
    assert not os.path.exists(_probe_file(agentsess_home))  # failure is never remembered
    fingerprint = subprocess.run(
        [PY, "-c", f"from agentsess.edges import containment; print(containment._fingerprint({folder + '/bwrap'!r}))"],
        capture_output=True, text=True, check=True).stdout.strip()
    with open(_probe_file(agentsess_home), "w") as fh:
        fh.write(fingerprint + "\n")
    proc = agentsess("run", "--no-pty", "--", "touch", str(marker), env=env, check=125)
    assert not marker.exists()
    assert b"bubblewrap could not contain the run" in proc.stderr and b"did not run" in proc.stderr
    row = runs_json()[0]
    assert row["containment"] == "contained" and row["exit_code"] is None
    assert not os.path.exists(_probe_file(agentsess_home))  # forgotten: the next run probes
    proc = agentsess("run", "--no-pty", "--", "touch", str(marker), env=env, check=0)
    assert b"advisory run" in proc.stderr and marker.exists()
    agentsess("verify", "--all", check=0)


# -- leaving without the interpreter's teardown -----------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_run_leaves_with_its_output_receipts_and_exit_code_whole(mode, tmp_path):
    """`run` ends with os._exit: everything must be written by then (the output log's writer
    thread drained, receipts sealed, stdout flushed to a pipe) and the exit code kept."""
    script = ("import sys; sys.stdout.write('x' * 3_000_000 + 'END\\n'); sys.stdout.flush(); "
              "sys.stderr.write('to stderr\\n'); sys.exit(7)")
    proc = agentsess("run", "--no-pty", *mode, "--", PY, "-c", script, check=7)
    assert proc.stdout == b"x" * 3_000_000 + b"END\n"
    assert b"to stderr" in proc.stderr
    row = runs_json()[0]
    assert row["exit_code"] == 7 and row["status"] == "exited"
    agentsess("verify", row["id"], check=0)  # the seal and the output log's digest agree
    proc = agentsess("run", "--no-pty", *mode, "--", "sh", "-c", "kill -TERM $$", check=128 + 15)
    assert runs_json()[0]["signal"] == 15


def test_a_refused_run_still_says_why(tmp_path):
    """The error boundary still speaks for `run` (only a returned exit code leaves early)."""
    write_config('[profiles.p]\nscopes = ["a:*"]\n')
    proc = agentsess("run", "--profile", "p", "--scope", "b:c", "--", "true", check=125)
    assert proc.stderr.decode().startswith("agentsess: error: refused: scope b:c exceeds")


@pytest.mark.parametrize("mode", MODES)
def test_run_on_a_postgresql_store_never_imports_psycopg(mode, pg):
    """Through the store agent (edges/store/agent.py): the run's process has no psycopg, no
    driver and no connection of its own; its watcher is one thread (threading is its only cost)."""
    names = _imports(["run", "--no-pty", *mode, "--", "true"])  # the first run starts the agent
    again = _imports(["run", "--no-pty", *mode, "--", "true"])  # the next one finds it
    for seen in (names, again):
        assert "agentsess.edges.store.agent" in seen and "agentsess.core.runs.supervise" in seen
        assert not {n for n in seen if n.startswith(("psycopg", "agentsess.edges.store.postgres"))}, seen
        assert _top(seen) & (NEVER_ON_RUN - {"threading"}) == set()
    assert [r["status"] for r in runs_json()] == ["exited", "exited"]


# -- exec inside a run: the fast frame, as hook and check -----------------------------------

# what `exec` loaded before it went onto the fast frame (~8 ms of every shell command Claude
# Code runs): the argument parser, json and socket for the request, signal's enums
NEVER_ON_EXEC = {"argparse", "json", "socket", "selectors", "signal", "enum", "re", "typing", "dataclasses",
                 "subprocess", "threading", "typer", "rich", "tomllib", "sqlite3", "hashlib"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spelling", [["-c", "exit 3"], ["--source", "claude-code", "-c", "exit 3"],
                                      ["--source", "claude-code", "--subagents", "-c", "exit 3"],
                                      ["--", "sh", "-c", "exit 3"]], ids=["-c", "source", "subagents", "--"])
def test_exec_inside_a_run_imports_no_parser_json_or_socket(mode, spelling):
    script = ("import subprocess, sys; p = subprocess.run([sys.executable, '-X', 'importtime', '-m', 'agentsess', "
              f"'exec', *{spelling!r}], capture_output=True); sys.stdout.write(p.stderr.decode()); sys.exit(p.returncode)")
    proc = agentsess("run", "--no-pty", *mode, "--", PY, "-c", script, check=3)
    names = set()
    for line in proc.stdout.decode(errors="replace").splitlines():
        if line.startswith("import time:") and "|" in line and "imported package" not in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "agentsess.edges.control" in names and "agentsess.cli.parsing" not in names
    assert _top(names) & NEVER_ON_EXEC == set()
    show = agentsess("show-run", "last", "--json", check=0)
    (rec,) = [r["data"] for r in json.loads(show.stdout)["receipts"] if r["type"] == "action.exec"]
    assert rec["exit_code"] == 3  # and it was recorded


# -- the `agentsess` command itself ---------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_the_installed_command_adds_no_import_to_check(mode):
    """pip's generated wrapper imported `re` (and with it enum, functools: ~5 ms) before any
    agentsess code ran; the script agentsess installs (scripts/agentsess) imports only `sys`."""
    command = os.path.join(os.path.dirname(PY), "agentsess")
    with open(command) as fh:
        assert fh.readline().startswith("#!") and "import re" not in fh.read()
    script = ("import subprocess, sys; p = subprocess.run([sys.executable, '-X', 'importtime', "
              f"{command!r}, 'check', 'repo:read'], capture_output=True); sys.stdout.write(p.stderr.decode()); "
              "sys.exit(p.returncode)")
    proc = agentsess("run", "--no-pty", *mode, "--scope", "repo:read", "--", PY, "-c", script, check=0)
    names = set()
    for line in proc.stdout.decode(errors="replace").splitlines():
        if line.startswith("import time:") and "|" in line and "imported package" not in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "agentsess.edges.control" in names
    assert _top(names) & NEVER_ON_EXEC == set()
