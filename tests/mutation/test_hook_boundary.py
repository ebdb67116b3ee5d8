"""The hook boundary in-process (`agentsess hook`, cli/guard.py): every way it can fail exits 2,
which Claude Code, Codex and Gemini CLI all take as "block this call"; exit 0 or 1 would let
the call through. These are the failures that happen before the supervisor is asked; the
supervisor's own answers are tested against live runs in tests/agents/test_hooks.py. stdin is
a real file, stdout and stderr are captured; see docs/mutation-testing.md."""

import io
import os
import shutil
import socket
import tempfile

import pytest

from agentsess.cli import guard
from agentsess.cli.inside import NOT_INSIDE
from agentsess.edges import control

RUN = "run_01jabcdefghjkmnpqrstvwxyz0"


@pytest.fixture
def stdin(tmp_path, monkeypatch):
    """Put ``data`` on the hook's stdin (a real file, read as the hook reads it)."""

    def give(data: bytes):
        path = tmp_path / "stdin"
        path.write_bytes(data)
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(open(path, "rb")))

    give(b"{}")
    return give


@pytest.fixture
def refused_socket(tmp_path, monkeypatch):
    """AGENTSESS_CONTROL naming a socket nobody listens on: a run's supervisor that is gone."""
    path = str(tmp_path / "control.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)  # bound, never listening: connect() is refused
    monkeypatch.setenv("AGENTSESS_CONTROL", path)
    yield path
    sock.close()


def hook(capsys, *argv) -> tuple[int, str, str]:
    code = guard.hook_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_bare_hook_prints_its_help_and_blocks(capsys, stdin):
    code, out, err = hook(capsys)
    assert code == 2 and out == guard.hook_parser().format_help() and err == ""
    words = " ".join(out.split())  # the help's words, however it is laid out
    assert words.lower().startswith("usage: agentsess hook claude-code|codex|gemini [--run run] ")
    assert "Fails closed: on any error it exits 2 with the reason on stderr" in words
    assert " --run RUN the run's id (default: $AGENTSESS_RUN_ID)" in words
    assert " AGENT the agent whose hook this is: claude-code, codex or gemini " in words


@pytest.mark.parametrize("agent", ["aider", "Claude-Code", "claude-code "])
def test_an_unknown_agent_blocks(capsys, stdin, agent):
    code, out, err = hook(capsys, agent, "--run", RUN)
    assert (code, out) == (2, "")
    assert err == f"agentsess: denied: hook: unknown agent '{agent}': expected claude-code, codex or gemini\n"


def test_no_run_blocks(capsys, stdin, monkeypatch):
    monkeypatch.delenv("AGENTSESS_RUN_ID", raising=False)
    assert hook(capsys, "codex") == (2, "", "agentsess: denied: hook: no --run RUN and no AGENTSESS_RUN_ID\n")
    monkeypatch.setenv("AGENTSESS_RUN_ID", "")
    assert hook(capsys, "codex")[0] == 2


@pytest.mark.parametrize("data", [b"", b"not json", b"\xff\xfe", b'{"a": 1'])
def test_stdin_that_is_not_json_blocks(capsys, stdin, data):
    stdin(data)
    assert hook(capsys, "gemini", f"--run={RUN}") == (2, "", "agentsess: denied: hook: the input on stdin is not JSON\n")


def test_an_unexpected_error_blocks_and_names_itself(capsys, stdin):
    stdin(b"[" * 100000)  # past the JSON parser's nesting limit: RecursionError, not ValueError
    code, out, err = hook(capsys, "claude-code", f"--run={RUN}")
    assert (code, out) == (2, "")
    assert err.startswith("agentsess: denied: internal error in the hook: RecursionError: ") and err.endswith("\n")
    assert err.count("\n") == 1


def test_a_command_after_the_hook_blocks(capsys, stdin):
    assert hook(capsys, "claude-code", "--run", RUN, "--", "true") == (
        2, "", "agentsess: denied: hook: takes no command after -- (see `agentsess hook --help`)\n")


def test_the_run_may_come_from_agentsess_run_id(capsys, stdin, monkeypatch):
    monkeypatch.setenv("AGENTSESS_RUN_ID", RUN)
    stdin(b"not json")  # past the run check: the next check speaks
    assert hook(capsys, "codex") == (2, "", "agentsess: denied: hook: the input on stdin is not JSON\n")


def test_a_hook_whose_supervisor_is_gone_blocks(capsys, stdin, refused_socket):
    expected = f"agentsess: denied: cannot reach the run's supervisor at {refused_socket}: Connection refused\n"
    # the call agentsess writes into an agent's settings takes the fast path
    assert hook(capsys, "claude-code", "--run", RUN) == (2, "", expected)
    # any other spelling goes through the parser, and still blocks
    code, out, err = hook(capsys, "claude-code", f"--run={RUN}")
    assert code == 2 and out == "" and err.startswith("agentsess: denied: ") and err.count("\n") == 1


def test_a_hook_outside_any_run_blocks(capsys, stdin, monkeypatch):
    monkeypatch.delenv("AGENTSESS_CONTROL", raising=False)
    if control.find_socket() is not None:
        pytest.skip("this process's ancestry holds another run's control socket")
    assert hook(capsys, "codex", "--run", RUN) == (2, "", f"agentsess: denied: {NOT_INSIDE}\n")


def test_check_outside_a_run_is_refused_with_a_usage_code(monkeypatch):
    from agentsess.errors import USAGE, AgentsessError

    monkeypatch.delenv("AGENTSESS_CONTROL", raising=False)
    if control.find_socket() is not None:
        pytest.skip("this process's ancestry holds another run's control socket")
    with pytest.raises(AgentsessError) as info:
        guard.check_main(["fs:read"])
    assert (info.value.message, info.value.exit_code) == (NOT_INSIDE, USAGE)


# -- which calls take the fast path --------------------------------------------------------


def test_only_the_exact_settings_call_is_plain():
    assert guard._plain_hook_call(["claude-code", "--run", RUN]) == ("claude-code", RUN)
    for agent in guard.AGENTS:
        assert guard._plain_hook_call([agent, "--run", RUN]) == (agent, RUN)
    for argv in (
        ["aider", "--run", RUN],
        ["claude-code", "--run=" + RUN],
        ["claude-code", "-r", RUN],
        ["claude-code", "--run", RUN, "x"],
        ["claude-code", "--run", "-x"],
        ["claude-code", "--run", "a b"],
        ["claude-code", "--run"],
        ["--run", RUN, "claude-code"],
    ):
        assert guard._plain_hook_call(argv) is None, argv


def test_a_plain_word_is_short_printable_ascii_without_spaces_or_a_leading_dash():
    assert guard._plain_word("x") and guard._plain_word("a" * 256) and guard._plain_word("fs:read")
    assert guard._plain_word("a-b")
    for word in ("", "a" * 257, "é", "a\x1b", "a\n", "a b", "-a", "--run"):
        assert not guard._plain_word(word), word


def test_words_that_are_not_utf8_are_recorded_escaped():
    assert guard._shown([os.fsdecode(b"echo \xff"), "ok"]) == ["echo \\xff", "ok"]


# -- `check` before it asks -----------------------------------------------------------------


def _check_error(argv) -> tuple[str, int]:
    from agentsess.errors import AgentsessError

    with pytest.raises(AgentsessError) as info:
        guard.check_main(argv)
    return info.value.message, info.value.exit_code


def test_a_bare_check_prints_its_help_with_a_usage_code(capsys):
    from agentsess.errors import USAGE

    assert guard.check_main([]) == USAGE
    out, err = capsys.readouterr()
    assert out == guard.check_parser().format_help() and err == ""
    assert " SCOPE the scope to check, e.g. github:pr:create " in " ".join(out.split())


def test_check_with_an_empty_command_is_a_usage_error():
    assert _check_error(["fs:read", "--"]) == ("check: no command after -- (see `agentsess check --help`)", 2)
    assert _check_error(["--tool", "x", "fs:read", "--"])[0].startswith("check: no command after --")


def test_check_outside_a_run_through_the_parser_is_refused(monkeypatch):
    monkeypatch.delenv("AGENTSESS_CONTROL", raising=False)
    if control.find_socket() is not None:
        pytest.skip("this process's ancestry holds another run's control socket")
    assert _check_error(["--tool", "x", "fs:read"]) == (NOT_INSIDE, 2)


# -- inside a run: the success paths, against the run's real authority --------------------------
#
# The run is recorded as `agentsess run` records it (a real plan from a real config, a real
# token minted with the data root's key, its row and first receipts), and its authority (the
# code a supervisor runs, core/runs/authority.py) answers a real control socket in this
# process. The caller is this process, the run's supervisor here: its ancestry (SO_PEERCRED,
# /proc) makes it one of the run's own processes. What `check` and `hook` print and exit with
# is then exactly what an agent gets, and mutmut sees every line of it.

RULES = """
[profiles.claude]
scopes = ["git:*", "fs:*"]
default_scopes = ["fs:*", "git:commit"]
default_decision = "allow"

[[profiles.claude.rules]]
tool = "Bash"
args = "rm -rf /*"
decision = "deny"
reason = "never wipe the disk"

[[profiles.claude.rules]]
tool = "Bash"
args = "git push*"
scope = "git:push"
decision = "allow"

[[profiles.claude.rules]]
tool = "WebFetch"
decision = "ask"

[[profiles.claude.rules]]
tool = "mcp:github:*"
decision = "deny"
reason = "no GitHub from here"

[profiles.watch]
scopes = ["fs:*"]

[[profiles.watch.rules]]
tool = "WebFetch"
decision = "ask"
"""

ALLOW = "agentsess: no rule matched; default_decision is allow"
TOKENS: dict = {}  # run id -> the token minted for it (the child's AGENTSESS_TOKEN)
WIPE = "agentsess: never wipe the disk; matched `rm -rf /x`"


@pytest.fixture
def live(request, tmp_path, monkeypatch):
    """A live run whose authority answers this process (profile ``claude``, or the one given
    by indirect parametrization): yields the authority."""
    import signal

    from helpers import write_config

    from agentsess.core.runs.authority import Authority
    from agentsess.core.runs.plan import Request, make_plan
    from agentsess.core.runs.start import _launch, _resolve_secrets
    from agentsess.edges.config import load_config
    from agentsess.edges.store import Store

    write_config(RULES)
    usr1 = signal.getsignal(signal.SIGUSR1)  # _launch hands SIGUSR1 (revoke's) to the supervisor
    profile = getattr(request, "param", "claude")
    asked = Request(["sh"], profile=profile, contain=False, env=dict(os.environ), cwd=str(tmp_path))
    with Store() as store:
        plan = make_plan(asked, load_config(), store)
        injected, secrets = _resolve_secrets(plan.profile)
        launch = _launch(store, asked, plan, injected, secrets)
    signal.signal(signal.SIGUSR1, usr1)
    TOKENS[launch.run_id] = launch.env["AGENTSESS_TOKEN"]
    authority = Authority(launch.run_id, "advisory")
    # a short folder: a socket's path is at most 107 bytes, and pytest's tmp_path can be long
    folder = tempfile.mkdtemp(prefix="as-ctl-", dir="/tmp")
    server = control.ControlServer(launch.run_id, folder=folder)
    server.listen()
    server.serve(authority.handle, authority.fast)
    monkeypatch.setenv("AGENTSESS_CONTROL", server.path)
    monkeypatch.delenv("AGENTSESS_RUN_ID", raising=False)
    yield authority
    server.close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def inside(live):
    """The live run's id."""
    return live.run_id


def receipts(run_id: str, rtype: str) -> list[dict]:
    import json

    from agentsess.edges import paths

    with open(paths.receipts_file(run_id), "rb") as fh:
        return [r["data"] for r in map(json.loads, fh) if r["type"] == rtype]


def check(capsys, *argv) -> tuple[int, str, str]:
    code = guard.check_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_plain_check_inside_a_run_allows_and_denies(capsys, inside):
    assert check(capsys, "fs:read") == (0, "", "")
    assert check(capsys, "git:commit") == (0, "", "")
    denied = f"agentsess: denied: run {inside} lacks scope git:push (has: fs:* git:commit)\n"
    assert check(capsys, "git:push") == (1, "", denied)
    got = [(r["scope"], r["decision"], r["tool"]) for r in receipts(inside, "action.checked")]
    assert got == [("fs:read", "allow", "check"), ("git:commit", "allow", "check"), ("git:push", "deny", "check")]


def test_a_check_through_the_parser_names_its_tool(capsys, inside):
    denied = f"agentsess: denied: run {inside} lacks scope git:push (has: fs:* git:commit)\n"
    assert check(capsys, "--tool", "deploy", "git:push") == (1, "", denied)
    assert check(capsys, "fs:write", "--tool", "editor") == (0, "", "")
    got = [(r["scope"], r["decision"], r["tool"]) for r in receipts(inside, "action.checked")]
    assert got == [("git:push", "deny", "deploy"), ("fs:write", "allow", "editor")]


def test_a_check_as_json_prints_the_decision(capsys, inside):
    import json

    code, out, err = check(capsys, "--json", "fs:read")
    assert (code, err) == (0, "") and out.endswith("}\n") and out.count("\n") == 1
    assert list(json.loads(out).items()) == [
        ("run", inside), ("decision", "allow"), ("reason", f"run {inside} holds scope fs:read"), ("scope", "fs:read")]
    code, out, err = check(capsys, "git:push", "--json")
    assert code == 1 and err == f"agentsess: denied: run {inside} lacks scope git:push (has: fs:* git:commit)\n"
    assert json.loads(out) == {"run": inside, "decision": "deny",
                               "reason": f"run {inside} lacks scope git:push (has: fs:* git:commit)",
                               "scope": "git:push"}


def mine(script: str) -> list[str]:
    """``sh -c SCRIPT`` that first checks it was started by this test process: a check that
    replaced the test process by the command (exec without fork) ends it with exit 1."""
    return ["sh", "-c", f'[ "$PPID" = "{os.getpid()}" ] || exit 1; {script}']


def test_a_check_runs_its_command_only_when_allowed(capfd, inside, tmp_path):
    import json

    mark = tmp_path / "ran"
    assert guard.check_main(["git:commit", "--", *mine(f"echo ran > {mark}; exit 7")]) == 7
    assert mark.read_text() == "ran\n"
    mark.unlink()
    assert guard.check_main(["git:push", "--", *mine(f"echo ran > {mark}")]) == 1
    assert not mark.exists()
    capfd.readouterr()
    # the decision is printed before the command's own output
    assert guard.check_main(["--json", "fs:read", "--", *mine("echo after")]) == 0
    out, err = capfd.readouterr()
    first, second = out.splitlines()
    assert json.loads(first)["decision"] == "allow" and second == "after" and err == ""
    got = [(r["scope"], r["decision"], json.loads(r["summary"])) for r in receipts(inside, "action.checked")]
    assert got == [("git:commit", "allow", mine(f"echo ran > {mark}; exit 7")),
                   ("git:push", "deny", mine(f"echo ran > {mark}")), ("fs:read", "allow", mine("echo after"))]


def test_a_checked_command_killed_by_a_signal_exits_as_a_shell_reports_it(capfd, inside):
    import signal

    # handlers of this process's own, distinct for ^C and ^\\ (a test runner may leave both default)
    old = (signal.signal(signal.SIGINT, lambda *_: None), signal.signal(signal.SIGQUIT, lambda *_: None))
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGQUIT))
    try:
        assert guard.check_main(["fs:read", "--", *mine("kill -TERM $$")]) == 128 + signal.SIGTERM
        assert guard.check_main(["fs:read", "--", *mine("kill -KILL $$")]) == 128 + signal.SIGKILL
        # while the command ran, ^C and ^\\ were its own; now they are this process's again
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGQUIT)) == before
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGQUIT, old[1])


