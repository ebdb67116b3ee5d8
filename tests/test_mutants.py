"""Tests written against the mutants mutmut left alive in scopes (see docs/mutation-testing.md):
each pins a message, an exit code or a boundary that a mutant changed without any test
noticing. A user reads these messages; a script reads these codes."""

import pytest

from agentsess.core.credentials import scopes
from agentsess.errors import DENIED, USAGE, AgentsessError

EXPECTED = "segments are lowercase letters, digits and ._-/@, separated by ':'; a final '*' covers everything below"


def _error(text) -> AgentsessError:
    with pytest.raises(AgentsessError) as info:
        scopes.parse_scope(text)
    return info.value


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "a scope cannot be empty; "),
        ("a" * 201, "longer than 200 characters; "),
        ("a::b", "empty segment; "),
        ("a:", "empty segment; "),
        ("*:a", "'*' is allowed only as the last segment; "),
        ("a:*:b", "'*' is allowed only as the last segment; "),
        ("a:b*", "'*' must be a whole segment of its own, at the end; "),
        ("a:B", "'B' is not allowed; "),
        ("a:b:c:*:d", "'*' is allowed only as the last segment; "),
        ("A" * 200, "'A' is not allowed; "),  # exactly the limit: not "longer than"
    ],
)
def test_each_bad_scope_says_exactly_why(text, reason):
    err = _error(text)
    assert err.exit_code == USAGE
    assert err.message == f"bad scope {scopes._shown(text)}: {reason}{EXPECTED}"


def test_a_later_bad_segment_is_found_after_a_good_star_check():
    # a '*' segment that is last is fine; the loop must go on to the other segments' checks
    assert "'B' is not allowed" in _error("a:B:*").message


def test_the_longest_scope_is_accepted_and_one_more_is_not():
    longest = "a" * 200
    assert scopes.parse_scope(longest) == longest
    assert _error("a" * 201).message.startswith("bad scope 'aaaaaaaaa")


def test_long_scopes_are_shown_cut_at_57_characters():
    assert scopes._shown("a" * 60) == repr("a" * 60)
    assert scopes._shown("a" * 61) == repr("a" * 57 + "...")
    assert _error("a" * 300).message.startswith(f"bad scope {'a' * 57!r}"[:-1] + "...'")


def test_a_scope_that_is_not_a_string_is_a_usage_error():
    err = _error(42)
    assert err.exit_code == USAGE and err.message == "bad scope: expected a string, got int"


def test_attenuate_names_the_excess_and_the_ceiling():
    with pytest.raises(AgentsessError) as info:
        scopes.attenuate(["fs:read", "git:*"], ["fs:write", "git:push"])
    assert info.value.exit_code == DENIED
    assert info.value.message == "scope beyond the ceiling: fs:write (allowed: fs:read git:*)"
    with pytest.raises(AgentsessError) as info:
        scopes.attenuate([], ["fs:read"])
    assert info.value.message == "scope beyond the ceiling: fs:read (allowed: (none))"
    assert scopes.attenuate(["*"], ["x:y"]) == ["x:y"]
    assert scopes.attenuate(None, ["x:y"]) == ["x:y"]


def test_excess_with_a_star_ceiling_is_empty_and_a_literal_star_scope_counts():
    assert scopes.excess(["*"], ["a", "b:c"]) == []
    assert scopes.excess(["a:*"], ["a", "a:b", "a"]) == ["a"]


# -- verify --all: run folders without a store row (in-process, where mutmut sees it) -------


def test_verify_all_names_every_folder_without_a_row(tmp_path):
    import os

    from helpers import agentsess

    from agentsess.core.receipts.verify import verify_all
    from agentsess.edges import paths
    from agentsess.edges.store import Store

    agentsess("run", "--no-pty", "--", "sh", "-c", "echo out", check=0)
    runs = paths.runs_dir()
    (real,) = os.listdir(runs)
    lines = open(paths.receipts_file(real), "rb").read().splitlines(keepends=True)
    long_name = "r" * 81
    for name, content in (("run_orphan1", lines[:2]), ("run_orphan2", lines[:3]), (long_name, lines[:1]),
                          ("run_\x07bell", None)):
        os.makedirs(os.path.join(runs, name))
        if content is not None:
            with open(os.path.join(runs, name, "receipts.jsonl"), "wb") as fh:
                fh.write(b"".join(content))
    with Store() as store:
        results = [r.as_dict() for r in verify_all(store)]
    by_run = {r["run"]: r for r in results}
    assert by_run[real]["ok"] is True
    suffix = ": its row was deleted outside agentsess"
    assert by_run["run_orphan1"]["failure"] == f"the run folder run_orphan1 has no row in the store (2 receipt lines on disk){suffix}"
    assert by_run["run_orphan2"]["failure"] == f"the run folder run_orphan2 has no row in the store (3 receipt lines on disk){suffix}"
    cut = repr(long_name[:80])
    assert by_run[cut]["failure"] == f"the run folder {cut} has no row in the store (1 receipt lines on disk){suffix}"
    bell = repr("run_\x07bell")
    assert by_run[bell]["failure"] == f"the run folder {bell} has no row in the store (no readable receipt stream){suffix}"
    assert len(results) == 5
    eighty = "s" * 80
    os.makedirs(os.path.join(runs, eighty))
    with Store() as store:
        assert eighty in {r.run_id for r in verify_all(store)}  # 80 characters are shown as they are


