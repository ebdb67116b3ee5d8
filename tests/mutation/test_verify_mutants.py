"""Receipt verification driven in-process, so a mutation tester sees every check it exercises.

Each run here is written by agentsess's own recording code (``recording.record`` and
``recording.seal``, signed with this data root's real key) into a real store and real files;
the test then damages it the way an attacker or a broken disk would and asserts the exact
verdict a user reads (``verify --json``'s object). Nothing that verification checks is
replaced: hashes, links, seals and signatures are all real. See docs/mutation-testing.md.
"""

import hashlib
import json
import os
import subprocess

import pytest

from agentsess import ids
from agentsess.core.receipts import recording, verify
from agentsess.core.receipts.verify import Integrity, parse_bundle, trusted_keys, verify_exported, verify_run
from agentsess.edges import host, keys, paths, streams
from agentsess.edges.store import Store
from agentsess.encoding import b64url_encode

OUTPUT = b"hello\noops\n"


@pytest.fixture
def store():
    with Store() as opened:
        yield opened


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def make_run(store, types=("run.started", "credential.minted", "run.exited"), *, output=OUTPUT,
             status="exited", ended=True, seal=True, supervisor_alive=False) -> str:
    """A run recorded the way its supervisor records one: receipts, output log, end, seal."""
    rid = ids.new_run_id()
    me = os.getpid()
    store.insert_run({
        "id": rid, "name": "t", "status": "running", "command": ["sh"], "cwd": "/", "host": host.hostname(),
        "user": "u", "started_at": 1.0,
        "supervisor_pid": me if supervisor_alive else _dead_pid(),
        "supervisor_started": host.process_start(me) if supervisor_alive else None,
    })
    streams.create_stream(rid)
    for n, rtype in enumerate(types):
        recording.record(store, rid, rtype, {"n": n})
    if output is not None:
        paths.write_private(paths.output_log(rid), output)
        store.update_run(rid, output_bytes=len(output), output_sha256=hashlib.sha256(output).hexdigest())
    store.update_run(rid, status=status, ended_at=2.0 if ended else None)
    if seal:
        recording.seal(store, rid)
    return rid


def check(store, rid, **kw) -> dict:
    return verify_run(store.get_run(rid), **kw).as_dict()


def lines(rid) -> list[bytes]:
    with open(paths.receipts_file(rid), "rb") as fh:
        return fh.read().splitlines(keepends=True)


def write(rid, new_lines) -> None:
    with open(paths.receipts_file(rid), "wb") as fh:
        fh.write(b"".join(new_lines))


def records(rid) -> list[dict]:
    return [json.loads(line) for line in lines(rid)]


def canonical_line(rec: dict) -> bytes:
    return streams.canonical(rec) + b"\n"


def rehashed(rec: dict) -> dict:
    rec = dict(rec)
    rec["hash"] = streams.record_hash(rec)
    return rec


def rewrite(store, rid, index, **changes) -> list[dict]:
    """Change record ``index``, recompute its own hash and the chain after it, and move the
    store's head: only the check aimed at what changed can still notice."""
    recs = records(rid)
    recs[index] = rehashed({**recs[index], **changes})
    for i in range(index + 1, len(recs)):
        recs[i] = rehashed({**recs[i], "prev": recs[i - 1]["hash"]})
    write(rid, [canonical_line(r) for r in recs])
    store.update_run(rid, chain_head=recs[-1]["hash"], chain_count=len(recs))
    return recs


def resign_seal(store, rid, index, **data_changes) -> None:
    """Change a seal's data and sign it again with the real key (a seal agentsess could have made)."""
    recs = records(rid)
    data = {**recs[index]["data"], **data_changes}
    payload = recording.seal_payload(rid, data["count"], data["head"], data["output_bytes"], data["output_sha256"])
    kid, sig = keys.sign(payload)
    rewrite(store, rid, index, data={**data, "kid": kid, "sig": b64url_encode(sig)})


