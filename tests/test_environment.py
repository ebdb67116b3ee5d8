"""The child's environment: agentsess.core.runs.environment."""

import fnmatch
import os
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentsess.core.runs import environment
from agentsess.core.runs.environment import (
    git_identity,
    run_id_from_email,
    scrub_env,
    scrub_rule,
)
from agentsess.errors import USAGE, AgentsessError

HUMAN_CREDENTIALS = [
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "SSH_AUTH_SOCK",
    "GPG_AGENT_INFO",
    "NPM_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_VAULT",
    "AWS_VAULT_BACKEND",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "CLOUDSDK_CORE_PROJECT",
    "OP_SESSION_my",
    "VSCODE_GIT_IPC_HANDLE",
    "GIT_ASKPASS",
    "KUBECONFIG",
    # substrings, any case
    "VAULT_TOKEN",
    "my_service_token",
    "DB_PASSWORD",
    "mysql_pwd_PASSWD",
    "OPENAI_API_KEY",
    "StripeApiKey",
    "SENTRY_APIKEY",
    "CLIENT_SECRET",
    "X_CREDENTIALS_PATH",
    "DEPLOY_PRIVATE_KEY",
]
HARMLESS = [
    "PATH",
    "HOME",
    "LANG",
    "TERM",
    "XAUTHORITY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "EDITOR",
    "SSH_CONNECTION",
    "GIT_AUTHOR_NAME",
    "PWD",
]


@pytest.mark.parametrize("name", HUMAN_CREDENTIALS)
def test_human_credentials_are_scrubbed(name):
    env = {name: "value-of-" + name, "PATH": "/usr/bin"}
    child, scrubbed, passed = scrub_env(env)
    assert child == {"PATH": "/usr/bin"}
    assert scrubbed == [name]
    assert passed == []
    assert scrub_rule(name) is not None


@pytest.mark.parametrize("name", HARMLESS)
def test_harmless_variables_are_kept(name):
    child, scrubbed, passed = scrub_env({name: "x"})
    assert child == {name: "x"} and scrubbed == [] and passed == []


def test_agentsess_variables_are_never_scrubbed():
    env = {
        "AGENTSESS_TOKEN": "eyJ...",
        "AGENTSESS_RUN_ID": "r1",
        "AGENTSESS_HOME": "/x",
        "agentsess_secret": "y",
    }
    child, scrubbed, _ = scrub_env(env, extra_patterns=["*"])
    assert child == env and scrubbed == []


def test_rule_names_say_why():
    assert scrub_rule("GH_TOKEN") == "GH_TOKEN"
    assert scrub_rule("AZURE_CLIENT_ID") == "AZURE_*"
    assert scrub_rule("my_token") == "*TOKEN*"
    assert scrub_rule("SENTRY_DSN", extra_patterns=["*_DSN"]) == "*_DSN"
    assert scrub_rule("PATH") is None


def test_extra_patterns_and_pass_names():
    env = {
        "SENTRY_DSN": "https://k@sentry",
        "MY_CORP_X": "1",
        "gh_token": "ghp_x",
        "GITHUB_TOKEN": "ghp_y",
        "TOKENIZERS_PARALLELISM": "false",
        "PATH": "/bin",
    }
    child, scrubbed, passed = scrub_env(
        env,
        extra_patterns=["*_dsn", "MY_CORP_*"],
        pass_names=["GITHUB_TOKEN", "tokenizers_*"],
    )
    assert scrubbed == ["MY_CORP_X", "SENTRY_DSN", "gh_token"]
    assert passed == ["GITHUB_TOKEN", "TOKENIZERS_PARALLELISM"]
    assert child == {
        "GITHUB_TOKEN": "ghp_y",
        "TOKENIZERS_PARALLELISM": "false",
        "PATH": "/bin",
    }


def test_keep_lets_everything_through_and_reports_it():
    env = {"GH_TOKEN": "a", "AWS_PROFILE": "b", "PATH": "/bin"}
    child, scrubbed, passed = scrub_env(env, keep=True)
    assert child == env
    assert scrubbed == []
    assert passed == ["AWS_PROFILE", "GH_TOKEN"]


def test_input_is_not_changed_and_values_are_not_reported():
    env = {"GH_TOKEN": "ghp_secretvalue", "PATH": "/bin"}
    before = dict(env)
    child, scrubbed, passed = scrub_env(env)
    assert env == before
    assert child is not env
    assert "ghp_secretvalue" not in repr((scrubbed, passed))


