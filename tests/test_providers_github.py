"""The pure half of GitHub provider credentials: scopes onto permissions and repositories, the
app JWT, git paths, the messages for refusals, and the helper's protocol edge cases."""

import io
import subprocess
import sys

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentsess.core.credentials.providers import check_providers
from agentsess.core.credentials.providers import github as gh
from agentsess.core.credentials.services import SpecError
from github_standin import rsa_pem


def req(scopes, repos=("acme/app",)):
    return gh.token_request(scopes, tuple(repos))


def test_permission_scopes_apply_to_the_profile_repositories():
    r = req(["github:contents:read", "github:pull_requests:write", "github:contents:write", "fs:write"])
    assert r.body() == {"repositories": ["app"], "permissions": {"contents": "write", "pull_requests": "write"}}
    assert r.allows("acme/app", "contents", "write") and r.allows("ACME/App", "contents", "read")
    assert not r.allows("acme/lib", "contents", "read") and not r.allows("acme/app", "issues", "read")


def test_a_repository_scope_applies_to_that_repository_alone():
    r = req(["github:acme/lib:contents:read"])
    assert r.body() == {"repositories": ["lib"], "permissions": {"contents": "read"}}
    assert r.needed_scope("acme/lib", "contents", "write", ("acme/app",)) == "github:acme/lib:contents:write"
    assert r.needed_scope("acme/app", "contents", "write", ("acme/app",)) == "github:contents:write"


def test_no_token_scopes_means_no_token():
    assert req([]) is None
    assert req(["github:pr:create", "github:repo/acme@main", "fs:write", "git:push", "github:contents:maybe"]) is None


def test_wildcards():
    assert req(["github:*"]).body() == {"repositories": ["app"]}  # every permission of the installation
    assert req(["github:contents:*"]).body()["permissions"] == {"contents": "write"}
    assert req(["github:acme/lib:*"]).body() == {"repositories": ["lib"]}


def test_no_profile_repositories_means_the_installation_s_repositories():
    r = req(["github:issues:read"], repos=())
    assert r.body() == {"permissions": {"issues": "read"}} and r.allows("any/repo", "issues", "read")
    with pytest.raises(gh.ScopeError):
        req(["github:issues:read", "github:acme/x:contents:write"], repos=())


@pytest.mark.parametrize("scopes", [
    ["github:contents:read", "github:acme/lib:contents:write"],
    ["github:contents:read", "github:acme/app:issues:read", "github:acme/lib:contents:read"],
    ["github:*", "github:acme/lib:contents:read"],
])
def test_scopes_that_would_widen_a_repository_are_refused(scopes):
    with pytest.raises(gh.ScopeError, match="one set of permissions"):
        req(scopes, repos=("acme/app",))


def test_the_same_permissions_on_several_repositories_is_one_token():
    r = req(["github:contents:read", "github:acme/lib:contents:read"], repos=("acme/app",))
    assert r.body() == {"repositories": ["app", "lib"], "permissions": {"contents": "read"}}


REPOS = st.sampled_from(["acme/app", "acme/lib", "acme/web"])
PERMS = st.sampled_from(["contents", "issues", "pull_requests"])
LEVEL = st.sampled_from(["read", "write", "*"])


@st.composite
def scope(draw):
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return f"github:{draw(PERMS)}:{draw(LEVEL)}"
    if kind == 1:
        return f"github:{draw(REPOS)}:{draw(PERMS)}:{draw(LEVEL)}"
    if kind == 2:
        return draw(st.sampled_from(["github:*", "github:acme/app:*", "github:pr:create", "fs:write"]))
    return f"github:{draw(PERMS)}:read"