def passing(rid, count, sealed=True, kid=None, ts=None) -> dict:
    return {
        "run": rid, "result": "PASS", "ok": True, "sealed": sealed, "records": count,
        "seq_range": [0, count - 1] if count else None, "time_range": ts if count else None,
        "failure": None, "failure_seq": None, "seal_kid": kid,
    }


def failing(result: dict, failure: str, seq) -> None:
    assert (result["result"], result["ok"], result["failure"], result["failure_seq"]) == ("FAIL", False, failure, seq), result


# -- Integrity, the object `verify --json` prints ------------------------------------------


def test_a_fresh_verdict_passes_with_nothing_counted():
    assert Integrity("run_x").as_dict() == passing("run_x", 0, sealed=False)
    fresh = Integrity("run_x")
    assert (fresh.first_seq, fresh.last_seq, fresh.first_ts, fresh.last_ts, fresh.kid) == (None,) * 5
    assert fresh.verdict == "PASS"


def test_the_first_failure_is_the_one_reported():
    result = Integrity("r")
    assert result.fail("first", 3) is result
    assert result.fail("second", 4) is result
    assert (result.ok, result.verdict, result.failure, result.failure_seq) == (False, "FAIL", "first", 3)
    assert Integrity("r").fail("no seq").failure_seq is None


# -- a run as its supervisor leaves it -----------------------------------------------------


def test_a_sealed_run_passes_with_its_range_times_and_key(store):
    rid = make_run(store)
    recs = records(rid)
    assert check(store, rid) == passing(rid, 4, kid=keys.current_kid(), ts=[recs[0]["ts"], recs[3]["ts"]])


def test_the_time_range_runs_from_the_first_record_to_the_last(store):
    rid = make_run(store)
    recs = rewrite(store, rid, 0, ts="2026-01-01T00:00:00.000001Z")
    recs = rewrite(store, rid, 2, ts="2026-01-01T00:00:02.000000Z")
    resign_seal(store, rid, 3, head=recs[2]["hash"])
    recs = rewrite(store, rid, 3, ts="2026-01-01T00:00:03.000000Z")
    resign_seal(store, rid, 3)
    result = check(store, rid)
    assert result["ok"], result
    assert result["time_range"] == ["2026-01-01T00:00:00.000001Z", "2026-01-01T00:00:03.000000Z"]
    assert result["seq_range"] == [0, 3]


def test_a_run_sealed_with_no_records_before_its_seal_passes(store):
    rid = make_run(store, types=())
    (seal,) = records(rid)
    assert (seal["data"]["count"], seal["data"]["head"]) == (0, streams.GENESIS)
    assert check(store, rid) == passing(rid, 1, kid=keys.current_kid(), ts=[seal["ts"], seal["ts"]])


def test_a_live_run_is_intact_but_unsealed(store):
    rid = make_run(store, status="running", ended=False, seal=False, supervisor_alive=True)
    result = check(store, rid)
    assert (result["ok"], result["sealed"], result["records"]) == (True, False, 3)
    empty = make_run(store, types=(), status="running", ended=False, seal=False, supervisor_alive=True)
    assert check(store, empty) == passing(empty, 0, sealed=False)


def test_a_live_runs_output_log_is_not_checked_yet(store):
    rid = make_run(store, status="running", ended=False, seal=False, supervisor_alive=True)
    with open(paths.output_log(rid), "ab") as fh:
        fh.write(b"still writing")
    assert check(store, rid)["ok"]


# -- each edit names what was done ---------------------------------------------------------


def test_a_missing_stream(store):
    rid = make_run(store)
    os.unlink(paths.receipts_file(rid))
    failing(check(store, rid), "the receipt stream is missing", None)


@pytest.mark.parametrize(
    "line",
    [
        b"not json\n",
        b'{"seq": 1, "data": []}\n',  # data not an object
        b'{"seq": "1", "data": {}}\n',  # seq not an integer
        b'{"seq": true, "data": {}}\n',  # true == 1, but a bool is not a seq
        b'{"data": {}}\n',  # no seq
        b"[1, 2]\n",  # not an object
        b"[" * 100000 + b"\n",  # nested past the parser's limit
    ],
)
def test_a_line_that_is_not_a_record(store, line):
    rid = make_run(store)
    write(rid, [lines(rid)[0], line, *lines(rid)[2:]])
    failing(check(store, rid), "line 2 is not a valid record (edited or damaged)", 1)


