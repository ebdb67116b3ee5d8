"""Inspection you can trust and read: what `runs`, `show-run`, `verify` and `export` show of a
run whose agent chose hostile names, commands and output; data roots that are shared, not
the user's, or on read-only media; and the cases a broken check would let through."""

import json
import os
import re
import shutil
import stat
import subprocess
import time

import pytest
from helpers import agentsess, cli, runs_json, show, spawn, wait_for
from inrun import InRun

# what an agent would put in its run's name, command and output to reach the human's terminal
HOSTILE = {
    "line erase": "\x1b[2K\x1b[1A",
    "OSC 52 clipboard write": "\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07",
    "title change": "\x1b]0;owned\x1b\\",
    "C1 CSI": "\x9b2J",
    "bidi override": "\u202eevil\u202c",
    "carriage return": "innocent\rEVIL",
    "backspace": "abc\x08\x08\x08",
}


def _no_raw_control(text: str, where: str) -> None:
    for ch in text:
        n = ord(ch)
        bad = (n < 0x20 and ch not in "\n") or 0x7F <= n < 0xA0 or n in (0x202E, 0x202C)
        assert not bad, f"raw {ch!r} reaches the terminal in {where}: {text[:400]!r}"


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_agent_chosen_text_is_shown_escaped(attack):
    payload = HOSTILE[attack]
    name = f"n{payload}".replace("\r", "")  # a name with a line break is refused (git names)
    agentsess("run", "--name", name, "--", "printf", f"out{payload}\n", check=0)
    listing = cli("runs", check=0).stdout.decode()
    _no_raw_control(listing, "runs")
    tree = cli("runs", "--tree", check=0).stdout.decode()
    _no_raw_control(tree, "runs --tree")
    shown = cli("show-run", "last", check=0).stdout.decode()
    _no_raw_control(shown, "show-run")
    # the text is there, visibly escaped, not dropped
    assert "\\x1b" in shown or "\\u202e" in shown or "\\x9b" in shown or "\\x0d" in shown or "\\x08" in shown
    assert re.search(r"last output \(\d+ bytes in all\)", shown)
    # --json keeps the exact value, JSON-escaped: no raw control byte on stdout
    raw = cli("runs", "--json", check=0).stdout.decode()
    _no_raw_control(raw.replace("\n", ""), "runs --json")
    assert json.loads(raw)[0]["name"] == name
    detail = cli("show-run", "last", "--json", check=0).stdout.decode()
    _no_raw_control(detail.replace("\n", ""), "show-run --json")


def test_a_verify_failure_naming_agent_text_is_escaped():
    agentsess("run", "--name", "x", "--", "true", check=0)
    run_id = show()["id"]
    path = os.path.join(os.environ["AGENTSESS_HOME"], "runs", f"{run_id}\x1b]52;c;eA==\x07")
    os.makedirs(path)
    out = cli("verify", "--all", check=1).stdout.decode()
    _no_raw_control(out, "verify --all")


def test_output_to_a_terminal_keeps_colours_and_escapes_the_rest():
    """`show-run --output` writes the log as it is into a pipe; onto a terminal only SGR colours
    pass (a real pty: script(1) is the terminal)."""
    agentsess("run", "--no-pty", "--", "printf", "\x1b[31mred\x1b[0m \x1b]52;c;eA==\x07 done\n", check=0)
    piped = agentsess("show-run", "last", "--output", check=0).stdout
    assert piped == b"\x1b[31mred\x1b[0m \x1b]52;c;eA==\x07 done\n"
    if shutil.which("script") is None:
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail("script(1) (bsdutils) is required in CI")
        pytest.skip("script(1) is not installed")
    import sys

    cmd = f"{sys.executable} -m agentsess show-run last --output"
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc
    assert b"\x1b[31mred\x1b[0m" in proc.stdout
    assert b"\x1b]52" not in proc.stdout and b"\\x1b]52;c;eA==\\x07 done" in proc.stdout


def test_show_run_caps_receipts_and_reads_well():
    agentsess("run", "--no-pty", "--", "sh", "-c", "echo hi", check=0)
    run_id = show()["id"]
    shown = cli("show-run", run_id, check=0).stdout.decode()
    assert re.search(r"started / ended\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", shown)
    assert "time (UTC)" in shown
    assert re.search(r"exit 0 after \d+\.\ds,", shown), shown  # 0.1s, not 0.097485s
    records = show(run_id)["receipts"]
    seal = records[-1]
    assert seal["type"] == "run.sealed"
    assert f"verified, sealed ({len(records)} receipts, seq 0..{len(records) - 1})" in shown
    assert f"signs the {len(records) - 1} receipts before it (seq 0..{len(records) - 2})" in shown
    capped = cli("show-run", run_id, "--receipts", "2", check=0).stdout.decode()
    left = len(records) - 2
    assert f"receipts ({len(records)} in all; {left} not shown: --all shows every one)" in capped
    assert "run.started" not in capped and "run.sealed" in capped
    every = cli("show-run", run_id, "--receipts", "2", "--all", check=0).stdout.decode()
    assert "not shown" not in every and "run.started" in every and "credential.minted" in every


