"""Revocation and expiry that bite, with real processes."""

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import agentsess, pid_alive, runs_json, show, spawn, wait_for, write_config

PY = sys.executable


def start_tree(tmp_path, depth=1, child="sleep 1000"):
    """A live run (nested ``depth`` deep) whose innermost child writes its pid; returns (Popen, leaf pid).

    Advisory (--no-contain): these tests follow processes by pid, which a contained run's
    namespace renumbers; tests/test_containment.py covers revocation of contained runs."""
    pidfile = tmp_path / "pid"
    cmd = ["sh", "-c", f"echo $$ > {pidfile}; {child}"]
    for _ in range(depth - 1):
        cmd = [PY, "-m", "agentsess", "run", "--no-pty", "--", *cmd]
    proc = spawn("run", "--no-pty", "--no-contain", "--", *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="child pid")
    return proc, int(pidfile.read_text())


def running_ids(count):
    return wait_for(lambda: (lambda r: r if len(r) == count else None)([x for x in runs_json() if x["status"] == "running"]),
                    what=f"{count} running runs")


def test_revoke_stops_the_whole_process_group_including_a_term_ignoring_grandchild(tmp_path):
    write_config('[defaults]\nrevoke_grace = "2s"\n')
    gpid = tmp_path / "gpid"
    child = f"sh -c 'trap \"\" TERM; echo $$ > {gpid}; while :; do sleep 0.1; done' & wait"
    proc, leaf = start_tree(tmp_path, child=child)
    wait_for(lambda: gpid.exists() and gpid.read_text().strip(), what="grandchild")
    grandchild = int(gpid.read_text())
    run_id = running_ids(1)[0]["id"]
    started = time.monotonic()
    out = agentsess("revoke", run_id, "--reason", "incident 7", "--json", check=0)
    results = json.loads(out.stdout)
    assert results[0]["id"] == run_id and results[0]["newly_revoked"]
    assert results[0]["process"] == "stopped"
    wait_for(lambda: not pid_alive(grandchild) and not pid_alive(leaf), timeout=4, what="process group gone")
    assert time.monotonic() - started < 5
    proc.communicate(timeout=10)
    assert proc.returncode == 124
    run = show(run_id)
    assert run["status"] == "revoked"
    revoked = [r for r in run["receipts"] if r["type"] == "run.revoked"][0]["data"]
    assert revoked["cause"] == "direct" and revoked["reason"] == "incident 7"
    assert run["receipts"][-1]["type"] == "run.sealed"
    assert run["integrity"]["ok"] and run["integrity"]["sealed"]
    assert run["credential"]["state"] == "revoked"


def test_revoked_runs_token_fails_verification(tmp_path):
    tokfile = tmp_path / "tok"
    proc = spawn("run", "--no-pty", "--", PY, "-c",
                 f"import os,time; open({str(tokfile)!r},'w').write(os.environ['AGENTSESS_TOKEN']); time.sleep(60)",
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: tokfile.exists() and tokfile.read_text(), what="token")
    token = tokfile.read_text()
    assert agentsess("token", "verify", token).returncode == 0
    agentsess("revoke", "last", check=0)
    out = agentsess("token", "verify", token, "--json")
    assert out.returncode == 1
    assert json.loads(out.stdout)["reason"] == "revoked run"
    proc.communicate(timeout=10)


def test_cascade_over_three_levels_and_ancestor_cause(tmp_path):
    proc, leaf = start_tree(tmp_path, depth=3)
    rows = running_ids(3)
    top = [r for r in rows if r["parent_id"] is None][0]
    out = agentsess("revoke", top["id"], "--json", check=0)
    results = json.loads(out.stdout)
    assert len(results) == 3
    assert all(r["newly_revoked"] for r in results)
    wait_for(lambda: not pid_alive(leaf), timeout=8, what="leaf gone")
    proc.communicate(timeout=15)
    for r in rows:
        run = show(r["id"])
        assert run["status"] == "revoked"
        cause = [x for x in run["receipts"] if x["type"] == "run.revoked"][0]["data"]
        if r["id"] == top["id"]:
            assert cause["cause"] == "direct"
        else:
            assert cause["cause"] == "ancestor" and cause["ancestor"] == top["id"]
    assert agentsess("verify", "--all").returncode == 0


