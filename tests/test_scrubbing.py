"""Scrubbing that holds: the credential variables the first list missed, passwords in URLs,
the allowlist mode, isolate-home variables that lead back to the human's files, CA bundles
that are not credentials, and a quiet notice. Unit tests on the rules, then real runs."""

import json
import os
import subprocess
import sys

import pytest
from helpers import agentsess, show, write_config

from agentsess.core.runs.environment import (
    build_env,
    notice,
    scrub_env,
    scrub_rule,
    strip_url_passwords,
)

PY = sys.executable
DUMP_ENV = "import os,json,sys; json.dump(dict(os.environ), open(sys.argv[1],'w'))"

MISSED = [
    "GITHUB_PAT",
    "AZURE_DEVOPS_EXT_PAT",
    "DOCKER_AUTH_CONFIG",
    "npm_config__auth",
    "NPM_CONFIG__AUTH",
    "BW_SESSION",
    "MYSQL_PWD",
    "CI_JOB_JWT",
    "CI_JOB_JWT_V2",
    "SOPS_AGE_KEY",
    "SOPS_AGE_KEY_FILE",
    "ARM_ACCESS_KEY",
    "ARM_CLIENT_ID",
    "STRIPE_KEY",
    "sendgrid_key",
    "REGISTRY_AUTH_FILE",
    "PGPASSFILE",
]


@pytest.mark.parametrize("name", MISSED)
def test_credentials_missed_before_are_scrubbed(name):
    child, scrubbed, _ = scrub_env({name: "v4lue-" + name, "PATH": "/bin"})
    assert child == {"PATH": "/bin"} and scrubbed == [name]


@pytest.mark.parametrize(
    "name",
    ["CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
     "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "AWS_CA_BUNDLE", "PIP_CERT",
     "AZURE_CA_BUNDLE_PATH", "MY_TOOL_CAFILE"],
)
def test_certificate_bundle_paths_are_not_credentials(name):
    assert scrub_rule(name) is None
    child, scrubbed, _ = scrub_env({name: "/etc/ssl/certs/ca.pem"})
    assert child == {name: "/etc/ssl/certs/ca.pem"} and scrubbed == []
    # a profile's own pattern still scrubs it
    assert scrub_rule(name, ["*CA*", "*CERT*"]) is not None


@pytest.mark.parametrize(
    ("value", "clean"),
    [
        ("postgres://app:s3cr3t@db.internal:5432/app", "postgres://app@db.internal:5432/app"),
        ("postgresql://app:p@ss@w0rd@db/x", "postgresql://app@db/x"),  # raw @ in the password
        ("redis://:hunter2@localhost:6379/0", "redis://localhost:6379/0"),
        ("https://user:tok%40en@pypi.corp/simple", "https://user@pypi.corp/simple"),
        ("http://proxyuser:proxypass@proxy:3128", "http://proxyuser@proxy:3128"),
        ("https://a:b@one/x https://c:d@two/y", "https://a@one/x https://c@two/y"),
        ("https://ghp_0123456789abcdefghij0123456789@github.com/o/r", "https://github.com/o/r"),
        ("HTTPS://U:P@HOST", "HTTPS://U@HOST"),
        ("ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git"),
        ("https://example.com/path@v1", "https://example.com/path@v1"),
        ("mailto:someone@example.com", "mailto:someone@example.com"),
    ],
)
def test_url_passwords_are_removed(value, clean):
    assert strip_url_passwords(value) == clean


def test_url_credentials_in_any_variable_keep_the_variable_without_the_password():
    env = {"DATABASE_URL": "postgres://app:s3cr3t@db/app", "REDIS_URL": "redis://:pw123@r:6379",
           "PIP_INDEX_URL": "https://u:tok@pypi.corp/simple", "HTTPS_PROXY": "http://u:p@proxy:3128",
           "HOMEPAGE": "https://example.com"}
    built = build_env(env)
    assert built.env == {"DATABASE_URL": "postgres://app@db/app", "REDIS_URL": "redis://r:6379",
                         "PIP_INDEX_URL": "https://u@pypi.corp/simple", "HTTPS_PROXY": "http://u@proxy:3128",
                         "HOMEPAGE": "https://example.com"}
    assert built.stripped == ["DATABASE_URL", "HTTPS_PROXY", "PIP_INDEX_URL", "REDIS_URL"]
    text = notice(built.facts())
    assert "password removed" in text and "DATABASE_URL" in text and "s3cr3t" not in text
    # let through by name: left whole
    assert build_env(env, pass_names=["DATABASE_URL"]).env["DATABASE_URL"] == env["DATABASE_URL"]


