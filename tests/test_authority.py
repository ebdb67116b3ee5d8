"""agentsess's authority at rest, attacked as an agent would (issue 12, the state-at-rest half).

Each test plays one escape from the issue against real `python -m agentsess` processes and
real files: a token that outlives its run, a token minted with the stolen signing key, a key
planted in jwks.json, receipts appended to a long-finished run, a finished run rewritten
without its seal, a run folder whose row was deleted, a planted config cache, and secrets of
another profile. Each one passed (the attack worked) before this change.
"""

import contextlib
import hashlib
import json
import marshal
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from helpers import agentsess, show, spawn, wait_for, write_config
from inrun import InRun

PY = sys.executable


def home() -> str:
    return os.environ["AGENTSESS_HOME"]


def receipts_path(run_id: str) -> str:
    return os.path.join(home(), "runs", run_id, "receipts.jsonl")


def stream_bytes(run_id: str) -> bytes:
    with open(receipts_path(run_id), "rb") as fh:
        return fh.read()


def db() -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(home(), "store.db"))


def verify(*args) -> tuple[int, list]:
    proc = agentsess("verify", *args, "--json")
    return proc.returncode, json.loads(proc.stdout)


def token_verdict(token: str, *args) -> tuple[int, dict]:
    proc = agentsess("token", "verify", token, *args, "--json")
    return proc.returncode, json.loads(proc.stdout)


# the child hands its environment over in a file, then lives until the test removes that file
KEEP = (
    "import os,sys,time,json; p=sys.argv[1]; json.dump(dict(os.environ), open(p+'.tmp','w')); "
    "os.rename(p+'.tmp',p)\nwhile os.path.exists(p): time.sleep(0.02)"
)


@contextlib.contextmanager
def live_run(*options):
    """A running run while the block lasts: yields the child's environment."""
    path = os.path.join(home(), "..", f"env-{time.monotonic_ns()}.json")
    proc = spawn("run", "--no-pty", *options, "--", PY, "-c", KEEP, path,
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: os.path.exists(path), what="the run's child")
        with open(path) as fh:
            yield json.load(fh)
    finally:
        if os.path.exists(path):
            os.unlink(path)
        proc.communicate(timeout=30)


def finished_run() -> dict:
    """A run that has exited: its child's environment (token included) and its id."""
    path = os.path.join(home(), "..", f"env-{time.monotonic_ns()}.json")
    script = "import os,sys,json; json.dump(dict(os.environ), open(sys.argv[1],'w'))"
    agentsess("run", "--no-pty", "--", PY, "-c", script, path, check=0)
    with open(path) as fh:
        env = json.load(fh)
    code, (result,) = verify(env["AGENTSESS_RUN_ID"])
    assert code == 0 and result["sealed"], result
    return env


