"""Ed25519 signing keys: agentsess tokens and receipt seals are signed with these.

A key is generated on first need. Its public half goes to ``keys/jwks.json`` in the data root
(0600 in a 0700 folder) together with a ``current`` marker and each key's ``created_at``; its
private half (the 32-byte seed, base64url) goes to the keychain as ``signing-key:<kid>``.
Rotation makes a new current key and keeps the old public keys, so tokens and seals made
with them still verify. Verification reads only ``jwks.json``, never the keychain.

``kid`` = the first 16 characters of the base64url SHA-256 of the raw public key.

``cryptography`` is imported inside the functions that need it, and through its compiled
binding where that offers the Ed25519 functions (see :func:`_ed25519`).
"""

import os
import sys
import time

from agentsess.edges import keychain, paths
from agentsess.encoding import b64url_decode, b64url_encode
from agentsess.errors import STATE, AgentsessError
from agentsess.timefmt import rfc3339

KID_LENGTH = 16

# jwks path -> ((mtime_ns, size, ino), {kid: public key object})
_public_cache: dict = {}
_ed25519_functions = None


def _ed25519(public_api: bool = False):
    """``(generate, from_private_bytes, from_public_bytes)`` of cryptography's Ed25519.

    The public module ``cryptography.hazmat.primitives.asymmetric.ed25519`` costs ~12 ms to
    import (it pulls in typing and enum through ``cryptography.utils``), and its classmethods
    only forward to the compiled binding, which costs ~3 ms. ``agentsess run`` mints a token on
    every start, so use the binding's functions when it has them — the key objects are the
    very same types either way — and the public API otherwise (or when ``public_api``).
    """
    global _ed25519_functions
    if public_api:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PrivateKey,
            Ed25519PublicKey,
        )

        return (
            Ed25519PrivateKey.generate,
            Ed25519PrivateKey.from_private_bytes,
            Ed25519PublicKey.from_public_bytes,
        )
    if _ed25519_functions is None:
        try:
            from cryptography.hazmat.bindings._rust import openssl as _binding

            ed = _binding.ed25519
            _ed25519_functions = (ed.generate_key, ed.from_private_bytes, ed.from_public_bytes)
        except (ImportError, AttributeError):
            _ed25519_functions = _ed25519(public_api=True)
    return _ed25519_functions


def is_invalid_signature(exc: BaseException) -> bool:
    """True if ``exc`` is cryptography's InvalidSignature (imported only once one is raised)."""
    from cryptography.exceptions import InvalidSignature

    return isinstance(exc, InvalidSignature)


def jwks_file() -> str:
    return paths.jwks_file()


def _lock():
    return keychain._Lock(paths.jwks_lock())


def _kid_for(public_raw: bytes) -> str:
    import hashlib

    return b64url_encode(hashlib.sha256(public_raw).digest())[:KID_LENGTH]


def _load() -> dict:
    path = jwks_file()
    doc = keychain._read_json(path, "key file")
    if doc is None:
        return {"current": None, "keys": []}
    keys = doc.get("keys")
    if not isinstance(keys, list) or not all(
        isinstance(k, dict) and isinstance(k.get("kid"), str) and isinstance(k.get("x"), str)
        for k in keys
    ):
        raise AgentsessError(
            f"the key file {path} is damaged (bad 'keys' list); move it aside to start afresh "
            "(tokens and seals signed with its keys will no longer verify)",
            STATE,
        )
    return {"current": doc.get("current"), "keys": keys}


def _save(doc: dict) -> None:
    paths.ensure_dir(paths.data_root())
    keychain._write_json(jwks_file(), doc, "key file")


def _entry(kid: str, x: str, created_at: str) -> dict:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x,
        "kid": kid,
        "use": "sig",
        "alg": "EdDSA",
        "created_at": created_at,
    }


def _generate(doc: dict):
    """Make a new key, store its halves, mark it current; caller holds the lock."""
    private = _ed25519()[0]()
    public_raw = private.public_key().public_bytes_raw()
    kid = _kid_for(public_raw)
    # Private half first: a public key without its private half would be a dead current key.
    keychain.set(keychain.SIGNING_KEY_PREFIX + kid, b64url_encode(private.private_bytes_raw()))
    created = rfc3339(time.time())
    doc["keys"] = [k for k in doc["keys"] if k.get("kid") != kid]
    doc["keys"].append(_entry(kid, b64url_encode(public_raw), created))
    doc["current"] = kid
    _save(doc)
    return kid, private


