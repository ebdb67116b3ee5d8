"""50 runs at once, some nested, some revoked mid-way from other processes: every run recorded,
no store error anywhere, every chain intact."""

import json
import subprocess
import tempfile
import time

import pytest
from helpers import PY, ag, run_of_supervisor, spawn, store_rows

# 50 runs started from here; each nested one adds a child run, and revoking a nested one's
# outer run cascades to its child
PLAIN, NESTED, REVOKED, NESTED_REVOKED = 20, 10, 15, 5

BAD_SIGNS = ("Traceback", "agentsess: error", "unexpected", "database is locked", "store", "malformed", "denied")


def _start(args):
    err = tempfile.TemporaryFile()
    p = spawn(*args, stdout=subprocess.PIPE, stderr=err)
    p.err_file = err
    return p


@pytest.mark.timeout(170)
def test_fifty_concurrent_runs_nested_and_revoked():
    procs = {}
    for i in range(REVOKED):
        procs[("revoked", i)] = _start(["run", "--no-pty", "--name", f"long-{i}", "--", "sleep", "60"])
    for i in range(NESTED_REVOKED):
        procs[("tree", i)] = _start(["run", "--no-pty", "--name", f"tree-outer-{i}", "--",
                                     PY, "-m", "agentsess", "run", "--no-pty", "--name", f"tree-inner-{i}", "--",
                                     "sleep", "60"])
    for i in range(NESTED):
        procs[("nested", i)] = _start(["run", "--no-pty", "--name", f"outer-{i}", "--",
                                       PY, "-m", "agentsess", "run", "--no-pty", "--name", f"inner-{i}", "--",
                                       "sh", "-c", f"echo nested-{i}"])
    for i in range(PLAIN):
        procs[("plain", i)] = _start(["run", "--no-pty", "--name", f"plain-{i}", "--",
                                      "sh", "-c", f"echo out-{i}; echo err-{i} >&2"])
    revokers = []
    try:
        # revoke each long run from another process as soon as it is live, while the rest start and finish
        pending = {("revoked", i): procs[("revoked", i)] for i in range(REVOKED)}
        pending.update({("tree", i): procs[("tree", i)] for i in range(NESTED_REVOKED)})
        while pending:
            for i, p in list(pending.items()):
                row = run_of_supervisor(p.pid)
                if row is not None and i[0] == "tree":
                    # revoke the outer run once its child run is live too
                    row = row if store_rows("SELECT id FROM runs WHERE parent_id = ? AND child_pgid IS NOT NULL",
                                            (row["id"],)) else None
                if row is not None:
                    revokers.append(subprocess.Popen([PY, "-m", "agentsess", "revoke", row["id"], "--json"],
                                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE))
                    del pending[i]
                elif p.poll() is not None:
                    p.err_file.seek(0)
                    raise AssertionError(f"long run {i} exited {p.returncode} before it was revoked: "
                                         f"{p.err_file.read().decode(errors='replace')}")
            time.sleep(0.02)
        results = {}
        for key, p in procs.items():
            out, _ = p.communicate(timeout=120)
            p.err_file.seek(0)
            results[key] = (p.returncode, out, p.err_file.read().decode(errors="replace"))
        revoked_out = [r.communicate(timeout=120) + (r.returncode,) for r in revokers]
    finally:
        for p in list(procs.values()) + revokers:
            if p.poll() is None:
                p.kill()
                p.wait()

    for key, (code, out, err) in results.items():
        for sign in BAD_SIGNS:
            assert sign not in err, (key, err)
        kind, i = key
        if kind == "plain":
            assert (code, out) == (0, f"out-{i}\n".encode()), (key, code, err)
            assert f"err-{i}" in err
        elif kind == "nested":
            assert (code, out) == (0, f"nested-{i}\n".encode()), (key, code, err)
        else:
            assert code == 124, (key, code, err)  # stopped by agentsess after revocation (tree: cascade)
    for out, err, code in revoked_out:
        assert code == 0, err
        assert b"Traceback" not in err and b"store" not in err, err
        assert json.loads(out)[0]["newly_revoked"] is True

    rows = {r["id"]: r for r in store_rows("SELECT * FROM runs")}
    assert len(rows) == PLAIN + 2 * NESTED + REVOKED + 2 * NESTED_REVOKED
    by_name = {r["name"]: r for r in rows.values()}
    for i in range(PLAIN):
        assert by_name[f"plain-{i}"]["status"] == "exited"
    for i in range(REVOKED):
        assert by_name[f"long-{i}"]["status"] == "revoked"
    for i in range(NESTED_REVOKED):
        outer, inner = by_name[f"tree-outer-{i}"], by_name[f"tree-inner-{i}"]
        assert inner["parent_id"] == outer["id"]
        assert (outer["status"], inner["status"]) == ("revoked", "revoked")
        assert inner["revoke_cause"] == f"ancestor {outer['id']}"
    for i in range(NESTED):
        outer, inner = by_name[f"outer-{i}"], by_name[f"inner-{i}"]
        assert inner["parent_id"] == outer["id"]
        assert (outer["status"], inner["status"]) == ("exited", "exited")

    listed = ag("runs", "--json", "--limit", "0")
    assert listed.returncode == 0, listed.stderr
    assert {r["id"] for r in json.loads(listed.stdout)} == set(rows)

    verified = ag("verify", "--all", "--json", timeout=120)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert {r["run"] for r in report} == set(rows)
    bad = [r for r in report if not r["ok"] or not r["sealed"]]
    detail = [(rows[r["run"]]["name"], rows[r["run"]]["status"], r,
               [x["type"] for x in json.loads(ag("show-run", r["run"], "--json").stdout)["receipts"]]) for r in bad]
    assert detail == []
