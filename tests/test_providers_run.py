"""GitHub App installation tokens through `agentsess run`: minted per run from its scopes, served
through the broker as a placeholder, deleted at the end and on revoke, and git through the broker.

The other side is a GitHub stand-in on loopback (TLS with a test CA) that verifies the App's
JWT, enforces the installation's repositories and permissions, and records each DELETE; the
clients are real curl and real git.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from broker_standins import MintedCA
from github_standin import GitHub, Server, _Api, _Git, make_repos, rsa_pem
from helpers import agentsess, assert_no_traceback, running_run_id, show, spawn, stderr_lines, wait_for, write_config

PY = sys.executable
CI = os.environ.get("AGENTSESS_CI") == "1"


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        if CI:
            pytest.fail(f"{program} is required in CI")
        pytest.skip(f"{program} is not installed")
    return path


@pytest.fixture(scope="module")
def app_key():
    return rsa_pem()


@pytest.fixture
def ca(tmp_path):
    return MintedCA(str(tmp_path))


class Stand:
    def __init__(self, gh, api, git, root):
        self.gh, self.api, self.git, self.root = gh, api, git, root


def _stand(tmp_path, ca, app_key, **kw):
    need("git")
    need("curl")
    root = str(tmp_path / "srv")
    make_repos(root, ["acme/app", "acme/lib", "acme/other"])
    gh = GitHub(app_key[1], **kw)
    api = Server(_Api, gh, ca, "127.0.0.1")
    git = Server(_Git, gh, ca, "127.0.0.2", root)
    return Stand(gh, api, git, root)


@pytest.fixture
def stand(tmp_path, ca, app_key):
    s = _stand(tmp_path, ca, app_key)
    yield s
    s.api.close()
    s.git.close()


def configure(stand, ca, app_key, scopes, extra: str = "", repositories='["acme/app"]', key=None):
    write_config(
        f"""
