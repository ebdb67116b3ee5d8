"""The keychain: backend choice, the 0600 file fallback and its one-time notice, a real keyring
backend (keyrings.alt), the index of names, and secret-name validation."""

import json
import os
import re
import stat
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentsess.edges import keychain, paths
from agentsess.errors import STATE, USAGE, AgentsessError

NOTICE = "no usable OS keyring"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Own data root and config; keyring's own config and data also kept inside tmp."""
    root = tmp_path / "home"
    monkeypatch.setenv("AGENTSESS_HOME", str(root))
    monkeypatch.setenv("AGENTSESS_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("AGENTSESS_KEYRING", "file")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    return root


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def run_py(code: str, env_changes: dict, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with the test's environment plus ``env_changes``
    (a value of None removes the variable)."""
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stderr}")
    return proc


# -- file backend, forced ---------------------------------------------------------------


def test_forced_file_backend_stores_in_a_private_file(home, capsys):
    keychain.set_secret("github-token", "ghp_value_one")
    assert keychain.get_secret("github-token") == "ghp_value_one"

    secrets = paths.secrets_file()
    assert os.path.dirname(secrets) == str(home)
    assert mode(home) == 0o700
    for f in (secrets, keychain.index_file(), keychain.record_file()):
        assert mode(f) == 0o600, f
    with open(secrets) as f:
        assert json.load(f)["secrets"] == {"secret:github-token": "ghp_value_one"}
    with open(keychain.record_file()) as f:
        assert json.load(f)["backend"] == "file"

    status = keychain.backend_status()
    assert status["backend"] == "file"
    assert status["path"] == secrets
    assert "AGENTSESS_KEYRING=file" in status["detail"]


def test_forced_file_is_quiet(home, capsys):
    """AGENTSESS_KEYRING=file is the user's own choice: no notice, in-process or later."""
    keychain.set_secret("a", "1")
    keychain.get_secret("a")
    assert capsys.readouterr().err == ""
    proc = run_py("from agentsess.edges import keychain; print(keychain.get_secret('a'))", {})
    assert (proc.stdout, proc.stderr) == ("1\n", "")


def test_fallback_notice_once_and_only_once(home, capsys, monkeypatch):
    """In one process: the notice comes with the first choice, not with later calls, nor
    when a new process (simulated by clearing the cache) finds the record."""
    import keyring
    from keyring.backends import fail

    monkeypatch.delenv("AGENTSESS_KEYRING")
    monkeypatch.setattr(keyring, "get_keyring", lambda: fail.Keyring())
    keychain.set_secret("a", "1")
    keychain.set_secret("b", "2")
    keychain.get_secret("a")
    err = capsys.readouterr().err
    assert err.count("agentsess: ") == 1
    assert "no usable OS keyring (fail.Keyring)" in err
    assert paths.secrets_file() in err and "0600" in err

    keychain._chosen.clear()  # as a new process would
    assert keychain.get_secret("b") == "2"
    assert capsys.readouterr().err == ""


def test_file_leaves_an_existing_data_root_as_it_is(home):
    # agentsess tightens only folders it creates (AGENTSESS_HOME=/tmp must not break /tmp);
    # the secrets file itself is 0600 whatever the folder
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    keychain.set_secret("x", "y")
    assert mode(home) == 0o755
    assert mode(paths.secrets_file()) == 0o600


def test_get_missing_and_delete(home):
    assert keychain.get_secret("nothing") is None
    assert keychain.remove_secret("nothing") is False
    keychain.set_secret("tok", "v1")
    keychain.set_secret("tok", "v2")  # replaces
    assert keychain.get_secret("tok") == "v2"
    assert [n for n, _ in keychain.list_secrets()] == ["tok"]
    assert keychain.remove_secret("tok") is True
    assert keychain.get_secret("tok") is None
    assert keychain.list_secrets() == []
    assert keychain.remove_secret("tok") is False


def test_namespaces_are_separate(home):
    keychain.set(keychain.SIGNING_KEY_PREFIX + "kid1", "private-seed")
    keychain.set_secret("kid1", "user-value")
    assert keychain.get(keychain.SIGNING_KEY_PREFIX + "kid1") == "private-seed"
    assert keychain.get_secret("kid1") == "user-value"
    assert [n for n, _ in keychain.list_secrets()] == ["kid1"]
    assert [n for n, _ in keychain.names()] == ["secret:kid1", "signing-key:kid1"]


def test_list_never_shows_values(home):
    values = {"gh": "ghp_SECRETVALUE1234567890", "npm": "npm_OTHERSECRET0987654321"}
    for name, value in values.items():
        keychain.set_secret(name, value)
    listed = keychain.list_secrets()
    assert [n for n, _ in listed] == ["gh", "npm"]
    for _, set_at in listed:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", set_at)
    text = repr(listed) + repr(keychain.names()) + repr(keychain.backend_status())
    with open(keychain.index_file()) as f:
        text += f.read()
    with open(keychain.record_file()) as f:
        text += f.read()
    for value in values.values():
        assert value not in text


def test_damaged_secrets_file_is_a_state_error_without_values(home):
    keychain.set_secret("gh", "ghp_topsecret")
    with open(paths.secrets_file(), "w") as f:
        f.write('{"secrets": ghp_topsecret')
    with pytest.raises(AgentsessError) as info:
        keychain.get_secret("gh")
    assert info.value.exit_code == STATE
    assert "ghp_topsecret" not in info.value.message
    assert paths.secrets_file() in info.value.message


def test_bad_keyring_setting_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("AGENTSESS_KEYRING", "vault")
    with pytest.raises(AgentsessError) as info:
        keychain.get_secret("x")
    assert info.value.exit_code == USAGE
    assert "AGENTSESS_KEYRING" in info.value.message


def test_concurrent_writers_lose_nothing(home):
    code = """
        import sys
        from agentsess.edges import keychain
        for i in range(15):
            keychain.set_secret(f"p{sys.argv[1]}-{i}", f"v{i}")
    """
    env = dict(os.environ)
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(n)], env=env)
        for n in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    names = {n for n, _ in keychain.list_secrets()}
    assert names == {f"p{n}-{i}" for n in range(4) for i in range(15)}
    for n in range(4):
        assert keychain.get_secret(f"p{n}-14") == "v14"


