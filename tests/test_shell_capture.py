"""Shell capture (`run --capture-shell`): the agent's bash commands become `action.exec`
receipts, never agentsess's own traps, and `show-run` shows each exit code apart from the
command the agent chose."""

import re

from helpers import agentsess, cli, show


def _execs(run: str = "last") -> list[dict]:
    return [r["data"] for r in show(run)["receipts"] if r["type"] == "action.exec"]


def test_only_the_agents_commands_are_recorded_not_agentsess_traps():
    proc = agentsess("run", "--no-pty", "--capture-shell", "--", "bash", "-c", "false; echo hi; exit 3")
    assert proc.returncode == 3, proc.stderr
    execs = _execs()
    assert [(e["command"], e["exit_code"]) for e in execs] == [("false", 1), ("echo hi", 0), ("exit 3", 3)]
    assert not any("__agentsess" in e["command"] or e["command"].startswith("trap") for e in execs)
    assert cli("verify", "last").returncode == 0


def test_a_shell_that_runs_nothing_records_nothing():
    assert agentsess("run", "--no-pty", "--capture-shell", "--", "bash", "-c", ":").returncode == 0
    assert [e["command"] for e in _execs()] == [":"]
    assert agentsess("run", "--no-pty", "--capture-shell", "--", "bash", "-c", "").returncode == 0
    assert _execs() == []


def test_the_agents_own_trap_commands_are_still_recorded():
    script = "trap 'echo usr1' USR1; trap - USR1; true"
    assert agentsess("run", "--no-pty", "--capture-shell", "--", "bash", "-c", script).returncode == 0
    commands = [e["command"] for e in _execs()]
    assert commands == ["trap 'echo usr1' USR1", "trap - USR1", "true"]


def test_show_run_puts_the_exit_code_before_the_command():
    # the command itself says "→ exit 0": the real exit code (1) must not be confused with it
    script = "test '→ exit 0' = x; echo done"
    assert agentsess("run", "--no-pty", "--capture-shell", "--", "bash", "-c", script).returncode == 0
    text = cli("show-run", "last").stdout.decode()
    lines = [ln for ln in text.splitlines() if re.match(r"\d+\s+[\d:]+\s+action\.exec ", ln)]  # the timeline's rows
    assert len(lines) == 2, text
    assert re.search(r"action\.exec\s+exit 1  \$ test '→ exit 0' = x$", lines[0]), lines[0]
    assert re.search(r"action\.exec\s+exit 0  \$ echo done$", lines[1]), lines[1]