def stolen_key():
    """The signing key as an agent reads it from the file keyring in the data root."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agentsess.edges.keys import b64url_decode

    with open(os.path.join(home(), "secrets.json")) as fh:
        secrets = json.load(fh)["secrets"]
    (name,) = [n for n in secrets if n.startswith("signing-key:")]
    return name.split(":", 1)[1], Ed25519PrivateKey.from_private_bytes(b64url_decode(secrets[name]))


def forge(kid: str, key, claims: dict) -> str:
    from agentsess.edges.keys import b64url_encode

    def part(obj):
        return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())

    signing_input = part({"alg": "EdDSA", "typ": "JWT", "kid": kid}) + "." + part(claims)
    return signing_input + "." + b64url_encode(key.sign(signing_input.encode()))


def claims_of(token: str) -> dict:
    from agentsess.edges.keys import b64url_decode

    return json.loads(b64url_decode(token.split(".")[1]))


# -- tokens die with their run ---------------------------------------------------------------


def test_a_token_is_valid_while_its_run_runs_and_dies_when_it_exits():
    with live_run("--scope", "fs:read") as env:
        token = env["AGENTSESS_TOKEN"]
        code, verdict = token_verdict(token, "--scope", "fs:read")
        assert code == 0 and verdict["valid"], verdict
    code, verdict = token_verdict(token)
    assert code == 1 and verdict["reason"] == "exited run", verdict
    assert "exited" in verdict["detail"] and token not in verdict["detail"]
    from agentsess import verify_token

    v = verify_token(token)
    assert not v and v.reason == "exited run"


def test_a_leftover_process_holding_the_token_cannot_use_it():
    # the child leaves a background process behind that keeps the token; the run exits at once.
    # Only an advisory run with on_exit = keep lets it live on (a contained run's die with it),
    # and it has found the data root on its own (it is not told).
    write_config('[profiles.leaver]\non_exit = "keep"\n')
    out = os.path.join(home(), "..", "leftover")
    script = (
        f"import os,subprocess,sys; subprocess.Popen([sys.executable,'-c',"
        f"\"import os,time,subprocess,sys; time.sleep(0.5); os.environ['AGENTSESS_HOME']={home()!r}; os.environ['AGENTSESS_KEYRING']='file'; "
        f"r=subprocess.run([sys.executable,'-m','agentsess','token','verify','--json'],capture_output=True); "
        f"open({out!r},'wb').write(r.stdout)\"], start_new_session=True)"
    )
    agentsess("run", "--no-pty", "--no-contain", "--profile", "leaver", "--", PY, "-c", script, check=0)
    wait_for(lambda: os.path.exists(out) and os.path.getsize(out), timeout=30, what="the leftover's verdict")
    with open(out) as fh:
        verdict = json.load(fh)
    assert verdict["valid"] is False and verdict["reason"] == "exited run", verdict


def test_an_abandoned_runs_token_says_so():
    with contextlib.ExitStack() as stack:
        path = os.path.join(home(), "..", "abandoned.json")
        proc = spawn("run", "--no-pty", "--", PY, "-c", KEEP, path, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
        stack.callback(lambda: proc.poll() is None and proc.kill())
        wait_for(lambda: os.path.exists(path), what="the run's child")
        with open(path) as fh:
            token = json.load(fh)["AGENTSESS_TOKEN"]
        assert token_verdict(token)[0] == 0
        os.kill(proc.pid, signal.SIGKILL)  # the supervisor dies; the run is abandoned
        proc.wait(10)
        os.unlink(path)
    code, verdict = token_verdict(token)
    assert code == 1 and verdict["reason"] == "abandoned run", verdict


def test_a_sub_agents_token_dies_with_its_parent():
    child_env = os.path.join(home(), "..", "child.json")
    inner = f"import os,json,sys,time; json.dump(dict(os.environ), open({child_env!r},'w'))"
    with live_run() as env:
        parent_env = {k: v for k, v in env.items() if k.startswith("AGENTSESS_")}
        agentsess("run", "--no-pty", "--", PY, "-c", inner, env=parent_env, check=0)
    with open(child_env) as fh:
        token = json.load(fh)["AGENTSESS_TOKEN"]
    code, verdict = token_verdict(token)
    assert code == 1 and verdict["reason"] in ("exited run", "ended ancestor"), verdict


def test_a_token_minted_with_the_stolen_key_for_an_invented_run_is_refused():
    with live_run() as env:
        real = claims_of(env["AGENTSESS_TOKEN"])
        kid, key = stolen_key()
        now = int(time.time())
        claims = dict(real, sid="run_01zzzzzzzzzzzzzzzzzzzzzzzz", jti="AAAAAAAAAAAAAAAAAAAAAA",
                      scope="*", iat=now, nbf=now, exp=now + 365 * 86400, chain=[])
        forged = forge(kid, key, claims)
        code, verdict = token_verdict(forged, "--scope", "github:repo:delete")
        assert code == 1 and verdict["reason"] == "not minted here", verdict
        from agentsess import verify_token

        assert verify_token(forged).reason == "not minted here"


def test_a_live_runs_token_re_signed_with_a_later_expiry_or_wider_scope_is_refused():
    with live_run("--scope", "fs:read", "--ttl", "10m") as env:
        real = claims_of(env["AGENTSESS_TOKEN"])
        kid, key = stolen_key()
        longer = forge(kid, key, dict(real, exp=real["exp"] + 365 * 86400))
        code, verdict = token_verdict(longer)
        assert code == 1 and verdict["reason"] == "expiry beyond record", verdict
        wider = forge(kid, key, dict(real, scope="*"))
        code, verdict = token_verdict(wider, "--scope", "github:repo:delete")
        assert code == 1 and verdict["reason"] == "not minted here", verdict
        other_jti = forge(kid, key, dict(real, jti="BBBBBBBBBBBBBBBBBBBBBB"))
        assert token_verdict(other_jti)[1]["reason"] == "not minted here"
        # the genuine token is still fine
        assert token_verdict(env["AGENTSESS_TOKEN"])[0] == 0


def test_a_denied_runs_id_in_a_token_minted_with_the_stolen_key_says_denied():
    write_config('[profiles.default]\nscopes = ["fs:read"]\n')
    denied = agentsess("run", "--no-pty", "--scope", "github:*", "--", "true")
    assert denied.returncode == 125
    (row,) = [r for r in json.loads(agentsess("runs", "--json", check=0).stdout) if r["status"] == "denied"]
    with live_run() as env:
        real = claims_of(env["AGENTSESS_TOKEN"])
        kid, key = stolen_key()
        forged = forge(kid, key, dict(real, sid=row["id"]))
        code, verdict = token_verdict(forged)
        assert code == 1 and verdict["reason"] == "denied run" and "was denied" in verdict["detail"], verdict


def test_a_revoked_runs_token_names_the_reason_given():
    with live_run() as env:
        token = env["AGENTSESS_TOKEN"]
        agentsess("revoke", env["AGENTSESS_RUN_ID"], "--reason", "prompt injection suspected", check=0)
        code, verdict = token_verdict(token)
        assert code == 1 and verdict["reason"] == "revoked run", verdict
        assert "prompt injection suspected" in verdict["detail"] and token not in verdict["detail"]


def test_a_forged_token_cannot_serve_as_the_parent_of_a_nested_run():
    with live_run() as env:
        real = claims_of(env["AGENTSESS_TOKEN"])
    kid, key = stolen_key()
    now = int(time.time())
    forged = forge(kid, key, dict(real, sid="run_01zzzzzzzzzzzzzzzzzzzzzzzz", scope="*", iat=now,
                                  nbf=now, exp=now + 86400))
    proc = agentsess("run", "--no-pty", "--scope", "github:*", "--", "true", env={"AGENTSESS_TOKEN": forged})
    assert proc.returncode == 125 and b"never minted" in proc.stderr, proc.stderr


# -- trusted keys come only from the key store ------------------------------------------------


def _plant_key_in_jwks():
    """Append a fresh key to keys/jwks.json (and make it current); returns (kid, private key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from agentsess.edges.keys import b64url_encode

    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes_raw()
    kid = b64url_encode(hashlib.sha256(raw).digest())[:16]
    path = os.path.join(home(), "keys", "jwks.json")
    with open(path) as fh:
        doc = json.load(fh)
    doc["keys"].append({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw), "kid": kid, "use": "sig",
                        "alg": "EdDSA", "created_at": "2026-01-01T00:00:00Z"})
    with open(path, "w") as fh:
        json.dump(doc, fh)
    return kid, key