@settings(max_examples=300, deadline=None)
@given(st.lists(scope(), max_size=6), st.lists(REPOS, max_size=2, unique=True))
def test_a_token_never_gives_a_repository_more_than_its_scopes(scopes, defaults):
    """Whatever the scopes, the token either is refused or gives each of its repositories
    exactly what some scope names for that repository."""
    try:
        r = gh.token_request(scopes, tuple(defaults))
    except gh.ScopeError:
        return
    if r is None:
        return
    repos = r.repositories or ("any/repo",)
    for repo in repos:
        named = [(p, lv) for _s, rp, p, lv in r.grants if rp == repo or (rp is None and (repo in defaults or
                                                                                        not defaults))]
        assert named, (scopes, repo)
        if not r.permissions:
            assert any(p == gh.ALL for p, _ in named)
            continue
        for permission, level in r.permissions:
            best = max((gh.LEVELS.index(lv) for p, lv in named if p in (permission, gh.ALL)), default=-1)
            assert best >= gh.LEVELS.index(level) or any(p == gh.ALL for p, _ in named), (scopes, repo, permission)


def test_the_app_jwt_is_rs256_from_the_app_within_ten_minutes():
    pem, public = rsa_pem()
    token = gh.app_jwt(123456, pem, now=1_800_000_000)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, public, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims == {"iat": 1_800_000_000 - 60, "exp": 1_800_000_000 + 540, "iss": "123456"}
    assert claims["exp"] - claims["iat"] <= 600
    with pytest.raises(ValueError) as info:
        gh.app_jwt(1, "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    assert "nope" not in str(info.value)


@pytest.mark.parametrize(("path", "repo"), [
    ("acme/app.git", "acme/app"), ("acme/app", "acme/app"), ("/Acme/App.git/", "acme/app"),
    ("acme/app/extra", None), ("acme", None), ("acme/..", None), ("../app", None), ("acme/a%2fb", None),
    ("acme%2fapp", None), ("acme/%61pp", None), ("acme/app\0", None), ("acme\\app", None), ("acme/%252e%252e", None),
    ("-x/app", None), ("acme/ap p", None),
])
def test_repository_of_a_git_path(path, repo):
    assert gh.repo_of_path(path) == repo


@pytest.mark.parametrize(("target", "need"), [
    ("/acme/app.git/info/refs?service=git-upload-pack", ("acme/app", "contents", "read")),
    ("/acme/app.git/git-upload-pack", ("acme/app", "contents", "read")),
    ("/acme/app.git/info/refs?service=git%2Dreceive-pack", ("acme/app", "contents", "write")),
    ("/acme/app.git/info/refs?SERVICE=GIT-RECEIVE-PACK", ("acme/app", "contents", "write")),
    ("/acme/app.git/info/refs?service=git-upload-pack&service=git-receive-pack", ("acme/app", "contents", "write")),
    ("/acme/app.git/git%2Dreceive-pack", ("acme/app", "contents", "write")),
    ("/acme/app.git/info/refs", ("acme/app", "contents", "read")),
    ("/acme/app.git/info/refs?service=git-receive-pack", ("acme/app", "contents", "write")),
    ("/acme/app.git/git-receive-pack", ("acme/app", "contents", "write")),
    ("/acme/app/info/refs?service=git-receive-pack", ("acme/app", "contents", "write")),
    ("/ACME/APP.git/git-receive-pack", ("acme/app", "contents", "write")),
    ("/acme/app.git/HEAD", ("acme/app", "contents", "read")),
    ("/acme/app.git", None), ("/acme", None), ("//acme/app.git/info/refs", None),
    ("/acme%2fapp.git/x/info/refs", None),
])
def test_what_a_git_request_needs(target, need):
    method = "POST" if target.split("?")[0].endswith("-pack") else "GET"
    assert gh.git_need(target, method) == need


def test_anything_but_a_plain_fetch_needs_write():
    assert gh.git_need("/acme/app.git/objects/info/packs", "PUT") == ("acme/app", "contents", "write")
    assert gh.git_need("/acme/app.git/info/refs?service=git-upload-pack", "POST") == ("acme/app", "contents", "write")


def test_a_422_names_the_scopes_the_installation_does_not_grant():
    r = req(["github:contents:write", "github:issues:write", "github:checks:read"])
    inst = {"account": {"login": "acme"}, "permissions": {"contents": "write", "issues": "read"}}
    msg = gh.explain_refusal(r, inst, 42)
    assert msg.startswith("github: installation 42 does not grant github:issues:write (it grants issues:read), "
                          "github:checks:read;")
    r = req(["github:contents:read"], repos=("other/app",))
    assert "repositories other/app (it is installed on acme)" in gh.explain_refusal(r, inst, 42)
    assert "access to acme/app" in gh.explain_refusal(req(["github:contents:read"]), None, 42)


@pytest.mark.parametrize(("table", "where", "words"), [
    ({"installation_id": 1, "private_key_secret": "k"}, "", "missing app_id"),
    ({"app_id": True, "installation_id": 1, "private_key_secret": "k"}, ".app_id", "positive integer"),
    ({"app_id": 1, "installation_id": -1, "private_key_secret": "k"}, ".installation_id", "positive integer"),
    ({"app_id": 1, "installation_id": 1}, ".private_key_secret", "secret name"),
    ({"app_id": 1, "installation_id": 1, "private_key_secret": "k", "api_url": "http://api.github.com"},
     ".api_url", "only on loopback"),
    ({"app_id": 1, "installation_id": 1, "private_key_secret": "k", "repositories": ["app"]},
     ".repositories", "acme/app"),
    ({"app_id": 1, "installation_id": 1, "private_key_secret": "k", "repositories": ["a/x", "b/y"]},
     ".repositories", "one account"),
    ({"app_id": 1, "installation_id": 1, "private_key_secret": "k", "token": "ghp_x"}, ".token", "unknown key"),
    ({"app_id": 1, "installation_id": 1, "private_key_secret": "k", "ca_file": "rel.pem"}, ".ca_file", "absolute"),
])
def test_bad_tables_name_the_key(table, where, words):
    with pytest.raises(SpecError) as info:
        check_providers({"github": table})
    assert info.value.where == ".github" + where and words in info.value.message


def test_a_good_table_gets_its_defaults():
    out = check_providers({"github": {"app_id": 1, "installation_id": 2, "private_key_secret": "k",
                                      "repositories": ["Acme/App"]}})
    assert out["github"]["api_url"] == "https://api.github.com" and out["github"]["repositories"] == ["acme/app"]


# -- the helper, as git runs it -----------------------------------------------------------------


def helper(*args, stdin=b"", env=None):
    return subprocess.run([sys.executable, "-m", "agentsess.edges.gitcredential", *args], input=stdin,
                          capture_output=True, env=env, timeout=30)


def test_the_helper_says_quit_when_no_supervisor_answers():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = helper(f"http://127.0.0.1:{port}", "get", stdin=b"protocol=http\nhost=x\n\n")
    assert out.stdout == b"quit=1\n" and b"does not answer" in out.stderr


@pytest.mark.parametrize("url", ["http://example.com:80", "https://127.0.0.1:1", "file:///etc/passwd"])
def test_the_helper_asks_only_a_loopback_broker(url):
    out = helper(url, "get", stdin=b"protocol=https\nhost=example.com\n\n")
    assert out.stdout == b"quit=1\n"


def test_store_and_erase_keep_nothing():
    for action in ("store", "erase"):
        out = helper("http://127.0.0.1:1", action, stdin=b"protocol=https\nhost=x\npassword=p\n\n")
        assert out.returncode == 0 and out.stdout == b""


def test_the_helper_reads_only_the_fields_it_needs():
    from agentsess.edges import gitcredential

    got = gitcredential._read_request(io.StringIO("protocol=http\nhost=h\npath=p\npassword=leak\nwwwauth[]=x\n\nafter=1\n"))
    assert got == {"protocol": "http", "host": "h", "path": "p"}
    with pytest.raises(ValueError):
        gitcredential._clean("a\nquit=1")