def test_real_environment_of_a_child_process():
    env = dict(os.environ, GH_TOKEN="ghp_abc", AWS_SECRET_ACCESS_KEY="aws-x", AGENTSESS_RUN_ID="r9")
    child, scrubbed, _ = scrub_env(env)
    out = subprocess.run(["env"], env=child, capture_output=True, text=True, check=True).stdout
    assert "GH_TOKEN=" not in out and "AWS_SECRET_ACCESS_KEY=" not in out
    assert "AGENTSESS_RUN_ID=r9" in out
    assert {"GH_TOKEN", "AWS_SECRET_ACCESS_KEY"} <= set(scrubbed)


names = st.text(alphabet="ABCKNOST_aegkn*", min_size=1, max_size=20)


@given(
    env=st.dictionaries(names, st.text(max_size=5), max_size=15), extra=st.lists(names, max_size=3)
)
def test_scrub_partitions_the_environment(env, extra):
    child, scrubbed, passed = scrub_env(env, extra_patterns=extra)
    assert set(child) | set(scrubbed) == set(env)
    assert not set(child) & set(scrubbed)
    assert set(passed) <= set(child)
    assert all(child[k] == env[k] for k in child)
    assert scrubbed == sorted(scrubbed)
    for name in scrubbed:
        assert scrub_rule(name, extra) is not None
    kept, none, passed_all = scrub_env(env, extra_patterns=extra, keep=True)
    assert kept == env and none == [] and passed_all == scrubbed


@given(
    pattern=st.text(alphabet="AB_*", max_size=8),
    name=st.text(alphabet="AB_", max_size=10),
)
def test_glob_agrees_with_fnmatch(pattern, name):
    assert environment._glob(pattern, name) == fnmatch.fnmatchcase(name, pattern)


def test_git_identity_defaults_carry_the_run_id():
    ident = git_identity("claude", "01HX7Z-run_42")
    assert ident == {
        "GIT_AUTHOR_NAME": "claude (agentsess)",
        "GIT_AUTHOR_EMAIL": "claude+01HX7Z-run_42@agentsess.invalid",
        "GIT_COMMITTER_NAME": "claude (agentsess)",
        "GIT_COMMITTER_EMAIL": "claude+01HX7Z-run_42@agentsess.invalid",
    }
    assert run_id_from_email(ident["GIT_AUTHOR_EMAIL"]) == "01HX7Z-run_42"


def test_git_identity_cleans_the_agent_for_the_email():
    ident = git_identity("my agent+v2 é", "r1")
    assert ident["GIT_AUTHOR_NAME"] == "my agent+v2 é (agentsess)"
    assert ident["GIT_AUTHOR_EMAIL"] == "my-agent-v2--+r1@agentsess.invalid"
    assert run_id_from_email(ident["GIT_AUTHOR_EMAIL"]) == "r1"


def test_git_identity_overrides_and_validation():
    ident = git_identity("bot", "r1", name="Release Bot", email="bot@example.com")
    assert ident["GIT_AUTHOR_NAME"] == "Release Bot"
    assert ident["GIT_COMMITTER_EMAIL"] == "bot@example.com"
    for bad in ({"name": "a\nb"}, {"name": "x <y>"}, {"email": "  "}, {"name": ""}):
        with pytest.raises(AgentsessError) as info:
            git_identity("bot", "r1", **bad)
        assert info.value.exit_code == USAGE
    with pytest.raises(ValueError):
        git_identity("bot", "r+1")


def test_run_id_from_other_emails():
    assert run_id_from_email("someone@example.com") is None
    assert run_id_from_email("a+b@example.com") is None
    assert run_id_from_email("claude@agentsess.invalid") is None
    assert run_id_from_email("<claude+r7@AGENTSESS.INVALID>") == "r7"


def test_git_commit_carries_the_identity(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        **git_identity("aider", "01J0RUNID"),
    }

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
        ).stdout

    git("init", "-q")
    (repo / "f.txt").write_text("hi\n")
    git("add", "f.txt")
    git("commit", "-q", "-m", "agent change")
    author, committer = git("log", "-1", "--format=%an <%ae>|%ce").strip().split("|")
    assert author == "aider (agentsess) <aider+01J0RUNID@agentsess.invalid>"
    assert run_id_from_email(committer) == "01J0RUNID"