def test_a_key_appended_to_jwks_json_is_not_trusted_nor_published():
    with live_run() as env:
        real = claims_of(env["AGENTSESS_TOKEN"])
        kid, key = _plant_key_in_jwks()
        # even the live run's exact claims, re-signed with the planted key, are refused
        forged = forge(kid, key, real)
        code, verdict = token_verdict(forged)
        assert code == 1 and verdict["reason"] == "unknown key", verdict
        assert token_verdict(env["AGENTSESS_TOKEN"])[0] == 0
    published = json.loads(agentsess("jwks", check=0).stdout)["keys"]
    assert kid not in [k["kid"] for k in published]
    assert kid not in [k["kid"] for k in json.loads(agentsess("key", "list", "--json", check=0).stdout)]


def test_a_seal_signed_with_a_key_planted_in_jwks_json_fails_verify():
    from agentsess.core.receipts.recording import seal_payload
    from agentsess.edges.keys import b64url_encode
    from agentsess.edges.streams import canonical, record_hash

    rid = finished_run()["AGENTSESS_RUN_ID"]
    kid, key = _plant_key_in_jwks()
    lines = stream_bytes(rid).splitlines(keepends=True)
    seal = json.loads(lines[-1])
    data = dict(seal["data"])
    payload = seal_payload(rid, data["count"], data["head"], data["output_bytes"], data["output_sha256"])
    data.update(kid=kid, sig=b64url_encode(key.sign(payload)))
    record = {k: v for k, v in seal.items() if k != "hash"}
    record["data"] = data
    record["hash"] = record_hash(record)
    with open(receipts_path(rid), "wb") as fh:
        fh.write(b"".join(lines[:-1]) + canonical(record) + b"\n")
    with db() as conn:  # the attacker moves the store's head too
        conn.execute("UPDATE runs SET chain_head = ? WHERE id = ?", (record["hash"], rid))
    code, (result,) = verify(rid)
    assert code == 1 and "unknown key" in result["failure"], result