def test_allowlist_mode_passes_only_the_base_set_and_pass_env():
    env = {"PATH": "/bin", "HOME": "/h", "LANG": "C.UTF-8", "LC_ALL": "C", "TERM": "xterm", "TZ": "UTC",
           "TMPDIR": "/tmp", "SHELL": "/bin/sh", "USER": "u", "EDITOR": "vim", "RANDOM_THING": "1",
           "GH_TOKEN": "ghp_x", "OPENAI_API_KEY": "sk-x", "AGENTSESS_HOME": "/d", "MY_FLAG": "y"}
    built = build_env(env, pass_names=["OPENAI_API_KEY", "MY_FLAG"], mode="allow")
    assert set(built.env) == {"PATH", "HOME", "LANG", "LC_ALL", "TERM", "TZ", "TMPDIR", "SHELL", "USER",
                              "OPENAI_API_KEY", "MY_FLAG", "AGENTSESS_HOME"}
    assert built.scrubbed == ["GH_TOKEN"] and built.dropped == ["EDITOR", "RANDOM_THING"]
    assert built.passed == ["OPENAI_API_KEY"]
    assert built.facts()["mode"] == "allow" and built.facts()["dropped"] == 2


def _child_env(tmp_path, *options, env=None):
    out = tmp_path / f"env-{len(list(tmp_path.iterdir()))}.json"
    proc = agentsess("run", "--no-pty", *options, "--", PY, "-c", DUMP_ENV, str(out), env=env, check=0)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stderr.decode()


def test_a_run_scrubs_the_missed_names_and_strips_url_passwords(tmp_path):
    human = {"GITHUB_PAT": "pat-value-123", "BW_SESSION": "bw-session-value", "MYSQL_PWD": "mysqlpw",
             "DATABASE_URL": "postgres://app:db-pass-9@db/app",
             "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE": "/etc/ssl/ca.pem"}
    env, err = _child_env(tmp_path, env=human)
    assert "GITHUB_PAT" not in env and "BW_SESSION" not in env and "MYSQL_PWD" not in env
    assert env["DATABASE_URL"] == "postgres://app@db/app"
    assert env["CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE"] == "/etc/ssl/ca.pem"
    assert "CLOUDSDK" not in err
    assert "password removed from the URL in: DATABASE_URL" in err
    assert "db-pass-9" not in err and "db-pass-9" not in json.dumps(show())
    assert show()["receipts"][0]["data"]["env"]["url_passwords_removed"] == ["DATABASE_URL"]


def test_allowlist_profile_in_a_real_run(tmp_path):
    write_config('[profiles.p]\nenv_mode = "allow"\npass_env = ["OPENAI_API_KEY"]\n')
    env, err = _child_env(tmp_path, "--profile", "p", "--pass-env", "EXTRA_ONE",
                          env={"OPENAI_API_KEY": "sk-allowed-1", "EXTRA_ONE": "1", "EDITOR": "vim", "GH_TOKEN": "g"})
    assert env["OPENAI_API_KEY"] == "sk-allowed-1" and env["EXTRA_ONE"] == "1"
    assert "EDITOR" not in env and "GH_TOKEN" not in env
    assert env["AGENTSESS_RUN_ID"].startswith("run_") and "PATH" in env
    assert "env allowlist" in err


def test_env_allow_is_the_allowlist_mode_as_the_issue_spells_it(tmp_path):
    write_config('[profiles.p]\nenv = "allow"\npass_env = ["OPENAI_API_KEY"]\n')
    env, err = _child_env(tmp_path, "--profile", "p", env={"OPENAI_API_KEY": "sk-allowed-2", "EDITOR": "vim"})
    assert env["OPENAI_API_KEY"] == "sk-allowed-2" and "EDITOR" not in env and "PATH" in env
    write_config('[profiles.p]\nenv = "allow"\nenv_mode = "scrub"\n')
    proc = agentsess("run", "--profile", "p", "--", "true", check=125)
    assert proc.stderr.count(b"\n") == 1 and b"disagrees with env_mode" in proc.stderr
    write_config('[profiles.p]\nenv = "everything"\n')
    proc = agentsess("run", "--profile", "p", "--", "true", check=125)
    assert proc.stderr.count(b"\n") == 1 and b'or "scrub" or "allow"' in proc.stderr
    assert b"everything" in proc.stderr  # a mode word, not a variable's value: safe to show