def test_a_record_whose_seq_is_true_is_not_seq_1(store):
    rid = make_run(store)
    rewrite(store, rid, 1, seq=True)
    failing(check(store, rid), "line 2 is not a valid record (edited or damaged)", 1)


def test_a_removed_record_is_a_gap(store):
    rid = make_run(store)
    write(rid, [lines(rid)[0], *lines(rid)[2:]])
    failing(check(store, rid), "seq gap or reorder at line 2: expected seq 1, found 2", 1)


def test_a_stream_that_does_not_start_at_seq_0(store):
    rid = make_run(store)
    write(rid, lines(rid)[1:])
    failing(check(store, rid), "seq gap or reorder at line 1: expected seq 0, found 1", 0)


def test_a_record_of_another_run(store):
    rid = make_run(store)
    other = "run_" + "o" * 100
    rewrite(store, rid, 2, run=other)
    failing(check(store, rid), f"record seq 2 belongs to another run ({other[:80]!r})", 2)


def test_an_edited_record(store):
    rid = make_run(store)
    recs = records(rid)
    recs[1]["data"]["n"] = 99
    write(rid, [lines(rid)[0], canonical_line(recs[1]), *lines(rid)[2:]])
    failing(check(store, rid), "record seq 1 was edited (its hash does not match its content)", 1)


def test_a_record_rewritten_in_another_spelling_of_the_same_json(store):
    # same fields, same hash, but not the canonical bytes the hash was taken over
    rid = make_run(store)
    rec = records(rid)[1]
    write(rid, [lines(rid)[0], json.dumps(rec).encode() + b"\n", *lines(rid)[2:]])
    assert streams.record_hash(rec) == rec["hash"]
    failing(check(store, rid), "record seq 1 was edited (its hash does not match its content)", 1)


def test_an_edited_record_with_its_own_hash_recomputed_breaks_the_chain(store):
    rid = make_run(store)
    recs = records(rid)
    recs[1] = rehashed({**recs[1], "data": {"n": 99}})
    write(rid, [canonical_line(r) for r in recs])
    failing(check(store, rid), "record seq 2 does not chain to the record before it", 2)


def test_the_first_record_chains_to_genesis(store):
    rid = make_run(store)
    rewrite(store, rid, 0, prev="1" * 64)
    failing(check(store, rid), "record seq 0 does not chain to the record before it", 0)


def test_a_truncated_stream(store):
    rid = make_run(store)
    write(rid, lines(rid)[:2])
    failing(check(store, rid), "truncated: the store's head says 4 records, the file holds 2", 2)


def test_records_appended_outside_agentsess(store):
    rid = make_run(store, seal=False, status="running", ended=False, supervisor_alive=True)
    streams.append(rid, "action.exec", {"command": "x"})  # not through recording: the store's head stays
    failing(check(store, rid), "the file holds 4 records but the store's head says 3 (records appended outside agentsess)", 3)


def test_a_row_without_a_chain_count_holds_no_records(store):
    rid = make_run(store)
    row = {k: v for k, v in store.get_run(rid).items() if k != "chain_count"}
    failing(verify_run(row).as_dict(),
            "the file holds 4 records but the store's head says 0 (records appended outside agentsess)", 0)


def test_a_store_head_that_is_not_the_last_record(store):
    rid = make_run(store)
    store.update_run(rid, chain_head="f" * 64)
    failing(check(store, rid), "the last record's hash differs from the store's chain head", 3)


# -- the output log ------------------------------------------------------------------------


def test_an_edited_output_log(store):
    rid = make_run(store)
    with open(paths.output_log(rid), "ab") as fh:
        fh.write(b"added")
    failing(check(store, rid), f"the output log does not match its recorded digest ({len(OUTPUT) + 5} bytes on disk)", None)
    assert check(store, rid, check_output=False)["ok"]