def test_keys_live_in_the_keychain_and_jwks_json_is_only_an_export():
    with live_run() as env:
        token = env["AGENTSESS_TOKEN"]
        os.unlink(os.path.join(home(), "keys", "jwks.json"))
        assert token_verdict(token)[0] == 0  # verification never needed the file
        published = json.loads(agentsess("jwks", check=0).stdout)["keys"]
        header = json.loads(__import__("agentsess.edges.keys").edges.keys.b64url_decode(token.split(".")[0]))
        assert [k["kid"] for k in published] == [header["kid"]]
        assert set(published[0]) == {"kty", "crv", "x", "kid", "use", "alg"}
    with open(os.path.join(home(), "secrets.json")) as fh:
        names = set(json.load(fh)["secrets"])
    assert any(n.startswith("signing-keys:") for n in names) and any(n.startswith("signing-key:") for n in names)


def test_a_data_root_from_before_adopts_only_keys_whose_private_half_it_holds():
    # the old layout: the key list in jwks.json only. Its genuine key is adopted; a planted
    # entry (no private half in the keychain) is not.
    from agentsess.edges import keys

    kid, _ = keys.current_key()
    planted_kid, planted = _plant_key_in_jwks()
    from agentsess.edges import keychain

    keychain.delete(keys.key_list_entry())
    keys._public_cache.clear()
    assert keys.current_kid() == kid
    assert [k["kid"] for k in keys.key_list()] == [kid]
    assert keys.public_key(planted_kid) is None


# -- receipts: only a live run records, a sealed stream stays sealed --------------------------


HOOK_EVENT = json.dumps({"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Bash",
                         "tool_input": {"command": "git push --force"}, "tool_use_id": "t1"}).encode()


def test_actions_naming_a_finished_run_are_refused_and_write_nothing():
    env = finished_run()
    rid = env["AGENTSESS_RUN_ID"]
    before = stream_bytes(rid)
    head = show(rid)["integrity"]

    # no live run is there to ask (its control socket is gone): every call is refused
    hook = agentsess("hook", "claude-code", "--run", rid, input=HOOK_EVENT)
    assert hook.returncode == 2 and b"denied" in hook.stderr and hook.stdout == b""
    by_env = agentsess("hook", "claude-code", input=HOOK_EVENT, env={"AGENTSESS_RUN_ID": rid})
    assert by_env.returncode == 2
    check = agentsess("check", "fs:read", env={"AGENTSESS_RUN_ID": rid, "AGENTSESS_CONTROL": env["AGENTSESS_CONTROL"]})
    assert check.returncode == 2 and b"not inside a run" in check.stderr
    with_token = agentsess("check", "fs:read", env={"AGENTSESS_TOKEN": env["AGENTSESS_TOKEN"]})
    assert with_token.returncode == 2
    ran = agentsess("exec", "-c", "echo ran", env={"AGENTSESS_RUN_ID": rid})
    assert ran.stdout == b"ran\n" and b"could not record" in ran.stderr

    assert stream_bytes(rid) == before
    assert show(rid)["integrity"] == head
    code, (result,) = verify(rid)
    assert code == 0 and result["sealed"], result


def test_agentsess_own_writer_refuses_a_non_revocation_record_after_a_seal():
    from agentsess.core.receipts import recording
    from agentsess.edges.store import Store
    from agentsess.edges.streams import ReceiptError

    rid = finished_run()["AGENTSESS_RUN_ID"]
    before = stream_bytes(rid)
    with Store() as store:
        for rtype in ("action.exec", "run.exited", "credential.minted", "run.revoked\n"):
            with pytest.raises(ReceiptError, match="sealed"):
                recording.record(store, rid, rtype, {"command": "rm -rf /"})
        with pytest.raises(recording.RunEnded):
            recording.record_action(store, rid, "action.exec", {"command": "rm -rf /"})
        assert recording.seal(store, rid) is None  # already sealed: nothing appended
    assert stream_bytes(rid) == before
    agentsess("revoke", rid, check=0)  # a revocation is what a sealed stream accepts
    types = [json.loads(line)["type"] for line in stream_bytes(rid).splitlines()]
    assert types[-3:] == ["run.sealed", "run.revoked", "run.sealed"]
    assert verify(rid)[0] == 0