def test_a_checked_command_that_is_not_utf8_is_recorded_escaped(capfd, inside):
    assert guard.check_main(["fs:read", "--", *mine("true"), os.fsdecode(b"\xff")]) == 0
    assert [json_list(r["summary"]) for r in receipts(inside, "action.checked")] == [[*mine("true"), "\\xff"]]


def json_list(text: str) -> list:
    import json

    return json.loads(text)


CHECK_HELP = (
    "Usage: agentsess check SCOPE [--tool NAME] [--json] [-- CMD [ARGS...]] Inside a run: may it act with SCOPE "
    "now? Records the decision. Checks that the run is live (not revoked, not expired) and holds SCOPE, writes an "
    "action.checked receipt, and exits 0 (allowed) or 1 with the reason on stderr. With -- CMD, runs CMD only "
    "when allowed and exits with its code. Arguments: SCOPE the scope to check, e.g. github:pr:create Options: "
    "-h, --help Show this message and exit. --tool NAME the tool asking, recorded in the receipt (default: check) "
    "--json print the decision as JSON on stdout")
HOOK_HELP = (
    "Usage: agentsess hook claude-code|codex|gemini [--run RUN] Agent hook handler (`hook claude-code --run RUN`); "
    "fails closed. An agent's hook: reads the hook's JSON on stdin, applies the run's rules, writes receipts, and "
    "answers in that agent's format. Claude Code and Codex: PreToolUse, PostToolUse, PostToolUseFailure (Claude), "
    "PermissionRequest, SessionStart, SessionEnd. Gemini CLI: BeforeTool, AfterTool, SessionStart, SessionEnd. "
    "Fails closed: on any error it exits 2 with the reason on stderr, which blocks the tool call in all three. "
    "agentsess run writes the settings that call it; you do not normally run it yourself. Arguments: AGENT the "
    "agent whose hook this is: claude-code, codex or gemini Options: -h, --help Show this message and exit. "
    "--run RUN the run's id (default: $AGENTSESS_RUN_ID)")


