"""Ed25519 signing keys: agentsess tokens and receipt seals are signed with these.

The key store is the keychain (:mod:`agentsess.edges.keychain`), and only the keychain:

- each key's private half (the 32-byte seed, base64url) is the entry ``signing-key:<kid>``;
- the entry ``signing-keys:<data root id>`` lists this data root's keys (kid, created_at) and
  names the current one (an OS keyring is per user, not per data root, so each data root
  keeps its own list there).

A key is trusted for verification only if its private half is in the keychain: its public
half is derived from that seed, and its kid must be the one derived from that public half.
``keys/jwks.json`` in the data root is an *export* of the public halves (written whenever the
key set changes, for verifiers on other machines); agentsess never takes a key from it, so a
key appended to it verifies nothing. (A data root made before the key list moved into the
keychain has its kids adopted once from that file, each only if its private half is in the
keychain and matches.)

Rotation makes a new current key and keeps the old ones, so tokens and seals made with them
still verify; :func:`prune` forgets old keys (private half included).

``kid`` = the first 16 characters of the base64url SHA-256 of the raw public key.

``cryptography`` is imported inside the functions that need it, and through its compiled
binding where that offers the Ed25519 functions (see :func:`_ed25519`).
"""

import json
import os
import sys
import time

from agentsess.edges import keychain, paths
from agentsess.encoding import b64url_decode, b64url_encode, canonical_text
from agentsess.errors import STATE, AgentsessError
from agentsess.timefmt import rfc3339

KID_LENGTH = 16
KEY_LIST_PREFIX = "signing-keys:"
_KID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

# (data root, AGENTSESS_KEYRING, kid) -> public key object, for keys read from the keychain
_public_cache: dict = {}
_ed25519_functions = None
# (data root, AGENTSESS_KEYRING) -> (kid, private key) of the current key, once read and checked
_current_cache: dict = {}


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
    """The exported JWK Set (public halves only); written by agentsess, never read for trust."""
    return paths.jwks_file()


def _lock():
    return keychain._Lock(paths.jwks_lock())


def _kid_for(public_raw: bytes) -> str:
    import hashlib

    return b64url_encode(hashlib.sha256(public_raw).digest())[:KID_LENGTH]


def _is_kid(kid) -> bool:
    return isinstance(kid, str) and len(kid) == KID_LENGTH and _KID_CHARS.issuperset(kid)


def key_list_entry() -> str:
    """The keychain entry holding this data root's key list."""
    import hashlib

    root = os.path.realpath(paths.data_root())
    return KEY_LIST_PREFIX + b64url_encode(hashlib.sha256(root.encode()).digest())[:16]


def _damaged_list() -> AgentsessError:
    return AgentsessError(
        f"the signing-key list ({key_list_entry()!r} in the keychain) is damaged; run "
        "`agentsess key rotate` to start a new list (tokens and seals signed with earlier keys "
        "will no longer verify)",
        STATE,
    )


def _load() -> dict:
    """The key list from the keychain: ``{"current": kid or None, "keys": [{kid, created_at}]}``."""
    value = keychain.get(key_list_entry())
    if value is None:
        return {"current": None, "keys": [], "stored": False}
    try:
        doc = json.loads(value)
    except ValueError:
        raise _damaged_list() from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) and _is_kid(k.get("kid")) for k in keys):
        raise _damaged_list()
    current = doc.get("current")
    return {"current": current if _is_kid(current) else None, "keys": keys, "stored": True}


def _save(doc: dict) -> None:
    """Store the key list in the keychain, then export the public halves to jwks.json."""
    listed = {"current": doc["current"], "keys": [
        {"kid": k["kid"], "created_at": k.get("created_at")} for k in doc["keys"]
    ]}
    keychain.set(key_list_entry(), canonical_text(listed))
    doc["stored"] = True
    _export(doc)


def _export(doc: dict) -> None:
    entries = []
    for k in doc["keys"]:
        public = public_key(k["kid"])
        if public is not None:
            entries.append(_entry(k["kid"], b64url_encode(public.public_bytes_raw()), k.get("created_at")))
    paths.ensure_dir(paths.data_root())
    keychain._write_json(jwks_file(), {"current": doc["current"], "keys": entries}, "key file")


def _entry(kid: str, x: str, created_at) -> dict:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x,
        "kid": kid,
        "use": "sig",
        "alg": "EdDSA",
        "created_at": created_at,
    }


def _private_from_seed(value):
    """The private key object of a base64url seed, or None if it is not one."""
    try:
        return _ed25519()[1](b64url_decode(value))
    except (ValueError, TypeError):
        return None


