"""agentsess tokens and signing keys.

The narrow mint/verify path is checked against PyJWT in both directions: PyJWT verifies what
mint() makes using only the exported JWKS, our verify() accepts what PyJWT makes with our key,
and both reject the same forgeries (where PyJWT has an opinion).
"""

import json
import os
import stat
import subprocess
import sys
import textwrap

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentsess.core.credentials import tokens
from agentsess.edges import keychain, keys, paths
from agentsess.errors import USAGE, AgentsessError

NOW = 1_900_000_000


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    root = tmp_path / "home"
    monkeypatch.setenv("AGENTSESS_HOME", str(root))
    monkeypatch.setenv("AGENTSESS_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("AGENTSESS_KEYRING", "file")
    return root


def mint(**overrides):
    args = dict(
        agent="claude",
        obo="alice@laptop",
        sid="run_01jabcdefghjkmnpqrstvwxyz0",
        scope="fs:write github:pr:*",
        chain=[],
        ttl=600,
        now=NOW,
    )
    args.update(overrides)
    return tokens.mint(**args)


def b64(data) -> str:
    if not isinstance(data, bytes):
        data = json.dumps(data, separators=(",", ":")).encode()
    return keys.b64url_encode(data)


def forge(header: dict, claims: dict, signer=None) -> str:
    """A token with any header and claims, signed by ``signer`` (default: our current key)."""
    if signer is None:
        signer = keys.current_key()[1]
    signing_input = b64(header) + "." + b64(claims)
    return signing_input + "." + b64(signer.sign(signing_input.encode()))


def pyjwk(kid: str):
    entry = next(k for k in keys.jwks()["keys"] if k["kid"] == kid)
    return jwt.PyJWK(entry)


def pyjwt_decode(token: str, kid: str, now=NOW):
    """Plain PyJWT verification against the exported JWKS; nothing of agentsess's."""
    # PyJWT reads the clock itself; give it an explicit leeway-free "now" by patching time.
    import jwt.api_jwt

    real = jwt.api_jwt.datetime

    class Clock(real):
        @classmethod
        def now(cls, tz=None):
            return real.fromtimestamp(now, tz)

    jwt.api_jwt.datetime = Clock
    try:
        return jwt.decode(token, key=pyjwk(kid), algorithms=["EdDSA"], issuer="agentsess")
    finally:
        jwt.api_jwt.datetime = real


def check(token, **kw):
    kw.setdefault("now", NOW)
    verdict = tokens.verify(token, **kw)
    if isinstance(token, str) and token:
        assert token not in verdict.detail
        assert token.split(".")[-1] not in verdict.detail or not token.split(".")[-1]
    assert "\n" not in verdict.detail
    return verdict


# -- minting ------------------------------------------------------------------------------


def test_mint_claims_and_header():
    token, claims, kid = mint(chain=["run_root", "run_parent"], scope=["fs:write", "net:*"])
    assert claims == {
        "iss": "agentsess",
        "sub": "agent:claude",
        "agent": "claude",
        "obo": "alice@laptop",
        "sid": "run_01jabcdefghjkmnpqrstvwxyz0",
        "jti": claims["jti"],
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 600,
        "scope": "fs:write net:*",
        "chain": ["run_root", "run_parent"],
    }
    assert len(keys.b64url_decode(claims["jti"])) == 16
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": "JWT", "kid": kid}
    assert tokens.unverified_claims(token) == claims
    v = check(token)
    assert v.valid and v.reason is None and v.claims == claims and v.kid == kid
    assert bool(v) is True


def test_jti_is_fresh_each_time():
    jtis = {mint()[1]["jti"] for _ in range(20)}
    assert len(jtis) == 20


@pytest.mark.parametrize(
    "bad",
    [dict(agent=""), dict(obo=None), dict(sid=""), dict(ttl=0), dict(ttl=True), dict(ttl="60"),
     dict(chain=[""]), dict(scope="Not A Scope")],
)
def test_mint_refuses_bad_input(bad):
    with pytest.raises(AgentsessError) as info:
        mint(**bad)
    assert info.value.exit_code == USAGE


# -- PyJWT agrees ---------------------------------------------------------------------------


def test_pyjwt_verifies_our_tokens_from_the_jwks_alone():
    token, claims, kid = mint(chain=["run_a"])
    jwks = keys.jwks()
    assert jwks == {
        "keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": jwks["keys"][0]["x"], "kid": kid,
             "use": "sig", "alg": "EdDSA"}
        ]
    }
    # Through a JSON round trip, as a verifier elsewhere would get it.
    key = jwt.PyJWKSet.from_json(json.dumps(jwks))[kid]
    assert pyjwt_decode(token, kid) == claims
    assert jwt.decode(
        token, key=key, algorithms=["EdDSA"], options={"verify_exp": False, "verify_iat": False,
                                                       "verify_nbf": False}
    ) == claims