def test_the_help_of_check_and_hook_word_for_word(capsys, stdin):
    assert guard.check_main([]) == 2
    assert " ".join(capsys.readouterr().out.split()) == CHECK_HELP
    code, out, _ = hook(capsys)
    assert code == 2 and " ".join(out.split()) == HOOK_HELP


BAD = ("bad scope '{}': 'B' is not allowed; segments are lowercase letters, digits and ._-/@, separated by ':'; "
       "a final '*' covers everything below")


def test_a_check_of_a_malformed_scope_is_refused_by_the_run(capsys, inside):
    from agentsess.errors import AgentsessError

    assert check(capsys, "Bad") == (2, "", f"agentsess: error: {BAD.format('Bad')}\n")  # the fast frame
    with pytest.raises(AgentsessError) as info:  # through the parser: the CLI's boundary prints it
        guard.check_main(["--tool", "x", "Bad"])
    assert (info.value.message, info.value.exit_code) == (BAD.format("Bad"), 2)
    assert receipts(inside, "action.checked") == []


def event(name: str, tool: str | None = "Bash", command: str | None = "ls", **more) -> bytes:
    import json

    data: dict = {"hook_event_name": name, "session_id": "sess-1", "tool_use_id": "toolu_1", **more}
    if tool is not None:
        data["tool_name"] = tool
    if command is not None:
        data["tool_input"] = {"command": command}
    return json.dumps(data).encode()


