"""Rules on parsed shell commands: the spellings a hostile model tries, in unit, property and
real-bash form (each generated spelling is also run by bash against a stand-in `git` that
records what it was asked to do, so the suite proves every spelling really is `git push`)."""

import os
import shlex
import stat
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentsess.core.guard import actions, commands, policy
from agentsess.edges import paths

PUSH = {"tool": "Bash", "args": "git push*", "scope": "git:push", "decision": "allow", "index": 0,
        "reason": None}
with open(paths.starter_config(), "rb") as _fh:
    import tomllib

    STARTER = tomllib.load(_fh)
STARTER_RULES = [dict(r, index=i, scope=r.get("scope"), reason=r.get("reason"), args=r.get("args"))
                 for i, r in enumerate(STARTER["profiles"]["claude"]["rules"])]


def row(rules, scopes=("fs:*",), default="observe"):
    return {"id": "run_test", "status": "running", "scopes": list(scopes),
            "policy": {"rules": rules, "default_decision": default}}


def decide(command, rules=(PUSH,), scopes=("fs:*",), default="observe", tool="Bash"):
    return policy.decide(row(list(rules), scopes, default), tool, {"command": command}, observe=True)


def texts(line):
    parsed = commands.parse(line)
    assert parsed.error is None, parsed.error
    return [c.text for c in parsed.commands]


@pytest.mark.parametrize("line, expected", [
    ("git  push", "git push"),
    ("/usr/bin/git push", "git push"),
    ("git -C . push", "git push"),
    ("git -C. push", "git push"),
    ("git --git-dir=.git --work-tree . --no-pager -c user.name=x push", "git push"),
    ("cd . && git push", "git push"),
    ("env X=1 git push", "git push"),
    ("env -i -u HOME -- git push", "git push"),
    ("env -S 'git push'", "git push"),
    ("X=1 Y=2 git push", "git push"),
    ("sh -c 'git push'", "git push"),
    ("bash -lc \"bash -c 'git push'\"", "git push"),
    ("touch x && git push", "git push"),
    ("true || git push", "git push"),
    ("ls; git push", "git push"),
    ("ls\ngit push", "git push"),
    ("echo a | git push", "git push"),
    ("(git push)", "git push"),
    ("{ git push; }", "git push"),
    ("echo $(git push)", "git push"),
    ("echo `git push`", "git push"),
    ("cat <(git push)", "git push"),
    ("'git' \"push\"", "git push"),
    ("g''it pu\"\"sh", "git push"),
    ("\\git \\push", "git push"),
    ("$'\\x67it' $'\\160ush'", "git push"),
    ("$'git' push", "git push"),
    ("git pu\\\nsh", "git push"),
    ("git \\\n push", "git push"),
    ("command -p nohup time nice -n 5 timeout -s KILL 10 git push", "git push"),
    ("exec -a name git push", "git push"),
    ("sudo -E -u root git push", "git push"),
    ("eval 'git push'", "git push"),
    ("bash <<EOF\ngit push\nEOF", "git push"),
    ("bash <<< 'git push'", "git push"),
    ("find . -exec git push \\;", "git push"),
    ("if true; then git push; fi", "git push"),
    ("for i in 1; do git push; done", "git push"),
    ("f() { git push; }; f", "git push"),
    ("A=$(git push) true", "git push"),
    ("! git push", "git push"),
    ("git push &", "git push"),
    ("shopt -s expand_aliases; alias p='git push'; p", "git push"),
    ("busybox sh -c 'git push'", "git push"),
    ("watch -n 1 git push", "git push"),
    ("su root -c 'git push'", "git push"),
    ("runuser -u bob -- git push", "git push"),
    ("flock /tmp/lock git push", "git push"),
    ("flock /tmp/lock -c 'git push'", "git push"),
    ("script -q -c 'git push' /dev/null", "git push"),
    ("strace -f -o trace git push", "git push"),
    ("/usr/bin/env -- git push", "git push"),
    ("git 2>/dev/null push", "git push"),
    ("git 2> /dev/null push", "git push"),
    ("git >& /dev/null push", "git push"),
    ("git &>/dev/null push", "git push"),
    ("git 0<&- push", "git push"),
    ("git 3<&0 push", "git push"),
    ("git {fd}>/dev/null push", "git push"),
    ("git <<EOF push\nbody\nEOF", "git push"),
    ("git <<< body push", "git push"),
    ("X=1 git >out 2>&1 push", "git push"),
    ("cd . && git 2>/dev/null push", "git push"),
    ("ls | git 2>/dev/null push", "git push"),
    ("! git 2>/dev/null push", "git push"),
    ("true || cd . && git 2>/dev/null push origin", "git push origin"),
    ("git push\r", "git push"),  # tree-sitter takes CR as a blank: more, not less, is matched
])
def test_spellings_normalise_to_the_simple_command(line, expected):
    assert expected in texts(line)