def _append_like_an_old_agentsess(rid: str, rtype: str, data: dict, reseal: bool) -> None:
    """What `hook --run` did to a finished run before: append, move the store's head, re-seal."""
    from agentsess.core.receipts.recording import seal_payload
    from agentsess.edges import keys, streams
    from agentsess.encoding import b64url_encode as b64url

    rec = streams.append(rid, rtype, data)
    if reseal:
        count, head = rec["seq"] + 1, rec["hash"]
        with db() as conn:
            out_bytes, out_sha = conn.execute(
                "SELECT output_bytes, output_sha256 FROM runs WHERE id = ?", (rid,)).fetchone()
        kid, sig = keys.sign(seal_payload(rid, count, head, out_bytes, out_sha))
        rec = streams.append(rid, streams.SEAL, {"count": count, "head": head, "output_bytes": out_bytes,
                                                 "output_sha256": out_sha, "kid": kid, "sig": b64url(sig)})
    with db() as conn:
        conn.execute("UPDATE runs SET chain_head = ?, chain_count = ? WHERE id = ?", (rec["hash"], rec["seq"] + 1, rid))


def test_verify_fails_records_appended_after_a_seal_even_when_resealed():
    rid = finished_run()["AGENTSESS_RUN_ID"]
    sealed_at = len(stream_bytes(rid).splitlines()) - 1
    _append_like_an_old_agentsess(rid, "action.exec", {"command": "git push --force", "exit_code": 0}, reseal=True)
    code, (result,) = verify(rid)
    assert code == 1 and result["failure_seq"] == sealed_at + 1, result
    assert "appended after the seal" in result["failure"] and "action.exec" in result["failure"]


def test_a_finished_run_rewritten_without_its_seal_fails_verify():
    rid = finished_run()["AGENTSESS_RUN_ID"]
    lines = stream_bytes(rid).splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "run.sealed"
    with open(receipts_path(rid), "wb") as fh:
        fh.write(b"".join(lines[:-1]))
    last = json.loads(lines[-2])
    with db() as conn:  # the attacker makes the store agree with the shortened file
        conn.execute("UPDATE runs SET chain_head = ?, chain_count = ? WHERE id = ?", (last["hash"], len(lines) - 1, rid))
    code, (result,) = verify(rid)
    assert code == 1 and "not sealed" in result["failure"] and result["sealed"] is False, result
    assert verify("--all")[0] == 1


def test_a_live_run_is_unsealed_but_passes():
    with live_run() as env:
        code, (result,) = verify(env["AGENTSESS_RUN_ID"])
        assert code == 0 and result["ok"] and not result["sealed"], result


def test_verify_all_reports_a_run_folder_whose_row_was_deleted():
    gone = finished_run()["AGENTSESS_RUN_ID"]
    kept = finished_run()["AGENTSESS_RUN_ID"]
    assert verify("--all")[0] == 0
    with db() as conn:
        conn.execute("DELETE FROM runs WHERE id = ?", (gone,))
    os.mkdir(os.path.join(home(), "runs", "not-a-run"))
    code, results = verify("--all")
    assert code == 1
    by_run = {r["run"]: r for r in results}
    assert by_run[kept]["ok"]
    assert not by_run[gone]["ok"] and "no row in the store" in by_run[gone]["failure"]
    assert "receipt lines on disk" in by_run[gone]["failure"]
    assert not by_run["not-a-run"]["ok"]
    text = agentsess("verify", "--all")
    assert text.returncode == 1 and gone.encode() in text.stdout


# -- no cache may widen the config -------------------------------------------------------------