def claude_answer(decision: str, reason: str) -> str:
    import json

    return json.dumps({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": decision,
                                              "permissionDecisionReason": reason}}) + "\n"


# the call agentsess writes into the settings (the fast frame), and other spellings (the parser)
SPELLINGS = [
    pytest.param(lambda agent, run: [agent, "--run", run], id="settings"),
    pytest.param(lambda agent, run: [agent, f"--run={run}"], id="parser"),
]


@pytest.mark.parametrize("spell", SPELLINGS)
def test_a_claude_hook_inside_a_run_answers_each_call(capsys, stdin, inside, spell):
    argv = spell("claude-code", inside)
    stdin(event("PreToolUse", command="ls -la"))
    assert hook(capsys, *argv) == (0, claude_answer("allow", ALLOW), "")
    stdin(event("PreToolUse", command="rm -rf /x"))
    assert hook(capsys, *argv) == (0, claude_answer("deny", WIPE), "")
    stdin(event("PreToolUse", tool="WebFetch", command=None, tool_input={"url": "https://example.org"}))
    code, out, err = hook(capsys, *argv)
    assert (code, err) == (0, "") and '"permissionDecision": "ask"' in out
    stdin(event("PostToolUse", tool_response={"stdout": "total 0\n", "stderr": ""}))
    assert hook(capsys, *argv) == (0, "", "")  # a result is recorded, nothing is answered
    stdin(event("SessionStart", tool=None, command=None, source="startup"))
    assert hook(capsys, *argv) == (0, "", "")
    checked = receipts(inside, "action.checked")
    assert [(r["tool"], r["decision"], r["source"]) for r in checked] == [
        ("Bash", "allow", "claude-code"), ("Bash", "deny", "claude-code"), ("WebFetch", "ask", "claude-code")]
    assert [r["tool"] for r in receipts(inside, "action.result")] == ["Bash"]
    assert [r["session_id"] for r in receipts(inside, "agent.session")] == ["sess-1"]


@pytest.mark.parametrize("spell", SPELLINGS)
def test_codex_and_gemini_hooks_answer_in_their_own_formats(capsys, stdin, inside, spell):
    import json

    stdin(event("PreToolUse", command="rm -rf /x"))
    assert hook(capsys, *spell("codex", inside)) == (0, claude_answer("deny", WIPE), "")
    stdin(event("PreToolUse", tool="WebFetch", command=None, tool_input={"url": "u"}))
    code, out, err = hook(capsys, *spell("codex", inside))
    assert (code, err) == (0, "") and json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"
    stdin(event("BeforeTool", tool="run_shell_command", command="ls"))
    assert hook(capsys, *spell("gemini", inside)) == (0, json.dumps({"decision": "allow", "reason": ALLOW}) + "\n", "")
    stdin(event("BeforeTool", tool="run_shell_command", command="rm -rf /x"))
    assert hook(capsys, *spell("gemini", inside)) == (0, json.dumps({"decision": "deny", "reason": WIPE}) + "\n", "")
    sources = [r["source"] for r in receipts(inside, "action.checked")]
    assert sources == ["codex", "codex", "gemini", "gemini"]


