"""`agentsess mcp-proxy`: a stdio MCP server behind the run's tool-call policy.

End to end with the real MCP SDK (its stdio client, an MCPServer server) inside a real
`agentsess run`; the relay's edge cases against a fake server that logs every byte it gets.
"""

import hashlib
import json
import os
import queue
import subprocess
import sys
import threading

import pytest
from helpers import agentsess, show, wait_for
from hypothesis import given
from hypothesis import strategies as st
from inrun import InRun

from agentsess.core.guard import actions, mcp
from agentsess.digest import sha256_text
from agentsess.edges import mcp_relay
from agentsess.encoding import canonical_text

PY = sys.executable

CONFIG = """
[profiles.mcp]
default_decision = "allow"
on_revoke = "keep"  # the proxy lives inside the run: keep it alive to see revocation bite on the next call

[[profiles.mcp.rules]]
tool = "mcp:demo:delete_repo"
decision = "deny"
reason = "deleting repositories is not for agents"

[[profiles.mcp.rules]]
tool = "mcp:fake:delete_*"
decision = "deny"
reason = "deleting is not for agents"

[[profiles.mcp.rules]]
tool = "mcp:fake:ask_me"
decision = "ask"
reason = "a human should confirm this"
"""

SDK_SERVER = '''
from mcp.server.mcpserver import MCPServer

server = MCPServer("demo")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
def delete_repo(repo: str) -> str:
    """Delete a repository."""
    with open(__file__ + ".deleted", "a") as fh:
        fh.write(repo + "\\n")
    return "deleted " + repo


if __name__ == "__main__":
    server.run()
'''

SDK_CLIENT = '''
import asyncio, json, os, sys

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError


async def main(server_file, out_file):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "agentsess", "mcp-proxy", "--name", "demo", "--", sys.executable, server_file],
        env=dict(os.environ),  # the SDK passes on only HOME, PATH...: the proxy needs the run's variables
    )
    out = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            out["tools"] = sorted(t.name for t in listed.tools)
            added = await session.call_tool("add", {"a": 2, "b": 40})
            out["add"] = {"is_error": added.is_error, "text": [c.text for c in added.content]}
            try:
                await session.call_tool("delete_repo", {"repo": "acme/prod"})
                out["delete"] = "it ran"
            except MCPError as exc:
                out["delete"] = {"code": exc.code, "message": exc.message}
    with open(out_file, "w") as fh:
        json.dump(out, fh)


asyncio.run(main(sys.argv[1], sys.argv[2]))
'''

# A stand-in MCP server: logs every byte it reads, answers requests, and obeys a few
# methods that let a test drive it (hold/release for out-of-order answers, split for a
# response written in two parts, exit, raw).
FAKE_SERVER = r'''
import json, os, sys

log = open(sys.argv[1], "ab", buffering=0)
if len(sys.argv) > 2:
    open(sys.argv[2], "w").close()  # "I was started"
out = sys.stdout.buffer
held = []


def send(obj):
    out.write(json.dumps(obj).encode() + b"\n")
    out.flush()


def answer(req):
    method = req.get("method")
    if method == "tools/call":
        args = req.get("params", {}).get("arguments") or {}
        if args.get("fail"):
            return {"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32000, "message": "boom"}}
        return {"jsonrpc": "2.0", "id": req["id"],
                "result": {"content": [{"type": "text", "text": json.dumps(args)}], "isError": bool(args.get("is_error"))}}
    return {"jsonrpc": "2.0", "id": req["id"], "result": {"method": method}}


stdin = sys.stdin.buffer
while True:
    line = stdin.readline()
    if not line:
        break
    log.write(line)
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if isinstance(msg, list):
        replies = [answer(m) for m in msg if isinstance(m, dict) and "id" in m]
        if replies:
            send(replies)
        continue
    method = msg.get("method")
    if "id" not in msg:
        if method == "notifications/ping_me":
            send({"jsonrpc": "2.0", "method": "notifications/pong", "params": msg.get("params")})
        continue
    args = (msg.get("params") or {}).get("arguments") or {} if method == "tools/call" else {}
    if method == "raw":
        out.write(msg["params"]["raw"].encode())
        out.flush()
    elif method == "exit":
        send(answer(msg))
        sys.exit(msg["params"]["code"])
    elif method == "kill":
        os.kill(os.getpid(), 15)
    elif args.get("hold"):
        held.append(msg)
    elif method == "release":
        for h in reversed(held):
            send(answer(h))
        held.clear()
        send(answer(msg))
    elif args.get("split"):
        data = json.dumps(answer(msg)).encode() + b"\n"
        out.write(data[:20])
        out.flush()
        nxt = stdin.readline()  # the rest only after the client's next line got through
        log.write(nxt)
        out.write(data[20:])
        out.flush()
    else:
        send(answer(msg))
'''


