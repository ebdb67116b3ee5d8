"""Rule decisions (core/guard/policy.py) in-process, against the mutants mutmut left alive: a
dead run denies everything and says why, a missing scope is named, the default decision and
`observe` are kept apart, and a Decision cannot be changed once made. The run rows are the
store's shape; the rules are the profile's (see docs/mutation-testing.md)."""

import time

import pytest

from agentsess.core.guard import policy
from agentsess.core.guard.policy import Decision, decide, liveness, main_argument

RID = "run_01jabcdefghjkmnpqrstvwxyz0"
NOW = 1_000_000.0


def row(**changes) -> dict:
    base = {"id": RID, "status": "running", "revoked_at": None, "expires_at": NOW + 60, "scopes": ["fs:*"],
            "policy": {"rules": [], "default_decision": None}}
    base.update(changes)
    return base


def rule(index=0, **fields) -> dict:
    return {"tool": "Bash", "args": None, "scope": None, "decision": "deny", "reason": None, "index": index, **fields}


# -- a run that cannot act -----------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, why",
    [
        ({"revoked_at": NOW - 1}, f"run {RID} was revoked"),
        ({"revoked_at": NOW - 1, "status": "exited"}, f"run {RID} was revoked"),
        ({"status": "abandoned"}, f"run {RID} was abandoned (its supervisor died); its credentials are dead"),
        ({"status": "exited"}, f"run {RID} is exited, not running"),
        ({"status": "denied"}, f"run {RID} is denied, not running"),
        ({"expires_at": NOW}, f"the credential of run {RID} expired"),
        ({"expires_at": NOW - 5}, f"the credential of run {RID} expired"),
    ],
)
def test_a_dead_run_denies_and_says_why(changes, why):
    dead = row(**changes)
    assert liveness(dead, NOW) == why
    assert decide(dead, "Bash", {"command": "ls"}, now=NOW, observe=True) == Decision("deny", why)
    assert decide(dead, "Bash", scope="fs:read", now=NOW) == Decision("deny", why, scope="fs:read")


def test_a_live_run_can_act():
    assert liveness(row(), NOW) is None
    assert liveness(row(expires_at=NOW + 0.5), NOW) is None
    assert liveness(row(expires_at=None), NOW) is None
    assert liveness(row(expires_at=time.time() + 3600)) is None  # now defaults to the clock


def test_expiry_is_checked_against_the_clock_by_default():
    assert liveness(row(expires_at=1.0)) == f"the credential of run {RID} expired"


# -- scopes and defaults -------------------------------------------------------------------


def test_a_scope_request_names_what_the_run_lacks():
    assert decide(row(scopes=["fs:read", "git:commit"]), "check", scope="git:push", now=NOW) == Decision(
        "deny", f"run {RID} lacks scope git:push (has: fs:read git:commit)", scope="git:push")
    assert decide(row(scopes=[]), "check", scope="git:push", now=NOW).reason == f"run {RID} lacks scope git:push (has: none)"
    assert decide(row(scopes=None), "check", scope="git:push", now=NOW).reason == f"run {RID} lacks scope git:push (has: none)"


def test_a_held_scope_is_allowed_and_says_so():
    assert decide(row(scopes=["git:*"]), "check", scope="git:push", now=NOW) == Decision(
        "allow", f"run {RID} holds scope git:push", scope="git:push")


def test_a_held_scope_is_allowed_whatever_the_default_for_tool_calls():
    strict = row(scopes=["git:*"], policy={"rules": [], "default_decision": "deny"})
    assert decide(strict, "check", scope="git:push", now=NOW) == Decision(
        "allow", f"run {RID} holds scope git:push", scope="git:push")
    assert decide(strict, "Bash", {"command": "ls"}, now=NOW).decision == "deny"


def test_a_held_scope_still_meets_the_rules():
    rules = [rule(tool="check", decision="deny", reason="never from here")]
    assert decide(row(scopes=["git:*"], policy={"rules": rules}), "check", scope="git:push", now=NOW) == Decision(
        "deny", "never from here", 0, "git:push")


def test_without_rules_the_default_decides():
    assert decide(row(), "Bash", {"command": "ls"}, now=NOW, observe=True) == Decision(
        "observe", "no rule matched; default_decision is observe")
    # a caller that cannot give "no decision" lets the call through
    assert decide(row(), "Bash", {"command": "ls"}, now=NOW) == Decision(
        "allow", "no rule matched; default_decision is allow")
    for default in ("deny", "ask", "allow"):
        got = decide(row(policy={"default_decision": default}), "Bash", {"command": "ls"}, now=NOW, observe=True)
        assert got == Decision(default, f"no rule matched; default_decision is {default}"), default
    assert decide(row(policy=None), "Bash", None, now=NOW, observe=True).decision == "observe"


