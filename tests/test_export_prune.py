"""`agentsess export` (asciicast v2, jsonl) and `agentsess prune` on real runs."""

import io
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile

import pexpect
import pytest
from asciinema.asciicast import v2 as asciicast_v2
from helpers import agentsess, cli, running_run_id, show, spawn, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

DAY = 86400


def home() -> str:
    return os.environ["AGENTSESS_HOME"]


def run_folder(run_id: str) -> str:
    return os.path.join(home(), "runs", run_id)


def read_cast(path: str):
    """(header, events) through asciinema's own v2 reader."""
    fh = open(path, encoding="utf-8")
    first = fh.readline()
    with asciicast_v2.open_from_file(first, fh) as cast:
        return cast.v2_header, list(cast.events())


def output_text(events) -> str:
    return "".join(e[2] for e in events if e[1] == "o")


def export(run_id: str, fmt: str, target) -> None:
    cli("export", run_id, "--format", fmt, "-o", str(target), check=0)


# -- asciicast ---------------------------------------------------------------------------


def test_asciicast_of_a_pipes_run_parses_with_asciinema_and_holds_the_output(tmp_path):
    proc = agentsess("run", "--no-pty", "--", "sh", "-c", 'printf "héllo\\n"; printf world', check=0)
    assert proc.stdout == "héllo\nworld".encode()
    run = show()
    cast = tmp_path / "run.cast"
    export(run["id"], "asciicast", cast)
    assert stat.S_IMODE(os.stat(cast).st_mode) == 0o600
    header, events = read_cast(str(cast))
    assert header["version"] == 2
    assert (header["width"], header["height"]) == (80, 24)  # pipes: no resize recorded
    assert header["title"] == run["id"]
    assert header["command"] == """sh -c 'printf "héllo\\n"; printf world'"""
    assert isinstance(header["timestamp"], int)
    assert abs(header["timestamp"] - run_started_epoch(run["id"])) < 1
    assert "TERM" in header["env"]
    assert output_text(events) == "héllo\nworld"
    assert all(e[1] == "o" for e in events)
    times = [e[0] for e in events]
    assert times == sorted(times)


def run_started_epoch(run_id: str) -> float:
    with sqlite3.connect(os.path.join(home(), "store.db")) as db:
        return db.execute("SELECT started_at FROM runs WHERE id = ?", (run_id,)).fetchone()[0]


def test_asciicast_stdout_to_stdout_equals_the_file_export(tmp_path):
    agentsess("run", "--no-pty", "--", "sh", "-c", "echo out; echo err >&2", check=0)
    run_id = show()["id"]
    to_file = tmp_path / "a.cast"
    export(run_id, "asciicast", to_file)
    direct = cli("export", run_id, check=0).stdout  # asciicast is the default format
    assert direct == to_file.read_bytes()
    _, events = read_cast(str(to_file))
    # stderr is output too ("o"): both lines are there, in the order they were logged
    assert sorted(output_text(events).splitlines()) == ["err", "out"]