def test_verify_all_checks_output_only_when_asked():
    import os

    from helpers import agentsess

    from agentsess.core.receipts.verify import verify_all
    from agentsess.edges import paths
    from agentsess.edges.store import Store

    agentsess("run", "--no-pty", "--", "sh", "-c", "echo out", check=0)
    (real,) = os.listdir(paths.runs_dir())
    with open(paths.output_log(real), "ab") as fh:
        fh.write(b"added later\n")
    with Store() as store:
        assert [r.ok for r in verify_all(store)] == [False]
        assert [r.ok for r in verify_all(store, check_output=False)] == [True]


# -- tokens: every refusal says exactly what and names the key when it knows it -------------


def _b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _token_parts():
    import json
    import time

    from agentsess.core.credentials import tokens

    token = tokens.mint(agent="a", obo="h@x", sid="run_1", scope="fs:read", ttl=60, now=time.time())
    token = token[0] if isinstance(token, tuple) else token
    head, body, sig = token.split(".")
    header = json.loads(__import__("base64").urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return token, head, body, sig, header


def test_each_malformed_token_is_named_precisely():
    import json

    from agentsess.core.credentials import tokens

    token, head, body, sig, header = _token_parts()
    kid = header["kid"]
    other_header = _b64(json.dumps({**header, "kid": "A" * len(kid)}).encode())
    cases = [
        (b"\xff", "malformed", "token is not ASCII", None),
        (5, "malformed", "token is not a string", None),
        ("", "malformed", "token is empty", None),
        ("a" * 16385, "malformed", "token is 16385 characters long (at most 16384)", None),
        ("a" * 16384, "malformed", "token has 1 dot-separated parts, not 3", None),
        ("a.b", "malformed", "token has 2 dot-separated parts, not 3", None),
        (f".{body}.{sig}", "malformed", "token header is empty", None),
        (f"a+b.{body}.{sig}", "malformed", "token header is not canonical unpadded base64url", None),
        (f"{_b64(b'[]')}.{body}.{sig}", "malformed", "token header is not a JSON object", None),
        (f"{head}..{sig}", "malformed", "token payload is empty", None),
        (f"{head}.{body}.", "malformed", "token signature is empty", None),
        (f"{head}.{body}.a+b", "malformed", "token signature is not canonical unpadded base64url", None),
        (f"{head}.{body}.{_b64(b'x' * 10)}", "bad signature", "token signature is not 64 bytes", kid),
        (f"{head}.{body}.{_b64(b'x' * 64)}", "bad signature", f"token signature does not match key {kid}", kid),
        (f"{other_header}.{body}.{sig}", "unknown key",
         f"token is signed with key {'A' * len(kid)}, which this agentsess does not know", None),
        (token.encode(), None, "valid token of run run_1 (agent a)", kid),
    ]
    for value, reason, detail, want_kid in cases:
        verdict = tokens.verify(value)
        assert (verdict.reason, verdict.detail, verdict.kid) == (reason, detail, want_kid), (value if not isinstance(value, str) else value[:40], verdict)
        assert bool(verdict) is (reason is None)


def test_token_refusals_after_the_signature_name_the_run():
    import time

    from agentsess.core.credentials import tokens

    now = time.time()
    token = tokens.mint(agent="a", obo="h@x", sid="run_1", scope="fs:read", chain=["run_0"], ttl=60, now=now)
    token = token[0] if isinstance(token, tuple) else token
    late = tokens.verify(token, now=now + 100)
    assert (late.reason, late.detail) == ("expired", f"token of run run_1 expired {int(now + 100) - int(now) - 60} s ago")
    assert late.claims["sid"] == "run_1" and late.kid
    assert tokens.verify(token, now=now + 100, leeway=60).valid
    early = tokens.verify(token, now=now - 30)
    assert early.reason == "not yet valid" and early.detail.startswith("token of run run_1 ")
    revoked = tokens.verify(token, is_revoked=lambda ids: ("run_1", "leak") if "run_1" in ids else None)
    assert (revoked.reason, revoked.detail) == ("revoked run", "run run_1 was revoked: leak")
    seen = []
    ancestor = tokens.verify(token, is_revoked=lambda ids: seen.append(list(ids)) or ("run_0", ""))
    assert seen == [["run_1", "run_0"]]
    assert (ancestor.reason, ancestor.detail) == ("revoked ancestor", "ancestor run run_0 of run run_1 was revoked")
    missing = tokens.verify(token, required_scopes="fs:read git:push")
    assert (missing.reason, missing.detail) == ("missing scope", "run run_1 lacks scope git:push (has: fs:read)")
    assert tokens.verify(token, required_scopes=["fs:read"]).valid
    refused = tokens.verify(token, registry=lambda claims, tok: ("not minted here", "never seen"))
    assert (refused.reason, refused.detail) == ("not minted here", "never seen") and refused.claims["sid"] == "run_1"


def _signed(header: dict | None = None, claims: dict | None = None, **changes) -> str:
    """A token signed with this data root's real key, with the given header or claims."""
    import json
    import time

    from agentsess.edges import keys

    kid, private = keys.current_key()
    now = int(time.time())
    body = {"iss": "agentsess", "sub": "agent:a", "agent": "a", "obo": "h@x", "sid": "run_1", "jti": "j",
            "scope": "fs:read", "iat": now, "nbf": now, "exp": now + 60, "chain": []}
    body.update(changes)
    if claims is not None:
        body = claims
    head = {"alg": "EdDSA", "typ": "JWT", "kid": kid} if header is None else header
    signing_input = _b64(json.dumps(head).encode()) + "." + _b64(json.dumps(body).encode())
    return signing_input + "." + _b64(private.sign(signing_input.encode("ascii")))


def test_each_bad_header_is_named_precisely():
    from agentsess.core.credentials import tokens
    from agentsess.edges import keys

    kid, _ = keys.current_key()
    cases = [
        ({"typ": "JWT", "kid": kid}, "malformed", "token header has no 'alg'"),
        ({"alg": 7, "kid": kid}, "malformed", "token header has no 'alg'"),
        ({"alg": "HS256" + "x" * 30, "kid": kid}, "unsupported algorithm",
         f"token algorithm {('HS256' + 'x' * 30)[:20]!r} is not EdDSA"),
        ({"alg": "none", "kid": kid}, "unsupported algorithm", "token algorithm 'none' is not EdDSA"),
        ({"alg": "EdDSA", "kid": kid, "crit": ["exp"]}, "malformed",
         "token header has a 'crit' member; agentsess accepts none"),
        ({"alg": "EdDSA", "kid": kid, "x5u": "u", "jku": "u", "b" * 30: 1, "zz": 2}, "malformed",
         f"token header has members agentsess does not accept: {'b' * 20!r}, 'jku', 'x5u'"),
        ({"alg": "EdDSA", "kid": kid, "typ": "jwt"}, "malformed", "token header 'typ' is not JWT"),
        ({"alg": "EdDSA"}, "malformed", "token header has no 'kid'"),
        ({"alg": "EdDSA", "kid": ""}, "malformed", "token header has no 'kid'"),
        ({"alg": "Ed25519", "kid": kid}, None, "valid token of run run_1 (agent a)"),
    ]
    for header, reason, detail in cases:
        verdict = tokens.verify(_signed(header))
        assert (verdict.reason, verdict.detail) == (reason, detail), (header, verdict)


def test_duplicate_header_members_are_malformed():
    import json

    from agentsess.core.credentials import tokens
    from agentsess.edges import keys

    kid, _ = keys.current_key()
    good = _signed()
    raw = '{"alg":"EdDSA","kid":"%s","kid":"%s"}' % (kid, kid)
    forged = _b64(raw.encode()) + "." + good.split(".", 1)[1]
    verdict = tokens.verify(forged)
    assert (verdict.reason, verdict.detail) == ("malformed", "token header is not a JSON object")
    with pytest.raises(ValueError, match="^duplicate member$"):
        json.loads(raw, object_pairs_hook=tokens._no_duplicates)


def test_each_bad_claim_is_named_precisely():
    from agentsess.core.credentials import tokens

    cases = [
        ({"chain": ["run_0", ""]}, "token claim 'chain' is not a list of run ids"),
        ({"chain": "run_0"}, "token claim 'chain' is not a list of run ids"),
        ({"iss": "other"}, "token issuer is not 'agentsess'"),
        ({"sub": "agent:b"}, "token 'sub' does not match its 'agent'"),
        ({"sid": ""}, "token claim 'sid' is empty"),
        ({"exp": True}, "token claim 'exp' is not an integer"),
        ({"scope": 5}, "token claim 'scope' is not a string"),
    ]
    for changes, detail in cases:
        verdict = tokens.verify(_signed(**changes))
        assert (verdict.reason, verdict.detail) == ("malformed", detail), (changes, verdict)
    partial = {"iss": "agentsess", "sub": "agent:a", "agent": "a", "sid": "run_1"}
    verdict = tokens.verify(_signed(claims=partial))
    assert verdict.detail == "token lacks claims: chain, exp, iat, jti, nbf, obo, scope"


def test_a_star_before_a_final_star_is_refused():
    # find() of the first '*', not the last: "a*:*" must not pass the fast path
    for text in ("a*:*", "*:*", "a:*b:*"):
        with pytest.raises(AgentsessError):
            scopes.parse_scope(text)


def test_a_str_subclass_is_taken_as_its_text():
    class Sneaky(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    parsed = scopes.parse_scope(Sneaky("fs:read"))
    assert type(parsed) is str and parsed == "fs:read"
    with pytest.raises(AgentsessError) as info:
        scopes.parse_scope(Sneaky("BAD"))
    assert info.value.message == f"bad scope 'BAD': 'B' is not allowed; {EXPECTED}"
    with pytest.raises(AgentsessError) as info:
        scopes.parse_scope(None)
    assert info.value.message == "bad scope: expected a string, got NoneType"
    assert scopes.parse_scopes(["a", "b", "a"]) == ["a", "b"]


def test_failures_after_the_signature_carry_the_kid_and_the_claims():
    import time

    from agentsess.core.credentials import tokens
    from agentsess.edges import keys

    kid, private = keys.current_key()
    now = int(time.time())
    # a good signature over a payload that is not a JSON object
    signing_input = _b64(b'{"alg":"EdDSA","typ":"JWT","kid":"%s"}' % kid.encode()) + "." + _b64(b"[1]")
    not_object = signing_input + "." + _b64(private.sign(signing_input.encode("ascii")))
    verdict = tokens.verify(not_object)
    assert (verdict.reason, verdict.detail, verdict.kid, verdict.claims) == (
        "malformed", "token payload is not a JSON object", kid, None)
    verdict = tokens.verify(_signed(iss="x"))
    assert (verdict.reason, verdict.kid, verdict.claims) == ("malformed", kid, None)
    early = tokens.verify(_signed(nbf=now + 50, iat=now), now=now)
    assert (early.reason, early.detail, early.kid) == ("not yet valid", "token of run run_1 is not valid for 50 s", kid)
    assert early.claims["nbf"] == now + 50
    ahead = tokens.verify(_signed(nbf=now, iat=now + 40), now=now)
    assert (ahead.reason, ahead.detail, ahead.kid) == (
        "not yet valid", "token of run run_1 was issued 40 s in the future", kid)
    assert ahead.claims["iat"] == now + 40
    assert tokens.verify(_signed(nbf=now, iat=now + 40), now=now, leeway=40).valid
    token = _signed()
    seen = []

    def registry(claims, tok):
        seen.append((claims["sid"], tok))
        return ("not minted here", "never seen")

    refused = tokens.verify(token, registry=registry)
    assert seen == [("run_1", token)] and refused.kid == kid
    revoked = tokens.verify(token, is_revoked=lambda ids: ("run_1", None))
    assert (revoked.detail, revoked.kid, revoked.claims["sid"]) == ("run run_1 was revoked", kid, "run_1")
    chained = _signed(chain=["run_0"])
    ancestor = tokens.verify(chained, is_revoked=lambda ids: ("run_0", "x"))
    assert (ancestor.kid, ancestor.claims["chain"]) == (kid, ["run_0"])
    missing = tokens.verify(_signed(scope=""), required_scopes="fs:read")
    assert (missing.detail, missing.kid, missing.claims["scope"]) == ("run run_1 lacks scope fs:read (has: none)", kid, "")