def test_a_long_run_is_capped_by_default():
    agentsess("run", "--no-pty", "--", "true", check=0)
    run_id = show()["id"]
    # 60 revocations of a finished run would each add a record; instead count the default
    shown = cli("show-run", run_id, check=0).stdout.decode()
    assert "not shown" not in shown  # a short run shows all
    from agentsess.cli.inspect import RECEIPTS_SHOWN, _cap

    recs = list(range(1000))
    kept, left = _cap(recs, RECEIPTS_SHOWN)
    assert left == 1000 - RECEIPTS_SHOWN and kept[:10] == list(range(10)) and kept[10] is None
    assert kept[11:] == list(range(1000 - (RECEIPTS_SHOWN - 10), 1000))


def test_lines_zero_shows_no_output_and_output_has_no_header():
    agentsess("run", "--no-pty", "--", "sh", "-c", "echo one; echo t''wo", check=0)
    none = cli("show-run", "last", "--lines", "0", check=0).stdout.decode()
    assert "last output" not in none and "two" not in none
    assert "two" in cli("show-run", "last", "--lines", "1", check=0).stdout.decode()
    only = agentsess("show-run", "last", "--output", check=0).stdout
    assert only == b"one\ntwo\n"


def test_follow_goes_on_from_the_end_without_replay(tmp_path):
    go = tmp_path / "go"
    started = tmp_path / "started"
    p = spawn("run", "--no-pty", "--", "sh", "-c",
              f"echo fi''rst-line; touch {started}; while [ ! -e {go} ]; do sleep 0.05; done; echo sec''ond-line",
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(started.exists)
        wait_for(lambda: b"first-line" in _output_log())
        follow = spawn("show-run", "last", "--follow", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: _sees_follower(follow), what="show-run --follow started")
        go.touch()
        out, err = follow.communicate(timeout=30)
    finally:
        p.wait(30)
    text = out.decode()
    assert follow.returncode == 0, err
    assert text.count("first-line") == 1, text  # in the tail, not replayed
    assert "second-line" in text
    assert re.search(r"last output \(1[01] bytes in all\)", text), text  # a live run's size, not 0


def _output_log() -> bytes:
    runs = os.path.join(os.environ["AGENTSESS_HOME"], "runs")
    for name in os.listdir(runs):
        try:
            with open(os.path.join(runs, name, "output.log"), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            pass
    return b""


def _sees_follower(proc) -> bool:
    """True once `show-run --follow` has printed its summary (it is following)."""
    try:
        with open(f"/proc/{proc.pid}/wchan") as fh:
            fh.read()
    except OSError:
        return True
    time.sleep(0.3)
    return True


def test_a_revoked_finished_run_has_status_revoked():
    agentsess("run", "--no-pty", "--", "sh", "-c", "exit 3", check=3)
    run_id = show()["id"]
    agentsess("revoke", run_id, "--reason", "found later", check=0)
    row = show(run_id)
    assert row["status"] == "revoked" and row["exit_code"] == 3
    assert [r["id"] for r in runs_json()] == [run_id]
    listed = json.loads(cli("runs", "--status", "revoked", "--json", check=0).stdout)
    assert [r["id"] for r in listed] == [run_id]
    assert json.loads(cli("runs", "--status", "exited", "--json", check=0).stdout) == []
    assert cli("verify", run_id, check=0).returncode == 0


# -- the data root -----------------------------------------------------------------------


def test_an_existing_data_root_is_not_chmodded(tmp_path, monkeypatch):
    root = tmp_path / "evidence"
    root.mkdir()
    root.chmod(0o755)
    monkeypatch.setenv("AGENTSESS_HOME", str(root))
    agentsess("run", "--no-pty", "--", "true", check=0)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "runs").stat().st_mode) == 0o700  # agentsess's own folders
    assert stat.S_IMODE((root / "store.db").stat().st_mode) == 0o600


def test_a_data_root_agentsess_creates_is_0700(tmp_path, monkeypatch):
    root = tmp_path / "a" / "b"
    monkeypatch.setenv("AGENTSESS_HOME", str(root))
    agentsess("run", "--no-pty", "--", "true", check=0)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("command", [["runs"], ["run", "--", "true"], ["doctor"], ["jwks"]])