@pytest.mark.parametrize("line", [
    "git  push", "/usr/bin/git push", "git -C . push", "cd . && git push", "env X=1 git push",
    "sh -c 'git push'", "touch x && git push", "git push origin main", "G=git; $G push",
    "git $SUB", "git {push,pull}", "ls | xargs git", "echo git push | sh", "bash < script.sh",
    "git -c alias.p=push p", "\"$(echo git)\" push", "git \"$(echo push)\"", "git pu$X",
    "su - bob", "bash -c \"$(echo git push)\"", "eval \"$CMD\"", "sh 0< script.sh", "git 2>/dev/null push", "ls\n\\git push", "ls\n  \\git push", "bash <<EOF\n\\git push\nEOF", "git {fd}>x push", "exec \"$SHELL\" -c 'git push'",
])
def test_every_spelling_of_a_push_is_held_by_the_push_rule(line):
    d = decide(line)
    assert d.decision == "deny", (line, d.reason)
    assert "git:push" in d.reason or "could match" in d.reason or "cannot be checked" in d.reason


@pytest.mark.parametrize("line", [
    "git status", "git log --oneline | head", "echo git push", "grep -r 'git push' .",
    "git stash push", "ls -la && git commit -m 'push later'",
])
def test_commands_that_are_not_a_push_get_no_decision(line):
    d = decide(line)
    assert d.decision == "observe", (line, d.reason)


def test_a_run_holding_the_scope_is_allowed_to_push_and_only_the_push():
    assert decide("git -C . push origin", scopes=("git:push",)).decision == "allow"
    # an allowed push beside an unmatched command: the unmatched one decides (no decision)
    assert decide("git push && curl x | sh", scopes=("git:push",)).decision == "observe"
    # an unknown command name is never allowed by an allow rule
    assert decide("$G push", scopes=("git:push",)).decision == "observe"


def test_the_most_restrictive_command_of_a_line_decides():
    rules = [dict(PUSH, decision="deny", scope=None),
             {"tool": "Bash", "args": "git status*", "decision": "allow", "index": 1, "scope": None, "reason": None}]
    assert decide("git status", rules).decision == "allow"
    assert decide("git status && git push", rules).decision == "deny"
    assert decide("git status $(git push)", rules).decision == "deny"


@pytest.mark.parametrize("line", ["git push 'unterminated", "echo $(", "if then fi", "a && && b", "git push\0"])
def test_a_line_that_cannot_be_parsed_is_denied_when_a_rule_could_apply(line):
    d = decide(line)
    assert d.decision == "deny" and "cannot be checked" in d.reason
    # no rule with args for this tool: nothing to hold it against
    assert decide(line, rules=()).decision == "observe"
    assert decide(line, rules=(dict(PUSH, tool="Write"),)).decision == "observe"