[profiles.coder]
scopes = {json.dumps(scopes)}
default_scopes = {json.dumps(scopes)}
{extra}
[profiles.coder.providers.github]
app_id = 123456
installation_id = 7890123
private_key_secret = "github-app-key"
api_url = "{stand.api.url}"
git_url = "{stand.git.url}"
repositories = {repositories}
ca_file = "{ca.ca_file}"
"""
    )
    agentsess("secret", "set", "github-app-key", input=(key or app_key[0]).encode(), check=0)


def receipts(run, rtype):
    return [r["data"] for r in run["receipts"] if r["type"] == rtype]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def assert_token_nowhere(token: str, home) -> None:
    for folder, _, files in os.walk(home):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                assert token.encode() not in fh.read(), os.path.join(folder, name)


def git_env(tmp_path) -> dict:
    """A human's git set-up: a global helper that would answer with the human's own token."""
    human = tmp_path / "human"
    human.mkdir(exist_ok=True)
    (human / ".gitconfig").write_text(
        "[credential]\n\thelper = \"!f() { echo username=human; echo password=human-token; }; f\"\n"
        "[user]\n\tname = human\n\temail = h@h\n"
    )
    return {"HOME": str(human), "GIT_SSL_CAINFO": None}


# -- minting --------------------------------------------------------------------------------


@pytest.mark.parametrize("token_format", ["ghs", "stateless"])
def test_a_run_gets_a_scoped_installation_token_as_a_placeholder(tmp_path, ca, app_key, agentsess_home,
                                                                  token_format):
    stand = _stand(tmp_path, ca, app_key, token_format=token_format)
    try:
        configure(stand, ca, app_key, ["github:contents:read", "github:pull_requests:write"])
        script = ('echo "GH=$GH_TOKEN"; echo "GT=$GITHUB_TOKEN"; echo "URL=$GITHUB_API_URL"; '
                  'curl -sS -H "Authorization: token $GH_TOKEN" "$GITHUB_API_URL/repos/acme/app"; echo; '
                  'curl -sS -H "Authorization: Bearer $GITHUB_TOKEN" "$GITHUB_API_URL/repos/acme/lib"; echo')
        proc = agentsess("run", "-p", "coder", "--", "sh", "-c", script, check=0)
        out = proc.stdout.decode()
        gh = stand.gh
        assert len(gh.minted) == 1
        minted = gh.minted[0]
        token = minted["token"]
        assert minted["body"] == {"repositories": ["app"], "permissions": {"contents": "read",
                                                                            "pull_requests": "write"}}
        assert token not in out and token not in proc.stderr.decode()
        lines = dict(line.split("=", 1) for line in out.splitlines() if line[:3] in ("GH=", "GT=", "URL"))
        assert lines["GH"].startswith("ghs_agentsess-ph-github-") and lines["GT"] == lines["GH"]
        assert lines["URL"].startswith("http://127.0.0.1:") and lines["URL"].endswith("/github")
        assert '"full_name": "acme/app"' in out  # the API saw the real token through the broker
        assert '"Not Found"' in out  # acme/lib is not in this token: GitHub itself says no
        assert "agentsess-ph-" not in gh.digests_seen()
        # the token is deleted at the end of the run, and the receipts say so, with a digest only
        assert [d["sha256"] for d in gh.deleted] == [sha(token)]
        run = show()
        mint = [d for d in receipts(run, "credential.minted") if d.get("provider") == "github"]
        assert len(mint) == 1 and mint[0]["token_sha256"] == sha(token)
        assert mint[0]["repositories"] == ["acme/app"] and mint[0]["installation_id"] == 7890123
        assert mint[0]["permissions"] == {"contents": "read", "pull_requests": "write"}
        assert mint[0]["expires_at"].endswith("Z")
        revoked = receipts(run, "credential.revoked")
        assert len(revoked) == 1 and revoked[0]["cause"] == "finished"
        entry = revoked[0]["providers"][0]
        assert entry["provider"] == "github" and entry["result"] == "revoked" and entry["latency"] >= 0
        types = [r["type"] for r in run["receipts"]]
        assert types.index("credential.revoked") < types.index("run.exited")
        assert run["integrity"]["ok"]
        assert_token_nowhere(token, agentsess_home)
    finally:
        stand.api.close()
        stand.git.close()


def test_a_run_without_github_scopes_gets_no_token(stand, ca, app_key):
    configure(stand, ca, app_key, ["fs:write", "github:pr:create"])
    proc = agentsess("run", "-p", "coder", "--", "sh", "-c", 'echo "[${GH_TOKEN-unset}]"', check=0)
    assert proc.stdout.decode().strip() == "[unset]"
    assert stand.gh.minted == [] and stand.gh.seen == []


def test_a_scope_the_installation_does_not_grant_is_refused_naming_it(stand, ca, app_key):
    configure(stand, ca, app_key, ["github:contents:read", "github:issues:write"])
    proc = agentsess("run", "-p", "coder", "--", "true", check=125)
    lines = stderr_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("agentsess: error: github: installation 7890123 does not grant")
    assert "github:issues:write (it grants issues:read)" in lines[0]
    assert stand.gh.minted == []
    assert_no_traceback(proc)


def test_a_repository_outside_the_installation_is_refused_naming_it(stand, ca, app_key):
    configure(stand, ca, app_key, ["github:contents:read"], repositories='["acme/app", "acme/secret"]')
    proc = agentsess("run", "-p", "coder", "--", "true", check=125)
    (line,) = stderr_lines(proc)
    assert "installation 7890123 does not grant access to acme/app, acme/secret" in line


def test_the_app_jwt_is_verified_and_a_wrong_key_refuses_the_run(stand, ca, app_key):
    other_pem, _ = rsa_pem()
    configure(stand, ca, app_key, ["github:contents:read"], key=other_pem)
    proc = agentsess("run", "-p", "coder", "--", "true", check=125)
    (line,) = stderr_lines(proc)
    assert "minting an installation token failed: HTTP 401" in line
    assert "BEGIN" not in line and "ey" not in line.split("HTTP 401")[0]


def test_a_key_that_is_not_pem_refuses_the_run_in_one_line(stand, ca, app_key):
    configure(stand, ca, app_key, ["github:contents:read"], key="not a key at all")
    proc = agentsess("run", "-p", "coder", "--", "true", check=125)
    (line,) = stderr_lines(proc)
    assert "is not a usable RSA private key" in line and "not a key at all" not in line


def test_scopes_that_would_widen_a_repository_are_refused(stand, ca, app_key):
    configure(stand, ca, app_key, ["github:contents:read", "github:acme/lib:contents:write"])
    proc = agentsess("run", "-p", "coder", "--", "true", check=125)
    (line,) = stderr_lines(proc)
    assert "one set of permissions for all its repositories" in line and "acme/lib: contents:write" in line
    assert stand.gh.minted == []


def test_bad_provider_config_is_one_line_naming_the_key(stand, ca, app_key):
    configure(stand, ca, app_key, ["github:contents:read"])
    path = os.environ["AGENTSESS_CONFIG"]
    with open(path) as fh:
        text = fh.read()
    with open(path, "w") as fh:
        fh.write(text.replace("app_id = 123456", 'app_id = "123456"'))
    (line,) = stderr_lines(agentsess("config", "show", check=2))
    assert "profiles.coder.providers.github.app_id: expected a positive integer" in line
    with open(path, "w") as fh:
        fh.write(text.replace("[profiles.coder.providers.github]", "[profiles.coder.providers.gitlab]"))
    (line,) = stderr_lines(agentsess("run", "-p", "coder", "--", "true", check=125))
    assert "providers.gitlab: unknown provider" in line


def test_services_github_and_providers_github_together_are_refused(stand, ca, app_key):
    configure(stand, ca, app_key, ["github:contents:read"], extra='services = ["github"]')
    agentsess("secret", "set", "github-token", input=b"x", check=0)
    (line,) = stderr_lines(agentsess("run", "-p", "coder", "--", "true", check=125))
    assert "services.github and providers.github both serve GitHub" in line


# -- git through the broker -------------------------------------------------------------------


def test_git_clone_and_push_through_the_broker_with_the_run_token(stand, ca, app_key, tmp_path, agentsess_home):
    configure(stand, ca, app_key, ["github:contents:write"])
    clone = tmp_path / "clone"
    script = (
        f'git clone -q {stand.git.url}/acme/app.git {clone} && cd {clone} && '
        'git -c user.name=a -c user.email=a@a commit -q --allow-empty -m "from the agent" && '
        'git push -q origin HEAD:main && echo pushed'
    )
    proc = agentsess("run", "-p", "coder", "--", "sh", "-c", script, env=git_env(tmp_path), check=0)
    assert proc.stdout.decode().strip() == "pushed", proc.stderr.decode()
    log = subprocess.run(["git", "-C", os.path.join(stand.root, "acme/app.git"), "log", "--format=%s", "main"],
                         capture_output=True, check=True).stdout.decode().split("\n")
    assert log[0] == "from the agent"
    seen = stand.gh.digests_seen()
    assert "human-token" not in seen and "agentsess-ph-" not in seen  # never the human's helper
    token = stand.gh.minted[0]["token"]
    assert_token_nowhere(token, agentsess_home)
    assert not os.path.exists(tmp_path / "human" / ".git-credentials")


def test_a_push_outside_the_scopes_fails_naming_the_missing_scope(stand, ca, app_key, tmp_path):
    configure(stand, ca, app_key, ["github:contents:read"])
    clone = tmp_path / "clone"
    script = (
        f'git clone -q {stand.git.url}/acme/app.git {clone} && cd {clone} && '
        'git -c user.name=a -c user.email=a@a commit -q --allow-empty -m x && git push -q origin HEAD:main'
    )
    proc = agentsess("run", "-p", "coder", "--", "sh", "-c", script, env=git_env(tmp_path))
    assert proc.returncode != 0 and (clone / ".git").exists()
    err = proc.stderr.decode()
    # git shows the broker's refusal as the remote's message
    assert "remote: agentsess broker: git push to acme/app needs scope github:contents:write" in err, err
    assert not any(s["path"].endswith("git-receive-pack") for s in stand.gh.seen if "/acme/" in s["path"])


def test_a_repository_outside_the_scopes_is_refused_naming_the_scope(stand, ca, app_key, tmp_path):
    configure(stand, ca, app_key, ["github:contents:read"])
    proc = agentsess("run", "-p", "coder", "--", "git", "clone", "-q", f"{stand.git.url}/acme/other.git",
                     str(tmp_path / "c"), env=git_env(tmp_path), check=128)
    err = proc.stderr.decode()
    assert "git fetch from acme/other needs scope github:acme/other:contents:read" in err, err
    assert "human-token" not in stand.gh.digests_seen()
    assert not (tmp_path / "c" / ".git").exists()


@pytest.mark.parametrize("path", ["acme/app.git/../other.git", "acme/%2e%2e/other.git", "acme%2fother.git",
                                  "ACME/OTHER.git", "acme/other.git?x=acme/app.git"])
def test_odd_repository_spellings_never_reach_another_repository(stand, ca, app_key, tmp_path, path):
    configure(stand, ca, app_key, ["github:contents:read"])
    proc = agentsess("run", "-p", "coder", "--", "git", "clone", "-q", f"{stand.git.url}/{path}",
                     str(tmp_path / "c"), env=git_env(tmp_path), check=128)
    assert "remote: agentsess broker: " in proc.stderr.decode()
    reached = [s["path"] for s in stand.gh.seen if "other" in s["path"].lower()]
    assert reached == [], reached


HELPER_URL = 'url=$(git config --get-regexp "credential.*helper" | sed -n "s/.* \\(http:[^ ]*\\)$/\\1/p" | head -1); '
HELPER_REQ = 'printf "protocol=http\\nhost=x\\npath=github-git/acme/app.git\\n\\n" > req; '
HELPER_GET = HELPER_URL + HELPER_REQ + 'echo "helper: $("$0" -m agentsess.edges.gitcredential "$url" get < req)"; '


def test_the_helper_refuses_a_caller_without_the_run_token(stand, ca, app_key, tmp_path):
    configure(stand, ca, app_key, ["github:contents:read"])
    script = (
        HELPER_URL + HELPER_REQ +
        'echo "--with"; "$0" -m agentsess.edges.gitcredential "$url" get < req; '
        'echo "--without"; AGENTSESS_TOKEN=forged "$0" -m agentsess.edges.gitcredential "$url" get < req'
    )
    proc = agentsess("run", "-p", "coder", "--", "sh", "-c", script, PY, env=git_env(tmp_path), cwd=tmp_path,
                     check=0)
    out = proc.stdout.decode()
    with_token, without = out.split("--without")
    assert "username=x-access-token" in with_token and "password=ghs_agentsess-ph-github-git-" in with_token
    assert without.strip() == "quit=1" and "not a process of this run" in proc.stderr.decode()


# -- revocation ---------------------------------------------------------------------------------


def test_revoke_deletes_the_token_and_the_next_git_and_api_calls_fail(stand, ca, app_key, tmp_path):
    configure(stand, ca, app_key, ["github:contents:read"], extra='on_revoke = "keep"')
    clone = tmp_path / "clone"
    go = tmp_path / "go"
    script = (
        f'git clone -q {stand.git.url}/acme/app.git {clone} && echo cloned && touch {tmp_path}/cloned; '
        f'while [ ! -e {go} ]; do sleep 0.05; done; '
        f'git -C {clone} fetch -q origin && echo fetched-after-revoke; '
        f'{HELPER_GET} '
        'curl -sS -o /dev/null -w "api %{http_code}\\n" -H "Authorization: token $GH_TOKEN" '
        '"$GITHUB_API_URL/repos/acme/app"'
    )
    proc = spawn("run", "-p", "coder", "--", "sh", "-c", script, PY, env=git_env(tmp_path),
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        run_id = running_run_id()
        wait_for(lambda: (tmp_path / "cloned").exists(), what="the clone")
        started = time.time()
        agentsess("revoke", run_id, check=0)
        wait_for(lambda: stand.gh.deleted, what="the DELETE")
        latency = stand.gh.deleted[0]["at"] - started
        go.write_text("")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"cloned" in out and b"fetched-after-revoke" not in out
    assert b"api 403" in out
    assert f"run {run_id} is revoked: its credentials are dead".encode() in err  # the broker, to git
    assert b"helper: quit=1" in out  # and the helper, asked directly, says quit
    assert f"agentsess: error: run {run_id} is revoked: git gets no credential".encode() in err
    assert latency < 5  # generous: the figure itself is in the benchmark and the report
    run = show(run_id)
    (revoked,) = receipts(run, "credential.revoked")
    assert revoked["cause"] == "revoked"
    (entry,) = revoked["providers"]
    assert entry["result"] == "revoked" and entry["since_revocation"] >= 0 and entry["latency"] >= 0
    assert entry["token_sha256"] == sha(stand.gh.minted[0]["token"])
    assert len(stand.gh.deleted) == 1  # not deleted a second time at the run's end


def test_a_token_already_revoked_at_github_counts_as_revoked(stand, ca, app_key):
    configure(stand, ca, app_key, ["github:contents:read"])
    # the child cannot DELETE the token itself (it holds a placeholder): the broker swaps it in,
    # so the DELETE through the broker revokes it early; the run's end then finds it gone (401)
    script = 'curl -sS -o /dev/null -w "%{http_code}\\n" -X DELETE -H "Authorization: token $GH_TOKEN" ' \
             '"$GITHUB_API_URL/installation/token"'
    proc = agentsess("run", "-p", "coder", "--", "sh", "-c", script, check=0)
    assert proc.stdout.decode().strip() == "204"
    (revoked,) = receipts(show(), "credential.revoked")
    assert revoked["providers"][0]["result"] == "already revoked"


def test_a_long_run_gets_its_token_re_minted_before_it_ends(tmp_path, ca, app_key):
    stand = _stand(tmp_path, ca, app_key, expires_in=302)  # re-minted 300 s before its end: at once
    try:
        configure(stand, ca, app_key, ["github:contents:read"])
        go = tmp_path / "go"
        script = (f'while [ ! -e {go} ]; do sleep 0.05; done; '
                  'curl -sS -H "Authorization: token $GH_TOKEN" "$GITHUB_API_URL/repos/acme/app"')
        proc = spawn("run", "-p", "coder", "--", "sh", "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: len(stand.gh.minted) >= 2 and stand.gh.deleted, what="a re-mint")
            go.write_text("")
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert b'"full_name": "acme/app"' in out
        first = stand.gh.minted[0]["token"]
        assert stand.gh.deleted[0]["sha256"] == sha(first)
        run = show()
        mints = [d for d in receipts(run, "credential.minted") if d.get("provider") == "github"]
        assert len(mints) >= 2 and mints[1]["rotated"] is True
        assert any(r["cause"] == "rotated" for r in receipts(run, "credential.revoked"))
    finally:
        stand.api.close()
        stand.git.close()


def test_show_run_describes_the_provider_credentials(stand, ca, app_key):
    configure(stand, ca, app_key, ["github:contents:read"])
    agentsess("run", "-p", "coder", "--", "true", check=0)
    out = agentsess("show-run", "last", check=0).stdout.decode()
    assert "github token for acme/app (contents:read)" in out
    assert "github revoked in" in out and "(finished)" in out
    assert stand.gh.minted[0]["token"] not in out


def test_expiry_deletes_the_token(stand, ca, app_key, tmp_path):
    configure(stand, ca, app_key, ["github:contents:read"], extra='ttl = "2s"\non_expiry = "keep"\nexpiry_warning = "1s"')
    go = tmp_path / "go"
    script = (f'while [ ! -e {go} ]; do sleep 0.05; done; '
              'curl -sS -o /dev/null -w "%{http_code}\\n" -H "Authorization: token $GH_TOKEN" '
              '"$GITHUB_API_URL/repos/acme/app"')
    proc = spawn("run", "-p", "coder", "--", "sh", "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: stand.gh.deleted, what="the DELETE at expiry")
        go.write_text("")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.decode().strip() == "403"
    (revoked,) = receipts(show(), "credential.revoked")
    assert revoked["cause"] == "expired" and revoked["providers"][0]["result"] == "revoked"


def test_the_child_s_own_git_config_entries_stay_first(stand, ca, app_key, tmp_path):
    configure(stand, ca, app_key, ["github:contents:read"])
    env = {**git_env(tmp_path), "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "alias.hi", "GIT_CONFIG_VALUE_0": "!echo hi"}
    script = f'git hi && git clone -q {stand.git.url}/acme/app.git {tmp_path}/c && echo cloned'
    out = agentsess("run", "-p", "coder", "--", "sh", "-c", script, env=env, check=0).stdout.decode()
    assert out.split() == ["hi", "cloned"]