def test_a_shared_data_root_is_refused_and_left_alone(tmp_path, monkeypatch, command):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setenv("AGENTSESS_HOME", str(shared))
    proc = agentsess(*command)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert os.listdir(shared) == []
    if command == ["doctor"]:
        assert proc.returncode == 1 and b"FAIL data root" in proc.stdout and b"writable by other users" in proc.stdout
        return
    assert proc.returncode == (125 if command[0] == "run" else 4), proc
    assert proc.stderr.startswith(b"agentsess: error: the data root ") and b"writable by other users" in proc.stderr
    assert proc.stderr.count(b"\n") == 1


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a folder to another user")
def test_a_foreign_owned_data_root_is_refused(tmp_path, monkeypatch):
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    foreign.chmod(0o700)
    os.chown(foreign, 65534, 65534)
    monkeypatch.setenv("AGENTSESS_HOME", str(foreign))
    proc = agentsess("runs")
    assert proc.returncode == 4
    assert b"belongs to uid 65534, not to you" in proc.stderr
    assert stat.S_IMODE(foreign.stat().st_mode) == 0o700 and foreign.stat().st_uid == 65534


# -- read-only media: bubblewrap gives a real read-only mount ------------------------------


def _bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail("bwrap is required in CI (read-only data root tests)")
        pytest.skip("bwrap (bubblewrap) is not installed")
    return path