def _write_config():
    with open(os.environ["AGENTSESS_CONFIG"], "w") as fh:
        fh.write(CONFIG)


def _receipts(run: str = "last") -> list[dict]:
    return show(run)["receipts"]


def _mcp_receipts(run: str) -> list[dict]:
    return [r for r in _receipts(run) if r["type"] in ("action.checked", "action.result")]


# -- end to end: the SDK's client and server, inside `agentsess run` ---------------------------


def test_sdk_client_through_proxy_inside_a_run(tmp_path):
    _write_config()
    server = tmp_path / "demo_server.py"
    server.write_text(SDK_SERVER)
    client = tmp_path / "client.py"
    client.write_text(SDK_CLIENT)
    result = tmp_path / "result.json"
    proc = agentsess("run", "--no-pty", "--profile", "mcp", "--", PY, str(client), str(server), str(result), timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    out = json.loads(result.read_text())
    assert out["tools"] == ["add", "delete_repo"]
    assert out["add"] == {"is_error": False, "text": ["42"]}
    assert out["delete"] == {
        "code": -32001,
        "message": "agentsess denied tools/call delete_repo: deleting repositories is not for agents",
    }
    assert not os.path.exists(str(server) + ".deleted"), "the denied call reached the server"

    receipts = _mcp_receipts("last")
    assert [r["type"] for r in receipts] == ["action.checked", "action.result", "action.checked"]
    allowed, result_rec, denied = (r["data"] for r in receipts)
    assert allowed["tool"] == "mcp:demo:add" and allowed["decision"] == "allow"
    assert allowed["source"] == "mcp-proxy" and allowed["server"] == "demo"
    assert allowed["summary"] == '{"a":2,"b":40}'
    assert result_rec["tool"] == "mcp:demo:add" and result_rec["is_error"] is False
    assert result_rec["request_id"] == allowed["request_id"]
    assert '"text":"42"' in result_rec["result"]
    assert denied["tool"] == "mcp:demo:delete_repo" and denied["decision"] == "deny"
    assert denied["reason"] == "deleting repositories is not for agents" and denied["rule"] == 0
    assert denied["request_id"] != allowed["request_id"]
    assert agentsess("verify", "last").returncode == 0


def test_refused_outside_a_run_before_starting_the_server(tmp_path):
    started = tmp_path / "started"
    proc = agentsess("mcp-proxy", "--", PY, "-c", f"open({str(started)!r}, 'w')", input=b"")
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "agentsess run" in err and "not inside a run" in err
    assert not started.exists()


def test_refused_for_a_run_unknown_to_the_store(tmp_path):
    started = tmp_path / "started"
    proc = agentsess("mcp-proxy", "--", PY, "-c", f"open({str(started)!r}, 'w')", input=b"",
                     env={"AGENTSESS_RUN_ID": "run_01aaaaaaaaaaaaaaaaaaaaaaaa"})
    assert proc.returncode == 2
    assert "agentsess run" in proc.stderr.decode()
    assert not started.exists()


def test_no_command_is_a_usage_error():
    proc = agentsess("mcp-proxy", "--name", "x", env={"AGENTSESS_RUN_ID": "run_01aaaaaaaaaaaaaaaaaaaaaaaa"})
    assert proc.returncode == 2
    assert "usage: agentsess mcp-proxy" in proc.stderr.decode()


# -- the relay against a fake server, inside a live run ----------------------------------------


@pytest.fixture
def live_run(tmp_path):
    """A running run whose child starts the proxy for the test, as the agent would (tests/inrun.py)."""
    _write_config()
    with InRun("--profile", "mcp") as run:
        yield run


class Session:
    """`agentsess mcp-proxy --name fake -- python fake_server.py LOG` driven through pipes."""

    def __init__(self, tmp_path, run_env: dict, name: str = "fake"):
        self.server = tmp_path / "fake_server.py"
        self.server.write_text(FAKE_SERVER)
        self.log = tmp_path / "server.log"
        self.errors = open(tmp_path / "proxy.stderr", "wb")
        self.errors_path = tmp_path / "proxy.stderr"
        self.run_id = run_env["AGENTSESS_RUN_ID"]
        self.proc = run_env.spawn(
            [PY, "-m", "agentsess", "mcp-proxy", "--name", name, "--", PY, str(self.server), str(self.log)],
            stderr=self.errors,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, obj) -> None:
        self.send(json.dumps(obj).encode() + b"\n")

    def call(self, rid, tool: str, **arguments) -> None:
        self.request({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})

    def line(self) -> bytes:
        try:
            item = self.lines.get(timeout=60)
        except queue.Empty:
            raise AssertionError(f"no answer from the proxy; its stderr: {self.stderr()}") from None
        assert item is not None, f"the proxy's output ended; its stderr: {self.stderr()}"
        return item

    def answer(self):
        return json.loads(self.line())

    def server_got(self) -> bytes:
        return self.log.read_bytes() if self.log.exists() else b""

    def stderr(self) -> str:
        return self.errors_path.read_text(errors="replace")[-3000:]

    def close(self) -> int:
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        code = self.proc.wait(60)
        self.errors.close()
        return code


@pytest.fixture
def session(tmp_path, live_run):
    s = Session(tmp_path, live_run)
    yield s
    if s.proc.poll() is None:
        s.close()


def test_allowed_call_is_forwarded_and_recorded(session):
    session.call(1, "add", a=1, b=2)
    assert session.answer() == {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": '{"a": 1, "b": 2}'}], "isError": False}}
    assert session.close() == 0
    checked, result = _mcp_receipts(session.run_id)
    assert checked["type"] == "action.checked" and checked["data"]["decision"] == "allow"
    assert checked["data"]["tool"] == "mcp:fake:add" and checked["data"]["request_id"] == 1
    assert result["type"] == "action.result" and result["data"]["request_id"] == 1
    assert result["data"]["is_error"] is False and result["data"]["args_sha256"] == checked["data"]["args_sha256"]


def test_denied_call_never_reaches_the_server(session):
    session.call("req-7", "delete_everything", really=True)
    assert session.answer() == {
        "jsonrpc": "2.0", "id": "req-7",
        "error": {"code": -32001, "message": "agentsess denied tools/call delete_everything: deleting is not for agents"},
    }
    session.request({"jsonrpc": "2.0", "id": 8, "method": "ping"})
    assert session.answer()["id"] == 8  # the server saw the ping, so it has read past where the call would be
    assert b"delete_everything" not in session.server_got()
    assert session.close() == 0
    (checked,) = _mcp_receipts(session.run_id)
    assert checked["data"]["decision"] == "deny" and checked["data"]["request_id"] == "req-7"


def test_ask_is_denied_saying_why(session):
    session.call(1, "ask_me")
    error = session.answer()["error"]
    assert error["code"] == -32001
    assert error["message"].startswith("agentsess denied tools/call ask_me: a human should confirm this")
    assert "ask" in error["message"] and "mcp-proxy" in error["message"]
    session.close()
    (checked,) = _mcp_receipts(session.run_id)
    assert checked["data"]["decision"] == "deny"


def test_escaped_method_name_is_still_checked(session):
    session.send(b'{"jsonrpc":"2.0","id":3,"method":"\\u0074ools\\/call","params":{"name":"delete_x"}}\n')
    assert session.answer()["error"]["code"] == -32001
    session.close()
    assert b"delete_x" not in session.server_got()


def test_other_traffic_reaches_the_server_as_decoded_and_the_server_is_relayed_unchanged(session):
    odd = b'{ "method" : "initialize",  "id":"\\u00e9", "jsonrpc":"2.0", "params":{"x":[1, 2.50, "\xc3\xa9"]}}\r\n'
    session.send(odd)
    assert session.answer()["id"] == "\u00e9"
    raw = '{"id" : 5,   "jsonrpc":"2.0","result":{"k":"v"}}\n'
    session.request({"jsonrpc": "2.0", "id": 9, "method": "raw", "params": {"raw": raw}})
    assert session.line() == raw.encode()  # the server's bytes reach the client as they are
    assert session.close() == 0
    first = session.server_got().splitlines(keepends=True)[0]
    # re-encoded: compact, UTF-8, never the client's own bytes
    assert first == '{"method":"initialize","id":"\u00e9","jsonrpc":"2.0","params":{"x":[1,2.5,"\u00e9"]}}\n'.encode()


def test_notifications_both_ways(session):
    note = b'{"jsonrpc":"2.0","method":"notifications/ping_me","params":{"n":1}}\n'
    session.send(note)
    assert session.answer() == {"jsonrpc": "2.0", "method": "notifications/pong", "params": {"n": 1}}
    assert note in session.server_got()
    session.close()
    assert _mcp_receipts(session.run_id) == []


def test_tools_call_notification_is_checked_and_dropped_when_denied(session):
    session.request({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "delete_x"}})
    session.request({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert session.answer() == {"jsonrpc": "2.0", "id": 1, "result": {"method": "ping"}}
    session.close()
    assert b"delete_x" not in session.server_got()
    (checked,) = _mcp_receipts(session.run_id)
    assert checked["data"]["decision"] == "deny" and checked["data"]["request_id"] is None


def test_partial_lines_both_ways(session):
    request = json.dumps({"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"name": "add", "arguments": {"split": True}}}).encode() + b"\n"
    for i in range(0, len(request), 7):
        session.send(request[i : i + 7])
    # the server writes 20 bytes of its answer, then waits for our next line before the rest
    session.send(b'{"jsonrpc":"2.0","method":"notifications/go_on"}\n')
    assert session.answer() == {"jsonrpc": "2.0", "id": 11, "result": {"content": [{"type": "text", "text": '{"split": true}'}], "isError": False}}
    assert session.close() == 0
    got = [json.loads(x) for x in session.server_got().splitlines()]
    assert got == [json.loads(request), {"jsonrpc": "2.0", "method": "notifications/go_on"}]
    checked, result = _mcp_receipts(session.run_id)
    assert result["type"] == "action.result" and result["data"]["request_id"] == 11
    assert json.loads(result["data"]["result"])["content"][0]["text"] == '{"split": true}'


def test_five_megabyte_messages(session):
    big = "x" * (5 * 1024 * 1024)
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"blob": big}}}).encode() + b"\n"
    session.send(request)
    reply = session.line()
    assert json.loads(reply)["result"]["content"][0]["text"] == json.dumps({"blob": big})
    hexblob = os.urandom(2 * 1024 * 1024).hex()  # one 4 MB run of letters and digits
    raw = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"h": hexblob}}}).encode() + b"\n"
    session.send(raw)
    assert json.loads(session.line())["id"] == 2
    session.close()
    assert [json.loads(x) for x in session.server_got().splitlines()] == [json.loads(request), json.loads(raw)]
    receipts = _mcp_receipts(session.run_id)
    assert [r["type"] for r in receipts] == ["action.checked", "action.result"] * 2
    for r in receipts:
        text = r["data"].get("summary") or r["data"].get("result")
        assert len(text) < actions.RESULT_CAP + 100 and "more characters]" in text


