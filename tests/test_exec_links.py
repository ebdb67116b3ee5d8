"""An exec's link to the check of the tool call that ran it (issue 18): read once, not per exec.

`record_exec` links each Claude Code command to the newest allowed ``action.checked`` of the
same command not yet linked by a later exec. It used to re-read the whole receipt stream for
every exec (quadratic over a long run); it now reads on from where it stopped. These tests
hold it to the old answer, computed here the old way, over long and adversarial streams: the
agent chooses every ``tool_use_id`` (repeated, empty, not a string) and every command.
No timing is asserted (the report measures).
"""

import json
import os
import shutil
import sys

from helpers import show, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inrun import InRun

from agentsess import ids
from agentsess.core.guard import calls
from agentsess.digest import sha256_text
from agentsess.edges import paths, streams

PY = sys.executable


def _key(tool_use_id):
    return ("s", tool_use_id) if isinstance(tool_use_id, str) else ("j", json.dumps(tool_use_id, sort_keys=True))


def reference(records: list[dict], command_sha256: str, source: str) -> dict:
    """The old `_checked_link`: the whole stream, newest first."""
    linked = set()
    for rec in reversed(records):
        data = rec.get("data") or {}
        if rec.get("type") == "action.exec" and data.get("tool_use_id"):
            linked.add(_key(data["tool_use_id"]))
        elif (rec.get("type") == "action.checked" and data.get("source") == source
              and data.get("command_sha256") == command_sha256 and data.get("decision") != "deny"
              and (not data.get("tool_use_id") or _key(data["tool_use_id"]) not in linked)):
            return {"tool_use_id": data.get("tool_use_id"), "checked": {"seq": rec["seq"], "hash": rec["hash"]}}
    return {"checked": None}


COMMANDS = [sha256_text(c) for c in ("ls", "git status", "make test", "rm -rf /")]
SOURCES = ["claude-code", "codex"]
TOOL_IDS = ["t1", "t2", "t3", "t4", None, "", 0, 7, ["t1"], {"id": "t1"}, True]

op = st.one_of(
    st.tuples(st.just("check"), st.sampled_from(COMMANDS), st.sampled_from(TOOL_IDS),
              st.sampled_from(["allow", "deny", "ask", "observe"]), st.sampled_from(SOURCES)),
    st.tuples(st.just("exec"), st.sampled_from(COMMANDS), st.sampled_from(SOURCES)),
    st.tuples(st.just("other"), st.sampled_from(TOOL_IDS)),  # an exec of another source, a result…
    st.tuples(st.just("replace"),),  # the file replaced (a restore): read again from the start
)


def _apply(run_id: str, ops) -> int:
    execs = 0
    for o in ops:
        if o[0] == "check":
            _, sha, tid, decision, source = o
            streams.append(run_id, "action.checked", {"source": source, "command_sha256": sha, "decision": decision,
                                                      "tool_use_id": tid})
        elif o[0] == "exec":
            _, sha, source = o
            got = calls._checked_link(run_id, sha, source)
            assert got == reference(streams.load(run_id), sha, source)
            streams.append(run_id, "action.exec", {"source": source, "command_sha256": sha, **got})
            execs += 1
        elif o[0] == "other":
            streams.append(run_id, "action.exec", {"source": "exec", "tool_use_id": o[1]})
            streams.append(run_id, "action.result", {"tool_use_id": o[1], "command_sha256": COMMANDS[0]})
        else:  # restored from a copy one record older (no run does this; the reader must not care)
            path = paths.receipts_file(run_id)
            with open(path, "rb") as fh:
                lines = fh.read().splitlines(keepends=True)
            with open(path + ".copy", "wb") as fh:
                fh.write(b"".join(lines[:-1]))
            os.replace(path + ".copy", path)
    return execs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(op, max_size=80))
def test_each_exec_gets_the_link_the_whole_stream_gives(agentsess_home, ops):
    run_id = ids.new_run_id()
    streams.create_stream(run_id)
    _apply(run_id, ops)


def test_a_long_run_of_repeated_commands_links_each_exec_as_before(agentsess_home):
    """2,000 checks and 2,000 execs, commands repeating, some checks denied or without an id,
    some execs with no check of their own: every answer is the whole stream's."""
    run_id = ids.new_run_id()
    streams.create_stream(run_id)
    ops = []
    for i in range(2000):
        sha = COMMANDS[i % 3]
        if i % 7:
            tid = None if i % 11 == 0 else f"toolu_{i}"
            ops.append(("check", sha, tid, "deny" if i % 13 == 0 else "allow", "claude-code"))
        ops.append(("exec", sha, "claude-code"))
    assert _apply(run_id, ops) == 2000
    execs = [r["data"] for r in streams.load(run_id) if r["type"] == "action.exec"]
    linked = [e["tool_use_id"] for e in execs if e.get("tool_use_id")]
    assert len(linked) == len(set(linked)) > 1000  # a check is linked once


