"""Verifying a run's receipt stream: chain, store head, seal, output digest.

Reports the first failure precisely, as `journalctl --verify` does: the record that was
edited, a gap or reorder in seq, a file shorter or longer than the store's head says, a bad
seal, an output log whose digest does not match. A live run's intact stream is reported as
unsealed; a finished run's stream must end in a valid seal, or it fails. A finished run
revoked later gets its ``run.revoked`` receipt and a new seal after the first one; any other
record after a seal fails (a sealed stream accepts nothing else). ``sealed`` means the
stream ends in a valid seal. :func:`verify_all` also walks the run folders, so a folder
whose store row was deleted is reported.
"""

import json
import os

from agentsess.edges import paths, streams

# the only records a sealed stream may hold after its seal (see recording.AFTER_SEAL)
_AFTER_SEAL = ("run.revoked", streams.SEAL)


class Integrity:
    __slots__ = (
        "run_id", "ok", "sealed", "count", "first_seq", "last_seq", "first_ts", "last_ts",
        "failure", "failure_seq", "kid",
    )

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.ok = True
        self.sealed = False
        self.count = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.first_ts: str | None = None
        self.last_ts: str | None = None
        self.failure: str | None = None
        self.failure_seq: int | None = None
        self.kid: str | None = None

    def fail(self, message: str, seq=None) -> "Integrity":
        if self.ok:
            self.ok = False
            self.failure = message
            self.failure_seq = seq
        return self

    @property
    def verdict(self) -> str:
        return "PASS" if self.ok else "FAIL"

    def as_dict(self) -> dict:
        return {
            "run": self.run_id,
            "result": self.verdict,
            "ok": self.ok,
            "sealed": self.sealed,
            "records": self.count,
            "seq_range": [self.first_seq, self.last_seq] if self.count else None,
            "time_range": [self.first_ts, self.last_ts] if self.count else None,
            "failure": self.failure,
            "failure_seq": self.failure_seq,
            "seal_kid": self.kid,
        }


def _store_signature(kid: str, payload: bytes, sig: bytes) -> bool | None:
    """A seal's signature checked against agentsess's own key store (None: an unknown key)."""
    from agentsess.edges import keys

    if keys.public_key(kid) is None:
        return None
    return keys.verify_signature(kid, payload, sig)


def _check_seal(result: Integrity, rec: dict, prev: dict | None, run_id: str, signature=_store_signature) -> None:
    from agentsess.core.receipts.recording import seal_payload
    from agentsess.encoding import b64url_decode

    data = rec.get("data") or {}
    result.kid = data.get("kid")
    count = 0 if prev is None else prev["seq"] + 1
    head = streams.GENESIS if prev is None else prev["hash"]
    if data.get("count") != count or data.get("head") != head:
        result.fail(f"the seal at seq {rec['seq']} does not cover the records before it", rec["seq"])
        return
    try:
        sig = b64url_decode(data["sig"])
    except (KeyError, ValueError):
        result.fail(f"the seal at seq {rec['seq']} has a malformed signature", rec["seq"])
        return
    payload = seal_payload(run_id, count, head, data.get("output_bytes"), data.get("output_sha256"))
    kid = data.get("kid")
    verdict = signature(kid, payload, sig) if isinstance(kid, str) else None
    if verdict is None:
        result.fail(f"the seal is signed with an unknown key {str(kid)[:40]!r}", rec["seq"])
        return
    if not verdict:
        result.fail(f"bad seal signature (key {kid})", rec["seq"])
        return
    result.sealed = True


def _check_output(result: Integrity, row: dict, seal: dict | None) -> None:
    from agentsess.edges.outputlog import file_digest

    expected = seal["data"].get("output_sha256") if seal else row.get("output_sha256")
    if expected is None:
        return
    path = paths.output_log(row["id"])
    if not os.path.exists(path):
        result.fail("the output log is missing")
        return
    size, digest = file_digest(path)
    if digest != expected:
        result.fail(f"the output log does not match its recorded digest ({size} bytes on disk)")