def test_out_of_order_responses_match_their_calls(session):
    session.call(1, "add", hold=True, which="number one")
    session.call("1", "add", hold=True, which="string one")
    session.call(2, "add", hold=True, fail=True)
    session.request({"jsonrpc": "2.0", "id": 3, "method": "release"})
    got = [session.answer() for _ in range(4)]
    assert [g["id"] for g in got] == [2, "1", 1, 3]
    session.close()
    results = {json.dumps(r["data"]["request_id"]): r["data"] for r in _mcp_receipts(session.run_id) if r["type"] == "action.result"}
    assert set(results) == {"1", '"1"', "2"}
    assert "number one" in results["1"]["result"] and results["1"]["is_error"] is False
    assert "string one" in results['"1"']["result"]
    assert results["2"]["is_error"] is True and "boom" in results["2"]["result"]


def test_a_batch_with_a_denied_element_gets_one_batch_response(session):
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delete_repo", "arguments": {"r": 1}}},
        {"jsonrpc": "2.0", "method": "notifications/progress"},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    ]
    session.request(batch)
    replies = session.answer()
    assert isinstance(replies, list) and sorted(r["id"] for r in replies) == [1, 2, 3]
    (error,) = [r for r in replies if r["id"] == 2]
    assert error == {"jsonrpc": "2.0", "id": 2, "error": {"code": -32001, "message": "agentsess denied tools/call delete_repo: deleting is not for agents"}}
    # the next message is the answer to the next request: no second array for the first batch
    session.request({"jsonrpc": "2.0", "id": 4, "method": "ping"})
    assert session.answer() == {"jsonrpc": "2.0", "id": 4, "result": {"method": "ping"}}
    allowed_batch = [batch[0], batch[3]]
    session.request(allowed_batch)
    assert [r["id"] for r in session.answer()] == [1, 3]
    session.close()
    sent = [json.loads(x) for x in session.server_got().splitlines()]
    assert sent[0] == [batch[0], batch[2], batch[3]]
    assert sent[2] == allowed_batch
    kinds = [(r["type"], r["data"]["request_id"]) for r in _mcp_receipts(session.run_id)]
    assert kinds.count(("action.checked", 1)) == 2 and kinds.count(("action.result", 1)) == 2
    assert kinds.count(("action.checked", 2)) == 1 and ("action.result", 2) not in kinds


