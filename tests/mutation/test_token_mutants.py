"""Tokens, in-process, against the mutants that outlived tests/test_tokens.py and
tests/test_mutants.py: what `mint` refuses and says, the exact bytes it signs, how a kid or run
id is shown in a refusal. Real keys of this test's data root; see docs/mutation-testing.md."""

import base64
import json
import time

import pytest

from agentsess.core.credentials import tokens
from agentsess.edges import keys
from agentsess.errors import USAGE, AgentsessError

GOOD = dict(agent="claude", obo="alice@laptop", sid="run_1", scope="fs:read", chain=["run_0"], ttl=60)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mint_error(**changes) -> AgentsessError:
    with pytest.raises(AgentsessError) as info:
        tokens.mint(**{**GOOD, **changes})
    assert info.value.exit_code == USAGE
    return info.value


@pytest.mark.parametrize("field", ["agent", "obo", "sid"])
@pytest.mark.parametrize("value", ["", None, 7])
def test_mint_names_the_field_that_is_not_a_non_empty_string(field, value):
    assert _mint_error(**{field: value}).message == f"cannot mint a token: {field} must be a non-empty string"


@pytest.mark.parametrize("chain", [[""], ["run_0", 5], [None]])
def test_mint_refuses_a_chain_that_is_not_run_ids(chain):
    assert _mint_error(chain=chain).message == "cannot mint a token: chain must be a list of run ids"


@pytest.mark.parametrize("ttl", [0, 0.99, -5, True, "60", None])
def test_mint_refuses_a_ttl_under_one_second(ttl):
    assert _mint_error(ttl=ttl).message == "cannot mint a token: ttl must be at least 1 second"


def test_a_ttl_of_one_second_is_the_shortest_and_fractions_are_cut():
    token, claims, _ = tokens.mint(**{**GOOD, "ttl": 1, "now": 1000.7})
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (1000, 1000, 1001)
    assert tokens.mint(**{**GOOD, "ttl": 1.9, "now": 1000})[1]["exp"] == 1001


def test_mint_without_now_uses_the_clock():
    before = int(time.time())
    token, claims, kid = tokens.mint(**GOOD)
    assert before <= claims["iat"] <= int(time.time()) and claims["exp"] == claims["iat"] + 60
    assert tokens.verify(token).valid


def test_a_minted_token_is_compact_json_signed_as_it_is_written():
    token, claims, kid = tokens.mint(**{**GOOD, "now": 1000})
    head, body, sig = token.split(".")
    assert _unb64(head) == b'{"alg":"EdDSA","typ":"JWT","kid":"%s"}' % kid.encode()
    assert _unb64(body) == json.dumps(claims, separators=(",", ":")).encode()
    assert b" " not in _unb64(body) and claims["sub"] == "agent:claude"
    keys.public_key(kid).verify(_unb64(sig), f"{head}.{body}".encode())


def test_a_token_given_as_bytes_or_bytearray_is_read_as_ascii():
    token = tokens.mint(**GOOD)[0]
    assert tokens.verify(token.encode()).valid and tokens.verify(bytearray(token.encode())).valid
    assert tokens.verify(token.encode() + b"\x80").detail == "token is not ASCII"
    assert tokens.verify("é" + token).detail == "token header is not canonical unpadded base64url"


def test_a_payload_that_is_not_utf8_is_not_a_json_object():
    kid, private = keys.current_key()
    signing_input = _b64(b'{"alg":"EdDSA","kid":"%s"}' % kid.encode()) + "." + _b64(b'{"iss":"\xff"}')
    token = signing_input + "." + _b64(private.sign(signing_input.encode()))
    verdict = tokens.verify(token)
    assert (verdict.reason, verdict.detail, verdict.kid) == ("malformed", "token payload is not a JSON object", kid)


def _unknown_kid_detail(kid: str) -> str:
    head = _b64(json.dumps({"alg": "EdDSA", "kid": kid}).encode())
    return tokens.verify(f"{head}.{_b64(b'{}')}.{_b64(b'x' * 64)}").detail


def test_an_unknown_kid_is_shown_whole_up_to_80_printable_characters():
    assert _unknown_kid_detail("k" * 80) == f"token is signed with key {'k' * 80}, which this agentsess does not know"
    assert _unknown_kid_detail("k" * 81) == f"token is signed with key {'k' * 80!r}, which this agentsess does not know"
    assert _unknown_kid_detail("k\x1b[2J") == f"token is signed with key {'k' + chr(27) + '[2J'!r}, which this agentsess does not know"


def test_a_run_id_is_shown_cut_and_escaped_in_a_refusal():
    long_sid = "r" * 81
    verdict = tokens.verify(tokens.mint(**{**GOOD, "sid": long_sid, "now": 1000})[0], now=2000)
    assert verdict.detail == f"token of run {long_sid[:80]!r} expired 940 s ago"
    verdict = tokens.verify(tokens.mint(**{**GOOD, "sid": "run\x07", "now": 1000})[0], now=2000)
    assert verdict.detail == "token of run 'run\\x07' expired 940 s ago"


def test_a_verdict_as_json():
    token, claims, kid = tokens.mint(**GOOD)
    assert tokens.verify(token).as_dict() == {
        "valid": True, "reason": None, "detail": "valid token of run run_1 (agent claude)", "kid": kid, "claims": claims,
    }
    assert tokens.verify("").as_dict() == {
        "valid": False, "reason": "malformed", "detail": "token is empty", "kid": None, "claims": None,
    }