def test_revoke_only_leaves_descendants_alone(tmp_path):
    proc, leaf = start_tree(tmp_path, depth=2)
    rows = running_ids(2)
    top = [r for r in rows if r["parent_id"] is None][0]
    child = [r for r in rows if r["parent_id"] == top["id"]][0]
    results = json.loads(agentsess("revoke", child["id"], "--only", "--json", check=0).stdout)
    assert [r["id"] for r in results] == [child["id"]]
    wait_for(lambda: not pid_alive(leaf), timeout=8, what="leaf gone")
    proc.communicate(timeout=15)
    assert show(child["id"])["status"] == "revoked"
    assert show(top["id"])["status"] == "exited"
    assert show(top["id"])["credential"]["state"] != "revoked"


def test_revoke_twice_is_idempotent_and_works_on_an_exited_run(tmp_path):
    tokfile = tmp_path / "tok"
    agentsess("run", "--", PY, "-c", f"import os; open({str(tokfile)!r},'w').write(os.environ['AGENTSESS_TOKEN'])", check=0)
    token = tokfile.read_text()
    exited = agentsess("token", "verify", token, "--json")  # the token died with its run
    assert exited.returncode == 1 and json.loads(exited.stdout)["reason"] == "exited run"
    first = json.loads(agentsess("revoke", "last", "--json", check=0).stdout)
    second = json.loads(agentsess("revoke", "last", "--json", check=0).stdout)
    assert first[0]["newly_revoked"] and not second[0]["newly_revoked"]
    run = show()
    assert run["status"] == "revoked" and run["exit_code"] == 0  # revoked after it exited
    assert run["credential"]["state"] == "revoked"
    assert [r["type"] for r in run["receipts"]].count("run.revoked") == 1
    assert run["integrity"]["ok"] and run["integrity"]["sealed"]
    revoked = agentsess("token", "verify", token, "--json")
    assert revoked.returncode == 1 and json.loads(revoked.stdout)["reason"] == "revoked run"


def test_revoke_an_abandoned_run(tmp_path):
    proc, leaf = start_tree(tmp_path)
    run_id = running_ids(1)[0]["id"]
    proc.kill()
    proc.wait(5)
    out = json.loads(agentsess("revoke", run_id, "--json", check=0).stdout)
    assert out[0]["newly_revoked"]
    run = show(run_id)
    assert run["status"] == "abandoned"
    types = [r["type"] for r in run["receipts"]]
    assert "run.abandoned" in types and "run.revoked" in types
    assert run["integrity"]["ok"]
    wait_for(lambda: not pid_alive(leaf), timeout=4, what="leftover child gone")


def test_unknown_and_ambiguous_ids_change_nothing():
    agentsess("run", "--", "true", check=0)
    agentsess("run", "--", "true", check=0)
    before = runs_json()
    assert agentsess("revoke", "run_zzzz").returncode == 2
    amb = agentsess("revoke", "run_")
    assert amb.returncode == 2 and b"ambiguous" in amb.stderr
    assert runs_json() == before


def test_on_revoke_keep_lets_the_process_run_but_kills_its_credentials(tmp_path):
    write_config('[defaults]\non_revoke = "keep"\n')
    proc, leaf = start_tree(tmp_path, child="sleep 3")
    run_id = running_ids(1)[0]["id"]
    results = json.loads(agentsess("revoke", run_id, "--json", check=0).stdout)
    assert results[0]["process"].startswith("kept running")
    assert pid_alive(leaf)
    proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert show(run_id)["credential"]["state"] == "revoked"


@pytest.mark.parametrize("policy,code", [("keep", 0), ("stop", 124)])
def test_expiry_under_both_policies_with_a_warning_on_stderr(policy, code):
    write_config(f'[defaults]\non_expiry = "{policy}"\nexpiry_warning = "2s"\nrevoke_grace = "1s"\n')
    proc = agentsess("run", "--ttl", "3s", "--", "sh", "-c", "echo start; sleep 5; echo end", timeout=30)
    assert proc.returncode == code
    assert b"expires in" in proc.stderr
    assert b"expired" in proc.stderr
    assert b"expire" not in proc.stdout
    run = show()
    types = [r["type"] for r in run["receipts"]]
    assert "credential.expired" in types
    log = os.path.join(os.environ["AGENTSESS_HOME"], "runs", run["id"], "output.log")
    with open(log, "rb") as fh:
        data = fh.read()
    assert b"expire" not in data
    assert (b"end" in data) == (policy == "keep")
