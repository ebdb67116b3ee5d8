"""Each run's own scoped, short-lived credential: tokens, scopes, profiles, sub-agents."""

import contextlib
import json
import os
import subprocess
import sys
import time

import jwt
from helpers import agentsess, show, spawn, wait_for, write_config

PY = sys.executable
# the token is masked in the child's output, so the child hands it over in a file
SAVE_TOKEN = "import os,sys; open(sys.argv[1],'w').write(os.environ['AGENTSESS_TOKEN'])"


def run_token(*options) -> str:
    """The token of a run that has already exited (so the token is dead)."""
    path = os.path.join(os.environ["AGENTSESS_HOME"], "..", f"token-{time.monotonic_ns()}")
    agentsess("run", *options, "--", PY, "-c", SAVE_TOKEN, path, check=0)
    with open(path) as fh:
        return fh.read()


# the child hands its token over in a file, then lives until the test removes that file
KEEP_TOKEN = (
    "import os,sys,time; p=sys.argv[1]; open(p+'.tmp','w').write(os.environ['AGENTSESS_TOKEN']); "
    "os.rename(p+'.tmp',p)\nwhile os.path.exists(p): time.sleep(0.02)"
)


@contextlib.contextmanager
def live_token(*options):
    """The token of a run that is running while the ``with`` block lasts."""
    path = os.path.join(os.environ["AGENTSESS_HOME"], "..", f"token-{time.monotonic_ns()}")
    proc = spawn("run", "--no-pty", *options, "--", PY, "-c", KEEP_TOKEN, path,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(path), what="the run's token")
        with open(path) as fh:
            yield fh.read()
    finally:
        os.unlink(path)
        proc.wait(30)


def test_token_printed_by_the_child_is_masked():
    proc = agentsess("run", "--", PY, "-c", "import os; print(os.environ['AGENTSESS_TOKEN'])", check=0)
    assert proc.stdout == b"[masked:token]\n"


def test_token_verifies_with_plain_pyjwt_against_the_jwks():
    token = run_token("--scope", "github:pr:create", "--ttl", "15m")
    keyset = json.loads(agentsess("jwks", check=0).stdout)
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(keyset)[header["kid"]]
    claims = jwt.decode(token, key=key, algorithms=["EdDSA"], options={"require": ["exp", "iat", "nbf", "sub"]})
    run = show()
    assert claims["sid"] == run["id"]
    assert claims["scope"] == "github:pr:create"
    assert claims["sub"].startswith("agent:") and "root" not in claims["sub"]
    assert claims["obo"] == f"{run['user']}@{run['host']}"
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert header["alg"] == "EdDSA" and header["typ"] == "JWT"


def test_child_environment_carries_the_credential():
    script = (
        "import os,json,sys,subprocess; env={k:v for k,v in os.environ.items() if k.startswith('AGENTSESS_')}; "
        "env['verify']=subprocess.run([sys.executable,'-m','agentsess','token','verify']).returncode; "
        "json.dump(env, open(sys.argv[1],'w'))"
    )
    out = os.path.join(os.environ["AGENTSESS_HOME"], "..", "env.json")
    agentsess("run", "--scope", "fs:write", "--name", "bot", "--", PY, "-c", script, out, check=0)
    with open(out) as fh:
        env = json.load(fh)
    assert env["AGENTSESS_SCOPES"] == "fs:write"
    assert env["AGENTSESS_AGENT"] == "bot"
    assert env["AGENTSESS_EXPIRES_AT"].endswith("Z")
    assert "AGENTSESS_PARENT_RUN_ID" not in env
    assert env["verify"] == 0  # valid inside the run...
    dead = agentsess("token", "verify", env["AGENTSESS_TOKEN"], "--json")
    assert dead.returncode == 1 and json.loads(dead.stdout)["reason"] == "exited run"  # ...and dies with it


def test_token_is_never_stored_and_receipt_names_only_its_id():
    token = run_token("--scope", "fs:read")
    home = os.environ["AGENTSESS_HOME"]
    for root, _, files in os.walk(home):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                assert token.encode() not in fh.read(), name
    minted = [r for r in show()["receipts"] if r["type"] == "credential.minted"][0]["data"]
    assert set(minted) >= {"jti", "kid", "scopes", "iat", "exp"}


def test_token_verify_reasons_and_scopes():
    with live_token("--scope", "github:*") as token:
        _verify_reasons_and_scopes(token)