def test_a_batch_whose_forwarded_part_needs_no_answer_is_answered_at_once(session):
    batch = [
        {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "delete_repo"}},
        {"jsonrpc": "2.0", "method": "notifications/progress"},
    ]
    session.request(batch)
    assert [r["id"] for r in session.answer()] == [7]
    session.request([batch[0]])  # all denied: one array of errors, nothing forwarded
    assert [r["id"] for r in session.answer()] == [7]
    session.close()
    assert b"delete_repo" not in session.server_got()


@pytest.mark.parametrize("code", [0, 3, 42])
def test_server_exit_code_passes_through(session, code):
    session.request({"jsonrpc": "2.0", "id": 1, "method": "exit", "params": {"code": code}})
    assert session.answer()["id"] == 1  # flushed before the proxy exits
    assert session.lines.get(timeout=60) is None
    assert session.proc.wait(60) == code


def test_server_killed_by_a_signal_gives_128_plus_n(session):
    session.request({"jsonrpc": "2.0", "id": 1, "method": "kill"})
    assert session.proc.wait(60) == 128 + 15


def test_eof_on_stdin_ends_the_server_and_records_unanswered_calls(session):
    session.call(5, "add", hold=True)
    wait_for(lambda: b'"hold":true' in session.server_got(), what="the held call at the server")
    assert session.close() == 0
    checked, result = _mcp_receipts(session.run_id)
    assert result["type"] == "action.result" and result["data"]["request_id"] == 5
    assert result["data"]["answered"] is False and result["data"]["is_error"] is True


