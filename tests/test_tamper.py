"""Tampering with a finished run's record is detected, and `verify --json` names what was done.

Every case starts from a real run (`python -m agentsess run`), changes its files the way an
attacker or a damaged disk would, and runs the real `verify RUN --json`.
"""

import json
import os
import signal
import sqlite3
import subprocess

import pytest
from helpers import agentsess, cli, pid_alive, running_run_id, show, spawn, wait_for


def home() -> str:
    return os.environ["AGENTSESS_HOME"]


def receipts_path(run_id: str) -> str:
    return os.path.join(home(), "runs", run_id, "receipts.jsonl")


def read_lines(run_id: str) -> list[bytes]:
    with open(receipts_path(run_id), "rb") as fh:
        return fh.read().splitlines(keepends=True)


def write_lines(run_id: str, lines: list[bytes]) -> None:
    with open(receipts_path(run_id), "wb") as fh:
        fh.write(b"".join(lines))


def verify(run_id: str) -> tuple[int, dict]:
    proc = cli("verify", run_id, "--json")
    (result,) = json.loads(proc.stdout)
    return proc.returncode, result


def assert_fails(run_id: str, *phrases: str) -> dict:
    code, result = verify(run_id)
    assert code == 1, result
    assert result["ok"] is False and result["result"] == "FAIL"
    for phrase in phrases:
        assert phrase in result["failure"], result["failure"]
    return result


def canonical_line(record: dict) -> bytes:
    from agentsess.edges.streams import canonical

    return canonical(record) + b"\n"


def rehash(record: dict) -> dict:
    from agentsess.edges.streams import record_hash

    record = dict(record)
    record["hash"] = record_hash(record)
    return record


@pytest.fixture
def run_id() -> str:
    """A real finished, sealed run with a few records and some output."""
    agentsess("run", "--no-pty", "--", "sh", "-c", "echo hello; echo oops >&2; exit 2", check=2)
    rid = show()["id"]
    code, result = verify(rid)
    assert code == 0 and result["ok"] and result["sealed"], result
    assert result["records"] >= 4  # started, minted, exited, sealed
    return rid


# -- the receipt stream ------------------------------------------------------------------


def test_an_edited_byte_names_the_record(run_id):
    lines = read_lines(run_id)
    assert b'"mode":"pipes"' in lines[0]
    lines[0] = lines[0].replace(b'"mode":"pipes"', b'"mode":"pipez"')
    write_lines(run_id, lines)
    result = assert_fails(run_id, "seq 0 was edited")
    assert result["failure_seq"] == 0


def test_an_edited_exit_code_names_the_record(run_id):
    lines = read_lines(run_id)
    k = next(i for i, line in enumerate(lines) if b'"type":"run.exited"' in line)
    assert b'"exit_code":2' in lines[k]
    lines[k] = lines[k].replace(b'"exit_code":2', b'"exit_code":0')
    write_lines(run_id, lines)
    result = assert_fails(run_id, f"seq {k} was edited")
    assert result["failure_seq"] == k


def test_a_byte_edit_that_parses_to_the_same_record_is_still_an_edit(run_id):
    # whitespace JSON ignores: the parsed record (and so its hash) is unchanged, the bytes are not
    lines = read_lines(run_id)
    lines[1] = lines[1].replace(b'{"data":', b'{ "data":', 1)
    write_lines(run_id, lines)
    assert_fails(run_id, "seq 1 was edited")


def test_a_duplicate_key_smuggled_into_a_record_is_an_edit(run_id):
    # a reader that keeps the first of two equal keys would see exit code 0; Python keeps the last
    lines = read_lines(run_id)
    k = next(i for i, line in enumerate(lines) if b'"type":"run.exited"' in line)
    lines[k] = lines[k].replace(b'{"data":{', b'{"data":{"exit_code":0,', 1)
    write_lines(run_id, lines)
    assert_fails(run_id, f"seq {k} was edited")