def test_a_missing_output_log(store):
    rid = make_run(store)
    os.unlink(paths.output_log(rid))
    failing(check(store, rid), "the output log is missing", None)


def test_the_seal_not_the_store_says_what_the_output_was(store):
    rid = make_run(store)
    store.update_run(rid, output_sha256="0" * 64)  # the row is not what the seal signed
    assert check(store, rid)["ok"]


def test_the_store_says_what_the_output_was_before_the_seal(store):
    rid = make_run(store, seal=False)
    store.update_run(rid, output_sha256="0" * 64)
    failing(check(store, rid), f"the output log does not match its recorded digest ({len(OUTPUT)} bytes on disk)", None)


def test_a_run_without_output_has_no_log_to_check(store):
    rid = make_run(store, output=None)
    assert not os.path.exists(paths.output_log(rid))
    assert check(store, rid)["ok"]


# -- seals ---------------------------------------------------------------------------------


def test_a_seal_that_does_not_count_the_records_before_it(store):
    rid = make_run(store)
    resign_seal(store, rid, 3, count=2)
    failing(check(store, rid), "the seal at seq 3 does not cover the records before it", 3)
    assert check(store, rid)["seal_kid"] == keys.current_kid()


def test_a_seal_over_another_head(store):
    rid = make_run(store)
    resign_seal(store, rid, 3, head="a" * 64)
    failing(check(store, rid), "the seal at seq 3 does not cover the records before it", 3)


def test_a_seal_over_nothing_must_say_genesis(store):
    rid = make_run(store, types=())
    resign_seal(store, rid, 0, head="a" * 64)
    failing(check(store, rid), "the seal at seq 0 does not cover the records before it", 0)


@pytest.mark.parametrize("sig", ["a+b", None, 7, "missing"])
def test_a_seal_with_a_malformed_signature(store, sig):
    rid = make_run(store)
    data = dict(records(rid)[3]["data"], sig=sig)
    if sig == "missing":
        del data["sig"]
    rewrite(store, rid, 3, data=data)
    failing(check(store, rid), "the seal at seq 3 has a malformed signature", 3)


@pytest.mark.parametrize(
    "changes",
    [
        {"sig": b64url_encode(b"x" * 64)},
        {"sig": ""},
        {"sig": b64url_encode(b"x" * 10)},
        {"output_bytes": 1},
        {"output_sha256": "0" * 64},
    ],
)
def test_a_seal_whose_signature_does_not_match(store, changes):
    rid = make_run(store)
    recs = records(rid)
    rewrite(store, rid, 3, data={**recs[3]["data"], **changes})
    kid = keys.current_kid()
    failing(check(store, rid, check_output=False), f"bad seal signature (key {kid})", 3)


def test_a_seal_of_another_run_does_not_verify(store):
    one, two = make_run(store), make_run(store)
    seal = records(one)[3]
    recs = records(two)
    rewrite(store, two, 3, data={**recs[3]["data"], "kid": seal["data"]["kid"], "sig": seal["data"]["sig"]})
    failing(check(store, two), f"bad seal signature (key {keys.current_kid()})", 3)


@pytest.mark.parametrize("kid, shown", [("k" * 50, repr("k" * 40)), (5, "'5'"), (None, "'None'"), (["k"], repr("['k']"))])
def test_a_seal_by_an_unknown_key(store, kid, shown):
    rid = make_run(store)
    recs = records(rid)
    rewrite(store, rid, 3, data={**recs[3]["data"], "kid": kid})
    failing(check(store, rid), f"the seal is signed with an unknown key {shown}", 3)
    failing(offline(exported(rid), keys.jwks()), f"the seal is signed with an unknown key {shown}", 3)