def test_revocation_bites_on_the_next_call(session):
    session.call(1, "add")
    assert "result" in session.answer()
    agentsess("revoke", session.run_id, "--only", check=0)
    session.call(2, "add")
    error = session.answer()["error"]
    assert error["code"] == -32001 and "revoked" in error["message"]
    session.close()


# -- the client as an attacker: raw bytes the proxy must refuse ---------------------------------

SMUGGLED = [
    # one invalid UTF-8 byte: main relayed the line unchanged and unrecorded
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","x":"\xff"}}\n', -32700),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"}}\xc3\n', -32700),
    # keys that differ only in case: Go's encoding/json matches them to the same field
    (b'{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"delete_repo"}}\n', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","Name":"delete_repo"}}\n', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"},"PARAMS":{"name":"delete_repo"}}\n', -32600),
    # Unicode case folding: U+017F LATIN SMALL LETTER LONG S folds to "s"
    ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"},"param\u017f":{"name":"delete_repo"}}\n'.encode(), -32600),
    # a key the proxy decides by, spelled otherwise and alone: no collision, but a server that
    # ignores case reads it as the real one (the proxy saw no method, no params, no name)
    (b'{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"delete_repo"}}\n', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","Params":{"name":"delete_repo"}}\n', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"delete_repo"}}\n', -32600),
    ('{"jsonrpc":"2.0","id":1,"method":"tools/call","param\u017f":{"name":"delete_repo"}}\n'.encode(), -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"Command":"delete"}}}\n',
     -32600),
    (b'[{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","params":{"name":"delete_repo"}}]\n', -32600),
    # a tools/call that names no tool is decided as nothing: refused
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"x":"delete"}}}\n', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["delete_repo"]}}\n', -32600),
    # duplicate keys: parsers disagree on which one wins
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","name":"add"}}\n', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping","params":{"name":"delete_repo"}}\n', -32600),
    # deep inside the arguments too
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"p":{"q":1,"Q":2}}}}\n', -32600),
    # what JSON cannot carry, or what is no JSON-RPC message
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","n":NaN}}\n', -32700),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","n":1e999}}\n', -32700),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete\\ud800_repo"}}\n', -32700),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"}} trailing\n', -32700),
    (b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"}}\n', -32700),
    (b"this is not json delete_repo\n", -32700),
    (b'"tools/call delete_repo"\n', -32600),
    (b"[]\n", -32600),
    (b'[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}, "delete_repo"]\n', -32600),
]