def test_we_verify_pyjwt_tokens_made_with_our_key():
    kid, private = keys.current_key()
    _, claims, _ = mint()
    token = jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": kid})
    v = check(token)
    assert v.valid, v.detail
    assert v.claims == claims

    # PyJWT without typ, and the "Ed25519" alias some libraries write.
    bare = forge({"alg": "EdDSA", "kid": kid}, claims)
    assert check(bare).valid
    assert check(forge({"alg": "Ed25519", "typ": "JWT", "kid": kid}, claims)).valid


@given(
    agent=st.from_regex(r"[a-z][a-z0-9_-]{0,20}", fullmatch=True),
    user=st.text(min_size=1, max_size=30),
    scopes=st.lists(st.from_regex(r"[a-z]{1,5}(:[a-z]{1,5}){0,2}(:\*)?", fullmatch=True),
                    max_size=5),
    chain=st.lists(st.from_regex(r"run_[0-9a-z]{5}", fullmatch=True), max_size=3),
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_round_trip_with_pyjwt(agent, user, scopes, chain):
    token, claims, kid = mint(agent=agent, obo=user + "@host", scope=scopes, chain=chain)
    assert check(token).claims == claims
    assert pyjwt_decode(token, kid) == claims


# -- rejections, by both ------------------------------------------------------------------------


def rejected_by_pyjwt(token, kid, exc=jwt.InvalidTokenError):
    with pytest.raises(exc):
        pyjwt_decode(token, kid)


def test_tampered_payload():
    token, claims, kid = mint(scope="fs:read")
    h, _, s = token.split(".")
    forged = h + "." + b64(dict(claims, scope="*")) + "." + s
    v = check(forged)
    assert (v.valid, v.reason, v.claims) == (False, "bad signature", None)
    rejected_by_pyjwt(forged, kid, jwt.InvalidSignatureError)


def test_tampered_header():
    token, _, kid = mint()
    _, p, s = token.split(".")
    forged = b64({"alg": "EdDSA", "kid": kid}) + "." + p + "." + s  # typ dropped
    assert check(forged).reason == "bad signature"
    rejected_by_pyjwt(forged, kid, jwt.InvalidSignatureError)


def test_wrong_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    _, claims, kid = mint()
    intruder = Ed25519PrivateKey.generate()
    forged = forge({"alg": "EdDSA", "typ": "JWT", "kid": kid}, claims, signer=intruder)
    assert check(forged).reason == "bad signature"
    rejected_by_pyjwt(forged, kid, jwt.InvalidSignatureError)


def test_expired():
    token, _, kid = mint(now=NOW - 1000, ttl=60)
    v = check(token)
    assert (v.valid, v.reason) == (False, "expired")
    assert v.claims["sid"] == "run_01jabcdefghjkmnpqrstvwxyz0"  # signature was good
    assert "expired 940 s ago" in v.detail
    rejected_by_pyjwt(token, kid, jwt.ExpiredSignatureError)
    # The boundary: valid until the second before exp; leeway extends it.
    token, claims, _ = mint(ttl=60)
    assert check(token, now=NOW + 59).valid
    assert check(token, now=NOW + 60).reason == "expired"
    assert check(token, now=NOW + 65, leeway=10).valid


def test_not_yet_valid():
    token, _, kid = mint(now=NOW + 300)
    v = check(token)
    assert (v.valid, v.reason) == (False, "not yet valid")
    rejected_by_pyjwt(token, kid, jwt.ImmatureSignatureError)
    assert check(token, leeway=300).valid


def test_alg_none():
    _, claims, kid = mint()
    for alg in ("none", "None", "NONE"):
        unsigned = b64({"alg": alg, "typ": "JWT"}) + "." + b64(claims) + "."
        assert check(unsigned).reason == "unsupported algorithm"
        rejected_by_pyjwt(unsigned, kid, jwt.InvalidAlgorithmError)
        with_kid = b64({"alg": alg, "typ": "JWT", "kid": kid}) + "." + b64(claims) + "."
        assert check(with_kid).reason == "unsupported algorithm"


def test_hs256_with_the_public_key_as_hmac_secret():
    _, claims, kid = mint()
    public = keys.public_key(kid).public_bytes_raw()
    x = keys.jwks()["keys"][0]["x"]
    for secret in (public, x.encode()):
        token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
        v = check(token)
        assert (v.valid, v.reason) == (False, "unsupported algorithm")
        rejected_by_pyjwt(token, kid, jwt.InvalidAlgorithmError)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "HS512", "EdDSA ", "eddsa", "ED25519"])
