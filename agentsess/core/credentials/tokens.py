"""agentsess tokens: JWTs (RFC 7519) signed with Ed25519 (``alg: EdDSA``, ``kid`` in the header).

Any JWT library verifies them offline against ``agentsess jwks``. This module mints and
verifies them itself on a deliberately narrow path — ``cryptography``'s Ed25519, ``json`` and
base64url, EdDSA only — because ``agentsess run`` mints one on every run and importing PyJWT
alone would cost 65 ms. The tests prove the two agree, in both directions.

Claims::

    iss    "agentsess"
    sub    "agent:<agent>"
    agent  the agent name
    obo    "<user>@<host>", the human on whose behalf the run acts
    sid    the run id
    jti    128 random bits, base64url
    iat, nbf, exp   integers (UNIX seconds)
    scope  space-separated scopes
    chain  ancestor run ids, root first ([] for a top-level run)
    act    (a child run only) the delegation chain as nested RFC 8693 actor claims, the
           nearest first: ``{"sub": "agent:<parent's agent>", "sid": <parent run>, "act":
           {... "act": {"sub": "<user>@<host>"}}}``: this run acting for its parent, acting
           for … the root run, acting for the human

Verification is strict: compact form with exactly three canonical unpadded base64url parts;
a header of exactly ``alg`` (``EdDSA``, or its alias ``Ed25519``), ``kid`` and optionally
``typ: JWT``; a payload with every claim above, of the type above (further claims are
ignored). A verdict's ``detail`` is one
line for humans and never contains the token.
"""

import json
import os
import time

from agentsess.core.credentials import scopes as _scopes
from agentsess.edges import keys as _keys
from agentsess.errors import AgentsessError

ISSUER = "agentsess"
ALGORITHMS = ("EdDSA", "Ed25519")
MAX_TOKEN_LENGTH = 16384

MALFORMED = "malformed"
UNSUPPORTED_ALGORITHM = "unsupported algorithm"
UNKNOWN_KEY = "unknown key"
BAD_SIGNATURE = "bad signature"
EXPIRED = "expired"
NOT_YET_VALID = "not yet valid"
NOT_MINTED = "not minted here"
EXPIRY_BEYOND_RECORD = "expiry beyond record"
REVOKED_RUN = "revoked run"
EXITED_RUN = "exited run"
ABANDONED_RUN = "abandoned run"
DENIED_RUN = "denied run"
REVOKED_ANCESTOR = "revoked ancestor"
ENDED_ANCESTOR = "ended ancestor"
MISSING_SCOPE = "missing scope"
REASONS = (
    MALFORMED,
    UNSUPPORTED_ALGORITHM,
    UNKNOWN_KEY,
    BAD_SIGNATURE,
    EXPIRED,
    NOT_YET_VALID,
    NOT_MINTED,
    EXPIRY_BEYOND_RECORD,
    REVOKED_RUN,
    EXITED_RUN,
    ABANDONED_RUN,
    DENIED_RUN,
    REVOKED_ANCESTOR,
    ENDED_ANCESTOR,
    MISSING_SCOPE,
)

_HEADER_MEMBERS = frozenset(("alg", "typ", "kid"))
_STR_CLAIMS = ("iss", "sub", "agent", "obo", "sid", "jti", "scope")
_INT_CLAIMS = ("iat", "nbf", "exp")
_CLAIMS = frozenset(_STR_CLAIMS + _INT_CLAIMS + ("chain",))


class Verdict:
    """The outcome of :func:`verify`. Truthy when valid.

    ``reason`` is None or one of :data:`REASONS`; ``claims`` is the decoded payload once the
    signature is good (also for expired, revoked and missing-scope tokens), else None.
    """

    __slots__ = ("valid", "reason", "detail", "claims", "kid")

    def __init__(self, valid: bool, reason, detail: str, claims=None, kid=None):
        self.valid = valid
        self.reason = reason
        self.detail = detail
        self.claims = claims
        self.kid = kid

    def __bool__(self) -> bool:
        return self.valid

    def __repr__(self) -> str:
        return f"Verdict(valid={self.valid!r}, reason={self.reason!r}, detail={self.detail!r})"

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "reason": self.reason,
            "detail": self.detail,
            "kid": self.kid,
            "claims": self.claims,
        }


def _fail(reason: str, detail: str, claims=None, kid=None) -> Verdict:
    return Verdict(False, reason, detail, claims, kid)


def _shown(text) -> str:
    """``text`` for a one-line detail: as is if short and printable, else a short repr."""
    text = str(text)
    if len(text) <= 80 and text.isprintable():
        return text
    return repr(text[:80])


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate member")
        out[key] = value
    return out


def _json_object(raw: bytes):
    """The JSON object in ``raw`` (UTF-8, no duplicate members), or None."""
    try:
        doc = json.loads(raw.decode(), object_pairs_hook=_no_duplicates)
    except ValueError:  # also UnicodeDecodeError and duplicate members
        return None
    except RecursionError:
        return None
    return doc if isinstance(doc, dict) else None