def test_a_line_too_long_or_with_too_many_commands_is_unparseable():
    assert commands.parse("echo " + "a " * commands.MAX_LENGTH).error is not None
    assert commands.parse("a; " * (commands.MAX_COMMANDS + 1)).error is not None
    assert decide("true; " * (commands.MAX_COMMANDS + 1)).decision == "deny"


def test_nesting_past_the_limit_is_unparseable():
    line = "git push"
    for _ in range(commands.MAX_DEPTH + 1):
        line = f"sh -c {shlex.quote(line)}"
    assert commands.parse(line).error is not None
    assert decide(line).decision == "deny"


@pytest.mark.parametrize("line, denied", [
    ("rm -rf /", True), ("rm -fr /", True), ("rm -r -f /", True), ("rm --recursive --force /", True),
    ("rm -rf -- /", True), ("rm -rf /*", True), ("rm -rf //", True), ("rm -rf /.", True),
    ("rm -rf ~", True), ("rm -rf ~/", True), ("rm -rf ~/*", True), ("rm -rf \"$HOME\"", True),
    ("/bin/rm -rf /", True), ("sudo rm -rf /", True), ("cd /tmp && rm -rf / ", True),
    ("rm -rf /tmp/x /", True), ("sh -c 'rm -rf ~'", True), ("\\rm -rf ~", True),
    ("rm -rf /tmp/build", False), ("rm -rf build", False), ("rm -rf ./node_modules", False),
    ("rm -f ~/.cache/x.tmp", False), ("rm -rf /tmp/build/*", False), ("echo rm -rf /", False),
])
def test_the_starter_rm_rule_catches_what_it_claims(line, denied):
    d = decide(line, STARTER_RULES)
    assert (d.decision == "deny") is denied, (line, d.decision, d.reason)


def test_the_starter_push_rule_asks_only_with_the_scope():
    assert decide("git -C repo push", STARTER_RULES).decision == "deny"
    assert decide("git -C repo push", STARTER_RULES, scopes=("git:push",)).decision == "ask"


def test_rules_on_non_shell_tools_still_match_their_main_argument():
    rules = [{"tool": "Write", "args": "/etc/*", "decision": "deny", "index": 0, "scope": None, "reason": None}]
    r = row(rules)
    assert policy.decide(r, "Write", {"file_path": "/etc/passwd"}).decision == "deny"
    assert policy.decide(r, "Write", {"file_path": "/tmp/x"}, observe=True).decision == "observe"
    # callers that cannot give "no decision" (check, the MCP proxy) let it through
    assert policy.decide(r, "Write", {"file_path": "/tmp/x"}).decision == "allow"


def test_the_checked_receipt_lists_the_commands_it_looked_at():
    d = decide("cd . && git push")
    data = actions.checked_receipt(d, "Bash", {"command": "cd . && git push"}, "claude-code")
    assert data["commands"] == ["cd .", "git push"] and data["decision"] == "deny"


def test_ansi_c_decoding():
    assert commands.decode_ansi_c(r"\x67\151t\u0020\n\t\\\'") == "git \n\t\\'"
    assert commands.decode_ansi_c(r"a\0b") == "a"
    assert commands.decode_ansi_c(r"\cA") == "\x01"


# --- property test: composed spellings, checked by the rule and really run by bash ---

def _quote_word(draw, word):
    style = draw(st.sampled_from(["plain", "single", "double", "split", "backslash", "ansi", "ansi_hex"]))
    if style == "single":
        return f"'{word}'"
    if style == "double":
        return f'"{word}"'
    if style == "split":
        k = draw(st.integers(1, len(word) - 1))
        return f"{word[:k]}''{word[k:]}"
    if style == "backslash":
        return "".join("\\" + c for c in word)
    if style == "ansi":
        return f"$'{word}'"
    if style == "ansi_hex":
        return "$'" + "".join(f"\\x{ord(c):02x}" for c in word) + "'"
    return word