def _private(kid: str, doc: dict):
    """The private key object for ``kid`` from the keychain, or None if it is not there."""
    value = keychain.get(keychain.SIGNING_KEY_PREFIX + kid)
    if value is None:
        return None
    try:
        private = _ed25519()[1](b64url_decode(value))
    except ValueError:
        private = None
    expected = next((k["x"] for k in doc["keys"] if k["kid"] == kid), None)
    if private is None or b64url_encode(private.public_key().public_bytes_raw()) != expected:
        raise AgentsessError(
            f"the private half of signing key {kid} in the keychain is damaged or does not "
            "match keys/jwks.json; run `agentsess key rotate` to make a new key",
            STATE,
        )
    return private


def current_key():
    """``(kid, Ed25519PrivateKey)`` of the current signing key, generating one if none."""
    doc = _load()
    kid = doc["current"]
    if kid:
        private = _private(kid, doc)
        if private is not None:
            return kid, private
    with _lock():
        doc = _load()  # another process may have made one meanwhile
        kid = doc["current"]
        if kid:
            private = _private(kid, doc)
            if private is not None:
                return kid, private
        new_kid, private = _generate(doc)
    if kid:
        try:
            sys.stderr.write(
                f"agentsess: the private half of signing key {kid} is not in the keychain; "
                f"made a new signing key {new_kid}\n"
            )
        except (OSError, ValueError, AttributeError):
            pass
    return new_kid, private


def rotate() -> str:
    """Make a new current signing key; old public keys stay for verification. Returns its kid."""
    with _lock():
        kid, _ = _generate(_load())
    return kid


def current_kid():
    """The current kid, or None if no key has been made yet (never generates one)."""
    return _load()["current"]


def public_keys() -> dict:
    """``{kid: Ed25519PublicKey}`` of every known key (current and retired)."""
    path = jwks_file()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    cached = _public_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return dict(cached[1])
    from_public_bytes = _ed25519()[2]
    out = {}
    for k in _load()["keys"]:
        try:
            out[k["kid"]] = from_public_bytes(b64url_decode(k["x"]))
        except ValueError:
            continue  # a damaged entry verifies nothing
    _public_cache[path] = (stamp, out)
    return dict(out)


def public_key(kid: str):
    """The public key object for ``kid``, or None if unknown."""
    return public_keys().get(kid)


def jwks() -> dict:
    """The public keys as an RFC 7517 JWK Set, oldest first."""
    keys = []
    for k in _load()["keys"]:
        keys.append({m: k[m] for m in ("kty", "crv", "x", "kid", "use", "alg") if m in k})
    return {"keys": keys}


def key_list() -> list:
    """``[{"kid", "created_at", "current"}]`` for display, oldest first."""
    doc = _load()
    return [
        {"kid": k["kid"], "created_at": k.get("created_at"), "current": k["kid"] == doc["current"]}
        for k in doc["keys"]
    ]


def prune(keep_kids) -> list:
    """Forget every key except the current one and ``keep_kids``; returns the removed kids.

    Tokens and seals signed with a removed key no longer verify.
    """
    keep = {str(k) for k in keep_kids}
    with _lock():
        doc = _load()
        if doc["current"]:
            keep.add(doc["current"])
        removed = [k["kid"] for k in doc["keys"] if k["kid"] not in keep]
        if not removed:
            return []
        doc["keys"] = [k for k in doc["keys"] if k["kid"] in keep]
        _save(doc)
    for kid in removed:
        keychain.delete(keychain.SIGNING_KEY_PREFIX + kid)
    return removed


def sign(data: bytes):
    """``(kid, 64-byte signature)`` of ``data`` with the current key."""
    kid, private = current_key()
    return kid, private.sign(data)


def verify_signature(kid: str, data: bytes, sig: bytes) -> bool:
    """True if ``sig`` is a valid signature of ``data`` by the known key ``kid``."""
    public = public_key(kid)
    if public is None or not isinstance(sig, (bytes, bytearray)) or len(sig) != 64:
        return False
    try:
        public.verify(bytes(sig), data)
    except Exception as exc:
        if is_invalid_signature(exc):
            return False
        raise
    return True