def test_a_hook_may_take_its_run_from_agentsess_run_id(capsys, stdin, inside, monkeypatch):
    monkeypatch.setenv("AGENTSESS_RUN_ID", inside)
    stdin(event("PreToolUse", command="rm -rf /x"))
    assert hook(capsys, "claude-code") == (0, claude_answer("deny", WIPE), "")


@pytest.mark.parametrize("spell", SPELLINGS)
def test_a_hook_cannot_act_for_another_run(capsys, stdin, inside, spell):
    other = "run_01jzzzzzzzzzzzzzzzzzzzzzzz"
    stdin(event("PreToolUse", command="ls"))
    expected = (f"agentsess: denied: this process belongs to run {inside}, not {other}; "
                "a run cannot act for another\n")
    assert hook(capsys, *spell("claude-code", other)) == (2, "", expected)
    assert receipts(inside, "action.checked") == []


@pytest.mark.parametrize("spell", SPELLINGS)
@pytest.mark.parametrize("data, reason", [
    (b"[]", "hook input is not a JSON object"),
    (b'{"tool_name": "Bash"}', "hook input has no hook_event_name"),
    (b'{"hook_event_name": "Stop"}', "hook: claude-code event 'Stop' is not one agentsess handles"),
    (b'{"hook_event_name": "PreToolUse"}', "hook: PreToolUse without a tool_name"),
    (b"not json", "hook: the input on stdin is not JSON"),
])
def test_hook_input_the_run_cannot_handle_blocks(capsys, stdin, inside, spell, data, reason):
    stdin(data)
    assert hook(capsys, *spell("claude-code", inside)) == (2, "", f"agentsess: denied: {reason}\n")


