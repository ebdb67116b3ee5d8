"""`agentsess run` as a real process: exit codes, streams, signals, the output log, receipts."""

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys

import pytest
from helpers import agentsess, running_run_id, show, spawn, wait_for

PY = sys.executable


@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_exit_code_passes_through(code):
    proc = agentsess("run", "--", "sh", "-c", f"exit {code}")
    assert proc.returncode == code, proc.stderr
    run = show()
    assert run["status"] == "exited"
    assert run["exit_code"] == code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT])
def test_child_killed_by_signal_gives_128_plus_n(sig):
    proc = agentsess("run", "--no-pty", "--", "sh", "-c", f"kill -{int(sig)} $$")
    assert proc.returncode == 128 + sig
    run = show()
    assert run["signal"] == sig
    assert run["exit_code"] is None


def test_stdout_and_stderr_stay_separate_in_pipe_mode():
    proc = agentsess("run", "--", "sh", "-c", "echo out; echo err >&2; echo out2")
    assert proc.stdout == b"out\nout2\n"
    assert b"err\n" in proc.stderr
    assert b"out" not in proc.stderr


def test_stdin_passes_through():
    proc = agentsess("run", "--", "cat", input=b"hello\x00world")
    assert proc.stdout == b"hello\x00world"


def test_prompt_without_newline_appears_at_once():
    p = spawn("run", "--no-pty", "--", PY, "-c",
              "import sys,time; sys.stdout.write('name? '); sys.stdout.flush(); sys.stdin.readline(); print('bye')",
              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = b""
    while not got.endswith(b"name? "):
        chunk = os.read(p.stdout.fileno(), 100)
        assert chunk, "output ended before the prompt"
        got += chunk
    p.stdin.write(b"x\n")
    p.stdin.close()
    assert p.stdout.read() == b"bye\n"
    assert p.wait(30) == 0


def test_output_log_equals_what_the_child_wrote_50mb_binary(tmp_path):
    blob = tmp_path / "blob"
    data = os.urandom(50 * 1024 * 1024)
    blob.write_bytes(data)
    proc = agentsess("run", "--no-pty", "--", "cat", str(blob), timeout=120)
    assert proc.returncode == 0
    assert proc.stdout == data
    run = show()
    log = os.path.join(os.environ["AGENTSESS_HOME"], "runs", run["id"], "output.log")
    with open(log, "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert run["output_bytes"] == len(data)
    exited = [r for r in run["receipts"] if r["type"] == "run.exited"][0]
    assert exited["data"]["output_sha256"] == hashlib.sha256(data).hexdigest()


def test_receipts_record_start_and_exit_and_verify():
    agentsess("run", "--", "true", check=0)
    run = show()
    types = [r["type"] for r in run["receipts"]]
    assert types[0] == "run.started"
    assert "run.exited" in types
    assert types[-1] == "run.sealed"
    started = run["receipts"][0]["data"]
    assert started["argv"] == ["true"] and started["mode"] == "pipes"
    assert started["cwd"] == os.getcwd()
    assert [r["seq"] for r in run["receipts"]] == list(range(len(types)))
    assert run["integrity"]["ok"] and run["integrity"]["sealed"]


def test_run_started_is_on_disk_before_the_child_starts(tmp_path):
    # the child reads its own run's receipt file: run.started must already be there
    # (the child is not told where the data root is: the test hands it the runs folder)
    script = (
        "import os,sys,json; p=os.path.join(sys.argv[1],os.environ['AGENTSESS_RUN_ID'],'receipts.jsonl');"
        "print(json.loads(open(p).readline())['type'])"
    )
    proc = agentsess("run", "--", PY, "-c", script, os.path.join(os.environ["AGENTSESS_HOME"], "runs"), check=0)
    assert proc.stdout.strip() == b"run.started"


def test_git_repo_and_commit_recorded(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "f").write_text("x")
    subprocess.run(["git", "-C", str(repo), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "x"], check=True, env={**os.environ, **env})
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    agentsess("run", "--", "true", cwd=str(repo), check=0)
    started = show()["receipts"][0]["data"]
    assert started["git"]["commit"] == head
    assert started["git"]["branch"] == "main"


def test_child_environment_has_run_id_and_parent_is_recorded():
    proc = agentsess("run", "--", PY, "-c", "import os; print(os.environ['AGENTSESS_RUN_ID'])", check=0)
    outer = proc.stdout.decode().strip()
    assert outer.startswith("run_") and len(outer) == 30
    nested = agentsess(
        "run", "--", PY, "-m", "agentsess", "run", "--", PY, "-c",
        "import os; print(os.environ['AGENTSESS_RUN_ID'], os.environ['AGENTSESS_PARENT_RUN_ID'])",
        check=0,
    )
    child, parent = nested.stdout.decode().split()
    assert show(child)["parent_id"] == parent
    assert any(c["id"] == child for c in show(parent)["children"])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT])