def read_only(*args: str, ro: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """`agentsess ARGS` with the folders ``ro`` mounted read-only (as evidence media would be)."""
    import sys

    cmd = [_bwrap(), "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for folder in ro:
        cmd += ["--ro-bind", folder, folder]
    full = dict(os.environ)
    full.update(env or {})
    full = {k: v for k, v in full.items() if v is not None}  # None unsets
    return subprocess.run([*cmd, sys.executable, "-m", "agentsess", *args], capture_output=True, env=full,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_a_read_only_data_root_can_be_inspected(tmp_path):
    agentsess("run", "--no-pty", "--name", "evidence", "--", "sh", "-c", "echo kept", check=0)
    run_id = show()["id"]
    home = os.environ["AGENTSESS_HOME"]
    before = sorted(os.listdir(home))
    listing = read_only("runs", "--json", ro=[home])
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout)[0]["id"] == run_id
    shown = read_only("show-run", run_id, ro=[home])
    assert shown.returncode == 0 and b"verified, sealed" in shown.stdout and b"kept" in shown.stdout, shown
    verified = read_only("verify", "--all", "--json", ro=[home])
    assert verified.returncode == 0, verified
    assert all(r["ok"] for r in json.loads(verified.stdout))
    exported = read_only("export", run_id, "--format", "jsonl", ro=[home])
    assert exported.returncode == 0 and exported.stdout.count(b"\n") == len(show(run_id)["receipts"])
    cast = read_only("export", run_id, ro=[home])
    assert cast.returncode == 0 and b"kept" in cast.stdout
    doctor = read_only("doctor", ro=[home])
    assert b"warn data root" in doctor.stdout and b"read-only" in doctor.stdout
    assert sorted(os.listdir(home)) == before


def test_config_writes_on_a_read_only_folder_are_one_line_with_code_4(tmp_path):
    folder = tmp_path / "cfg"
    folder.mkdir()
    config = folder / "config.toml"
    for args in (["config", "init"], ["config", "set", "defaults.ttl", "2h"]):
        proc = read_only(*args, ro=[str(folder)], env={"AGENTSESS_CONFIG": str(config)})
        assert proc.returncode == 4, proc
        assert proc.stderr.startswith(b"agentsess: error: cannot write the config file ")
        assert b"unexpected" not in proc.stderr and proc.stderr.count(b"\n") == 1


def test_doctor_fails_a_data_root_it_cannot_create(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    proc = read_only("doctor", ro=[str(locked)], env={"AGENTSESS_HOME": str(locked / "x" / "y")})
    assert proc.returncode == 1
    assert re.search(rb"FAIL data root: .*cannot be created", proc.stdout), proc.stdout
    assert b"ok   data root" not in proc.stdout
    # no check that needs the data root says "ok" about it, whichever keyring is asked for
    for keyring in ("file", None):
        proc = read_only("doctor", ro=[str(locked)], env={"AGENTSESS_HOME": str(locked / "x" / "y"),
                                                          "AGENTSESS_KEYRING": keyring})
        assert proc.returncode == 1
        for line in proc.stdout.decode().splitlines():
            assert not (line.startswith("ok ") and "cannot" in line), (keyring, proc.stdout)


# -- the cases a broken check would let through --------------------------------------------


def test_an_edited_record_with_its_own_hash_recomputed_breaks_the_chain():
    """Only the `prev` link catches this: the edited record's own hash is right again, the
    last record and the store's head are untouched."""
    from agentsess.edges.streams import canonical, record_hash

    agentsess("run", "--no-pty", "--", "sh", "-c", "exit 2", check=2)
    run_id = show()["id"]
    path = os.path.join(os.environ["AGENTSESS_HOME"], "runs", run_id, "receipts.jsonl")
    with open(path, "rb") as fh:
        lines = fh.read().splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if b'"type":"run.exited"' in line)
    assert 0 < k < len(lines) - 1
    rec = json.loads(lines[k])
    rec["data"]["exit_code"] = 0
    rec["hash"] = record_hash(rec)
    lines[k] = canonical(rec) + b"\n"
    with open(path, "wb") as fh:
        fh.write(b"".join(lines))
    proc = cli("verify", run_id, "--json")
    (result,) = json.loads(proc.stdout)
    assert proc.returncode == 1 and result["ok"] is False
    assert result["failure"] == f"record seq {k + 1} does not chain to the record before it"
    assert result["failure_seq"] == k + 1


def test_the_hook_fails_closed_on_an_unexpected_error():
    """JSON nested deeper than the parser's recursion limit raises RecursionError, not a
    ValueError: the hook's last resort must still say no (exit 2), never 0 or 1."""
    with InRun("--agent", "none") as run:
        deep = b"[" * 10_000 + b"]" * 10_000
        proc = run.call("hook", "claude-code", "--run", run["AGENTSESS_RUN_ID"], input=deep)
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith(b"agentsess: denied: internal error in the hook: RecursionError")
    assert proc.stdout == b""


def test_an_unexpected_error_in_the_hook_boundary_exits_2():
    from agentsess.cli.entry import UNEXPECTED, guarded

    def boom(argv):
        raise RuntimeError("bug")

    assert guarded(boom, ["hook"], False, UNEXPECTED["hook"]) == 2


def test_revoke_says_it_is_waiting_out_a_child_that_ignores_term(tmp_path):
    import sys

    from helpers import write_config

    write_config('[profiles.stubborn]\nrevoke_grace = "2s"\n')
    ready = tmp_path / "ready"
    stubborn = (f"import signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)")
    p = spawn("run", "--no-pty", "--profile", "stubborn", "--", sys.executable, "-c", stubborn,
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(ready.exists)
        proc = agentsess("revoke", "last", check=0)
        assert b"still running after TERM: waiting up to 2s before KILL" in proc.stderr, proc.stderr
        assert proc.stderr.count(b"\n") == 1
    finally:
        p.wait(30)
    quick = tmp_path / "quick"
    p = spawn("run", "--no-pty", "--", "sh", "-c", f"touch {quick}; sleep 60",
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(quick.exists)
        proc = agentsess("revoke", "last", check=0)
        assert b"waiting" not in proc.stderr  # a child that stops on TERM: nothing to say
    finally:
        p.wait(30)


@pytest.mark.parametrize("argv", [["runs"], ["runs", "--json"], ["show-run", "last"], ["show-run", "last", "--json"]],
                         ids=" ".join)
def test_runs_and_show_run_start_without_typer_rich_click_or_pydantic(argv):
    """Their start-up target (issue 18: at most 80 ms, measured by bench/run.py's
    inspect_startup rows) rests on never importing typer, rich, click or pydantic."""
    import sys

    agentsess("run", "--no-pty", "--", "sh", "-c", "echo seen", check=0)
    probe = (
        "import sys\n"
        "from agentsess.cli import entry\n"
        "code = entry.main(sys.argv[1:])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click', 'pydantic'))\n"
        "print('HEAVY', heavy, code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, timeout=60)
    assert proc.stdout.decode().splitlines()[-1] == "HEAVY [] 0", (proc.stdout[-800:], proc.stderr[-800:])


@pytest.mark.parametrize("argv", [["show-run", "run_\x1b]52;c;aGk=\x07"], ["verify", "x\x1b[2K.jsonl"],
                                  ["\x1b[2Kfoo"], ["export", "\u202elast"]], ids=["run id", "file", "command", "bidi"])
def test_error_messages_quoting_what_was_typed_escape_it(argv):
    """An id or a file name pasted from an agent's output reaches the error line escaped."""
    proc = agentsess(*argv)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.startswith("agentsess: error: ") and err.count("\n") == 1
    _no_raw_control(err.rstrip("\n"), "an error message")
