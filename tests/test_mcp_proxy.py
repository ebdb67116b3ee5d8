"""`agentsess mcp-proxy`: a stdio MCP server behind the run's tool-call policy.

End to end with the real MCP SDK (its stdio client, an MCPServer server) inside a real
`agentsess run`; the relay's edge cases against a fake server that logs every byte it gets.
"""

import json
import os
import queue
import sys
import threading

import pytest
from helpers import agentsess, show, wait_for
from hypothesis import given
from hypothesis import strategies as st
from inrun import InRun

from agentsess.core.guard import actions, mcp
from agentsess.digest import sha256_text
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


def test_other_traffic_passes_byte_for_byte(session):
    odd = b'{ "method" : "initialize",  "id":"\\u00e9", "jsonrpc":"2.0", "params":{"x":[1, 2.50, "\xc3\xa9"]}}\r\n'
    session.send(odd)
    assert session.answer()["id"] == "\u00e9"
    raw = '{"id" : 5,   "jsonrpc":"2.0","result":{"k":"v"}}\n'
    session.request({"jsonrpc": "2.0", "id": 9, "method": "raw", "params": {"raw": raw}})
    assert session.line() == raw.encode()
    session.send(b"this is not json\n")
    session.send(b"\n")
    wait_for(lambda: session.server_got().endswith(b"this is not json\n\n"), what="the invalid lines at the server")
    assert session.server_got().startswith(odd)
    assert session.close() == 0


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
    assert session.server_got() == request + b'{"jsonrpc":"2.0","method":"notifications/go_on"}\n'
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
    assert session.server_got() == request + raw
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


def test_batches_split_denied_elements_from_allowed_ones(session):
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delete_repo", "arguments": {"r": 1}}},
        {"jsonrpc": "2.0", "method": "notifications/progress"},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    ]
    session.request(batch)
    first, second = session.answer(), session.answer()
    errors, replies = (first, second) if first[0]["id"] == 2 else (second, first)
    assert errors == [{"jsonrpc": "2.0", "id": 2, "error": {"code": -32001, "message": "agentsess denied tools/call delete_repo: deleting is not for agents"}}]
    assert [r["id"] for r in replies] == [1, 3]
    allowed_batch = json.dumps([batch[0], batch[3]]).encode() + b"\n"
    session.send(allowed_batch)
    assert [r["id"] for r in session.answer()] == [1, 3]
    session.close()
    sent = session.server_got().splitlines(keepends=True)
    assert json.loads(sent[0]) == [batch[0], batch[2], batch[3]]
    assert sent[1] == allowed_batch  # a batch with nothing denied passes unchanged
    kinds = [(r["type"], r["data"]["request_id"]) for r in _mcp_receipts(session.run_id)]
    assert kinds.count(("action.checked", 1)) == 2 and kinds.count(("action.result", 1)) == 2
    assert kinds.count(("action.checked", 2)) == 1 and ("action.result", 2) not in kinds


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
    wait_for(lambda: b'"hold": true' in session.server_got(), what="the held call at the server")
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


# -- pure parts --------------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=40), max_size=20), st.data())
def test_line_buffer_splits_any_chunking_into_the_same_lines(pieces, data):
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    buffer = mcp.LineBuffer()
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