@pytest.fixture
def answering(tmp_path, monkeypatch):
    """A control socket that answers every frame with the bytes given: a supervisor as a hostile
    or broken one would answer (the frame's framing is the client's to check)."""
    import threading

    path = str(tmp_path / "answering.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    reply = [b""]
    asked: list[bytes] = []

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = b""
                while True:
                    part = conn.recv(65536)
                    if not part:
                        break
                    data += part
                asked.append(data)
                conn.sendall(reply[0])

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("AGENTSESS_CONTROL", path)

    def give(data: bytes) -> list[bytes]:
        reply[0] = data
        return asked

    yield give
    srv.shutdown(socket.SHUT_RDWR)
    srv.close()


def test_the_fast_frame_prints_what_the_supervisor_rendered(capfd, stdin, answering):
    asked = answering(b"N0 4\nout\nerr\n")
    stdin(b'{"x": 1}')
    assert guard.hook_main(["claude-code", "--run", RUN]) == 0
    assert capfd.readouterr() == ("out\n", "err\n")
    assert asked == [b"FAST1 hook claude-code " + RUN.encode() + b'\n{"x": 1}']
    answering(b"N7 0\n")
    assert guard.check_main(["fs:read"]) == 7
    assert capfd.readouterr() == ("", "")
    assert asked[-1] == b"FAST1 check fs:read\n"
    answering(b"N1 0\nagentsess: denied: no\n")
    assert guard.check_main(["fs:read"]) == 1
    assert capfd.readouterr() == ("", "agentsess: denied: no\n")


@pytest.mark.parametrize("reply", [b"", b"N", b"Nx 0\n", b"N0\n", b"N0 x\n", b"N-1 0\n"])
def test_an_unreadable_answer_blocks_the_hook(capsys, stdin, answering, reply):
    answering(reply)
    path = os.environ["AGENTSESS_CONTROL"]
    expected = f"agentsess: denied: cannot reach the run's supervisor at {path}: the run's supervisor sent an unreadable answer\n"
    assert hook(capsys, "claude-code", "--run", RUN) == (2, "", expected)
    from agentsess.errors import AgentsessError

    with pytest.raises(AgentsessError) as info:
        guard.check_main(["fs:read"])
    assert info.value.exit_code == 2 and info.value.message == expected[len("agentsess: denied: "):-1]


# -- the authority itself: who may ask, and the fast frame's other shapes --------------------


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_process_outside_the_run_is_refused(live):
    outsider = 1  # init: not a descendant of this run's supervisor
    assert live.caller_run(outsider) is None
    assert live.caller_run(os.getpid()) == live.run_id
    refusal = {"ok": False, "code": 2,
               "error": f"process 1 is not part of run {live.run_id}; only the run's own processes may ask it"}
    assert live.handle({"op": "check", "scope": "fs:read"}, outsider) == refusal
    assert live.fast(["check", "fs:read"], b"", outsider) == (2, b"", f"agentsess: error: {refusal['error']}\n".encode())
    assert live.fast(["hook", "claude-code", live.run_id], b"{}", outsider) == (
        2, b"", f"agentsess: denied: {refusal['error']}\n".encode())
    assert live.caller_run(_dead_pid()) is None  # a process that is gone is nobody's
    assert receipts(live.run_id, "action.checked") == []


def test_the_authority_refuses_what_it_does_not_know(live):
    me = os.getpid()
    assert live.handle({"op": "launch_missiles"}, me) == {"ok": False, "code": 2,
                                                          "error": "unknown request 'launch_missiles'"}
    assert live.handle({}, me) == {"ok": False, "code": 2, "error": "unknown request None"}
    assert live.handle({"op": "check"}, me) == {"ok": False, "code": 2, "error": "check: expected exactly one SCOPE"}
    assert live.handle({"op": "check", "scope": ["fs:read"]}, me)["error"] == "check: expected exactly one SCOPE"
    assert live.handle({"op": "hook", "agent": "aider", "event": {}}, me) == {
        "ok": False, "code": 2, "error": "hook: unknown agent 'aider': expected claude-code, codex or gemini"}
    assert live.handle({"op": "hook", "agent": "codex", "event": []}, me)["error"] == "hook input is not a JSON object"


@pytest.mark.parametrize("words", [[], ["check"], ["check", "a", "b"], ["hook", "claude-code"], ["exec", "x"],
                                   ["hook", "claude-code", "r", "x"], ["Check", "fs:read"]])
def test_a_malformed_fast_frame_is_a_usage_error(live, words):
    assert live.fast(words, b"", os.getpid()) == (2, b"", b"agentsess: error: malformed request\n")


def test_the_fast_frame_answers_as_the_hook_would(live):
    me, run = os.getpid(), live.run_id
    assert live.fast(["check", "fs:read"], b"", me) == (0, b"", b"")
    denied = f"agentsess: denied: run {run} lacks scope git:push (has: fs:* git:commit)\n".encode()
    assert live.fast(["check", "git:push"], b"anything", me) == (1, b"", denied)
    nested = b"[" * 100000
    code, out, err = live.fast(["hook", "claude-code", run], nested, me)
    assert (code, out) == (2, b"") and err.startswith(b"agentsess: denied: internal error in the hook: RecursionError: ")
    assert live.fast(["hook", "claude-code", run], b"\xff", me) == (
        2, b"", b"agentsess: denied: hook: the input on stdin is not JSON\n")
    post = event("PostToolUse", tool_response={"stdout": "", "stderr": ""})
    assert live.fast(["hook", "claude-code", run], post, me) == (0, b"", b"")
    pre = event("PreToolUse", command="rm -rf /x")
    assert live.fast(["hook", "claude-code", run], pre, me) == (0, claude_answer("deny", WIPE).encode(), b"")


# -- what each agent's events become: tool names, results, answers -----------------------------


def test_mcp_tools_of_all_three_agents_meet_the_same_rule(capsys, stdin, inside):
    import json

    no = "agentsess: no GitHub from here"
    stdin(event("PreToolUse", tool="mcp__github__create_pr", command=None, tool_input={"title": "x"}))
    assert hook(capsys, "claude-code", "--run", inside) == (0, claude_answer("deny", no), "")
    stdin(event("PreToolUse", tool="mcp__github__create_pr", command=None, tool_input={"title": "x"}))
    assert hook(capsys, "codex", "--run", inside) == (0, claude_answer("deny", no), "")
    for context in ({"server_name": "github", "tool_name": "create_pr"}, {"server_name": "github"},
                    {"server_name": "github", "tool_name": ""}):
        stdin(event("BeforeTool", tool="mcp_github_create_pr", command=None, tool_input={}, mcp_context=context))
        assert hook(capsys, "gemini", "--run", inside) == (0, json.dumps({"decision": "deny", "reason": no}) + "\n", "")
    # a tool whose own name holds "__": the server is the first part
    stdin(event("PreToolUse", tool="mcp__github__create__pr", command=None, tool_input={}))
    assert hook(capsys, "claude-code", "--run", inside) == (0, claude_answer("deny", no), "")
    # Gemini's own name for the tool is its context's, whatever the full name looks like
    stdin(event("BeforeTool", tool="github__create_pr", command=None, tool_input={},
                mcp_context={"server_name": "github", "tool_name": "create_pr"}))
    assert hook(capsys, "gemini", "--run", inside) == (0, json.dumps({"decision": "deny", "reason": no}) + "\n", "")
    # not MCP names: no server, no tool, or no context
    for name in ("mcp__github", "mcp____create_pr", "mcp__github__", "github__create_pr"):
        stdin(event("PreToolUse", tool=name, command=None, tool_input={}))
        assert hook(capsys, "claude-code", "--run", inside) == (0, claude_answer("allow", ALLOW), "")
    stdin(event("BeforeTool", tool="mcp_github_create_pr", command=None, tool_input={}, mcp_context={"server_name": 7}))
    assert hook(capsys, "gemini", "--run", inside) == (0, json.dumps({"decision": "allow", "reason": ALLOW}) + "\n", "")
    checked = receipts(inside, "action.checked")
    assert [(r["tool"], r.get("agent_tool")) for r in checked[:7]] == [("mcp:github:create_pr", "mcp__github__create_pr")] * 2 + [
        ("mcp:github:create_pr", "mcp_github_create_pr")] * 3 + [("mcp:github:create__pr", "mcp__github__create__pr"),
                                                                  ("mcp:github:create_pr", "github__create_pr")]
    checked = checked[2:]
    assert [r["tool"] for r in checked[5:]] == ["mcp__github", "mcp____create_pr", "mcp__github__", "github__create_pr",
                                               "mcp_github_create_pr"]
    assert all("agent_tool" not in r for r in checked[5:])


def test_results_and_failures_are_recorded_as_each_agent_reports_them(capsys, stdin, inside):
    calls = [
        ("claude-code", event("PostToolUse", tool_response={"stdout": "hi", "stderr": ""})),
        ("claude-code", event("PostToolUseFailure", error="boom", is_interrupt=False, duration_ms=5)),
        ("claude-code", event("PostToolUseFailure")),
        ("codex", event("PostToolUse", tool_response={"error": "denied by sandbox"})),
        ("codex", event("PostToolUse", tool_response={"error": ""})),
        ("gemini", event("AfterTool", tool="run_shell_command", tool_response={"llmContent": "x\nExit Code: 3"})),
        ("gemini", event("AfterTool", tool="run_shell_command", tool_response={"llmContent": "Exit Code: 0"})),
        ("gemini", event("AfterTool", tool="read_file", tool_response={"error": "no such file"})),
    ]
    for agent, data in calls:
        stdin(data)
        assert hook(capsys, agent, "--run", inside) == (0, "", "")
    results = receipts(inside, "action.result")
    assert [(r["source"], r["tool"], r["is_error"], r.get("error")) for r in results] == [
        ("claude-code", "Bash", False, None), ("claude-code", "Bash", True, "boom"), ("claude-code", "Bash", True, "failed"),
        ("codex", "Bash", True, "denied by sandbox"), ("codex", "Bash", False, None),
        ("gemini", "Bash", True, "exit code 3"), ("gemini", "Bash", False, None), ("gemini", "read_file", True, "no such file")]
    assert "hi" in results[0]["result"] and "result" not in results[1]
    assert (results[1]["is_interrupt"], results[1]["duration_ms"]) == (False, 5)
    assert all(len(r["args_sha256"]) == 64 for r in results)


@pytest.mark.parametrize("live", ["watch"], indirect=True)
def test_without_a_rule_the_agents_own_prompt_decides(capsys, stdin, inside):
    import json

    for agent, name in (("claude-code", "PreToolUse"), ("codex", "PreToolUse"), ("gemini", "BeforeTool")):
        stdin(event(name, command="ls"))
        assert hook(capsys, agent, "--run", inside) == (0, "", ""), agent  # observed: no answer at all
    stdin(event("PreToolUse", tool="WebFetch", command=None, tool_input={"url": "u"}))
    code, out, err = hook(capsys, "claude-code", "--run", inside)
    assert (code, err) == (0, "") and json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "ask"
    reason = json.loads(out)["hookSpecificOutput"]["permissionDecisionReason"]
    stdin(event("PreToolUse", tool="WebFetch", command=None, tool_input={"url": "u"}))
    assert hook(capsys, "codex", "--run", inside) == (0, claude_answer(
        "deny", f"{reason} (the rule asks for a person's approval, which Codex cannot ask for: denied)"), "")
    stdin(event("BeforeTool", tool="WebFetch", command=None, tool_input={"url": "u"}))
    assert hook(capsys, "gemini", "--run", inside) == (0, json.dumps({"decision": "deny", "reason": (
        f"{reason} (the rule asks for a person's approval, which a Gemini hook cannot ask for: denied)")}) + "\n", "")
    assert [r["decision"] for r in receipts(inside, "action.checked")] == ["observe"] * 3 + ["ask"] * 3


def test_the_callers_ancestry_decides_its_run(live):
    import subprocess

    from agentsess.edges.host import process_start

    child = subprocess.Popen(["sleep", "30"])
    try:
        assert live.caller_run(child.pid) == live.run_id  # a process of the run: below its supervisor
        live.bound[child.pid] = (process_start(child.pid), "run_01jsubagentsubagentsubagent")
        assert live.caller_run(child.pid) == "run_01jsubagentsubagentsubagent"  # a sub-agent's command
        live.bound[child.pid] = ((process_start(child.pid) or 0) + 1, "run_01jsubagentsubagentsubagent")
        assert live.caller_run(child.pid) == live.run_id  # the pid reused by another process: not bound
    finally:
        child.kill()
        child.wait()


def test_an_approval_wake_is_taken_from_anyone(live):
    assert live.handle({"op": "approval_wake"}, 1) == {"ok": True}
    assert live.handle({"op": "approval_wake", "run": "run_01jzzzzzzzzzzzzzzzzzzzzzzz"}, os.getpid()) == {"ok": True}


def test_which_agent_a_command_is():
    from agentsess.core.guard import agents
    from agentsess.errors import AgentsessError

    assert agents.detect(["claude"], None) == "claude-code"
    assert agents.detect(["/opt/bin/claude-code", "-p"], None) == "claude-code"
    assert agents.detect(["/usr/bin/codex"], None) == "codex"
    assert agents.detect(["gemini"], None) == "gemini"
    assert agents.detect(["sh"], None) is None
    assert agents.detect(["claude"], "none") is None  # --agent none: no integration
    assert agents.detect(["sh"], "gemini") == "gemini"  # named by --agent or the profile
    assert agents.detect(["sh"], "aider") is None
    with pytest.raises(AgentsessError) as info:
        agents.protocol("aider")
    assert info.value.message == "hook: unknown agent 'aider': expected claude-code, codex or gemini"
    assert agents.protocol("codex").SOURCE == "codex"


def test_whoami_inside_a_run_says_who_it_is(live):
    answer = live.handle({"op": "whoami"}, os.getpid())
    assert answer["ok"] is True
    me = answer["run"]
    assert (me["id"], me["name"], me["profile"], me["status"], me["revoked"]) == (live.run_id, "sh", "claude", "running", False)
    assert (me["scopes"], me["ceiling"], me["containment"], me["parents"]) == (["fs:*", "git:commit"], ["git:*", "fs:*"], "advisory", [])
    assert me["expires_at"].endswith("Z") and 0 < me["seconds_left"] <= 3600
    assert me["agent"] == "claude"  # the profile's agent name, the token's sub
    assert live.handle({"op": "whoami"}, 1)["ok"] is False


def test_token_verify_inside_a_run(live):
    me = os.getpid()
    token = TOKENS[live.run_id]
    answer = live.handle({"op": "token_verify", "token": token, "scopes": ["fs:read", 7]}, me)
    assert (answer["ok"], answer["valid"], answer["verdict"]["valid"]) == (True, True, True)
    denied = live.handle({"op": "token_verify", "token": token, "scopes": ["git:push"]}, me)
    assert (denied["ok"], denied["valid"], denied["reason"]) == (True, False, "missing scope")
    assert "git:push" in denied["detail"]
    forged = live.handle({"op": "token_verify", "token": token[:-4] + "AAAA"}, me)
    assert (forged["ok"], forged["valid"]) == (True, False)
    assert live.handle({"op": "token_verify"}, me) == {"ok": False, "code": 2, "error": "token verify: no token given"}
    assert live.handle({"op": "token_verify", "token": 7}, me)["error"] == "token verify: no token given"


def test_whoami_names_every_run_above_and_a_revocation():
    from agentsess import ids
    from agentsess.core.runs.authority import describe
    from agentsess.edges.store import Store

    def add(store, name, parent=None, **more):
        rid = ids.new_run_id()
        store.insert_run({"id": rid, "name": name, "status": "running", "command": ["sh"], "cwd": "/", "host": "h",
                          "user": "u", "started_at": 1.0, "parent_id": parent, "agent": f"{name}-agent", **more})
        return rid

    with Store() as store:
        top = add(store, "top")
        mid = add(store, "mid", top)
        leaf = add(store, "leaf", mid, expires_at=1.0)  # expired long ago
        orphan = add(store, "orphan", "run_01jgonegonegonegonegonegone")
        store.update_run(leaf, revoked_at=2.0, status="revoked")
        me = describe(store, leaf, "contained")
        assert me["parents"] == [{"id": mid, "name": "mid", "agent": "mid-agent"},
                                 {"id": top, "name": "top", "agent": "top-agent"}]
        assert (me["revoked"], me["status"], me["seconds_left"], me["containment"]) == (True, "revoked", 0, "contained")
        assert me["expires_at"] == "1970-01-01T00:00:01Z"
        assert describe(store, top, "advisory")["parents"] == []
        top_row = describe(store, top, "advisory")
        assert (top_row["revoked"], top_row["expires_at"], top_row["seconds_left"]) == (False, None, None)  # no expiry
        assert describe(store, orphan, "advisory")["parents"] == []  # a parent pruned away ends the chain


def test_a_sub_agent_gets_its_own_run_and_its_revocation_denies_only_it(capsys, stdin, live):
    """Claude Code's sub-agent calls (``agent_id``/``agent_type``) are routed to a child run of
    their own; once that run is revoked, its next call is denied with the reason and noted in
    the parent, while the orchestrator's calls go on."""
    import time

    from agentsess.edges.store import Store

    parent = live.run_id
    sub = {"agent_id": "agent-7", "agent_type": "Explore"}
    try:
        stdin(event("PreToolUse", command="ls", **sub))
        assert hook(capsys, "claude-code", "--run", parent) == (0, claude_answer("allow", ALLOW), "")
        with Store() as store:
            [child] = store.children(parent)
        assert child["name"] == "Explore" and child["status"] == "running"
        assert [(r["tool"], r["decision"]) for r in receipts(child["id"], "action.checked")] == [("Bash", "allow")]
        assert receipts(parent, "action.checked") == []
        [started] = receipts(child["id"], "subagent.started")
        assert (started["agent_id"], started["agent_type"], started["parent"], started["source"]) == (
            "agent-7", "Explore", parent, "claude-code")

        stdin(event("PreToolUse", command="rm -rf /x"))  # the orchestrator's own call: its own run
        assert hook(capsys, "claude-code", "--run", parent) == (0, claude_answer("deny", WIPE), "")
        assert [r["decision"] for r in receipts(parent, "action.checked")] == ["deny"]

        with Store() as store:
            store.mark_revoked({child["id"]: "direct"}, time.time(), "tester@host", "enough")
            deadline = time.monotonic() + 30
            while (store.get_run(child["id"]) or {}).get("ended_at") is None:  # the sub-agents' watch ends it
                assert time.monotonic() < deadline, "the revoked sub-agent's run did not end"
                time.sleep(0.05)
        why = f"sub-agent agent-7's run {child['id']} was revoked: enough"
        stdin(event("PreToolUse", command="ls", **sub))
        assert hook(capsys, "claude-code", "--run", parent) == (0, claude_answer("deny", f"agentsess: {why}"), "")
        assert receipts(parent, "subagent.refused")[-1]["reason"] == why
        assert len(receipts(child["id"], "action.checked")) == 1  # nothing more recorded in the revoked run
        stdin(event("PostToolUse", tool_response={"stdout": ""}, **sub))  # its result: noted, nothing answered
        assert hook(capsys, "claude-code", "--run", parent) == (0, "", "")
        assert receipts(child["id"], "action.result") == []

        stdin(event("PreToolUse", command="ls"))  # the orchestrator goes on
        assert hook(capsys, "claude-code", "--run", parent) == (0, claude_answer("allow", ALLOW), "")
    finally:
        with Store() as store:
            live.subagents.end_all(store, "the test ended")


@pytest.mark.parametrize("agent_id, reason", [
    ("agent 7", "hook: agent_id agent 7 holds characters a sub-agent id never has"),
    ("", "hook: agent_id is not a non-empty string"),
])
def test_a_tool_call_naming_a_malformed_sub_agent_blocks_and_is_noted(capsys, stdin, inside, agent_id, reason):
    stdin(event("PreToolUse", command="ls", agent_id=agent_id))
    assert hook(capsys, "claude-code", "--run", inside) == (2, "", f"agentsess: denied: {reason}\n")
    [noted] = receipts(inside, "subagent.refused")
    assert (noted["event"], noted["agent_id"], noted["agent_id_length"], noted["reason"], noted["source"]) == (
        "PreToolUse", agent_id, len(agent_id), reason, "claude-code")
    assert receipts(inside, "action.checked") == []