@pytest.mark.parametrize(("line", "code"), SMUGGLED)
def test_lines_that_cannot_be_parsed_safely_are_refused_and_recorded(session, line, code):
    session.send(line)
    answer = session.answer()
    assert answer["id"] is None and answer["error"]["code"] == code
    assert answer["error"]["message"].startswith("agentsess refused a message it cannot parse safely: ")
    session.request({"jsonrpc": "2.0", "id": 8, "method": "ping"})
    assert session.answer()["id"] == 8  # the server has read past where the line would be
    assert session.close() == 0
    assert b"delete" not in session.server_got() and b"tools/call" not in session.server_got()
    (checked,) = _mcp_receipts(session.run_id)
    assert checked["data"]["decision"] == "deny" and checked["data"]["tool"] == "mcp:fake:?"
    assert checked["data"]["line_bytes"] == len(line) and "delete" not in json.dumps(checked)
    assert checked["data"]["line_sha256"] == hashlib.sha256(line).hexdigest()


def test_smuggled_calls_never_reach_a_real_sdk_server(tmp_path, live_run):
    """The real MCP SDK server behind the proxy, a raw client in front sending the attacks."""
    server = tmp_path / "demo_server.py"
    server.write_text(SDK_SERVER)
    # the proxy runs inside the run, as the agent would start it
    devnull = open(os.devnull, "wb")
    proc = live_run.spawn([PY, "-m", "agentsess", "mcp-proxy", "--name", "demo", "--", PY, str(server)], stderr=devnull)

    def send(raw: bytes):
        proc.stdin.write(raw)
        proc.stdin.flush()

    def answer():
        line = proc.stdout.readline()
        assert line, "the proxy's output ended"
        return json.loads(line)

    send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}).encode() + b"\n")
    assert answer()["id"] == 0
    send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    attacks = [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","arguments":{"repo":"a\xff"}}}\n',
        b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","Name":"delete_repo","arguments":{"repo":"b"}}}\n',
        b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","name":"delete_repo","arguments":{"repo":"c"}}}\n',
    ]
    for raw in attacks:
        send(raw)
        assert answer()["error"]["code"] in (-32700, -32600)
    send(b'{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":40}}}\n')
    reply = answer()
    assert reply["id"] == 4 and reply["result"]["content"][0]["text"] == "42"
    proc.stdin.close()
    assert proc.wait(60) == 0
    assert not os.path.exists(str(server) + ".deleted"), "a smuggled call reached the server"
    refused = [r for r in _mcp_receipts(live_run["AGENTSESS_RUN_ID"]) if r["data"].get("refused")]
    assert len(refused) == 3