def test_other_algorithms(alg):
    _, claims, kid = mint()
    token = forge({"alg": alg, "typ": "JWT", "kid": kid}, claims)  # a genuine Ed25519 signature
    assert check(token).reason == "unsupported algorithm"
    rejected_by_pyjwt(token, kid, jwt.InvalidAlgorithmError)


def test_crit_and_unknown_header_members():
    _, claims, kid = mint()
    crit = forge({"alg": "EdDSA", "typ": "JWT", "kid": kid, "crit": ["exp"], "exp": 1}, claims)
    assert check(crit).reason == "malformed"
    rejected_by_pyjwt(crit, kid)
    for extra in ({"jku": "https://evil.example/jwks"}, {"jwk": {"kty": "OKP"}}, {"b64": False}):
        header = dict({"alg": "EdDSA", "kid": kid}, **extra)
        assert check(forge(header, claims)).reason == "malformed"
    header = {"alg": "EdDSA", "typ": "JOSE+JSON", "kid": kid}
    assert check(forge(header, claims)).reason == "malformed"
    assert check(forge({"alg": "EdDSA", "typ": "JWT"}, claims)).reason == "malformed"  # no kid
    assert check(forge({"alg": "EdDSA", "kid": 7}, claims)).reason == "malformed"


@pytest.mark.parametrize("shape", ["one", "two", "four", "five", "empty payload", "empty sig"])
def test_wrong_number_of_parts(shape):
    token, _, kid = mint()
    h, p, s = token.split(".")
    forged = {
        "one": h,
        "two": h + "." + p,
        "four": token + "." + s,
        "five": h + ".." + p + "." + s + "." + s,
        "empty payload": h + ".." + s,
        "empty sig": h + "." + p + ".",
    }[shape]
    assert check(forged).reason == "malformed"
    rejected_by_pyjwt(forged, kid)


def test_non_canonical_base64():
    token, _, kid = mint()
    h, p, s = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # Same bytes, different text: nonzero bits past the end of a 64-byte signature.
    odd_tail = alphabet[alphabet.index(s[-1]) ^ 1]
    assert keys.b64url_encode(keys.b64url_decode(s)) == s
    variants = {
        "trailing bits": h + "." + p + "." + s[:-1] + odd_tail,
        "padding": token + "==",
        "inner padding": h + "=." + p + "." + s,
        "standard alphabet": token.replace("-", "+").replace("_", "/"),
        "whitespace": token + "\n",
        "space inside": h + ". " + p + "." + s,
    }
    for name, forged in variants.items():
        if forged == token:
            continue
        assert check(forged).reason == "malformed", name
    rejected_by_pyjwt(variants["trailing bits"], kid)  # PyJWT agrees here; it accepts "==" padding


def test_non_json_and_duplicate_claims():
    _, claims, kid = mint()
    private = keys.current_key()[1]
    header = b64({"alg": "EdDSA", "typ": "JWT", "kid": kid})
    for payload in (b"not json", b"[1,2]", b'"text"', b"\xff\xfe",
                    b'{"sid":"a","sid":"b"}'):
        signing_input = header + "." + b64(payload)
        token = signing_input + "." + b64(private.sign(signing_input.encode()))
        assert check(token).reason == "malformed", payload
    dup_header = b64(b'{"alg":"EdDSA","kid":"x","kid":"' + kid.encode() + b'"}')
    signing_input = dup_header + "." + b64(claims)
    token = signing_input + "." + b64(private.sign(signing_input.encode()))
    assert check(token).reason == "malformed"


@pytest.mark.parametrize(
    "change",
    [
        {"exp": NOW + 600.5},
        {"exp": str(NOW + 600)},
        {"exp": True},
        {"iat": None},
        {"nbf": [NOW]},
        {"scope": ["fs:write"]},
        {"chain": "run_a"},
        {"chain": [1]},
        {"sid": 5},
        {"iss": "someone-else"},
        {"sub": "agent:other"},
        {"obo": None},
    ],
)
def test_claim_types_are_strict(change):
    _, claims, kid = mint()
    token = forge({"alg": "EdDSA", "typ": "JWT", "kid": kid}, dict(claims, **change))
    v = check(token)
    assert (v.valid, v.reason) == (False, "malformed")