def test_asciicast_keeps_a_character_split_across_two_chunks_whole(tmp_path):
    # the child writes "h" + the first byte of "é", waits for a line, then the second byte
    child = (
        "import sys; o = sys.stdout.buffer; o.write(b'h\\xc3'); o.flush(); "
        "sys.stdin.readline(); o.write(b'\\xa9llo \\xf0\\x9f'); o.flush(); "
        "sys.stdin.readline(); o.write(b'\\x98\\x80!'); o.flush()"
    )
    p = spawn("run", "--no-pty", "--", sys.executable, "-c", child,
              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        run_id = running_run_id()
        log = os.path.join(run_folder(run_id), "output.log")
        wait_for(lambda: os.path.exists(log) and os.path.getsize(log) >= 2, what="the first chunk")
        p.stdin.write(b"\n")
        p.stdin.flush()
        wait_for(lambda: os.path.getsize(log) >= 9, what="the second chunk")
        p.stdin.write(b"\n")
        p.stdin.close()
        assert p.stdout.read() == "héllo 😀!".encode()
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(os.path.join(run_folder(run_id), "timing.log")) as fh:
        chunks = [line.split() for line in fh if line.split()[1] == "1"]
    assert [int(c[2]) for c in chunks] == [2, 7, 3]  # the splits really fell inside characters
    cast = tmp_path / "split.cast"
    export(run_id, "asciicast", cast)
    _, events = read_cast(str(cast))
    assert output_text(events) == "héllo 😀!"
    assert "\ufffd" not in output_text(events)


def test_asciicast_of_a_pty_run_has_its_size_and_resizes(tmp_path):
    env = dict(os.environ, TERM="xterm-256color")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "agentsess", "run", "--pty", "--", "sh", "-c",
         # the child itself polls until the new size reaches it through the supervisor
         'stty size; printf "ready\\n"; while [ "$(stty size)" != "30 100" ]; do sleep 0.05; done; '
         'stty size; printf "h\\303\\251llo w\\303\\266rld\\n"'],
        env=env, dimensions=(24, 80), timeout=30,
    )
    try:
        child.expect("ready")
        run_id = running_run_id()
        child.setwinsize(30, 100)  # rows, cols: SIGWINCH to the supervisor
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    with open(os.path.join(run_folder(run_id), "timing.log")) as fh:
        resizes = [line.split()[2] for line in fh if line.split()[1] == "r"]
    assert resizes == ["80x24", "100x30"]
    cast = tmp_path / "pty.cast"
    # a run does not record its child's TERM: the header has the exporting terminal's
    cli("export", run_id, "-o", str(cast), env={"TERM": "screen-256color"}, check=0)
    header, events = read_cast(str(cast))
    assert (header["width"], header["height"]) == (80, 24)
    assert header["env"] == {"TERM": "screen-256color"}
    assert [e[2] for e in events if e[1] == "r"] == ["80x24", "100x30"]
    with open(os.path.join(run_folder(run_id), "output.log"), "rb") as fh:
        logged = fh.read()
    text = output_text(events)
    assert text == logged.decode("utf-8")
    assert "24 80" in text and "30 100" in text
    assert "héllo wörld\r\n" in text  # a pty turns \n into \r\n; the cast keeps it as logged
    # the resize event sits between the output before and after it
    at = [i for i, e in enumerate(events) if e == [e[0], "r", "100x30"]][0]
    assert "ready" in output_text(events[:at]) and "24 80" in output_text(events[:at])
    assert "30 100" in output_text(events[at:])


def test_jsonl_export_is_the_receipt_stream_byte_for_byte(tmp_path):
    agentsess("run", "--no-pty", "--", "sh", "-c", "echo hi", check=0)
    run_id = show()["id"]
    agentsess("revoke", run_id, check=0)  # a second seal: the export has every record
    target = tmp_path / "receipts.jsonl"
    export(run_id, "jsonl", target)
    with open(os.path.join(run_folder(run_id), "receipts.jsonl"), "rb") as fh:
        original = fh.read()
    assert target.read_bytes() == original
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert cli("export", run_id, "--format", "jsonl", check=0).stdout == original
    types = [json.loads(line)["type"] for line in original.splitlines()]
    assert types.count("run.sealed") == 2


def test_export_refuses_an_unknown_format_and_run():
    agentsess("run", "--no-pty", "--", "true", check=0)
    bad = cli("export", "last", "--format", "mp4")
    assert bad.returncode == 2
    assert b"asciicast, jsonl or bundle" in bad.stderr
    missing = cli("export", "run_0000000000")
    assert missing.returncode == 2
    assert b"no run matches" in missing.stderr


class _Rows:
    """Just enough of a store for core.export.asciicast on a hand-made run folder."""

    def __init__(self, run_id):
        self.row = {"id": run_id, "started_at": 1700000000.5, "command": ["x", "a b"]}

    def get_run(self, run_id):
        return self.row