def _adopt_exported(doc: dict) -> dict:
    """For a data root from before the key list lived in the keychain: take its kids from
    jwks.json, each only if its private half is in the keychain and matches. Caller holds the lock."""
    try:
        old = keychain._read_json(jwks_file(), "key file")
    except AgentsessError:
        old = None
    if not old or not isinstance(old.get("keys"), list):
        return doc
    for k in old["keys"]:
        kid = k.get("kid") if isinstance(k, dict) else None
        if not isinstance(kid, str) or not _is_kid(kid):
            continue
        if public_key(kid) is not None and all(e["kid"] != kid for e in doc["keys"]):
            created = k.get("created_at")
            doc["keys"].append({"kid": kid, "created_at": created if isinstance(created, str) else None})
    current = old.get("current")
    if any(e["kid"] == current for e in doc["keys"]):
        doc["current"] = current
    if doc["keys"]:
        _save(doc)
    return doc


def _generate(doc: dict):
    """Make a new key, store its halves, mark it current; caller holds the lock."""
    private = _ed25519()[0]()
    public_raw = private.public_key().public_bytes_raw()
    kid = _kid_for(public_raw)
    # Private half first: a listed key without its private half would be a dead current key.
    keychain.set(keychain.SIGNING_KEY_PREFIX + kid, b64url_encode(private.private_bytes_raw()))
    created = rfc3339(time.time())
    doc["keys"] = [k for k in doc["keys"] if k.get("kid") != kid]
    doc["keys"].append({"kid": kid, "created_at": created})
    doc["current"] = kid
    _save(doc)
    return kid, private


def _private(kid: str):
    """The private key object for ``kid`` from the keychain, or None if it is not there."""
    value = keychain.get(keychain.SIGNING_KEY_PREFIX + kid)
    if value is None:
        return None
    private = _private_from_seed(value)
    if private is None or _kid_for(private.public_key().public_bytes_raw()) != kid:
        raise AgentsessError(
            f"the private half of signing key {kid} in the keychain is damaged or is not that "
            "key; run `agentsess key rotate` to make a new key",
            STATE,
        )
    return private


def current_key():
    """``(kid, Ed25519PrivateKey)`` of the current signing key, generating one if none.

    The key list is read every time (a rotation in between is seen); the private half of a
    kid this process already read and checked is not read and derived again (a run signs its
    token at the start and its seal at the end)."""
    doc = _load()
    kid = doc["current"]
    where = (paths.data_root(), os.environ.get("AGENTSESS_KEYRING", ""))
    if kid:
        known = _current_cache.get(where)
        if known is not None and known[0] == kid:
            return known
        private = _private(kid)
        if private is not None:
            _current_cache[where] = (kid, private)
            return kid, private
    with _lock():
        doc = _load()  # another process may have made one meanwhile
        if not doc["stored"]:
            doc = _adopt_exported(doc)
        kid = doc["current"]
        if kid:
            private = _private(kid)
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
    """Make a new current signing key; old keys stay for verification. Returns its kid."""
    with _lock():
        doc = _load()
        if not doc["stored"]:
            doc = _adopt_exported(doc)
        kid, _ = _generate(doc)
    return kid


def current_kid():
    """The current kid, or None if no key has been made yet (never generates one)."""
    doc = _load()
    if not doc["stored"] and os.path.exists(jwks_file()):
        with _lock():
            doc = _load()
            if not doc["stored"]:
                doc = _adopt_exported(doc)
    return doc["current"]


def public_key(kid: str):
    """The public key object for ``kid`` if its private half is in the keychain, else None.

    This is the only source of trusted keys: a kid that is not agentsess's own key shape, or
    whose seed the keychain does not hold, verifies nothing.
    """
    if not _is_kid(kid):
        return None
    where = (paths.data_root(), os.environ.get("AGENTSESS_KEYRING", ""), kid)
    public = _public_cache.get(where)
    if public is not None:
        return public
    private = _private_from_seed(keychain.get(keychain.SIGNING_KEY_PREFIX + kid))
    if private is None:
        return None
    public = private.public_key()
    if _kid_for(public.public_bytes_raw()) != kid:
        return None  # a seed filed under another key's name is not that key
    _public_cache[where] = public
    return public


def public_keys() -> dict:
    """``{kid: Ed25519PublicKey}`` of every key in the key store (current and retired)."""
    out = {}
    for k in _load()["keys"]:
        public = public_key(k["kid"])
        if public is not None:
            out[k["kid"]] = public
    return out


def jwks() -> dict:
    """The key store's public keys as an RFC 7517 JWK Set, oldest first."""
    keys = []
    for kid, public in public_keys().items():
        entry = _entry(kid, b64url_encode(public.public_bytes_raw()), None)
        keys.append({m: entry[m] for m in ("kty", "crv", "x", "kid", "use", "alg")})
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
        for kid in removed:
            keychain.delete(keychain.SIGNING_KEY_PREFIX + kid)
            for where in [w for w in _public_cache if w[2] == kid]:
                del _public_cache[where]
            for where in [w for w, known in _current_cache.items() if known[0] == kid]:
                del _current_cache[where]
        _save(doc)
    return removed


def sign(data: bytes):
    """``(kid, 64-byte signature)`` of ``data`` with the current key."""
    kid, private = current_key()
    return kid, private.sign(data)


def verify_signature(kid: str, data: bytes, sig: bytes) -> bool:
    """True if ``sig`` is a valid signature of ``data`` by the key store's key ``kid``."""
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