@pytest.mark.parametrize("claim", ["iss", "sub", "agent", "obo", "sid", "jti", "iat", "nbf", "exp",
                                   "scope", "chain"])
def test_every_claim_is_required(claim):
    _, claims, kid = mint()
    del claims[claim]
    assert check(forge({"alg": "EdDSA", "kid": kid}, claims)).reason == "malformed"


def test_unknown_claims_are_ignored():
    _, claims, kid = mint()
    token = forge({"alg": "EdDSA", "kid": kid}, dict(claims, profile="ci"))
    assert check(token).valid


def test_not_a_token():
    for junk in (None, 42, "", b"\xff.\xfe.\xfd", "a" * 20000, "...", "a.b.c"):
        v = tokens.verify(junk, now=NOW)
        assert (v.valid, v.reason, v.claims) == (False, "malformed", None)


# -- revocation and scopes ---------------------------------------------------------------------


def test_revocation_of_the_run_and_of_an_ancestor():
    token, claims, _ = mint(chain=["run_root", "run_mid"])
    asked = []

    def nothing_revoked(ids):
        asked.append(list(ids))
        return None

    assert check(token, is_revoked=nothing_revoked).valid
    assert asked == [[claims["sid"], "run_root", "run_mid"]]

    v = check(token, is_revoked=lambda ids: (claims["sid"], "stopped by alice"))
    assert (v.valid, v.reason) == (False, "revoked run")
    assert "stopped by alice" in v.detail and v.claims == claims

    v = check(token, is_revoked=lambda ids: ("run_root", None))
    assert (v.valid, v.reason) == (False, "revoked ancestor")
    assert "run_root" in v.detail

    # Details stay one line whatever the store or the claims hold (check() asserts it).
    odd, _, _ = mint(sid="run_odd\nline", agent="a\tb")
    assert check(odd).valid
    assert check(odd, is_revoked=lambda ids: (ids[0], "why\nnot")).reason == "revoked run"


def test_required_scopes():
    token, _, _ = mint(scope="fs:write github:pr:*")
    assert check(token, required_scopes=["fs:write"]).valid
    assert check(token, required_scopes="github:pr:create github:pr:comment:edit").valid
    v = check(token, required_scopes=["github:pr", "fs:write", "net:http"])
    assert (v.valid, v.reason) == (False, "missing scope")
    assert "github:pr net:http" in v.detail
    nothing, _, _ = mint(scope="")
    assert check(nothing, required_scopes=["fs:read"]).reason == "missing scope"
    assert check(nothing).valid
    with pytest.raises(AgentsessError):
        check(token, required_scopes=["Bad Scope"])


def test_order_expiry_before_revocation_before_scope():
    token, _, _ = mint(ttl=60)
    revoked = lambda ids: (ids[0], "x")  # noqa: E731
    assert check(token, now=NOW + 100, is_revoked=revoked).reason == "expired"
    assert check(token, is_revoked=revoked, required_scopes=["net"]).reason == "revoked run"


# -- keys ---------------------------------------------------------------------------------------


def test_keys_on_disk(home):
    kid, private = keys.current_key()
    seed = keys.b64url_encode(private.private_bytes_raw())
    assert stat.S_IMODE(os.stat(paths.keys_dir()).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(keys.jwks_file()).st_mode) == 0o600
    text = open(keys.jwks_file()).read()
    assert seed not in text and '"d"' not in text
    doc = json.loads(text)
    assert doc["current"] == kid
    assert doc["keys"][0]["created_at"].endswith("Z")
    assert keychain.get(keychain.SIGNING_KEY_PREFIX + kid) == seed
    assert (keychain.SIGNING_KEY_PREFIX + kid) in [n for n, _ in keychain.names()]
    # kid = first 16 chars of base64url SHA-256 of the raw public key
    import hashlib

    raw = private.public_key().public_bytes_raw()
    assert kid == keys.b64url_encode(hashlib.sha256(raw).digest())[:16]
    assert keys.current_key()[0] == kid  # stable
    assert keys.current_kid() == kid


def test_no_key_until_needed(home):
    assert keys.current_kid() is None
    assert keys.public_keys() == {} and keys.jwks() == {"keys": []}
    assert not os.path.exists(keys.jwks_file())