def test_a_restored_stream_forgets_what_it_no_longer_holds(agentsess_home):
    sha = COMMANDS[0]
    run_id = ids.new_run_id()
    streams.create_stream(run_id)
    ops = [("check", sha, "t1", "allow", "claude-code"), ("check", sha, "t2", "allow", "claude-code"),
           ("exec", sha, "claude-code"), ("replace",), ("replace",),  # the exec and check t2 are gone
           ("exec", sha, "claude-code"), ("exec", sha, "claude-code")]
    _apply(run_id, ops)
    links = [r["data"].get("tool_use_id") for r in streams.load(run_id) if r["type"] == "action.exec"]
    assert links == ["t1", None]


def test_a_stream_read_on_sees_only_whole_lines_and_starts_again_when_replaced(agentsess_home):
    run_id = ids.new_run_id()
    streams.create_stream(run_id)
    first = streams.append(run_id, "action.checked", {"n": 1})
    ident, offset, records, restarted = streams.load_since(run_id)
    assert restarted and [r["seq"] for r in records] == [0] and records[0]["hash"] == first["hash"]
    path = paths.receipts_file(run_id)
    with open(path, "ab") as fh:
        fh.write(b'{"half": ')  # a line being written
    assert streams.load_since(run_id, offset, ident)[1:] == (offset, [], False)
    with open(path, "ab") as fh:
        fh.write(b'"done"}\n')
    again = streams.load_since(run_id, offset, ident)
    assert again[2] == [{"half": "done"}] and not again[3]
    shutil.copy(path, path + ".copy")
    os.replace(path + ".copy", path)  # another file
    assert streams.load_since(run_id, again[1], ident)[3]
    with open(path, "r+b") as fh:
        fh.truncate(10)  # shorter than what was read
    assert streams.load_since(run_id, again[1], streams.load_since(run_id)[0])[3]
    os.unlink(path)
    assert streams.load_since(run_id, 10, ident) == (None, 0, [], True)


# -- in a live run: the supervisor's own path, execs at once ------------------------------------

RULES = """
[profiles.claude]
scopes = ["fs:*"]
default_decision = "allow"

[[profiles.claude.rules]]
tool = "Bash"
args = "rm *"
decision = "deny"
"""

DRIVE = r"""
import json, os, sys, threading
from agentsess.edges.control import find_socket, request_fast
path, run = find_socket(), os.environ["AGENTSESS_RUN_ID"]
def hook(command, tid):
    event = {"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Bash",
             "tool_input": {"command": command}, "cwd": "/tmp"}
    if tid is not None:
        event["tool_use_id"] = tid
    assert request_fast(path, ["hook", "claude-code", run], json.dumps(event).encode())[0] == 0
def exec_(command):
    code, _, err = request_fast(path, ["exec", "0", "0.01", "-"], b"/tmp\0claude-code\0" + command.encode())
    assert code == 0 and not err, err
for i in range(300):
    command = ["ls", "git status", "rm -rf x"][i % 3]
    if i % 5:
        hook(command, None if i % 17 == 0 else (f"toolu_{i}" if i % 19 else "toolu_again"))
    exec_(command)
for i in range(24):  # then many checks of one command, and their execs all at once
    hook("make test", f"burst_{i}")
threads = [threading.Thread(target=exec_, args=("make test",)) for _ in range(24)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_a_live_runs_execs_link_as_the_whole_stream_says_even_at_once(tmp_path):
    write_config(RULES)
    with InRun("--profile", "claude", "--agent", "none") as run:
        proc = run.run([PY, "-c", DRIVE], timeout=300)
        assert proc.returncode == 0, proc.stderr
        records = show(run.run_id)["receipts"]
    execs = 0
    for place, rec in enumerate(records):
        if rec["type"] != "action.exec":
            continue
        data = rec["data"]
        expected = reference(records[:place], data["command_sha256"], "claude-code")
        assert {k: data.get(k) for k in expected} == expected, (place, data)
        execs += 1
    assert execs == 324
    burst = [r["data"].get("tool_use_id") for r in records if r["type"] == "action.exec"][-24:]
    assert sorted(burst) == sorted(f"burst_{i}" for i in range(24))  # each took its own check
    denied = {r["seq"] for r in records if r["type"] == "action.checked" and r["data"]["decision"] == "deny"}
    assert denied and not {(r["data"].get("checked") or {}).get("seq") for r in records} & denied