def _write_logs(root: str, run_id: str, data: bytes, cuts: list[int]) -> None:
    folder = os.path.join(root, "runs", run_id)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "output.log"), "wb") as fh:
        fh.write(data)
    bounds = sorted({c for c in cuts if 0 < c < len(data)} | {0, len(data)})
    with open(os.path.join(folder, "timing.log"), "w") as fh:
        fh.write("0.000000 r 120x40\n")
        for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
            fh.write(f"{i / 100:.6f} {1 + i % 2} {b - a}\n")


@settings(max_examples=200, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=300), st.text(max_size=100).map(lambda s: s.encode())),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30),
)
def test_asciicast_output_equals_the_decoded_log_wherever_chunks_split(data, cuts):
    from agentsess.core.receipts import export as exporter

    run_id = "run_01m8mdga6tswtk1dzfjr91yw9a"
    with tempfile.TemporaryDirectory() as root:
        old = os.environ["AGENTSESS_HOME"]
        os.environ["AGENTSESS_HOME"] = root
        try:
            _write_logs(root, run_id, data, cuts)
            out = io.BytesIO()
            exporter.asciicast(run_id, out, store=_Rows(run_id))
        finally:
            os.environ["AGENTSESS_HOME"] = old
    lines = out.getvalue().decode("utf-8").splitlines()  # also splits on U+2028: escaped
    header = json.loads(lines[0])
    assert (header["width"], header["height"], header["timestamp"]) == (120, 40, 1700000000)
    assert header["command"] == "x 'a b'"
    events = [json.loads(line) for line in lines[1:]]
    assert output_text(events) == data.decode("utf-8", "replace")
    assert [e[0] for e in events] == sorted(e[0] for e in events)


def test_asciicast_streams_a_large_log_in_constant_memory(tmp_path):
    # 384 MiB of output in 64 KiB chunks, exported in a fresh process: its peak RSS stays small
    run_id = "run_01m8mdga6tswtk1dzfjr91yw9b"
    folder = os.path.join(home(), "runs", run_id)
    os.makedirs(folder)
    block = ("é" * 100 + "a\n").encode() * 322  # 65 366 bytes, splits land inside "é"
    count = (384 << 20) // len(block)
    with open(os.path.join(folder, "output.log"), "wb") as data, open(os.path.join(folder, "timing.log"), "w") as timing:
        for i in range(count):
            data.write(block)
            timing.write(f"{i / 1000:.6f} 1 {len(block)}\n")
    script = (
        "import os, sys\n"
        "from agentsess.core.receipts import export\n"
        "class Rows:\n"
        "    def get_run(self, rid): return {'id': rid, 'started_at': 0, 'command': ['big']}\n"
        f"with open(os.devnull, 'wb') as out:\n"
        f"    counts = export.asciicast({run_id!r}, out, store=Rows())\n"
        # VmHWM, not ru_maxrss: Linux carries a forking parent's high-water mark over exec
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(counts['output_events'], hwm)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300, check=True)
    events, max_rss_kib = map(int, proc.stdout.split())
    assert events >= count
    assert max_rss_kib < 120 * 1024, f"peak RSS {max_rss_kib} KiB while exporting a 384 MiB log"


# -- prune -------------------------------------------------------------------------------


def age(run_id: str, days: float) -> None:
    """Make a run look as if it started and ended ``days`` ago (straight in the store)."""
    import time

    then = time.time() - days * DAY
    with sqlite3.connect(os.path.join(home(), "store.db")) as db:
        db.execute(
            "UPDATE runs SET started_at = ?, ended_at = CASE WHEN ended_at IS NULL THEN NULL ELSE ? END WHERE id = ?",
            (then, then + 1, run_id),
        )


def run_ids() -> set[str]:
    with sqlite3.connect(os.path.join(home(), "store.db")) as db:
        return {r[0] for r in db.execute("SELECT id FROM runs")}


def quick_run(*argv, code=0) -> str:
    agentsess("run", "--no-pty", "--", *(argv or ("true",)), check=code)
    return show()["id"]