def _decode_part(part: str, label: str) -> bytes:
    if not part:
        raise ValueError(f"token {label} is empty")
    try:
        return _keys.b64url_decode(part)
    except ValueError:
        raise ValueError(f"token {label} is not canonical unpadded base64url") from None


def _encode_part(obj) -> str:
    return _keys.b64url_encode(json.dumps(obj, separators=(",", ":")).encode())


# -- minting --------------------------------------------------------------------------


def mint(*, agent: str, obo: str, sid: str, scope, chain=(), ttl, now=None, act=None):
    """Mint a token for run ``sid`` of ``agent`` acting for ``obo``, valid for ``ttl`` seconds.

    ``scope`` is a space-separated string or an iterable of scopes (validated); ``chain`` the
    ancestor run ids, root first; ``act`` the delegation chain of a child run (see above).
    Returns ``(token, claims, kid)``.
    """
    if act is not None and not (isinstance(act, dict) and isinstance(act.get("sub"), str)):
        raise AgentsessError("cannot mint a token: act must be an actor claim with a sub")
    for field, value in (("agent", agent), ("obo", obo), ("sid", sid)):
        if not isinstance(value, str) or not value:
            raise AgentsessError(f"cannot mint a token: {field} must be a non-empty string")
    chain = list(chain)
    if not all(isinstance(c, str) and c for c in chain):
        raise AgentsessError("cannot mint a token: chain must be a list of run ids")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl < 1:
        raise AgentsessError("cannot mint a token: ttl must be at least 1 second")
    granted = _scopes.parse_scopes(scope)
    iat = int(time.time() if now is None else now)
    claims = {
        "iss": ISSUER,
        "sub": "agent:" + agent,
        "agent": agent,
        "obo": obo,
        "sid": sid,
        "jti": _keys.b64url_encode(os.urandom(16)),
        "iat": iat,
        "nbf": iat,
        "exp": iat + int(ttl),
        "scope": " ".join(granted),
        "chain": chain,
    }
    if act is not None:
        claims["act"] = act
    kid, private = _keys.current_key()
    signing_input = _encode_part({"alg": "EdDSA", "typ": "JWT", "kid": kid}) + "." + _encode_part(
        claims
    )
    signature = private.sign(signing_input.encode())  # base64url and dots: ASCII
    return signing_input + "." + _keys.b64url_encode(signature), claims, kid


# -- verifying ------------------------------------------------------------------------


def _check_header(header: dict):
    """None if the header is acceptable, else a failing Verdict."""
    alg = header.get("alg")
    if not isinstance(alg, str):
        return _fail(MALFORMED, "token header has no 'alg'")
    if alg not in ALGORITHMS:
        return _fail(UNSUPPORTED_ALGORITHM, f"token algorithm {alg[:20]!r} is not EdDSA")
    if "crit" in header:
        return _fail(MALFORMED, "token header has a 'crit' member; agentsess accepts none")
    extra = sorted(m for m in header if m not in _HEADER_MEMBERS)
    if extra:
        names = ", ".join(repr(m[:20]) for m in extra[:3])
        return _fail(MALFORMED, f"token header has members agentsess does not accept: {names}")
    if "typ" in header and header["typ"] != "JWT":
        return _fail(MALFORMED, "token header 'typ' is not JWT")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        return _fail(MALFORMED, "token header has no 'kid'")
    return None


def _check_claims(claims: dict):
    """None if the claims have the agentsess shape, else a one-line problem."""
    missing = [c for c in _CLAIMS if c not in claims]
    if missing:
        return f"token lacks claims: {', '.join(sorted(missing))}"
    for name in _STR_CLAIMS:
        if not isinstance(claims[name], str):
            return f"token claim {name!r} is not a string"
    for name in _INT_CLAIMS:
        value = claims[name]
        if type(value) is not int:
            return f"token claim {name!r} is not an integer"
    chain = claims["chain"]
    if not isinstance(chain, list) or not all(isinstance(c, str) and c for c in chain):
        return "token claim 'chain' is not a list of run ids"
    if claims["iss"] != ISSUER:
        return f"token issuer is not {ISSUER!r}"
    if claims["sub"] != "agent:" + claims["agent"]:
        return "token 'sub' does not match its 'agent'"
    if not claims["sid"]:
        return "token claim 'sid' is empty"
    return None