def _walk(result: Integrity, run_id: str, lines, signature=_store_signature):
    """Check each record of run ``run_id`` (``lines``: ``(line number, bytes)``): its form,
    seq, run, own hash, link to the one before, and every seal. None once ``result`` has
    failed; else ``(last record, last seal, first late record after a seal or None)``."""
    prev = None
    seal = None
    late = None  # the first record after a seal that is not a revocation (reported last)
    expected_seq = 0
    for number, line in lines:
        try:
            rec = json.loads(line)
            seq = rec["seq"]
            if not isinstance(rec.get("data"), dict) or not isinstance(seq, int) or isinstance(seq, bool):
                raise ValueError
        except (ValueError, KeyError, TypeError, RecursionError):
            result.fail(f"line {number} is not a valid record (edited or damaged)", expected_seq)
            return None
        if seq != expected_seq:
            result.fail(f"seq gap or reorder at line {number}: expected seq {expected_seq}, found {seq}", expected_seq)
            return None
        if rec.get("run") != run_id:
            result.fail(f"record seq {seq} belongs to another run ({str(rec.get('run'))[:80]!r})", seq)
            return None
        if rec.get("hash") != streams.record_hash(rec) or line != streams.canonical(rec) + b"\n":
            result.fail(f"record seq {seq} was edited (its hash does not match its content)", seq)
            return None
        want_prev = streams.GENESIS if prev is None else prev["hash"]
        if rec.get("prev") != want_prev:
            result.fail(f"record seq {seq} does not chain to the record before it", seq)
            return None
        if result.count == 0:
            result.first_seq, result.first_ts = seq, rec.get("ts")
        result.last_seq, result.last_ts = seq, rec.get("ts")
        result.count += 1
        if rec.get("type") == streams.SEAL:
            _check_seal(result, rec, prev, run_id, signature)
            if not result.ok:
                return None
            seal = rec
        else:
            if seal is not None and late is None and rec.get("type") not in _AFTER_SEAL:
                late = (
                    f"record seq {seq} ({str(rec.get('type'))[:40]}) was appended after the seal at "
                    f"seq {seal['seq']}: a sealed stream accepts only a revocation and a new seal",
                    seq,
                )
            result.sealed = False  # records after a seal (a later revocation) need a new seal
        prev = rec
        expected_seq += 1
    return prev, seal, late


def verify_run(row: dict, check_output: bool = True, lines=None) -> Integrity:
    """``lines``: the stream's raw lines from elsewhere (a shared store's mirror) instead of the file."""
    result = Integrity(row["id"])
    if lines is None:
        path = paths.receipts_file(row["id"])
        if not os.path.exists(path):
            return result.fail("the receipt stream is missing")
        numbered = streams.read(row["id"])
    else:
        numbered = enumerate(lines, 1)
    walked = _walk(result, row["id"], numbered)
    if walked is None:
        return result
    prev, seal, late = walked
    stored = row.get("chain_count") or 0
    if result.count < stored:
        return result.fail(
            f"truncated: the store's head says {stored} records, the file holds {result.count}", result.count
        )
    if result.count > stored:
        return result.fail(
            f"the file holds {result.count} records but the store's head says {stored} "
            "(records appended outside agentsess)",
            stored,
        )
    if prev is not None and row.get("chain_head") != prev["hash"]:
        return result.fail("the last record's hash differs from the store's chain head", prev["seq"])
    if check_output and row.get("status") != "running":
        _check_output(result, row, seal)
    if late is not None:
        return result.fail(*late)
    if result.ok and not result.sealed and _finished(row):
        where = "is empty" if prev is None else f"ends at seq {prev['seq']} ({str(prev.get('type'))[:40]})"
        return result.fail(
            f"the run has ended ({row.get('status')}) but its stream is not sealed: it {where}",
            None if prev is None else prev["seq"],
        )
    return result


def _finished(row: dict) -> bool:
    """True once the run's supervisor (or abandonment) is done with it, or is gone from a run
    it never finished (a revoked run whose supervisor died): its stream must be sealed."""
    if row.get("ended_at") is not None or row.get("status") in ("exited", "abandoned", "denied"):
        return True
    from agentsess.core.runs.abandonment import supervisor_alive

    return row.get("status") == "revoked" and not supervisor_alive(row)


def _run_folders() -> list[str]:
    try:
        return sorted(os.listdir(paths.runs_dir()))
    except FileNotFoundError:
        return []


def verify_all(store, check_output: bool = True) -> list[Integrity]:
    """Every run in the store, then every entry of the runs folder the store has no row for
    (each a failure)."""
    # The folders first: a run's row is written before its folder, so a run started meanwhile
    # is never mistaken for a folder without a row.
    folders = _run_folders()
    rows = store.list_runs()
    results = [verify_run(row, check_output) for row in rows]
    return results + unknown_folders(folders, {row["id"] for row in rows})