def test_a_bad_seal_stops_the_count_there(store):
    rid = make_run(store, seal=False, status="revoked", supervisor_alive=False)
    recording.seal(store, rid)
    recording.record(store, rid, "run.revoked", {})
    recording.seal(store, rid)
    recs = records(rid)
    rewrite(store, rid, 3, data={**recs[3]["data"], "sig": b64url_encode(b"x" * 64)})
    result = check(store, rid)
    failing(result, f"bad seal signature (key {keys.current_kid()})", 3)
    assert result["records"] == 4 and result["seq_range"] == [0, 3]


def test_a_revocation_after_the_seal_and_a_new_seal_pass(store):
    rid = make_run(store)
    recording.record(store, rid, "run.revoked", {"reason": "later"})
    recording.seal(store, rid)
    result = check(store, rid)
    assert (result["ok"], result["sealed"], result["records"]) == (True, True, 6), result


def test_a_revocation_after_the_seal_without_a_new_seal_fails(store):
    rid = make_run(store)
    recording.record(store, rid, "run.revoked", {})
    result = check(store, rid)
    failing(result, "the run has ended (exited) but its stream is not sealed: it ends at seq 4 (run.revoked)", 4)
    assert result["sealed"] is False


def test_anything_else_after_the_seal_fails_at_the_first_such_record(store):
    rid = make_run(store)
    rtype = "action." + "x" * 50
    streams.append(rid, rtype, {})
    streams.append(rid, "action.second", {})
    recs = records(rid)
    store.update_run(rid, chain_head=recs[-1]["hash"], chain_count=len(recs))
    failing(check(store, rid, check_output=False),
            f"record seq 4 ({rtype[:40]}) was appended after the seal at seq 3: a sealed stream "
            "accepts only a revocation and a new seal", 4)


def test_a_late_record_is_reported_even_when_a_valid_seal_follows(store):
    rid = make_run(store)
    streams.append(rid, "action.exec", {})
    store.update_run(rid, chain_count=5, chain_head=records(rid)[-1]["hash"])
    recording.seal(store, rid)
    failing(check(store, rid),
            "record seq 4 (action.exec) was appended after the seal at seq 3: a sealed stream "
            "accepts only a revocation and a new seal", 4)


# -- which runs must be sealed -------------------------------------------------------------


@pytest.mark.parametrize("status", ["exited", "abandoned", "denied"])
def test_an_ended_run_must_be_sealed(store, status):
    rid = make_run(store, seal=False, status=status, ended=False)
    failing(check(store, rid), f"the run has ended ({status}) but its stream is not sealed: it ends at seq 2 (run.exited)", 2)


def test_a_run_with_an_end_time_must_be_sealed(store):
    rid = make_run(store, seal=False, status="running", ended=True, supervisor_alive=True)
    failing(check(store, rid), "the run has ended (running) but its stream is not sealed: it ends at seq 2 (run.exited)", 2)


def test_an_ended_empty_stream_is_named_empty(store):
    rid = make_run(store, types=(), seal=False, output=None)
    failing(check(store, rid), "the run has ended (exited) but its stream is not sealed: it is empty", None)


def test_the_last_type_is_cut_in_the_unsealed_message(store):
    rtype = "t" * 60
    rid = make_run(store, types=(rtype,), seal=False)
    failing(check(store, rid), f"the run has ended (exited) but its stream is not sealed: it ends at seq 0 ({rtype[:40]})", 0)


def test_a_revoked_run_being_stopped_is_not_yet_sealed(store):
    rid = make_run(store, seal=False, status="revoked", ended=False, supervisor_alive=True)
    assert check(store, rid)["ok"]


def test_a_revoked_run_whose_supervisor_is_gone_must_be_sealed(store):
    rid = make_run(store, seal=False, status="revoked", ended=False, supervisor_alive=False)
    failing(check(store, rid), "the run has ended (revoked) but its stream is not sealed: it ends at seq 2 (run.exited)", 2)


def test_another_machines_live_run_is_not_judged_here(store):
    rid = make_run(store, seal=False, status="revoked", ended=False, supervisor_alive=False)
    store.update_run(rid, host="elsewhere")
    assert check(store, rid)["ok"]