def verify(token, required_scopes=(), is_revoked=None, now=None, leeway=0, registry=None) -> Verdict:
    """Check ``token`` fully: form, algorithm, key, signature, times, registry, revocation, scopes.

    ``registry(claims, token)`` (see :mod:`agentsess.core.credentials.verify`) returns None
    when the store minted exactly this token and its run and every ancestor are live, else
    ``(reason, detail)`` with a reason from :data:`REASONS`.
    ``is_revoked(run_ids)`` gets ``[sid] + chain`` and returns None or ``(run_id, why)``.
    ``required_scopes`` (a string or iterable) must each be covered by the token's scopes;
    an invalid requested scope raises AgentsessError(USAGE).
    """
    # 1. Form: three canonical base64url parts.
    if isinstance(token, (bytes, bytearray)):
        if not token.isascii():
            return _fail(MALFORMED, "token is not ASCII")
        token = bytes(token).decode()
    if not isinstance(token, str):
        return _fail(MALFORMED, "token is not a string")
    if not token:
        return _fail(MALFORMED, "token is empty")
    if len(token) > MAX_TOKEN_LENGTH:
        detail = f"token is {len(token)} characters long (at most {MAX_TOKEN_LENGTH})"
        return _fail(MALFORMED, detail)
    parts = token.split(".")
    if len(parts) != 3:
        return _fail(MALFORMED, f"token has {len(parts)} dot-separated parts, not 3")

    # 2. Header first, so "alg: none" (with its empty signature) is named for what it is.
    try:
        header_raw = _decode_part(parts[0], "header")
    except ValueError as exc:
        return _fail(MALFORMED, str(exc))
    header = _json_object(header_raw)
    if header is None:
        return _fail(MALFORMED, "token header is not a JSON object")
    problem = _check_header(header)
    if problem is not None:
        return problem
    try:
        payload_raw = _decode_part(parts[1], "payload")
        signature = _decode_part(parts[2], "signature")
    except ValueError as exc:
        return _fail(MALFORMED, str(exc))
    kid = header["kid"]
    shown_kid = _shown(kid)

    # 3. Key and signature.
    public = _keys.public_key(kid)
    if public is None:
        detail = f"token is signed with key {shown_kid}, which this agentsess does not know"
        return _fail(UNKNOWN_KEY, detail)
    if len(signature) != 64:
        return _fail(BAD_SIGNATURE, "token signature is not 64 bytes", kid=kid)
    try:
        public.verify(signature, (parts[0] + "." + parts[1]).encode())
    except Exception as exc:
        if not _keys.is_invalid_signature(exc):
            raise
        return _fail(BAD_SIGNATURE, f"token signature does not match key {shown_kid}", kid=kid)

    # 4. Claims (signed by us, but still checked for shape).
    claims = _json_object(payload_raw)
    if claims is None:
        return _fail(MALFORMED, "token payload is not a JSON object", kid=kid)
    problem = _check_claims(claims)
    if problem is not None:
        return _fail(MALFORMED, problem, kid=kid)

    # 5. Times.
    t = int(time.time() if now is None else now)
    leeway = int(leeway)
    sid = _shown(claims["sid"])
    if claims["exp"] <= t - leeway:
        return _fail(EXPIRED, f"token of run {sid} expired {t - claims['exp']} s ago", claims, kid)
    if claims["nbf"] > t + leeway:
        wait = claims["nbf"] - t
        return _fail(NOT_YET_VALID, f"token of run {sid} is not valid for {wait} s", claims, kid)
    if claims["iat"] > t + leeway:
        ahead = claims["iat"] - t
        detail = f"token of run {sid} was issued {ahead} s in the future"
        return _fail(NOT_YET_VALID, detail, claims, kid)

    # 6. The store's record: minted here, no later expiry, its run and ancestors live.
    if registry is not None:
        problem = registry(claims, token)
        if problem:
            reason, detail = problem
            return _fail(reason, detail, claims, kid)

    # 7. Revocation of the run or any ancestor.
    if is_revoked is not None:
        hit = is_revoked([claims["sid"]] + list(claims["chain"]))
        if hit:
            run_id, why = hit
            why = f": {_shown(str(why))}" if why else ""
            if run_id == claims["sid"]:
                return _fail(REVOKED_RUN, f"run {sid} was revoked{why}", claims, kid)
            detail = f"ancestor run {_shown(run_id)} of run {sid} was revoked{why}"
            return _fail(REVOKED_ANCESTOR, detail, claims, kid)

    # 8. Scopes.
    if required_scopes:
        wanted = _scopes.parse_scopes(required_scopes)
        granted = claims["scope"].split()
        missing = [w for w in wanted if not any(_scopes.covers(g, w) for g in granted)]
        if missing:
            has = _shown(claims["scope"]) or "none"
            detail = f"run {sid} lacks scope {' '.join(missing)} (has: {has})"
            return _fail(MISSING_SCOPE, detail, claims, kid)

    detail = f"valid token of run {sid} (agent {_shown(claims['agent'])})"
    return Verdict(True, None, detail, claims, kid)


def unverified_claims(token):
    """The payload of ``token`` WITHOUT any check, or None: for display and diagnostics only."""
    if not isinstance(token, str):
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        return _json_object(_keys.b64url_decode(parts[1]))
    except ValueError:
        return None