def test_a_deleted_record_is_a_gap(run_id):
    lines = read_lines(run_id)
    del lines[1]
    write_lines(run_id, lines)
    result = assert_fails(run_id, "seq gap", "expected seq 1, found 2")
    assert result["failure_seq"] == 1


def test_two_swapped_records_are_a_reorder(run_id):
    lines = read_lines(run_id)
    lines[1], lines[2] = lines[2], lines[1]
    write_lines(run_id, lines)
    assert_fails(run_id, "reorder", "expected seq 1, found 2")


def test_a_dropped_last_line_is_truncation(run_id):
    lines = read_lines(run_id)
    write_lines(run_id, lines[:-1])
    result = assert_fails(run_id, "truncated", f"says {len(lines)} records", f"holds {len(lines) - 1}")
    assert result["sealed"] is False


def test_a_file_emptied_is_truncation(run_id):
    write_lines(run_id, [])
    assert_fails(run_id, "truncated")


def test_a_cut_through_the_last_line_is_a_damaged_record(run_id):
    lines = read_lines(run_id)
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    write_lines(run_id, lines)
    assert_fails(run_id, f"line {len(lines)} is not a valid record")


def test_a_deleted_stream_is_missing(run_id):
    os.unlink(receipts_path(run_id))
    assert_fails(run_id, "receipt stream is missing")


def test_a_forged_record_with_a_consistent_chain_differs_from_the_store_head(run_id):
    lines = read_lines(run_id)
    last = json.loads(lines[-1])
    forged = rehash(
        {
            "v": 1,
            "seq": last["seq"] + 1,
            "ts": last["ts"],
            "run": run_id,
            "type": "action.exec",
            "data": {"command": "git push --force", "exit_code": 0},
            "prev": last["hash"],
        }
    )
    write_lines(run_id, lines + [canonical_line(forged)])
    # the chain itself is consistent: only the store's head can tell
    from agentsess.edges.streams import record_hash

    assert forged["hash"] == record_hash(forged) and forged["prev"] == last["hash"]
    result = assert_fails(run_id, "store's head says", "appended outside agentsess")
    assert result["failure_seq"] == len(lines)


def test_a_forged_record_replacing_the_last_one_differs_from_the_store_head(run_id):
    # same count, valid chain, but not the head the store recorded (nor a seal, so unsealed)
    lines = read_lines(run_id)
    seal = json.loads(lines[-1])
    forged = {k: v for k, v in seal.items() if k != "hash"}
    forged.update(type="action.exec", data={"command": "rm -rf /", "exit_code": 0})
    forged = rehash(forged)
    write_lines(run_id, lines[:-1] + [canonical_line(forged)])
    assert_fails(run_id, "differs from the store's chain head")


# -- the seal ----------------------------------------------------------------------------


def _reseal(run_id: str, sign) -> None:
    """Replace the final seal with one made by ``sign(payload) -> (kid, signature bytes)``."""
    from agentsess.core.receipts.recording import seal_payload
    from agentsess.edges.keys import b64url_encode

    lines = read_lines(run_id)
    seal = json.loads(lines[-1])
    assert seal["type"] == "run.sealed"
    data = dict(seal["data"])
    kid, sig = sign(seal_payload(run_id, data["count"], data["head"], data["output_bytes"], data["output_sha256"]))
    data.update(kid=kid, sig=b64url_encode(sig))
    record = {k: v for k, v in seal.items() if k != "hash"}
    record["data"] = data
    write_lines(run_id, lines[:-1] + [canonical_line(rehash(record))])


def test_a_seal_signed_with_a_key_not_in_the_jwks_is_an_unknown_key(run_id):
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from agentsess.edges.keys import b64url_encode

    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    kid = b64url_encode(hashlib.sha256(raw).digest())[:16]  # a kid made the way agentsess makes them
    with open(os.path.join(home(), "keys", "jwks.json")) as fh:
        assert kid not in {k["kid"] for k in json.load(fh)["keys"]}
    _reseal(run_id, lambda payload: (kid, key.sign(payload)))
    result = assert_fails(run_id, "unknown key", kid)
    assert result["failure_seq"] == len(read_lines(run_id)) - 1