@pytest.fixture
def running():
    """A real `agentsess run -- sleep 30` in the background; yields its run id."""
    p = spawn("run", "--no-pty", "--", "sleep", "30", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield running_run_id()
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_prune_deletes_old_finished_runs_and_keeps_running_and_new_ones(running):
    old_ok = quick_run("true")
    old_failed = quick_run("sh", "-c", "exit 3", code=3)
    new = quick_run("true")
    for rid in (old_ok, old_failed, running):
        age(rid, 40)
    before = run_ids()

    dry = cli("prune", "--older-than", "30d", "--dry-run", "--json", check=0)
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True
    assert sorted(plan["pruned"]) == sorted([old_ok, old_failed])
    assert run_ids() == before  # a dry run deletes nothing
    assert all(os.path.isdir(run_folder(r)) for r in before)
    assert not os.path.exists(os.path.join(home(), "prune.log"))
    text = cli("prune", "--older-than", "30d", "--dry-run", check=0).stdout.decode()
    assert "would prune 2 runs" in text and old_ok in text

    done = json.loads(cli("prune", "--older-than", "30d", "--json", check=0).stdout)
    assert done["dry_run"] is False and done["count"] == 2
    assert sorted(done["pruned"]) == sorted([old_ok, old_failed])
    assert run_ids() == {new, running}
    assert not os.path.exists(run_folder(old_ok)) and not os.path.exists(run_folder(old_failed))
    assert os.path.isdir(run_folder(new)) and os.path.isdir(run_folder(running))

    log = os.path.join(home(), "prune.log")
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    with open(log) as fh:
        lines = fh.read().splitlines()
    assert len(lines) == 1
    assert "pruned=2" in lines[0] and "older_than=2592000s" in lines[0]

    again = json.loads(cli("prune", "--older-than", "30d", "--json", check=0).stdout)
    assert again["count"] == 0 and again["pruned"] == []
    with open(log) as fh:
        assert fh.read().splitlines()[1].split()[1] == "pruned=0"

    assert show(running)["status"] == "running"
    verified = cli("verify", "--all", "--json")
    assert verified.returncode == 0, verified.stdout
    assert {r["run"] for r in json.loads(verified.stdout)} == {new, running}


def test_prune_keeps_a_revoked_run_whose_process_still_runs(tmp_path):
    (tmp_path / "config.toml").write_text('[defaults]\non_revoke = "keep"\n')
    p = spawn("run", "--no-pty", "--", "sleep", "30", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rid = running_run_id()
        agentsess("revoke", rid, check=0)
        assert show(rid)["status"] == "revoked" and show(rid)["ended_at"] is None
        age(rid, 40)
        result = json.loads(cli("prune", "--older-than", "1d", "--json", check=0).stdout)
        assert result["pruned"] == []
        assert rid in run_ids() and os.path.isdir(run_folder(rid))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    # once its supervisor has finished, it is an ordinary finished run
    age(rid, 40)
    result = json.loads(cli("prune", "--older-than", "1d", "--json", check=0).stdout)
    assert result["pruned"] == [rid]


def test_prune_a_parent_whose_child_is_kept():
    py = sys.executable
    agentsess("run", "--no-pty", "--", "sh", "-c", f"'{py}' -m agentsess run --no-pty -- true", check=0)
    runs = {r["id"]: r for r in json.loads(cli("runs", "--json", check=0).stdout)}
    (child,) = [r for r in runs.values() if r["parent_id"]]
    parent = child["parent_id"]
    age(parent, 10)
    result = json.loads(cli("prune", "--older-than", "5d", "--json", check=0).stdout)
    assert result["pruned"] == [parent]
    assert result["orphaned"] == [child["id"]]
    kept = show(child["id"])
    assert kept["parent_id"] == parent  # names a pruned run: documented, not an error
    assert cli("verify", "--all").returncode == 0
    tree = cli("runs", "--tree", check=0)
    assert child["id"][:20].encode() in tree.stdout


def test_prune_needs_a_valid_duration():
    bad = cli("prune", "--older-than", "soon")
    assert bad.returncode == 2
    assert b"--older-than" in bad.stderr and b"duration" in bad.stderr