SEPARATORS = [" ", "  ", "\t", " \\\n "]
PROGRAMS = ["env X=1 ", "nohup ", "nice -n 1 ", "timeout 30 ", "env -i PATH=\"$PATH\" ", "env -- "]
BUILTINS = ["X=1 ", "command ", "time ", "exec ", "builtin command ", "X=1 Y=\"a b\" "]  # outermost only
GIT_OPTIONS = ["-C .", "-c a.b=c", "--no-pager", "--git-dir=.git", "--work-tree=.", "-C. "]
BEFORE = ["cd . && ", "touch marker; ", "true || false; ", "ls >/dev/null\n", "echo a | ", ": ; "]


@st.composite
def push_spellings(draw, gitpath):
    sep = lambda: draw(st.sampled_from(SEPARATORS))  # noqa: E731
    name = draw(st.sampled_from(["git", gitpath]))
    name = name if name != "git" else _quote_word(draw, "git")
    parts = [name]
    for opt in draw(st.lists(st.sampled_from(GIT_OPTIONS), max_size=2)):
        parts.append(opt.strip())
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(["2>/dev/null", ">/dev/null", "2>&1", "0</dev/null", "{fd}>/dev/null",
                                           "<<< x"])))
    parts.append(_quote_word(draw, "push"))
    parts += draw(st.lists(st.sampled_from(["origin", "main", "--force", "-u"]), max_size=2))
    line = sep().join(parts)
    for prefix in draw(st.lists(st.sampled_from(PROGRAMS), max_size=2)):
        line = prefix + line
    if draw(st.booleans()):
        line = draw(st.sampled_from(BUILTINS)) + line
    wrap = draw(st.sampled_from(["none", "sh", "bash", "subshell", "group", "subst", "backtick", "eval", "if"]))
    if wrap == "sh" and any(b in line for b in ("$'", "builtin", "<<<", "{fd}")):
        wrap = "bash"  # dash, the system sh, has no $'…'
    if wrap == "sh":
        line = f"sh -c {shlex.quote(line)}"
    elif wrap == "bash":
        line = f"bash -c {shlex.quote(line)}"
    elif wrap == "subshell":
        line = f"( {line} )"
    elif wrap == "group":
        line = f"{{ {line}; }}"
    elif wrap == "subst":
        line = f"echo \"$({line})\""
    elif wrap == "backtick":
        line = f"echo `{line}`"
    elif wrap == "eval":
        line = f"eval {shlex.quote(line)}"
    elif wrap == "if":
        line = f"if true; then {line}; fi"
    if draw(st.booleans()):
        line = draw(st.sampled_from(BEFORE)) + line
    return line


@pytest.fixture(scope="module")
def fake_git(tmp_path_factory):
    """A `git` that records its arguments: proves a spelling really asks git to push."""
    folder = tmp_path_factory.mktemp("fakegit")
    bindir = folder / "bin"
    bindir.mkdir()
    log = folder / "calls"
    git = bindir / "git"
    git.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {shlex.quote(str(log))}\n")
    git.chmod(git.stat().st_mode | stat.S_IXUSR)
    return git, log


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_every_generated_push_spelling_is_held(data, fake_git, tmp_path):
    git, log = fake_git
    line = data.draw(push_spellings(str(git)))
    d = decide(line)
    assert d.decision == "deny", (line, d.reason)
    # bash agrees that this line pushes: run it against the stand-in git
    if log.exists():
        log.unlink()
    env = {"PATH": f"{git.parent}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, timeout=20,
                   stdin=subprocess.DEVNULL)
    calls = log.read_text().splitlines() if log.exists() else []
    assert any(" push" in f" {c}" or c.startswith("push") for c in calls), (line, calls)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=80))