def unknown_folders(folders: list[str], known: set[str]) -> list[Integrity]:
    """A failure for each run folder (listed before the store's rows were read) without a row."""
    results = []
    for name in folders:
        if name in known or not os.path.lexists(os.path.join(paths.runs_dir(), name)):
            continue  # pruned meanwhile (prune deletes the row, then the folder)
        shown = name if name.isprintable() and len(name) <= 80 else repr(name[:80])
        try:
            lines = f"{sum(1 for _ in streams.read(name))} receipt lines on disk"
        except OSError:
            lines = "no readable receipt stream"
        results.append(
            Integrity(shown).fail(
                f"the run folder {shown} has no row in the store ({lines}): its row was deleted "
                "outside agentsess"
            )
        )
    return results


# -- an exported stream, on any machine ------------------------------------------------------

BUNDLE = "agentsess-bundle"


def parse_bundle(data: bytes) -> dict | None:
    """The bundle ``data`` holds (see :func:`agentsess.core.receipts.export.bundle`), or None
    when ``data`` is not one (a plain JSON Lines stream)."""
    if not data.lstrip().startswith(b"{"):
        return None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE:
        return None
    return doc


def trusted_keys(jwks) -> dict:
    """``{kid: Ed25519PublicKey}`` of the JWKS (RFC 7517) ``jwks``: Ed25519 keys only, each
    under the kid agentsess derives from its public half (a key filed under another kid is
    left out)."""
    from agentsess.edges import keys
    from agentsess.encoding import b64url_decode

    found = {}
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    for jwk in entries if isinstance(entries, list) else []:
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        try:
            raw = b64url_decode(jwk["x"])
        except (KeyError, ValueError):
            continue
        if len(raw) != 32 or jwk.get("kid") != keys._kid_for(raw):
            continue
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        found[jwk["kid"]] = Ed25519PublicKey.from_public_bytes(raw)
    return found


def _jwks_signature(public_keys: dict):
    def signature(kid: str, payload: bytes, sig: bytes) -> bool | None:
        public = public_keys.get(kid)
        if public is None:
            return None
        if len(sig) != 64:
            return False
        from cryptography.exceptions import InvalidSignature

        try:
            public.verify(sig, payload)
        except InvalidSignature:
            return False
        return True

    return signature


def verify_exported(data: bytes, jwks: dict | None) -> dict:
    """Verify an exported receipt stream (``export --format jsonl``) or bundle (``--format
    bundle``) without the store: every record's hash and link, and a final seal signed by a
    key of ``jwks`` (None: this machine's own key store). A bundle's own JWKS is never
    trusted by itself; pass it as ``jwks`` to trust it. Without the store's chain head, a
    stream cut back to an earlier seal (before a later revocation) still verifies: compare
    ``records`` with what you expect. Returns :meth:`Integrity.as_dict` with ``output_bytes``
    and ``output_sha256`` (what the seal says the output log was) and ``keys`` (where the
    trusted keys came from)."""
    doc = parse_bundle(data)
    if doc is not None:
        lines = doc.get("receipts")
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            return _exported(Integrity("?").fail("the bundle's receipts are not a list of lines"), None, jwks)
        try:
            raw = [line.encode(errors="surrogateescape") + b"\n" for line in lines]
        except UnicodeEncodeError:
            return _exported(Integrity("?").fail("a record of the bundle is not UTF-8 text"), None, jwks)
    else:
        raw = data.splitlines(keepends=True)
    run_id = "?"
    if raw:
        try:
            first = json.loads(raw[0])
            run_id = first["run"] if isinstance(first.get("run"), str) else "?"
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            pass
    result = Integrity(run_id)
    if not raw:
        return _exported(result.fail("the stream is empty"), None, jwks)
    if doc is not None and doc.get("run") != run_id:
        return _exported(result.fail(f"the bundle names run {str(doc.get('run'))[:80]!r}, its records {run_id!r}"), None, jwks)
    signature = _store_signature if jwks is None else _jwks_signature(trusted_keys(jwks))
    walked = _walk(result, run_id, enumerate(raw, 1), signature)
    if walked is None:
        return _exported(result, None, jwks)
    prev, seal, late = walked
    if late is not None:
        result.fail(*late)
    elif not result.sealed:
        result.fail(
            f"the stream does not end in a seal: it ends at seq {prev['seq']} ({str(prev.get('type'))[:40]}); "
            "export a finished run",
            prev["seq"],
        )
    return _exported(result, seal, jwks)


def _exported(result: Integrity, seal: dict | None, jwks) -> dict:
    out = result.as_dict()
    data = (seal or {}).get("data") or {}
    out["output_bytes"] = data.get("output_bytes")
    out["output_sha256"] = data.get("output_sha256")
    out["keys"] = "this machine's key store" if jwks is None else "the given JWKS"
    return out