def _go_server(tmp_path) -> str:
    """tests/mcp_go_server.go built: a server that decodes requests with Go's encoding/json."""
    import shutil

    go = shutil.which("go")
    if go is None:
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail("go is required in CI (the MCP proxy's test against Go's case-insensitive decoding)")
        pytest.skip("go is not installed")
    exe = tmp_path / "go-server"
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mcp_go_server.go")
    env = {**os.environ, "GOCACHE": str(tmp_path / "gocache"), "GOPATH": str(tmp_path / "gopath"), "GO111MODULE": "off"}
    subprocess.run([go, "build", "-o", str(exe), source], check=True, env=env, timeout=300, capture_output=True)
    return str(exe)


def test_smuggled_calls_never_reach_a_go_server(tmp_path, live_run):
    """Go's encoding/json reads "METHOD", "Params", "paramſ" and "NAME" as method, params and
    name (CVE-2026-27896's class): each spelling alone, which collides with nothing, must not
    carry a denied call past the proxy to such a server."""
    exe = _go_server(tmp_path)
    marker = tmp_path / "deleted"
    attacks = [
        b'{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","params":{"name":"delete_repo"}}',
        b'{"jsonrpc":"2.0","id":2,"method":"tools/call","Params":{"name":"delete_repo"}}',
        b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"NAME":"delete_repo"}}',
        '{"jsonrpc":"2.0","id":4,"method":"tools/call","param\u017f":{"name":"delete_repo"}}'.encode(),
        b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"nAmE":"delete_repo","arguments":{}}}',
        b'[{"jsonrpc":"2.0","id":6,"Method":"tools/call","params":{"Name":"delete_repo"}}]',
    ]
    # the attacks really are calls to this server: straight to it, each one deletes
    for raw in attacks[:5]:
        if marker.exists():
            marker.unlink()
        subprocess.run([exe, str(marker)], input=raw + b"\n", capture_output=True, timeout=30, check=True)
        assert marker.exists(), raw
    marker.unlink()
    devnull = open(os.devnull, "wb")
    proc = live_run.spawn([PY, "-m", "agentsess", "mcp-proxy", "--name", "demo", "--", exe, str(marker)],
                          stderr=devnull)
    for raw in attacks:
        proc.stdin.write(raw + b"\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        answer = answer[0] if isinstance(answer, list) else answer
        assert answer["error"]["code"] == -32600, answer
    proc.stdin.write(b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"ID":1}}}\n')
    proc.stdin.flush()
    reply = json.loads(proc.stdout.readline())
    assert reply == {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "called add"}]}}
    proc.stdin.close()
    assert proc.wait(60) == 0
    assert not marker.exists(), "a smuggled call reached the Go server"
    refused = [r for r in _mcp_receipts(live_run["AGENTSESS_RUN_ID"]) if r["data"].get("refused")]
    assert len(refused) == len(attacks)


