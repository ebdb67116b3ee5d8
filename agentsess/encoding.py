"""The two encodings signatures and hashes are computed over: canonical JSON and base64url.

Canonical JSON (receipts, their hashes and seals, argument digests): keys sorted, no
whitespace, UTF-8 kept as is (``ensure_ascii=False``). base64url (tokens, key material,
seal signatures): RFC 4648 §5 without padding, decoded strictly (canonical form only).
"""

import binascii
import json


def canonical_text(value) -> str:
    """``value`` as canonical JSON text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(value) -> bytes:
    """``value`` as canonical JSON, UTF-8 encoded: the bytes receipts are hashed and signed over.

    A string holding a lone surrogate (an argv byte that is not UTF-8, a ``\\udcff`` escape in
    an agent's JSON) cannot be UTF-8: each such code point becomes U+FFFD, so that what is
    hashed is exactly what is written and parses back to the same bytes, and an agent cannot
    make its action unrecordable by spelling it so.
    """
    text = canonical_text(value)
    try:
        return text.encode()
    except UnicodeEncodeError:
        import re

        return re.sub("[\ud800-\udfff]", "\ufffd", text).encode()


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url of ``data``."""
    return binascii.b2a_base64(data, newline=False).decode("ascii").rstrip("=").replace(
        "+", "-"
    ).replace("/", "_")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url strictly (canonical form only); ValueError otherwise."""
    if not isinstance(text, str) or not text.isascii() or len(text) % 4 == 1:
        raise ValueError("not base64url")
    std = text.replace("-", "+").replace("_", "/")
    if "+" in text or "/" in text or "=" in text:
        raise ValueError("not base64url")
    try:
        raw = binascii.a2b_base64(std + "=" * (-len(text) % 4), strict_mode=True)
    except binascii.Error:
        raise ValueError("not base64url") from None
    if b64url_encode(raw) != text:
        raise ValueError("not canonical base64url")
    return raw