def test_a_matched_rule_decides_with_its_index_and_scope():
    rules = [rule(0, tool="Read", decision="allow"), rule(1, args="rm *", decision="deny", reason="no rm"),
             rule(2, args="git push*", scope="git:push", decision="allow")]
    r = row(scopes=["git:push"], policy={"rules": rules})
    got = decide(r, "Bash", {"command": "rm -rf x"}, now=NOW, observe=True)
    assert (got.decision, got.reason, got.rule, got.scope, got.commands) == (
        "deny", "no rm; matched `rm -rf x`", 1, None, ("rm -rf x",))
    got = decide(r, "Bash", {"command": "git push"}, now=NOW, observe=True)
    assert (got.decision, got.rule, got.scope) == ("allow", 2, "git:push")
    lacking = decide(row(policy={"rules": rules}), "Bash", {"command": "git push"}, now=NOW, observe=True)
    assert (lacking.decision, lacking.reason, lacking.rule, lacking.scope) == (
        "deny", f"rule 3 needs scope git:push, which run {RID} lacks", 2, "git:push")
    assert decide(r, "Bash", {"command": "git push"}, scope="fs:read", now=NOW).decision == "deny"


# -- the argument rules match --------------------------------------------------------------


def test_the_main_argument_is_the_first_string_of_the_known_keys():
    assert main_argument({"command": "ls", "file_path": "/x"}) == "ls"
    assert main_argument({"file_path": "/x", "path": "/y"}) == "/x"
    assert main_argument({"path": "/y", "url": "u"}) == "/y"
    assert main_argument({"url": "u", "pattern": "p"}) == "u"
    assert main_argument({"pattern": "p", "query": "q"}) == "p"
    assert main_argument({"query": "q"}) == "q"
    assert main_argument({"command": 5, "file_path": "/x"}) == "/x"  # a non-string is skipped
    assert main_argument({"other": 1}) == '{"other":1}'
    assert main_argument("plain") == "plain"
    assert main_argument(["a", 1]) == '["a",1]'
    assert policy.MAIN_ARGUMENT_KEYS == ("command", "file_path", "path", "url", "pattern", "query")


def test_rules_match_the_main_argument_of_a_non_shell_tool():
    rules = [rule(0, tool="Write", args="/etc/*", reason="not /etc")]
    r = row(policy={"rules": rules})
    assert decide(r, "Write", {"file_path": "/etc/passwd"}, now=NOW).reason == "not /etc"
    assert decide(r, "Write", {"file_path": "/tmp/x"}, now=NOW).decision == "allow"
    assert decide(r, "Write", None, now=NOW).decision == "allow"  # no arguments: the empty string
    anything = row(policy={"rules": [rule(0, tool="Write", args="?*", reason="any argument")]})
    assert decide(anything, "Write", None, now=NOW).decision == "allow"  # not "null"
    assert decide(anything, "Write", {}, now=NOW).reason == "any argument"  # "{}"


# -- a Decision, once made ------------------------------------------------------------------


def test_a_decision_is_complete_and_cannot_be_changed():
    d = Decision("allow", "why", 3, "fs:read", ["a"])
    assert (d.decision, d.reason, d.rule, d.scope, d.commands) == ("allow", "why", 3, "fs:read", ("a",))
    assert d.allowed and not Decision("ask", "x").allowed and not Decision("deny", "x").allowed
    with pytest.raises(AttributeError, match="^Decision is immutable: cannot set decision$"):
        d.decision = "deny"
    with pytest.raises(AttributeError, match="^Decision is immutable: cannot delete reason$"):
        del d.reason
    assert d.decision == "allow"
    fresh = Decision("deny", "r")
    assert (fresh.rule, fresh.scope, fresh.commands) == (None, None, ())


def test_a_decision_is_compared_and_hashed_by_every_field():
    d = Decision("allow", "why", 3, "fs:read", ("a",))
    assert d == Decision("allow", "why", 3, "fs:read", ("a",)) and hash(d) == hash(Decision("allow", "why", 3, "fs:read", ("a",)))
    for other in (Decision("deny", "why", 3, "fs:read", ("a",)), Decision("allow", "other", 3, "fs:read", ("a",)),
                  Decision("allow", "why", 4, "fs:read", ("a",)), Decision("allow", "why", 3, "fs:write", ("a",)),
                  Decision("allow", "why", 3, "fs:read", ("b",))):
        assert d != other and not (d == other)
    assert d != "allow" and d.__eq__("allow") is NotImplemented
    assert len({d, Decision("allow", "why", 3, "fs:read", ("a",)), Decision("deny", "why")}) == 2
    assert hash(d) == hash(("allow", "why", 3, "fs:read", ("a",)))
    assert repr(d) == "Decision(decision='allow', reason='why', rule=3, scope='fs:read')"


def test_replace_keeps_every_other_field():
    d = Decision("allow", "why", 3, "fs:read", ("a",))
    assert d.replace(decision="deny") == Decision("deny", "why", 3, "fs:read", ("a",))
    assert d.replace(reason="r", commands=("b",)) == Decision("allow", "r", 3, "fs:read", ("b",))
    assert d.replace() == d and d.replace() is not d