# -- secret names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "A", "0", "github-token", "GH_TOKEN", "aws.prod_key-2", "x" * 64]
)
def test_valid_secret_names(name):
    assert keychain.check_secret_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-x", ".x", "_x", "a b", "a/b", "a:b", "é", "x" * 65, "tok\n", "a=b", "$HOME"],
)
def test_invalid_secret_names(name):
    with pytest.raises(AgentsessError) as info:
        keychain.set_secret(name, "s3cr3t-v4lue")
    assert info.value.exit_code == USAGE
    assert "letters, digits" in info.value.message
    assert "s3cr3t-v4lue" not in info.value.message


def test_overlong_name_is_not_echoed():
    pasted = "ghp_" + "Z" * 80
    with pytest.raises(AgentsessError) as info:
        keychain.set_secret(pasted, "v")
    assert pasted not in info.value.message
    assert "84 characters" in info.value.message


def test_empty_value_refused():
    with pytest.raises(AgentsessError) as info:
        keychain.set_secret("ok", "")
    assert info.value.exit_code == USAGE


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@given(st.text(max_size=70) | st.from_regex(NAME_RE, fullmatch=True))
def test_name_rule_matches_the_documented_pattern(name):
    expected = NAME_RE.fullmatch(name) is not None and name.isascii()
    try:
        keychain.check_secret_name(name)
        accepted = True
    except AgentsessError:
        accepted = False
    assert accepted == expected


# -- automatic choice: fallback from unusable keyrings -----------------------------------------

WRITE_AND_REPORT = """
    import sys
    from agentsess.edges import keychain
    keychain.set_secret("gh", "ghp_fallbackvalue")
    print(keychain.get_secret("gh"))
    print(keychain.backend_status()["backend"])
    print("keyring" in sys.modules)
"""