def test_a_seal_signed_by_a_fresh_key_under_the_real_kid_is_a_bad_signature(run_id):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    real_kid = json.loads(read_lines(run_id)[-1])["data"]["kid"]
    key = Ed25519PrivateKey.generate()
    _reseal(run_id, lambda payload: (real_kid, key.sign(payload)))
    assert_fails(run_id, "bad seal signature")


def test_a_seal_with_a_modified_signature_is_a_bad_signature(run_id):
    from agentsess.edges.keys import b64url_decode, b64url_encode

    lines = read_lines(run_id)
    seal = json.loads(lines[-1])
    sig = bytearray(b64url_decode(seal["data"]["sig"]))
    sig[10] ^= 0x01
    seal["data"]["sig"] = b64url_encode(bytes(sig))
    seal.pop("hash")
    write_lines(run_id, lines[:-1] + [canonical_line(rehash(seal))])
    assert_fails(run_id, "bad seal signature")


def test_a_seal_moved_to_cover_fewer_records_is_refused(run_id):
    # drop run.exited and re-chain the (still validly signed) seal onto the record before it
    lines = read_lines(run_id)
    seal = json.loads(lines[-1])
    before = json.loads(lines[-3])
    moved = {k: v for k, v in seal.items() if k != "hash"}
    moved.update(seq=before["seq"] + 1, prev=before["hash"])
    write_lines(run_id, lines[:-2] + [canonical_line(rehash(moved))])
    assert_fails(run_id, "does not cover the records before it")


# -- the output log ----------------------------------------------------------------------


def test_an_edited_output_log_is_a_digest_mismatch(run_id):
    path = os.path.join(home(), "runs", run_id, "output.log")
    with open(path, "r+b") as fh:
        data = fh.read()
        assert b"hello" in data
        fh.seek(data.index(b"hello"))
        fh.write(b"J")
    assert_fails(run_id, "output log does not match its recorded digest")


def test_a_deleted_output_log_is_missing(run_id):
    os.unlink(os.path.join(home(), "runs", run_id, "output.log"))
    assert_fails(run_id, "output log is missing")


# -- clean runs pass ---------------------------------------------------------------------


def test_a_revoked_finished_run_is_sealed_again_and_verifies(run_id):
    before = len(read_lines(run_id))
    agentsess("revoke", run_id, check=0)
    types = [json.loads(line)["type"] for line in read_lines(run_id)]
    assert types[before - 1 :] == ["run.sealed", "run.revoked", "run.sealed"]
    code, result = verify(run_id)
    assert code == 0, result
    assert result["ok"] and result["sealed"] and result["records"] == before + 2
    # and the later seal is checked too: a bad signature on it is named
    lines = read_lines(run_id)
    seal = json.loads(lines[-1])
    seal["data"]["sig"] = json.loads(lines[before - 1])["data"]["sig"]  # the first seal's signature
    seal.pop("hash")
    write_lines(run_id, lines[:-1] + [canonical_line(rehash(seal))])
    assert_fails(run_id, "bad seal signature")


def test_an_abandoned_run_is_sealed_when_found_and_verifies():
    p = spawn("run", "--no-pty", "--", "sleep", "30", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rid = running_run_id()
        db = os.path.join(home(), "store.db")

        def child_pid():
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT child_pid FROM runs WHERE id = ?", (rid,)).fetchone()[0]

        sleeper = wait_for(child_pid, what="the child to start")
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(30) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    code, result = verify(rid)  # finds the dead supervisor, marks the run abandoned, seals it
    assert code == 0, result
    assert result["ok"] and result["sealed"], result
    run = show(rid)
    assert run["status"] == "abandoned"
    types = [r["type"] for r in run["receipts"]]
    assert types[-2:] == ["run.abandoned", "run.sealed"]
    assert "run.exited" not in types
    wait_for(lambda: not pid_alive(sleeper), what="the orphaned child to be stopped")
    assert cli("verify", "--all").returncode == 0
