"""The human's credentials on disk and the agent's own HOME: agentsess.edges.homes."""

import os
import stat
import subprocess

import pytest

from agentsess.edges import paths
from agentsess.edges.homes import (
    HUMAN_CREDENTIAL_FILES,
    isolated_home,
    readable_credential_files,
    strip_git_credentials,
)
from agentsess.errors import STATE, USAGE, AgentsessError


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "agentsess-home"
    monkeypatch.setenv("AGENTSESS_HOME", str(root))
    return root


@pytest.fixture
def human(tmp_path):
    """A human's home with a git config and a few credential files."""
    home = tmp_path / "human"
    files = {
        ".gitconfig": "[user]\n\tname = Hu Man\n\temail = hu@example.com\n"
        "[credential]\n\thelper = store\n[core]\n\teditor = vim\n",
        ".aws/credentials": "[default]\naws_secret_access_key = abc\n",
        ".netrc": "machine x login y password z\n",
        ".ssh/id_ed25519": "PRIVATE\n",
        ".ssh/id_ed25519.pub": "ssh-ed25519 AAAA\n",
        ".ssh/known_hosts": "host key\n",
        ".config/gh/hosts.yml": "github.com:\n  oauth_token: gho_x\n",
        ".config/gcloud/credentials.db": "x",
        ".config/nvim/init.lua": "-- nvim\n",
        ".config/nvim/lua/plugins.lua": "return {}\n",
        ".mozilla/firefox/profiles.ini": "[Profile0]\n",
    }
    for rel, text in files.items():
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return home


def read(*parts) -> str:
    with open(os.path.join(*parts)) as f:
        return f.read()


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_readable_credential_files(human):
    found = readable_credential_files(str(human))
    rel = [os.path.relpath(p, human) for p in found]
    assert rel == [
        ".aws/credentials",
        ".config/gh/hosts.yml",
        ".netrc",
        ".config/gcloud",
        ".ssh/id_ed25519",
        ".mozilla/firefox",
    ]
    assert all(os.path.isabs(p) for p in found)


def test_readable_credential_files_of_an_empty_home(tmp_path):
    assert readable_credential_files(str(tmp_path)) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_credential_files_are_not_listed(human):
    os.chmod(human / ".netrc", 0)
    found = [os.path.relpath(p, human) for p in readable_credential_files(str(human))]
    assert ".netrc" not in found and ".aws/credentials" in found


def test_credential_list_names_the_documented_places():
    for rel in (
        ".aws/credentials",
        ".aws/config",
        ".config/gh/hosts.yml",
        ".netrc",
        ".git-credentials",
        ".docker/config.json",
        ".kube/config",
        ".config/gcloud/",
        ".azure/",
        ".npmrc",
        ".pypirc",
        ".ssh/",
        ".mozilla/firefox/",
        ".config/google-chrome/",
        ".config/chromium/",
    ):
        assert rel in HUMAN_CREDENTIAL_FILES


def test_isolated_home_layout_and_modes(human, data_root):
    env = isolated_home("claude", str(human))
    home = data_root / "homes" / "claude"
    assert env == {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "GH_CONFIG_DIR": str(home / ".config" / "gh"),
        "CARGO_HOME": str(home / ".cargo"),
        "REGISTRY_AUTH_FILE": str(home / ".config" / "containers" / "auth.json"),
        "NPM_CONFIG_USERCONFIG": str(home / ".npmrc"),
        "GNUPGHOME": str(home / ".gnupg"),
        "PGPASSFILE": str(home / ".pgpass"),
        "npm_config_userconfig": str(home / ".npmrc"),
        "PIP_CONFIG_FILE": str(home / ".config" / "pip" / "pip.conf"),
        "BOTO_CONFIG": str(home / ".boto"),
        "TF_CLI_CONFIG_FILE": str(home / ".terraformrc"),
        "HELM_REGISTRY_CONFIG": str(home / ".config" / "helm" / "registry" / "config.json"),
        "HELM_REPOSITORY_CONFIG": str(home / ".config" / "helm" / "repositories.yaml"),
    }
    assert env["HOME"] == paths.agent_home("claude")
    for folder in (
        data_root,
        data_root / "homes",
        home,
        *(home / p for p in (".config", ".local", ".local/share", ".cache", ".local/state")),
    ):
        assert folder.is_dir()
        assert mode(folder) == 0o700, folder
    # The git config came along, without the credential helper.
    copied = (home / ".gitconfig").read_text()
    assert "name = Hu Man" in copied and "editor = vim" in copied
    assert "credential" not in copied and "helper" not in copied
    assert mode(home / ".gitconfig") & 0o077 == 0
    # None of the human's credentials are there.
    assert readable_credential_files(env["HOME"]) == []


def test_isolated_home_persists_and_never_overwrites(human, data_root):
    env = isolated_home("claude", str(human))
    home = env["HOME"]
    with open(os.path.join(home, ".gitconfig"), "w") as f:
        f.write("[user]\n\tname = agent's own\n")
    os.makedirs(os.path.join(env["XDG_CACHE_HOME"], "tool"))
    with open(os.path.join(env["XDG_CACHE_HOME"], "tool", "state"), "w") as f:
        f.write("kept")
    (human / ".gitconfig").write_text("[user]\n\tname = changed by human\n")

    again = isolated_home("claude", str(human), carry=(".gitconfig", ".config/nvim"))
    assert again == env
    assert read(home, ".gitconfig") == "[user]\n\tname = agent's own\n"
    assert read(env["XDG_CACHE_HOME"], "tool/state") == "kept"
    # A carry entry added later is copied, folders included.
    assert read(home, ".config/nvim/lua/plugins.lua") == "return {}\n"
    assert mode(os.path.join(home, ".config/nvim/lua")) == 0o700


