"""`export --format bundle` and `verify FILE --jwks JWKS`: an exported stream verifies on
another machine (another data root with other keys), and every edit an attacker could make
to the file, or to the JWKS it is checked against, is caught."""

import base64
import json
import os

import pytest
from helpers import agentsess, cli, show


@pytest.fixture
def exported(tmp_path):
    """A finished run's stream, bundle and JWKS, exported to files, and a fresh data root
    (another machine) to verify them in."""
    agentsess("run", "--no-pty", "--", "sh", "-c", "echo hello; exit 2", check=2)
    run_id = show()["id"]
    stream = tmp_path / "stream.jsonl"
    bundle = tmp_path / "bundle.json"
    jwks = tmp_path / "jwks.json"
    cli("export", run_id, "--format", "jsonl", "-o", str(stream), check=0)
    cli("export", run_id, "--format", "bundle", "-o", str(bundle), check=0)
    jwks.write_bytes(agentsess("jwks", check=0).stdout)
    assert oct(os.stat(bundle).st_mode & 0o777) == "0o600"
    os.environ["AGENTSESS_HOME"] = str(tmp_path / "elsewhere")  # undone by conftest's monkeypatch
    return {"id": run_id, "stream": stream, "bundle": bundle, "jwks": jwks, "tmp": tmp_path}


def verify(path, jwks=None):
    args = ["verify", str(path), "--json"] + (["--jwks", str(jwks)] if jwks else [])
    proc = agentsess(*args)
    return proc.returncode, (json.loads(proc.stdout)[0] if proc.stdout.strip() else None), proc


def test_a_stream_and_a_bundle_verify_on_another_machine(exported):
    code, result, _ = verify(exported["stream"], exported["jwks"])
    assert code == 0 and result["ok"] and result["sealed"] and result["run"] == exported["id"], result
    assert result["keys"] == "the given JWKS" and len(result["output_sha256"]) == 64
    code, result, _ = verify(exported["bundle"], exported["bundle"])  # the bundle's own JWKS, named
    assert code == 0 and result["ok"], result
    code, result, _ = verify(exported["bundle"], exported["jwks"])
    assert code == 0 and result["ok"], result
    human = agentsess("verify", str(exported["stream"]), "--jwks", str(exported["jwks"]), check=0).stdout
    assert human.startswith(b"PASS  " + exported["id"].encode())


def test_a_bundle_does_not_vouch_for_itself(exported):
    """Without --jwks, only this machine's own keys count: the bundle's JWKS is not trusted."""
    code, result, _ = verify(exported["bundle"])
    assert code == 1 and "unknown key" in result["failure"]
    assert "verify it with --jwks" in result["failure"]  # what to do about it


def test_a_jwks_of_other_keys_fails(exported, tmp_path):
    os.environ["AGENTSESS_HOME"] = str(tmp_path / "other")
    other = tmp_path / "other.json"
    other.write_bytes(agentsess("jwks", check=0).stdout)
    code, result, _ = verify(exported["stream"], other)
    assert code == 1 and "unknown key" in result["failure"]