def test_blank_lines_are_dropped_quietly(session):
    session.send(b"\n \r\n\t\n")
    session.request({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert session.answer()["id"] == 1
    session.close()
    assert session.server_got() == b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'
    assert _mcp_receipts(session.run_id) == []


def test_the_server_gets_the_message_that_was_decided_not_the_clients_bytes(session):
    # escapes, spacing and key order as a client might send them; the server gets one spelling
    line = b'{ "jsonrpc" : "2.0" , "id" : 1 , "method" : "\\u0074ools/call" , "params" : { "name" : "\\u0061dd" , "arguments" : { "a" : 1.0e0 } } }\n'
    session.send(line)
    assert "result" in session.answer()
    session.close()
    assert session.server_got() == b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1.0}}}\n'


def test_a_batch_with_a_smuggled_element_is_refused_whole(session):
    line = b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","Name":"delete_repo"}}]\n'
    session.send(line)
    assert session.answer()["error"]["code"] == -32600
    session.close()
    assert session.server_got() == b""


def test_strict_parser_unit():
    msg, encoded = mcp.parse_message(b'{"a":[1,{"b":"\xc3\xa9"}],"c":null}\r\n')
    assert msg == {"a": [1, {"b": "\u00e9"}], "c": None}
    assert encoded == '{"a":[1,{"b":"\u00e9"}],"c":null}\n'.encode()
    for bad in (b'{"K":1,"\xe2\x84\xaa":2}', b'{"a":1,"a":1}', b"[1]", b"{", b'{"x":Infinity}'):
        with pytest.raises(mcp.Unparseable):
            mcp.parse_message(bad)
    # other keys keep any case: a tool's own "Name" or "ID" argument, clientInfo, protocolVersion
    ok = (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"Name":"x","ID":2},'
          b'"_meta":{"progressToken":1}}}')
    assert mcp.parse_message(ok)[0]["params"]["arguments"] == {"Name": "x", "ID": 2}


# -- pure parts --------------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=40), max_size=20), st.data())
def test_line_buffer_splits_any_chunking_into_the_same_lines(pieces, data):
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    buffer = mcp_relay.LineBuffer()
    got = [line for chunk in chunks for line in buffer.feed(chunk)]
    tail = buffer.rest()
    assert b"".join(got) + tail == stream
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in got)
    assert b"\n" not in tail


def test_bounded_summary_masks_and_stays_bounded_for_huge_values():
    secret = "ghp_" + "A" * 36
    value = {"content": [{"type": "text", "text": f"token {secret} " + "0123abcd" * 700_000}]}
    text, digest = actions.summarise(value, actions.RESULT_CAP)
    assert secret not in text and "[masked]" in text
    assert len(text) < actions.RESULT_CAP + 100
    assert digest == sha256_text(canonical_text(value))


@pytest.mark.parametrize("name", ["", "a:b", "has space"])
def test_bad_server_names_are_refused(name):
    with pytest.raises(mcp.AgentsessError) as info:
        mcp.server_name(["srv"], name)
    assert info.value.exit_code == 2


def test_server_name_defaults_to_the_command_basename():
    assert mcp.server_name(["/usr/bin/server-github", "-x"], None) == "server-github"
    assert mcp.server_name(["npx", "server"], "github") == "github"