# -- verify --all --------------------------------------------------------------------------


def test_verify_all_on_a_new_data_root_is_empty(store):
    assert not os.path.exists(paths.runs_dir())
    assert verify.verify_all(store) == []


def test_verify_all_reports_every_run_then_every_folder_without_a_row(store):
    good = make_run(store)
    bad = make_run(store)
    with open(paths.output_log(bad), "ab") as fh:
        fh.write(b"x")
    receipt_lines = lines(good)
    long_name = "r" * 81
    for name, content in (("run_orphan2", receipt_lines[:3]), ("run_orphan1", receipt_lines[:2]),
                          (long_name, receipt_lines[:1]), ("run_\x07bell", None), ("s" * 80, [])):
        os.makedirs(os.path.join(paths.runs_dir(), name))
        if content is not None:
            with open(os.path.join(paths.runs_dir(), name, "receipts.jsonl"), "wb") as fh:
                fh.write(b"".join(content))
    results = [r.as_dict() for r in verify.verify_all(store)]
    by_run = {r["run"]: r for r in results}
    assert by_run[good]["ok"] is True and by_run[bad]["ok"] is False
    assert not verify.verify_all(store, check_output=False)[[r["run"] for r in results].index(bad)].as_dict()["failure"]
    suffix = ": its row was deleted outside agentsess"
    cut, bell = repr(long_name[:80]), repr("run_\x07bell")
    orphans = [(r["run"], r["failure"], r["result"]) for r in results[2:]]
    assert orphans == [
        (cut, f"the run folder {cut} has no row in the store (1 receipt lines on disk){suffix}", "FAIL"),
        (bell, f"the run folder {bell} has no row in the store (no readable receipt stream){suffix}", "FAIL"),
        ("run_orphan1", f"the run folder run_orphan1 has no row in the store (2 receipt lines on disk){suffix}", "FAIL"),
        ("run_orphan2", f"the run folder run_orphan2 has no row in the store (3 receipt lines on disk){suffix}", "FAIL"),
        ("s" * 80, f"the run folder {'s' * 80} has no row in the store (0 receipt lines on disk){suffix}", "FAIL"),
    ]


def test_verify_all_skips_a_folder_pruned_after_it_was_listed(store, monkeypatch):
    rid = make_run(store)
    os.makedirs(os.path.join(paths.runs_dir(), "run_gone"))
    listed = verify._run_folders()
    assert listed == sorted([rid, "run_gone"])
    os.rmdir(os.path.join(paths.runs_dir(), "run_gone"))  # prune: the row first, then the folder
    monkeypatch.setattr(verify, "_run_folders", lambda: listed)
    assert [r.run_id for r in verify.verify_all(store)] == [rid]


# -- an exported stream, on another machine ------------------------------------------------


def exported(rid) -> bytes:
    return b"".join(lines(rid))


def bundle_of(rid, **changes) -> bytes:
    doc = {"format": verify.BUNDLE, "version": 1, "run": rid,
           "receipts": [line.decode().rstrip("\n") for line in lines(rid)], "jwks": keys.jwks()}
    doc.update(changes)
    return json.dumps(doc).encode()


def offline(data, jwks) -> dict:
    return verify_exported(data, jwks)


def test_an_exported_stream_and_bundle_verify_against_the_jwks(store):
    rid = make_run(store)
    seal = records(rid)[3]
    want = {**passing(rid, 4, kid=keys.current_kid(), ts=[records(rid)[0]["ts"], seal["ts"]]),
            "output_bytes": len(OUTPUT), "output_sha256": hashlib.sha256(OUTPUT).hexdigest(),
            "keys": "the given JWKS"}
    assert offline(exported(rid), keys.jwks()) == want
    assert offline(bundle_of(rid), keys.jwks()) == want
    assert offline(b"  \n" + bundle_of(rid), keys.jwks()) == want
    assert offline(exported(rid), None) == {**want, "keys": "this machine's key store"}