def _forged_jwks(exported, mutate) -> str:
    doc = json.loads(exported["jwks"].read_text())
    mutate(doc)
    path = exported["tmp"] / "forged.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_key_filed_under_the_real_kid_is_not_trusted(exported):
    """An attacker's key presented under the real kid (it would verify the attacker's reseal)
    is dropped: a kid is derived from its key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    fake = Ed25519PrivateKey.generate().public_key().public_bytes_raw()

    def swap(doc):
        for key in doc["keys"]:
            key["x"] = base64.urlsafe_b64encode(fake).rstrip(b"=").decode()

    code, result, _ = verify(exported["stream"], _forged_jwks(exported, swap))
    assert code == 1 and "unknown key" in result["failure"]


@pytest.mark.parametrize("change", ["kty", "crv"])
def test_keys_of_another_type_are_ignored(exported, change):
    def alter(doc):
        for key in doc["keys"]:
            key[change] = "EC" if change == "kty" else "P-256"

    code, result, _ = verify(exported["stream"], _forged_jwks(exported, alter))
    assert code == 1 and "unknown key" in result["failure"]


def _edit(path, k, mutate) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[k] = mutate(lines[k])
    path.write_bytes(b"".join(lines))


def test_edits_of_the_exported_stream_fail(exported):
    from agentsess.edges.streams import canonical, record_hash

    s = exported["stream"]
    original = s.read_bytes()
    lines = original.splitlines(keepends=True)
    k = next(i for i, line in enumerate(lines) if b'"type":"run.exited"' in line)
    cases = {
        "edited": lambda: _edit(s, k, lambda b: b.replace(b'"exit_code":2', b'"exit_code":0')),
        "rehashed": lambda: _edit(s, k, lambda b: _rehash(b, canonical, record_hash)),
        "dropped seal": lambda: s.write_bytes(b"".join(lines[:-1])),
        "dropped middle": lambda: s.write_bytes(b"".join(lines[:k] + lines[k + 1:])),
        "no final newline": lambda: s.write_bytes(original[:-1]),
        "empty": lambda: s.write_bytes(b""),
        "another run's seal": lambda: _edit(s, len(lines) - 1, lambda b: b.replace(exported["id"].encode(), b"run_x")),
        "appended record": lambda: s.write_bytes(original + lines[k]),
        "deep nesting": lambda: s.write_bytes(b"[" * 5000 + b"]" * 5000 + b"\n"),
    }
    for name, spoil in cases.items():
        s.write_bytes(original)
        spoil()
        code, result, proc = verify(s, exported["jwks"])
        assert code == 1, (name, result, proc.stderr)
        assert result["ok"] is False, name
    s.write_bytes(original)
    assert verify(s, exported["jwks"])[0] == 0


def _rehash(line: bytes, canonical, record_hash) -> bytes:
    rec = json.loads(line)
    rec["data"]["exit_code"] = 0
    rec["hash"] = record_hash(rec)
    return canonical(rec) + b"\n"


def test_edits_of_a_bundle_fail(exported):
    b = exported["bundle"]
    doc = json.loads(b.read_text())
    for name, spoil in {
        "run renamed": lambda d: d.__setitem__("run", "run_other"),
        "receipt edited": lambda d: d["receipts"].__setitem__(2, d["receipts"][2].replace('"exit_code":2', '"exit_code":0')),
        "receipts not lines": lambda d: d.__setitem__("receipts", [1, 2]),
        "seal removed": lambda d: d["receipts"].pop(),
        "lone surrogate": lambda d: d["receipts"].__setitem__(0, d["receipts"][0] + "\ud800"),
    }.items():
        spoiled = json.loads(json.dumps(doc))
        spoil(spoiled)
        path = exported["tmp"] / "spoiled.json"
        path.write_text(json.dumps(spoiled))
        code, result, proc = verify(path, exported["jwks"])
        assert code == 1 and result["ok"] is False, (name, result, proc.stderr)


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"keys": 3}', b"{" * 3000])
def test_a_bad_jwks_file_is_a_usage_error(exported, content):
    bad = exported["tmp"] / "bad.json"
    bad.write_bytes(content)
    proc = agentsess("verify", str(exported["stream"]), "--jwks", str(bad))
    assert proc.returncode == 2 and proc.stderr.startswith(b"agentsess: error: the JWKS file ")
    assert proc.stderr.count(b"\n") == 1


def test_a_missing_file_is_one_line():
    proc = agentsess("verify", "nothere.jsonl", "--jwks", "nothere.json")
    assert proc.returncode == 2 and proc.stderr.startswith(b"agentsess: error: cannot read the exported stream ")


def test_a_missing_file_without_jwks_is_named_as_a_file_not_a_run_id(tmp_path):
    for name in ("nothere.jsonl", str(tmp_path / "gone" / "stream.jsonl")):
        proc = agentsess("verify", name)
        assert proc.returncode == 2, proc
        assert proc.stderr.startswith(b"agentsess: error: cannot read the exported stream "), proc.stderr
        assert b"not a run id" not in proc.stderr and proc.stderr.count(b"\n") == 1