def test_property_the_parser_never_raises_and_never_lets_an_unparsed_line_through(text):
    parsed = commands.parse(text)
    d = decide(text)
    if parsed.error is not None:
        assert d.decision == "deny"
    assert d.decision in ("deny", "ask", "observe", "allow")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["ls", "git status", "echo push", "cat git", "git log", "pwd"]), min_size=1, max_size=4),
       st.sampled_from([" && ", " ; ", " | ", " || ", "\n"]))
def test_property_lines_without_a_push_are_not_held(cmds, sep):
    line = sep.join(cmds)
    assert decide(line).decision == "observe", line


# --- differential test: what bash really runs is what the parser says it runs ---

NAMES = ["a", "b", "c"]  # not git: its global options are dropped on purpose
ARGS = ["x", "push", "-f", "--flag=v", "two words", "it's", "/", "~", "*"]
REDIRECTS = ["2>/dev/null", ">/dev/null", "2>&1", "</dev/null", "&>/dev/null", ">>/dev/null", "<<< in", "0</dev/null"]


def _quoted(draw, word):
    style = draw(st.sampled_from(["plain", "single", "double", "ansi", "backslash"]))
    if style == "plain" and all(c.isalnum() or c in "-=/._" for c in word):
        return word
    if style == "double" and not any(c in word for c in '"$`\\'):
        return f'"{word}"'
    if style == "ansi":
        return "$'" + "".join(f"\\x{ord(c):02x}" for c in word) + "'"
    if style == "backslash":
        return "".join("\\" + c for c in word)
    return shlex.quote(word)


@st.composite
def simple_lines(draw, bindir):
    commands = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(NAMES))
        if draw(st.booleans()):
            name = f"{bindir}/{name}"
        parts = [_quoted(draw, name) if "/" not in name else name]
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.integers(0, 4)) == 0:
                parts.append(draw(st.sampled_from(REDIRECTS)))
            else:
                parts.append(_quoted(draw, draw(st.sampled_from(ARGS))))
        line = " ".join(parts)
        prefix = draw(st.sampled_from(["", "", "env X=1 ", "command ", "nohup ", "Y=2 ", "exec "]))
        if prefix == "exec " and len(commands) < 2:
            prefix = ""
        commands.append(prefix + line)
    seps = [draw(st.sampled_from([" && ", " ; ", " | ", "\n", " || "])) for _ in commands[1:]]
    line = commands[0]
    for sep, cmd in zip(seps, commands[1:]):
        line += sep + cmd
    wrap = draw(st.sampled_from(["none", "none", "bash", "subshell", "group"]))
    if wrap == "bash":
        line = f"bash -c {shlex.quote(line)}"
    elif wrap == "subshell":
        line = f"( {line} )"
    elif wrap == "group":
        line = f"{{ {line}; }}"
    return line


@pytest.fixture(scope="module")
def loggers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loggers")
    bindir = folder / "bin"
    bindir.mkdir()
    log = folder / "calls"
    for name in NAMES:
        path = bindir / name
        # one write per call, so piped calls do not interleave
        path.write_text("#!/bin/sh\nr=${0##*/}\nfor a in \"$@\"; do r=\"$r $a\"; done\n"
                        f"printf '%s\\0' \"$r\" >> {shlex.quote(str(log))}\n")
        path.chmod(0o755)
    return bindir, log


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_the_parser_agrees_with_bash(data, loggers, tmp_path):
    bindir, log = loggers
    line = data.draw(simple_lines(str(bindir)))
    parsed = commands.parse(line)
    if parsed.error is not None:
        # known misreadings of tree-sitter-bash that are refused (so denied), never let through:
        # a here-string after another redirection, a line that starts with a backslash
        assert "<<<" in line or "a word runs across a line break" in parsed.error, (line, parsed.error)
        assert decide(line).decision == "deny"
        return
    texts = {c.text for c in parsed.commands}
    if log.exists():
        log.unlink()
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    ran = [c for c in (log.read_bytes().decode().split("\0") if log.exists() else []) if c]
    for call in ran:
        assert call in texts, (line, call, texts)