@pytest.mark.parametrize("name", ["SSL_CERT_PASSWORD", "CA_CERT_PRIVATE_KEY", "SSL_CERT_KEY", "CA_BUNDLE_TOKEN",
                                  "MY_CAFILE_SECRET"])
def test_a_credential_named_beside_a_certificate_bundle_is_still_scrubbed(name):
    assert scrub_rule(name) is not None
    child, scrubbed, _ = scrub_env({name: "hunter2", "SSL_CERT_FILE": "/etc/ssl/ca.pem"})
    assert child == {"SSL_CERT_FILE": "/etc/ssl/ca.pem"} and scrubbed == [name]


def test_bad_env_mode_is_a_one_line_usage_error():
    write_config('[profiles.p]\nenv_mode = "everything"\n')
    proc = agentsess("run", "--profile", "p", "--", "true", check=125)  # run: agentsess refused
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentsess: error:") and "env_mode" in lines[0]


def test_the_notice_can_be_quieted_by_a_profile(tmp_path):
    write_config("[profiles.p]\nenv_notice = false\n")
    env, err = _child_env(tmp_path, "--profile", "p", env={"GH_TOKEN": "human-gh"})
    assert "GH_TOKEN" not in env
    assert "kept from the agent" not in err
    assert show()["receipts"][0]["data"]["env"]["scrubbed"] == ["GH_TOKEN"]  # still recorded


def test_isolate_home_repoints_variables_that_lead_into_the_humans_home(tmp_path):
    human = tmp_path / "human"
    (human / ".config" / "gh").mkdir(parents=True)
    (human / "dotfiles").mkdir()
    gitconfig = human / "dotfiles" / "gitconfig"
    gitconfig.write_text("[credential]\n\thelper = store --file /h/.git-credentials\n[user]\n\tname = H\n")
    pointers = {
        "GIT_CONFIG_GLOBAL": str(gitconfig),
        "GH_CONFIG_DIR": str(human / ".config" / "gh"),
        "CARGO_HOME": str(human / ".cargo"),
        "REGISTRY_AUTH_FILE": str(human / ".config" / "containers" / "auth.json"),
        "NPM_CONFIG_USERCONFIG": str(human / ".npmrc"),
        "GNUPGHOME": str(human / ".gnupg"),
        "PGPASSFILE": str(human / ".pgpass"),
        # npm reads npm_config_* in any case; the other tools' own credential files
        "npm_config_userconfig": str(human / ".npmrc"),
        "PIP_CONFIG_FILE": str(human / ".config" / "pip" / "pip.conf"),
        "BOTO_CONFIG": str(human / ".boto"),
        "TF_CLI_CONFIG_FILE": str(human / ".terraformrc"),
        "HELM_REGISTRY_CONFIG": str(human / ".config" / "helm" / "registry" / "config.json"),
        "HELM_REPOSITORY_CONFIG": str(human / ".config" / "helm" / "repositories.yaml"),
    }
    env, _ = _child_env(tmp_path, "--isolate-home", "--pass-env", "*", env={"HOME": str(human), **pointers})
    agent_home = env["HOME"]
    assert agent_home != str(human)
    for name in pointers:
        assert env[name].startswith(agent_home + "/"), name
    # git inside the run no longer sees the human's credential helper
    out = subprocess.run(["git", "config", "--global", "--get-all", "credential.helper"], env=env, check=False,
                         capture_output=True, text=True)
    assert "store" not in out.stdout


def test_a_variable_let_through_with_pass_env_is_masked_in_output_like_a_secret():
    value = "ghp_humanLetThrough0123456789abcdef"
    script = "import os; print('t=' + os.environ['GH_TOKEN']); print(os.environ['GH_TOKEN'].encode().hex())"
    proc = agentsess("run", "--no-pty", "--pass-env", "GH_TOKEN", "--", PY, "-c", script,
                     env={"GH_TOKEN": value}, check=0)
    assert proc.stdout == b"t=[masked:GH_TOKEN]\n[masked:GH_TOKEN]\n"
    log = os.path.join(os.environ["AGENTSESS_HOME"], "runs", show()["id"], "output.log")
    with open(log, "rb") as fh:
        assert value.encode() not in fh.read()
