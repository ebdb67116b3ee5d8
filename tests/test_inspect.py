"""`runs`, `show-run`, `doctor`, and help text: what a person handling an incident reads."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
from helpers import agentsess, cli, runs_json, show, spawn, wait_for

PY = sys.executable
RUN_KEYS = {"id", "name", "status", "exit_code", "signal", "parent_id", "command", "cwd", "host", "user",
            "profile", "agent", "on_behalf_of", "scopes", "expires_at", "started_at", "ended_at",
            "duration", "mode", "depth", "containment", "unchecked_actions"}
SHOW_KEYS = RUN_KEYS | {"credential", "revocation", "error", "output_bytes", "output_sha256", "children",
                        "receipts", "integrity", "unchecked", "pending_approvals"}


def test_json_keys_are_the_documented_ones():
    agentsess("run", "--", "true", check=0)
    assert set(runs_json()[0]) == RUN_KEYS
    shown = show()
    assert set(shown) == SHOW_KEYS
    assert set(shown["integrity"]) == {"run", "result", "ok", "sealed", "records", "seq_range", "time_range",
                                        "failure", "failure_seq", "seal_kid", "source", "mirror"}
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    for key in SHOW_KEYS:
        assert f"`{key}`" in readme, key


def _every_status(tmp_path):
    """One run of each status: exited, denied, revoked, abandoned, running. Returns {status: id}."""
    with open(os.environ["AGENTSESS_CONFIG"], "w") as fh:
        fh.write('[profiles.small]\nscopes = ["fs:read"]\n')
    agentsess("run", "--name", "ok", "--", "sh", "-c", "echo all good", check=0)
    agentsess("run", "--profile", "small", "--scope", "net:*", "--", "true")
    marker = tmp_path / "m"
    p = spawn("run", "--name", "victim", "--", "sh", "-c", f"touch {marker}; sleep 30",
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(marker.exists)
    agentsess("revoke", "last", "--reason", "test", check=0)
    p.wait(15)
    marker2 = tmp_path / "m2"
    p = spawn("run", "--name", "orphan", "--", "sh", "-c", f"touch {marker2}; sleep 30",
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(marker2.exists)
    p.kill()
    p.wait(5)
    marker3 = tmp_path / "m3"
    live = spawn("run", "--name", "live", "--", "sh", "-c", f"touch {marker3}; sleep 30",
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(marker3.exists)
    return {r["status"]: r["id"] for r in runs_json()}, live


def test_show_run_renders_every_status(tmp_path):
    ids, live = _every_status(tmp_path)
    try:
        assert set(ids) == {"exited", "denied", "revoked", "abandoned", "running"}
        for status, run_id in ids.items():
            out = cli("show-run", run_id, check=0).stdout.decode()
            assert run_id in out and re.search(rf"status\s+{status}", out), (status, out)
            assert "receipts" in out and "integrity" in out
        assert "all good" in cli("show-run", ids["exited"], check=0).stdout.decode()
        revoked = cli("show-run", ids["revoked"], check=0).stdout.decode()
        assert "run.revoked" in revoked and "test" in revoked
        denied = cli("show-run", ids["denied"], check=0).stdout.decode()
        assert "net:*" in denied and "run.denied" in denied
        running = cli("show-run", ids["running"], check=0).stdout.decode()
        assert "intact, unsealed" in running and "live" in running
        abandoned = cli("show-run", ids["abandoned"], check=0).stdout.decode()
        assert "run.abandoned" in abandoned
    finally:
        live.terminate()
        live.wait(15)


def test_runs_filters_and_tree(tmp_path):
    agentsess("run", "--name", "alpha", "--", "true", check=0)
    agentsess("run", "--name", "beta", "--", "sh", "-c", "exit 2")
    agentsess("run", "--name", "parent", "--", PY, "-m", "agentsess", "run", "--name", "kid", "--", "true", check=0)
    assert [r["name"] for r in runs_json()] == ["kid", "parent", "beta", "alpha"]
    by_name = json.loads(cli("runs", "--name", "beta", "--json", check=0).stdout)
    assert [r["exit_code"] for r in by_name] == [2]
    parent = [r for r in runs_json() if r["name"] == "parent"][0]
    kids = json.loads(cli("runs", "--parent", parent["id"], "--json", check=0).stdout)
    assert [k["name"] for k in kids] == ["kid"]
    assert json.loads(cli("runs", "--since", "1h", "--json", check=0).stdout)
    assert json.loads(cli("runs", "--since", "2999-01-01", "--json", check=0).stdout) == []
    assert json.loads(cli("runs", "--status", "running", "--json", check=0).stdout) == []
    assert len(json.loads(cli("runs", "--limit", "2", "--json", check=0).stdout)) == 2
    tree = cli("runs", "--tree", check=0).stdout.decode().splitlines()
    parent_line = [i for i, l in enumerate(tree) if "parent" in l][0]
    assert "kid" in tree[parent_line + 1] and "└" in tree[parent_line + 1]


def test_show_run_output_and_follow(tmp_path):
    agentsess("run", "--", "sh", "-c", "for i in $(seq 1 100); do echo line $i; done", check=0)
    tail = cli("show-run", "last", "--lines", "3", check=0).stdout.decode()
    assert "line 100" in tail and "line 97" not in tail
    full = cli("show-run", "last", "--output", check=0).stdout.decode()
    assert "line 1\n" in full and "line 100" in full
    marker = tmp_path / "go"
    p = spawn("run", "--", "sh", "-c", f"echo first; while [ ! -e {marker} ]; do sleep 0.05; done; echo second",
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(r["status"] == "running" for r in runs_json()))
    follow = spawn("show-run", "last", "--follow", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    marker.touch()
    out, _ = follow.communicate(timeout=20)
    p.wait(10)
    assert b"first" in out and b"second" in out


def test_run_ids_accept_prefixes_and_last():
    agentsess("run", "--", "true", check=0)
    run_id = runs_json()[0]["id"]
    assert show(run_id[:10])["id"] == run_id
    assert show(run_id[4:12])["id"] == run_id
    assert show("last")["id"] == run_id
    bad = cli("show-run", "not-an-id!")
    assert bad.returncode == 2 and b"not a run id" in bad.stderr


def test_doctor_names_the_file_keyring():
    agentsess("run", "--", "true", check=0)
    report = json.loads(cli("doctor", "--json").stdout)
    keyring = [c for c in report["checks"] if c["name"] == "keyring"][0]
    assert keyring["level"] == "warn" and "0600" in keyring["detail"]
    assert report["ok"]


def _commands():
    from agentsess.cli.commands import COMMANDS

    return [c.name for c in COMMANDS]  # the registered table, not a list kept by hand


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(command):
    top = cli("--help", check=0).stdout.decode()
    assert re.search(rf"^\s+{re.escape(command)}\s+\S", top, re.M), command
    args = [command, "verify", "--help"] if command == "token" else [command, "--help"]
    out = cli(*args)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.decode().strip()) > 40