def test_an_exported_stream_against_other_keys(store, tmp_path, monkeypatch):
    rid = make_run(store)
    data, mine = exported(rid), keys.jwks()
    monkeypatch.setenv("AGENTSESS_HOME", str(tmp_path / "elsewhere"))
    other = keys.jwks()
    kid = mine["keys"][0]["kid"]
    result = offline(data, other)
    failing(result, f"the seal is signed with an unknown key {kid!r}", 3)
    assert (result["output_bytes"], result["output_sha256"], result["keys"]) == (None, None, "the given JWKS")
    failing(offline(data, None), f"the seal is signed with an unknown key {kid!r}", 3)
    assert offline(data, mine)["ok"]


@pytest.mark.parametrize("sig", [b"x" * 64, b"x" * 10, b""])
def test_an_exported_seal_with_a_bad_signature(store, sig):
    rid = make_run(store)
    recs = records(rid)
    recs = rewrite(store, rid, 3, data={**recs[3]["data"], "sig": b64url_encode(sig)})
    failing(offline(exported(rid), keys.jwks()), f"bad seal signature (key {keys.current_kid()})", 3)


def test_an_exported_stream_must_end_in_a_seal(store):
    rid = make_run(store)
    recording.record(store, rid, "run.revoked", {})
    result = offline(exported(rid), keys.jwks())
    failing(result, "the stream does not end in a seal: it ends at seq 4 (run.revoked); export a finished run", 4)
    assert (result["output_bytes"], result["output_sha256"]) == (len(OUTPUT), hashlib.sha256(OUTPUT).hexdigest())
    long_type = "z" * 50
    unsealed = make_run(store, types=(long_type,), seal=False)
    failing(offline(exported(unsealed), keys.jwks()),
            f"the stream does not end in a seal: it ends at seq 0 ({long_type[:40]}); export a finished run", 0)


def test_an_exported_stream_with_a_late_record(store):
    rid = make_run(store)
    streams.append(rid, "action.exec", {})
    recs = records(rid)
    store.update_run(rid, chain_count=len(recs), chain_head=recs[-1]["hash"])
    recording.seal(store, rid)
    failing(offline(exported(rid), keys.jwks()),
            "record seq 4 (action.exec) was appended after the seal at seq 3: a sealed stream "
            "accepts only a revocation and a new seal", 4)


def test_an_exported_stream_with_an_edited_record(store):
    rid = make_run(store)
    data = exported(rid).replace(b'"n":1', b'"n":7')
    result = offline(data, keys.jwks())
    failing(result, "record seq 1 was edited (its hash does not match its content)", 1)
    assert (result["output_bytes"], result["output_sha256"]) == (None, None)


def test_an_empty_export():
    failing(offline(b"", keys.jwks()), "the stream is empty", None)
    assert offline(b"", keys.jwks())["run"] == "?"
    assert offline(b"", keys.jwks())["keys"] == "the given JWKS"
    assert offline(b"", None)["keys"] == "this machine's key store"


def test_an_export_whose_first_line_names_no_run(store):
    rid = make_run(store)
    rest = lines(rid)[1:]
    for first in (b"garbage\n", b"[1]\n", b'{"run": 5}\n', b'{"seq": 0}\n', b"[" * 100000 + b"\n"):
        result = offline(first + b"".join(rest), keys.jwks())
        assert result["run"] == "?" and result["ok"] is False, (first[:20], result)
    assert offline(exported(rid), keys.jwks())["run"] == rid


@pytest.mark.parametrize("receipts", ["line", [1], ["ok", None], {"a": "b"}])
def test_a_bundle_whose_receipts_are_not_lines(store, receipts):
    rid = make_run(store)
    result = offline(bundle_of(rid, receipts=receipts), keys.jwks())
    assert result == {**Integrity("?").fail("the bundle's receipts are not a list of lines").as_dict(),
                      "output_bytes": None, "output_sha256": None, "keys": "the given JWKS"}