@pytest.mark.parametrize(
    "backend, label",
    [
        ("keyring.backends.fail.Keyring", "fail.Keyring"),
        ("keyring.backends.null.Keyring", "null.Keyring"),
    ],
)
def test_unusable_keyring_falls_back_to_file_with_one_notice(home, backend, label):
    env = {"AGENTSESS_KEYRING": None, "PYTHON_KEYRING_BACKEND": backend}
    first = run_py(WRITE_AND_REPORT, env)
    assert first.stdout.split() == ["ghp_fallbackvalue", "file", "True"]
    assert first.stderr == (
        f"agentsess: no usable OS keyring ({label}); keeping secrets in {paths.secrets_file()} "
        "(mode 0600). Set AGENTSESS_KEYRING=system to require a keyring.\n"
    )
    assert mode(paths.secrets_file()) == 0o600
    with open(keychain.record_file()) as f:
        record = json.load(f)
    assert record["backend"] == "file" and record["reason"] == label

    # Second run: silent, and keyring is not even imported (the record decides).
    second = run_py(WRITE_AND_REPORT, env)
    assert second.stdout.split() == ["ghp_fallbackvalue", "file", "False"]
    assert second.stderr == ""


def test_forced_system_without_usable_keyring_is_a_state_error(home):
    code = """
        from agentsess.edges import keychain
        from agentsess.errors import AgentsessError
        try:
            keychain.set_secret("gh", "v")
        except AgentsessError as exc:
            print(exc.exit_code)
            print(exc.message)
        print(keychain.backend_status()["backend"])
    """
    proc = run_py(
        code,
        {"AGENTSESS_KEYRING": "system", "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )
    code_line, message, status = proc.stdout.splitlines()
    assert int(code_line) == STATE
    assert "AGENTSESS_KEYRING=system" in message and "fail.Keyring" in message
    assert "AGENTSESS_KEYRING=file" in message  # says what to do
    assert status == "unavailable"
    assert not os.path.exists(paths.secrets_file())


def _install_fake_keyring(monkeypatch, kr):
    keyring = pytest.importorskip("keyring")
    monkeypatch.setattr(keyring, "get_keyring", lambda: kr)


def test_low_priority_auto_backend_falls_back(monkeypatch, capsys, home):
    from keyring.backend import KeyringBackend

    class Feeble(KeyringBackend):
        priority = 0.5
        stored: dict = {}

        def get_password(self, service, username):
            return self.stored.get((service, username))

        def set_password(self, service, username, password):
            self.stored[(service, username)] = password

        def delete_password(self, service, username):
            self.stored.pop((service, username))

    monkeypatch.delenv("AGENTSESS_KEYRING")
    _install_fake_keyring(monkeypatch, Feeble())
    keychain.set_secret("gh", "v")
    assert Feeble.stored == {}
    assert keychain.backend_status()["backend"] == "file"
    err = capsys.readouterr().err
    assert "Feeble, priority 0.5" in err and NOTICE in err


def test_explicitly_configured_low_priority_backend_is_used(monkeypatch, capsys, home):
    from keyring.backend import KeyringBackend

    class Feeble(KeyringBackend):
        priority = 0.5
        stored: dict = {}

        def get_password(self, service, username):
            return self.stored.get((service, username))

        def set_password(self, service, username, password):
            self.stored[(service, username)] = password

        def delete_password(self, service, username):
            self.stored.pop((service, username))

    monkeypatch.delenv("AGENTSESS_KEYRING")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "somewhere.Feeble")  # the user named one
    _install_fake_keyring(monkeypatch, Feeble())
    keychain.set_secret("gh", "v")
    assert Feeble.stored == {("agentsess", "secret:gh"): "v"}
    assert keychain.backend_status()["backend"] == "system"
    assert capsys.readouterr().err == ""


def test_empty_chainer_and_raising_keyring_fall_back(monkeypatch, capsys, tmp_path):
    from keyring.backends.chainer import ChainerBackend

    class EmptyChainer(ChainerBackend):
        backends = []

    monkeypatch.delenv("AGENTSESS_KEYRING")
    _install_fake_keyring(monkeypatch, EmptyChainer())
    keychain.set_secret("a", "1")
    assert "EmptyChainer with no backends" in capsys.readouterr().err

    monkeypatch.setenv("AGENTSESS_HOME", str(tmp_path / "home2"))

    def boom():
        raise RuntimeError("dbus is gone")

    import keyring

    monkeypatch.setattr(keyring, "get_keyring", boom)
    keychain.set_secret("a", "1")
    assert "keyring failed to load: RuntimeError" in capsys.readouterr().err
    assert keychain.get_secret("a") == "1"


# -- a real keyring backend: keyrings.alt's plaintext file ----------------------------------

PLAINTEXT = "keyrings.alt.file.PlaintextKeyring"


@pytest.mark.parametrize("setting", [None, "system"])
def test_real_keyring_backend_holds_the_values(home, tmp_path, setting):
    pytest.importorskip("keyrings.alt")
    env = {"AGENTSESS_KEYRING": setting, "PYTHON_KEYRING_BACKEND": PLAINTEXT}
    code = """
        from agentsess.edges import keychain
        keychain.set_secret("gh", "ghp_inthekeyring")
        keychain.set(keychain.SIGNING_KEY_PREFIX + "k1", "seed-value")
        print(keychain.get_secret("gh"))
        print(keychain.backend_status()["backend"], keychain.backend_status()["detail"])
        print([n for n, _ in keychain.list_secrets()])
    """
    proc = run_py(code, env)
    out = proc.stdout.splitlines()
    assert out[0] == "ghp_inthekeyring"
    assert out[1] == "system OS keyring file.PlaintextKeyring"
    assert out[2] == "['gh']"
    assert proc.stderr == ""
    assert not os.path.exists(paths.secrets_file())  # nothing in our file
    assert not os.path.exists(keychain.record_file())

    # The values really are in that keyring, as keyring itself reports them.
    direct = run_py(
        """
        import keyring
        print(keyring.get_password("agentsess", "secret:gh"))
        print(keyring.get_password("agentsess", "signing-key:k1"))
        """,
        env,
    )
    assert direct.stdout.split() == ["ghp_inthekeyring", "seed-value"]
    assert os.path.exists(tmp_path / "xdg-data" / "python_keyring")
    index = open(keychain.index_file()).read()
    assert "ghp_inthekeyring" not in index and "seed-value" not in index

    removed = run_py(
        """
        from agentsess.edges import keychain
        print(keychain.remove_secret("gh"), keychain.get_secret("gh"), keychain.list_secrets())
        """,
        env,
    )
    assert removed.stdout.split() == ["True", "None", "[]"]


def test_file_record_keeps_a_data_root_on_its_file(home):
    """Once a data root falls back to the file, it stays there (its secrets are there), even
    if a keyring turns up later; AGENTSESS_KEYRING=system still reaches the keyring."""
    pytest.importorskip("keyrings.alt")
    run_py(
        "from agentsess.edges import keychain; keychain.set_secret('gh', 'in-file')",
        {"AGENTSESS_KEYRING": None, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )
    read = "from agentsess.edges import keychain; print(keychain.get_secret('gh'))"
    later = run_py(read, {"AGENTSESS_KEYRING": None, "PYTHON_KEYRING_BACKEND": PLAINTEXT})
    assert later.stdout.strip() == "in-file"
    forced = run_py(read, {"AGENTSESS_KEYRING": "system", "PYTHON_KEYRING_BACKEND": PLAINTEXT})
    assert forced.stdout.strip() == "None"
    listed = run_py(
        "from agentsess.edges import keychain; print(keychain.list_secrets())",
        {"AGENTSESS_KEYRING": "system", "PYTHON_KEYRING_BACKEND": PLAINTEXT},
    )
    assert listed.stdout.strip() == "[]"  # the file's entries are not offered as the keyring's


def test_simultaneous_first_fallbacks_give_one_notice(home):
    env = dict(os.environ)
    env.pop("AGENTSESS_KEYRING")
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    code = (
        "import sys; from agentsess.edges import keychain; "
        "keychain.set_secret('s' + sys.argv[1], 'v')"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(n)], env=env, stderr=subprocess.PIPE,
                         text=True)
        for n in range(5)
    ]
    errs = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 5
    assert "".join(errs).count(NOTICE) == 1
    assert [n for n, _ in keychain.list_secrets()] == [f"s{n}" for n in range(5)]