def test_rotation_keeps_old_tokens_verifiable():
    old_token, old_claims, old_kid = mint()
    new_kid = keys.rotate()
    assert new_kid != old_kid and keys.current_kid() == new_kid
    new_token, new_claims, kid = mint()
    assert kid == new_kid
    assert check(old_token).valid and check(new_token).valid
    assert pyjwt_decode(old_token, old_kid) == old_claims
    assert pyjwt_decode(new_token, new_kid) == new_claims
    assert [k["kid"] for k in keys.jwks()["keys"]] == [old_kid, new_kid]
    assert [k["current"] for k in keys.key_list()] == [False, True]

    assert keys.prune([]) == [old_kid]
    assert keychain.get(keychain.SIGNING_KEY_PREFIX + old_kid) is None
    v = check(old_token)
    assert (v.valid, v.reason) == (False, "unknown key")
    assert check(new_token).valid
    assert keys.prune([]) == []  # the current key is never pruned


def test_unknown_kid():
    _, claims, _ = mint()
    token = forge({"alg": "EdDSA", "typ": "JWT", "kid": "nosuchkid0000000"}, claims)
    v = check(token)
    assert (v.valid, v.reason) == (False, "unknown key")
    assert "nosuchkid0000000" in v.detail


def test_sign_and_verify_signature():
    kid, sig = keys.sign(b"receipt chain head")
    assert len(sig) == 64
    assert keys.verify_signature(kid, b"receipt chain head", sig)
    assert not keys.verify_signature(kid, b"receipt chain head!", sig)
    assert not keys.verify_signature(kid, b"receipt chain head", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not keys.verify_signature(kid, b"receipt chain head", sig[:32])
    assert not keys.verify_signature("unknown", b"receipt chain head", sig)
    new = keys.rotate()
    assert keys.verify_signature(kid, b"receipt chain head", sig)  # old key still verifies
    assert keys.sign(b"x")[0] == new


def test_fast_binding_path_matches_the_public_api():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    fast = keys._ed25519()
    public = keys._ed25519(public_api=True)
    private = fast[0]()
    assert isinstance(private, Ed25519PrivateKey)
    seed = private.private_bytes_raw()
    again = public[1](seed)
    assert type(again) is type(fast[1](seed))
    raw = private.public_key().public_bytes_raw()
    assert isinstance(fast[2](raw), Ed25519PublicKey)
    assert fast[2](raw) == public[2](raw)
    public[2](raw).verify(private.sign(b"m"), b"m")


def test_missing_private_half_makes_a_new_key(capsys):
    token, _, kid = mint()
    keychain.delete(keychain.SIGNING_KEY_PREFIX + kid)
    capsys.readouterr()
    new_token, _, new_kid = mint()
    assert new_kid != kid
    assert "not in the keychain" in capsys.readouterr().err
    assert check(token).valid and check(new_token).valid


def test_damaged_private_half_is_a_state_error():
    _, _, kid = mint()
    keychain.set(keychain.SIGNING_KEY_PREFIX + kid, keys.b64url_encode(b"\x01" * 32))
    with pytest.raises(AgentsessError) as info:
        mint()
    assert "agentsess key rotate" in info.value.message


def test_concurrent_first_use_agrees_on_one_key(home):
    code = "from agentsess.edges import keys; print(keys.current_key()[0])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(5)
    ]
    kids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(kids) == 1
    assert [k["kid"] for k in keys.jwks()["keys"]] == list(kids)


def test_mint_does_not_import_pyjwt_or_keyring(home):
    code = textwrap.dedent(
        """
        import sys
        from agentsess.core.credentials import tokens
        token, _, _ = tokens.mint(agent="a", obo="u@h", sid="run_x", scope="fs:read", ttl=60)
        assert tokens.verify(token).valid
        print(sorted(m for m in ("jwt", "keyring", "dataclasses", "typer", "rich")
                     if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- mutations never verify --------------------------------------------------------------------


def test_random_mutations_never_verify():
    token, _, _ = mint()
    original = token.encode()
    assert check(token).valid

    @settings(max_examples=400, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.data())
    def mutate(data):
        raw = bytearray(original)
        for _ in range(data.draw(st.integers(1, 3), label="edits")):
            kind = data.draw(st.sampled_from(["replace", "insert", "delete", "flip"]))
            i = data.draw(st.integers(0, len(raw) - 1 if kind != "insert" else len(raw)))
            if kind == "replace":
                raw[i] = data.draw(st.integers(0, 255))
            elif kind == "insert":
                raw.insert(i, data.draw(st.integers(0, 255)))
            elif kind == "delete" and len(raw) > 1:
                del raw[i]
            elif kind == "flip":
                raw[i] ^= 1 << data.draw(st.integers(0, 7))
        mutated = bytes(raw)
        if mutated == original:
            return
        v = tokens.verify(mutated, now=NOW)
        assert not v.valid, mutated
        assert v.reason in tokens.REASONS

    mutate()
