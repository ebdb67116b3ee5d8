"""SHA-256 of small inputs (receipts, token digests, argument hashes) on the hot paths.

``hashlib`` loads OpenSSL, 2.3 ms of every hook and check; CPython's own SHA-256 module
costs 0.2 ms and is as good for a few KiB. The output log, where speed per byte matters,
keeps ``hashlib``.
"""

try:
    from _sha256 import sha256  # type: ignore[import-not-found]  # CPython 3.11
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # CPython 3.12+
    except ImportError:
        from hashlib import sha256


def sha256_hex(data: bytes) -> str:
    return sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    """SHA-256 hex of ``text`` as UTF-8: what the store keeps of a token, and receipts of a
    command or of a call's arguments. Lone surrogates hash as the bytes they stand for (an
    argv byte that is not UTF-8), else as themselves: every string has a digest."""
    try:
        data = text.encode()
    except UnicodeEncodeError:
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "surrogatepass")
    return sha256_hex(data)