def test_a_planted_config_cache_cannot_widen_a_profile():
    """The cache format agentsess used to trust: (module stamps, path, file bytes, profiles)."""
    import importlib

    config_module = importlib.import_module("agentsess.edges.config")
    validators = [importlib.import_module(f"agentsess.{name}") for name in
                  ("core.profiles", "core.credentials.scopes", "core.durations")]

    write_config('[profiles.bot]\nscopes = ["fs:read"]\n')
    agentsess("run", "--no-pty", "--", "true", check=0)  # make the data root
    config_path = os.environ["AGENTSESS_CONFIG"]
    with open(config_path, "rb") as fh:
        raw = fh.read()
    wide_path = os.path.join(home(), "..", "wide.toml")
    with open(wide_path, "w") as fh:
        fh.write('[profiles.bot]\nscopes = ["*"]\nmax_ttl = "365d"\n')
    wide = config_module.load_config(wide_path)
    profiles = {name: wide.profile(name).to_dict() for name in wide.profile_names()}
    stamps = []
    for module in [config_module, *validators]:
        st = os.stat(module.__file__)
        stamps.append((st.st_mtime_ns, st.st_size))
    with open(os.path.join(home(), "config.cache"), "wb") as fh:
        fh.write(marshal.dumps(((1, tuple(stamps)), config_path, raw, profiles)))

    proc = agentsess("run", "--no-pty", "--profile", "bot", "--scope", "github:repo:delete", "--", "true")
    assert proc.returncode == 125 and b"exceeds the ceiling" in proc.stderr, proc.stderr
    shown = json.loads(agentsess("config", "show", "--profile", "bot", check=0).stdout)
    assert shown["scopes"] == ["fs:read"]


# -- a run gets only its own profile's secrets -------------------------------------------------


SECRETS_CONFIG = """
[profiles.a]
scopes = ["fs:*"]
env = { A_TOKEN = { secret = "a-token" } }

[profiles.b]
scopes = ["fs:*"]
env = { B_TOKEN = { secret = "b-token" } }
"""


def test_a_run_receives_only_its_own_profiles_secrets():
    write_config(SECRETS_CONFIG)
    agentsess("secret", "set", "a-token", input=b"value-of-a-1234567890", check=0)
    agentsess("secret", "set", "b-token", input=b"value-of-b-1234567890", check=0)
    with live_run("--profile", "a") as env:
        assert env["A_TOKEN"] == "value-of-a-1234567890"
        assert "B_TOKEN" not in env
        assert not [k for k, v in env.items() if "value-of-b" in v]


def test_a_nested_run_cannot_pick_up_another_profiles_secrets():
    write_config(SECRETS_CONFIG)
    agentsess("secret", "set", "a-token", input=b"value-of-a-1234567890", check=0)
    agentsess("secret", "set", "b-token", input=b"value-of-b-1234567890", check=0)
    out = os.path.join(home(), "..", "nested.json")
    inner = f"import os,json; json.dump(dict(os.environ), open({out!r},'w'))"
    with InRun("--profile", "a") as run:
        proc = run.call("run", "--no-pty", "--profile", "b", "--", PY, "-c", inner)
    assert proc.returncode == 125 and b"does not hold" in proc.stderr
    assert not os.path.exists(out)


def test_a_revoked_run_whose_supervisor_died_records_nothing_and_fails_verify(tmp_path):
    write_config('[profiles.keep]\non_revoke = "keep"\n')
    with InRun("--profile", "keep") as run:
        rid = run.run_id
        agentsess("revoke", rid, check=0)  # on_revoke = keep: the run goes on, revoked
        denied = run.call("check", "fs:read")
        assert denied.returncode == 1 and b"revoked" in denied.stderr  # recorded: the supervisor is there
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.wait(10)
    before = stream_bytes(rid)
    hook = agentsess("hook", "claude-code", "--run", rid, input=HOOK_EVENT)
    assert hook.returncode == 2 and stream_bytes(rid) == before
    code, (result,) = verify(rid)
    assert code == 1 and "not sealed" in result["failure"], result