def test_a_bundle_with_text_that_is_not_utf8(store):
    rid = make_run(store)
    data = bundle_of(rid).replace(b'"receipts": ["', b'"receipts": ["\\ud800', 1)
    for jwks, where in ((None, "this machine's key store"), (keys.jwks(), "the given JWKS")):
        assert offline(data, jwks) == {**Integrity("?").fail("a record of the bundle is not UTF-8 text").as_dict(),
                                       "output_bytes": None, "output_sha256": None, "keys": where}


def test_a_bundle_keeps_bytes_that_are_not_utf8_as_they_were(store):
    # surrogateescape: a raw byte (not UTF-8) reaches the record check, which names its line
    rid = make_run(store)
    recs = records(rid)
    text = canonical_line(recs[1]).decode().rstrip("\n")
    assert "\udcff" not in text
    doc = json.loads(bundle_of(rid))
    doc["receipts"][1] = text.replace('"n":1', '"n":"\udcff"')
    failing(offline(json.dumps(doc).encode(), keys.jwks()), "line 2 is not a valid record (edited or damaged)", 1)


def test_an_empty_bundle(store):
    rid = make_run(store)
    failing(offline(bundle_of(rid, receipts=[]), keys.jwks()), "the stream is empty", None)


def test_a_bundle_that_names_another_run(store):
    rid = make_run(store)
    named = "run_" + "n" * 100
    result = offline(bundle_of(rid, run=named), keys.jwks())
    failing(result, f"the bundle names run {named[:80]!r}, its records {rid!r}", None)
    assert (result["run"], result["keys"]) == (rid, "the given JWKS")
    assert offline(bundle_of(rid, run=named), None)["keys"] == "this machine's key store"


def test_what_counts_as_a_bundle(store):
    rid = make_run(store)
    assert parse_bundle(bundle_of(rid))["run"] == rid
    assert parse_bundle(b"\n\t " + bundle_of(rid))["run"] == rid
    assert parse_bundle(exported(rid)) is None  # JSON Lines: more than one object
    assert parse_bundle(b'{"format": "other"}') is None
    assert parse_bundle(b'["agentsess-bundle"]') is None
    assert parse_bundle(b"[{}]") is None
    assert parse_bundle(b"{" + b"[" * 100000) is None
    assert parse_bundle(b'{"format": "agentsess-bundle"}') == {"format": "agentsess-bundle"}
    assert parse_bundle(b"") is None


def test_only_ed25519_keys_under_their_own_kid_are_trusted():
    keys.current_key()
    (good,) = keys.jwks()["keys"]
    kid = good["kid"]
    assert set(trusted_keys(keys.jwks())) == {kid}
    public = trusted_keys(keys.jwks())[kid]
    assert public.public_bytes_raw() == keys.public_key(kid).public_bytes_raw()
    bad = [
        {**good, "kty": "EC"},
        {**good, "crv": "Ed448"},
        {**good, "kty": "EC", "crv": "Ed448"},
        {**good, "x": "a+b"},
        {**good, "x": 7},
        {k: v for k, v in good.items() if k != "x"},
        {**good, "x": b64url_encode(b"\x01" * 31)},
        {**good, "x": b64url_encode(b"\x01" * 32)},  # another key filed under this kid
        {**good, "kid": "A" * len(kid)},
        "not a key",
    ]
    for jwk in bad:
        assert trusted_keys({"keys": [jwk]}) == {}, jwk
    assert set(trusted_keys({"keys": [*bad, good]})) == {kid}
    for jwks in ({"keys": good}, {"keys": None}, [good], None, {}):
        assert trusted_keys(jwks) == {}, jwks


def test_a_jwks_key_that_matches_its_kid_verifies_only_its_own_signatures():
    kid, private = keys.current_key()
    check_sig = verify._jwks_signature(trusted_keys(keys.jwks()))
    sig = private.sign(b"payload")
    assert check_sig(kid, b"payload", sig) is True
    assert check_sig(kid, b"other", sig) is False
    assert check_sig(kid, b"payload", sig[:63]) is False
    assert check_sig(kid, b"payload", sig + b"x") is False
    assert check_sig("unknown", b"payload", sig) is None