def test_signals_reach_the_child_exactly_once_in_pipe_mode(sig, tmp_path):
    marker = tmp_path / "ready"
    script = (
        "import signal,sys,time,os\n"
        "got=[]\n"
        f"signal.signal({int(sig)}, lambda s,f: got.append(s))\n"
        f"open({str(marker)!r},'w').close()\n"
        "deadline=time.time()+20\n"
        "while not got and time.time()<deadline: time.sleep(0.01)\n"
        "time.sleep(0.3)\n"
        "print('count', len(got)); sys.stdout.flush()\n"
    )
    p = spawn("run", "--no-pty", "--", PY, "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(marker.exists, what="child ready")
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert b"count 1" in out, (out, err)
    assert p.returncode == 0


def test_second_term_escalates_to_kill(tmp_path):
    marker = tmp_path / "ready"
    script = (
        "import signal,time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(marker)!r},'w').close()\n"
        "time.sleep(60)\n"
    )
    p = spawn("run", "--no-pty", "--", PY, "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(marker.exists, what="child ready")
    p.send_signal(signal.SIGTERM)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)
    assert p.returncode == 128 + signal.SIGKILL


def test_supervisor_sigkilled_takes_the_child_with_it(tmp_path):
    from inrun import host_pids

    pidfile = tmp_path / "pid"
    p = spawn("run", "--no-pty", "--", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 60.0170",
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="child pid")
    child = wait_for(lambda: host_pids("sleep 60.0170"), what="the child as seen from here")[0]
    p.kill()
    p.wait(10)
    from helpers import pid_alive

    wait_for(lambda: not pid_alive(child), timeout=5, what="child gone")


def test_files_and_folders_are_private():
    agentsess("run", "--", "true", check=0)
    home = os.environ["AGENTSESS_HOME"]
    run = show()
    for folder in (home, os.path.join(home, "runs"), os.path.join(home, "runs", run["id"])):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
    for name in ("store.db",):
        assert stat.S_IMODE(os.stat(os.path.join(home, name)).st_mode) == 0o600
    for name in ("receipts.jsonl", "output.log", "timing.log"):
        assert stat.S_IMODE(os.stat(os.path.join(home, "runs", run["id"], name)).st_mode) == 0o600


def test_twenty_concurrent_runs_with_nested_runs_stay_consistent():
    nested = [PY, "-m", "agentsess", "run", "--", "sh", "-c", "echo inner"]
    procs = []
    for i in range(20):
        cmd = ["run", "--", *nested] if i % 4 == 0 else ["run", "--", "sh", "-c", f"echo {i}"]
        procs.append(spawn(*cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode(errors="replace")
    verify = agentsess("verify", "--all", "--json", check=0)
    results = json.loads(verify.stdout)
    assert len(results) == 25
    assert all(r["ok"] and r["sealed"] for r in results)


def test_receipt_file_deleted_under_a_running_run_fails_closed(tmp_path):
    marker = tmp_path / "ready"
    p = spawn("run", "--no-pty", "--", "sh", "-c", f"touch {marker}; sleep 30",
              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(marker.exists, what="child ready")
    run_id = running_run_id()
    os.unlink(os.path.join(os.environ["AGENTSESS_HOME"], "runs", run_id, "receipts.jsonl"))
    _, err = p.communicate(timeout=20)
    assert p.returncode == 125
    assert b"receipt stream" in err and b"Traceback" not in err