def _verify_reasons_and_scopes(token):
    ok = agentsess("token", "verify", token, "--scope", "github:pr:create", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True
    missing = agentsess("token", "verify", token, "--scope", "fs:write")
    assert missing.returncode == 1 and b"missing scope" in missing.stderr
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    bad = agentsess("token", "verify", tampered, "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["reason"] in ("bad signature", "malformed")
    piped = agentsess("token", "verify", "-", input=token.encode())
    assert piped.returncode == 0
    usage = agentsess("token", "verify")
    assert usage.returncode == 2 and b"AGENTSESS_TOKEN" in usage.stderr


def test_expired_token_is_refused(monkeypatch):
    token = run_token("--ttl", "1s")
    time.sleep(1.5)
    out = agentsess("token", "verify", token, "--json")
    assert out.returncode == 1
    assert json.loads(out.stdout)["reason"] == "expired"


def test_key_rotation_keeps_old_tokens_verifiable():
    with live_token() as old:
        first = json.loads(agentsess("jwks", check=0).stdout)["keys"]
        agentsess("key", "rotate", check=0)
        with live_token() as new:
            keys = json.loads(agentsess("jwks", check=0).stdout)["keys"]
            assert len(keys) == len(first) + 1
            assert jwt.get_unverified_header(old)["kid"] != jwt.get_unverified_header(new)["kid"]
            assert agentsess("token", "verify", old).returncode == 0
            assert agentsess("token", "verify", new).returncode == 0


def test_request_beyond_the_profile_ceiling_is_refused_and_recorded():
    write_config('[profiles.bot]\nscopes = ["github:pr:*", "fs:read"]\n')
    proc = agentsess("run", "--profile", "bot", "--scope", "github:repo:delete", "--scope", "fs:read", "--", "true")
    assert proc.returncode == 125
    err = proc.stderr.decode()
    assert "github:repo:delete" in err and "github:pr:*" in err and "fs:read exceeds" not in err
    assert err.count("\n") == 1
    run = show()
    assert run["status"] == "denied"
    assert [r["type"] for r in run["receipts"]] == ["run.denied", "run.sealed"]
    assert run["integrity"]["ok"]


def test_ttl_beyond_max_is_refused():
    write_config('[profiles.bot]\nscopes = ["fs:*"]\nmax_ttl = "1h"\n')
    proc = agentsess("run", "--profile", "bot", "--ttl", "2h", "--", "true")
    assert proc.returncode == 125
    assert b"max_ttl" in proc.stderr
    assert show()["status"] == "denied"


def test_default_scopes_of_a_profile_and_the_ceiling_in_show_run():
    write_config('[profiles.claude]\nscopes = ["github:*", "fs:*"]\ndefault_scopes = ["fs:read"]\n')
    agentsess("run", "--profile", "claude", "--", "true", check=0)
    run = show()
    assert run["scopes"] == ["fs:read"]
    assert run["credential"]["ceiling"] == ["github:*", "fs:*"]
    assert run["profile"] == "claude" and run["agent"] == "claude"


def test_sub_agents_three_deep_attenuate_and_are_capped_by_the_parent():
    inner = [PY, "-c", "import os; print(os.environ['AGENTSESS_RUN_ID'], os.environ['AGENTSESS_SCOPES'])"]
    level3 = [PY, "-m", "agentsess", "run", "--scope", "github:pr:create", "--", *inner]
    level2 = [PY, "-m", "agentsess", "run", "--scope", "github:pr:*", "--ttl", "2h", "--", *level3]
    proc = agentsess("run", "--scope", "github:*", "--ttl", "30m", "--", *level2, check=0)
    leaf_id, leaf_scopes = proc.stdout.decode().split()
    assert leaf_scopes == "github:pr:create"
    leaf = show(leaf_id)
    assert leaf["depth"] == 2
    mid = show(leaf["parent_id"])
    top = show(mid["parent_id"])
    assert top["parent_id"] is None
    assert mid["expires_at"] == top["expires_at"]  # 2h was capped to the parent's 30m
    minted = [r for r in mid["receipts"] if r["type"] == "credential.minted"][0]["data"]
    assert minted["ttl_capped_by_parent"] is True
    assert minted["chain"] == [top["id"]]
    assert [c["id"] for c in top["children"]] == [mid["id"]]
    assert top["children"][0]["children"][0]["id"] == leaf_id
    assert any(r["type"] == "child.started" and r["data"]["child"] == mid["id"] for r in top["receipts"])


def test_nested_request_beyond_the_parent_is_refused_naming_the_excess():
    nested = [PY, "-m", "agentsess", "run", "--scope", "github:repo:delete", "--", "true"]
    proc = agentsess("run", "--scope", "github:pr:*", "--", *nested)
    assert proc.returncode == 125
    assert b"github:repo:delete exceeds the parent run's scopes" in proc.stderr


def test_nested_run_with_an_invalid_parent_token_is_refused():
    proc = agentsess("run", "--", "true", env={"AGENTSESS_TOKEN": "not.a.token"})
    assert proc.returncode == 125
    assert b"parent run's token is not valid" in proc.stderr


def test_depth_limit():
    write_config('[defaults]\nmax_depth = 1\n')
    deeper = [PY, "-m", "agentsess", "run", "--", PY, "-m", "agentsess", "run", "--", "true"]
    proc = agentsess("run", "--", *deeper)
    assert proc.returncode == 125
    assert b"max_depth" in proc.stderr


def test_config_init_writes_starter_profiles_and_run_uses_one():
    agentsess("config", "init", check=0)
    assert agentsess("config", "init").returncode == 2  # refuses to overwrite
    shown = json.loads(agentsess("config", "show", "--profile", "claude", check=0).stdout)
    assert "ANTHROPIC_API_KEY" in shown["pass_env"]
    agentsess("config", "set", "profiles.claude.ttl", "20m", check=0)
    assert agentsess("run", "--profile", "claude", "--no-such-option", "--", "true").returncode == 125
    agentsess("run", "--profile", "claude", "--agent", "none", "--", "true", check=0)
    run = show()
    assert run["profile"] == "claude"
    minted = [r for r in run["receipts"] if r["type"] == "credential.minted"][0]["data"]
    assert minted["ceiling"] == shown["scopes"]


def test_bad_config_is_one_line_naming_file_and_key():
    write_config('[profiles.bot]\nttl = "soon"\n')
    proc = agentsess("run", "--profile", "bot", "--", "true")
    assert proc.returncode == 125
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "profiles.bot.ttl" in err and os.environ["AGENTSESS_CONFIG"] in err
    write_config("[profiles.bot\n")
    proc = agentsess("runs")
    assert agentsess("config", "show").returncode == 2