def test_checks_racing_the_end_of_their_run_never_land_after_its_seal(tmp_path):
    # the child starts checks in their own sessions and exits at once: each check lands before
    # the seal (and is allowed) or is refused (the run has ended); none lands after the seal
    out = str(tmp_path)
    script = (
        "import os,subprocess,sys\n"
        "pids=[]\n"
        "for i in range(8):\n"
        f"    f=open(os.path.join({out!r},'check-%d' % i),'wb')\n"
        "    p=subprocess.Popen([sys.executable,'-c','import subprocess,sys; r=subprocess.run([sys.executable,"
        "\"-m\",\"agentsess\",\"check\",\"fs:read\"],capture_output=True); sys.stdout.write(str(r.returncode))'],"
        " stdout=f, start_new_session=True)\n"
        "    pids.append(p.pid)\n"
        f"open(os.path.join({out!r},'pids'),'w').write(' '.join(map(str,pids)))\n"
    )
    # advisory: the test follows the checks by pid (on_exit = keep lets them race the end)
    write_config('[profiles.racer]\non_exit = "keep"\n')
    agentsess("run", "--no-pty", "--no-contain", "--profile", "racer", "--scope", "fs:read", "--", PY, "-c", script,
              check=0)
    rid = show()["id"]
    with open(os.path.join(out, "pids")) as fh:
        pids = [int(p) for p in fh.read().split()]

    def gone():
        from helpers import pid_alive

        return not any(pid_alive(p) for p in pids)

    wait_for(gone, timeout=60, what="the racing checks to finish")
    codes = []
    for i in range(8):
        with open(os.path.join(out, f"check-{i}")) as fh:
            text = fh.read()
        if text:
            codes.append(int(text))
    assert set(codes) <= {0, 1, 2}, codes  # allowed, refused, or no supervisor left to ask
    code, (result,) = verify(rid)
    assert code == 0 and result["sealed"], result
    records = [json.loads(line) for line in stream_bytes(rid).splitlines()]
    assert records[-1]["type"] == "run.sealed"
    assert sum(r["type"] == "action.checked" for r in records) == codes.count(0)


@pytest.mark.parametrize("kid", ["../../secrets", "signing-keys:abcd", "x" * 200, "ÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅÅ",
                                 "AAAAAAAAAAAAAAA=", "", "AAAAAAAAAAAAAAAA\n"])
def test_odd_kid_spellings_name_no_key(kid):
    from agentsess.core.credentials import tokens
    from agentsess.edges import keys

    _, key = keys.current_key()
    claims = {"iss": "agentsess", "sub": "agent:a", "agent": "a", "obo": "u@h", "sid": "run_x", "jti": "j",
              "iat": 1, "nbf": 1, "exp": 2**40, "scope": "*", "chain": []}
    v = tokens.verify(forge(kid, key, claims))
    assert not v and v.reason in ("unknown key", "malformed"), v
    assert keys.public_key(kid) is None


def test_show_run_says_a_finished_runs_credential_has_ended():
    rid = finished_run()["AGENTSESS_RUN_ID"]
    assert show(rid)["credential"]["state"] == "ended"
    with live_run() as env:
        assert show(env["AGENTSESS_RUN_ID"])["credential"]["state"] == "live"


def test_no_single_claim_of_a_live_token_can_be_changed_even_with_the_real_key():
    from agentsess import verify_token

    with live_run("--scope", "fs:read", "--scope", "github:pr:*") as env:
        real = claims_of(env["AGENTSESS_TOKEN"])
        kid, key = stolen_key()
        assert verify_token(forge(kid, key, real))  # the real claims, re-signed: the same token
        changes = {
            "sid": ["run_01zzzzzzzzzzzzzzzzzzzzzzzz", real["sid"].upper(), real["sid"] + " "],
            "jti": ["x", real["jti"][:-1] + ("A" if real["jti"][-1] != "A" else "B")],
            "exp": [real["exp"] + 1, real["exp"] - 1],
            "iat": [real["iat"] - 1],
            "nbf": [real["nbf"] - 1],
            "scope": ["*", "fs:read github:pr:* github:repo:delete", "fs:read"],
            "chain": [["run_01zzzzzzzzzzzzzzzzzzzzzzzz"]],
            "agent": ["root"],
            "obo": ["someone@else"],
            "extra": ["claim"],
        }
        for claim, values in changes.items():
            for value in values:
                changed = dict(real)
                changed[claim] = value
                if claim == "agent":
                    changed["sub"] = "agent:" + value
                v = verify_token(forge(kid, key, changed))
                assert not v, (claim, value)
                assert v.reason in ("not minted here", "expiry beyond record"), (claim, value, v)