def test_agents_get_separate_homes(human):
    a = isolated_home("claude", str(human))
    b = isolated_home("aider", str(human))
    assert a["HOME"] != b["HOME"]
    assert os.path.dirname(a["HOME"]) == os.path.dirname(b["HOME"])


def test_missing_carry_file_is_skipped(human):
    env = isolated_home("claude", str(human), carry=(".gitconfig", ".vimrc"))
    assert not os.path.exists(os.path.join(env["HOME"], ".vimrc"))


@pytest.mark.parametrize(
    "carry, named",
    [
        (".aws/credentials", ".aws/credentials"),
        (".netrc", ".netrc"),
        (".ssh", ".ssh"),
        (".ssh/id_ed25519", ".ssh"),
        (".aws", ".aws/credentials"),
        (".config", ".config/gh/hosts.yml"),
        (".config/gh/hosts.yml", ".config/gh/hosts.yml"),
        ("./.netrc", ".netrc"),
        (".mozilla/firefox/profiles.ini", ".mozilla/firefox"),
    ],
)
def test_carrying_credentials_is_refused(human, data_root, carry, named):
    with pytest.raises(AgentsessError) as info:
        isolated_home("claude", str(human), carry=(".gitconfig", carry))
    assert info.value.exit_code == USAGE
    assert carry in info.value.message and named in info.value.message
    assert "abc" not in info.value.message  # never the content
    assert not (data_root / "homes" / "claude" / ".gitconfig").exists()  # nothing copied


@pytest.mark.parametrize("carry", ["../other/.gitconfig", "/etc/passwd", "..", "", "."])
def test_carrying_from_outside_home_is_refused(human, tmp_path, carry):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / ".gitconfig").write_text("[user]\n")
    with pytest.raises(AgentsessError) as info:
        isolated_home("claude", str(human), carry=(carry,))
    assert repr(carry) in info.value.message


def test_links_to_credentials_are_refused(human):
    (human / ".gitconfig").unlink()
    os.symlink(human / ".netrc", human / ".gitconfig")
    with pytest.raises(AgentsessError, match=r"\.netrc"):
        isolated_home("claude", str(human))
    os.symlink(human / ".aws" / "credentials", human / ".config" / "nvim" / "creds")
    with pytest.raises(AgentsessError, match=r"\.aws/credentials"):
        isolated_home("claude", str(human), carry=(".config/nvim",))


def test_invalid_agent_names_are_refused(human):
    for agent in ("", ".", "..", "a/b", "../x"):
        with pytest.raises(AgentsessError):
            isolated_home(agent, str(human))


def test_link_planted_in_agent_home_is_refused(human, tmp_path):
    env = isolated_home("claude", str(human))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    os.rmdir(env["XDG_CACHE_HOME"])
    os.symlink(elsewhere, env["XDG_CACHE_HOME"])
    with pytest.raises(AgentsessError) as info:
        isolated_home("claude", str(human))
    assert info.value.exit_code == STATE
    assert mode(elsewhere) == 0o755  # not touched


def test_git_uses_the_carried_config_without_credential_helper(human):
    env = isolated_home("claude", str(human))
    child = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1", **env}

    def run(*args):
        return subprocess.run(
            ["git", "config", *args], env=child, capture_output=True, text=True, check=False
        )

    assert run("--global", "user.name").stdout.strip() == "Hu Man"
    assert run("--global", "credential.helper").returncode == 1  # not set


def test_strip_git_credentials():
    config = (
        b"[user]\n\tname = Me\n"
        b"[credential]\n\thelper = osxkeychain\n"
        b'[credential "https://github.com"]\n\thelper = !gh auth git-credential\n'
        b"[Credential.https://example.com]\n\tusername = me\n"
        b"[http]\n\textraHeader = Authorization: Bearer ghp_x\n\tsslVerify = true\n"
        b'[http "https://h"] extraheader = AUTHORIZATION: basic x\n'
        b"[core]\n\teditor = vim\n"
    )
    assert strip_git_credentials(config) == (
        b"[user]\n\tname = Me\n"
        b"[http]\n\tsslVerify = true\n"
        b'[http "https://h"]\n'
        b"[core]\n\teditor = vim\n"
    )


def test_ssh_private_keys_are_found_whatever_their_name_and_sockets_too(tmp_path):
    import socket

    ssh = tmp_path / ".ssh"
    (ssh / "work").mkdir(parents=True)
    files = {"id_rsa": "x", "github": "-----BEGIN OPENSSH PRIVATE KEY-----\nk\n", "github.pub": "ssh-ed25519 A",
             "work/deploy.pem": "-----BEGIN RSA PRIVATE KEY-----\nk\n", "work/cert.pem": "-----BEGIN CERTIFICATE-----\n",
             "putty.ppk": "PuTTY-User-Key-File-3: ssh-ed25519\n", "config": "Host *\n", "known_hosts": "h k\n",
             "authorized_keys": "ssh-ed25519 A\n", "notes": "nothing\n"}
    for rel, text in files.items():
        (ssh / rel).write_text(text)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ssh / "cm-git@github.com:22"))
    try:
        found = sorted(os.path.relpath(p, ssh) for p in readable_credential_files(str(tmp_path)))
    finally:
        sock.close()
    assert found == ["cm-git@github.com:22", "github", "id_rsa", "putty.ppk", "work/deploy.pem"]
