"""agentsess keeps its signing keys and the agent's secrets in a real Secret Service.

Runs against the session bus of the environment: .ci/run starts gnome-keyring-daemon
(unlocked) inside `dbus-run-session`. Without one the tests skip with the reason; in CI
(AGENTSESS_CI=1) they fail instead. Entries are looked up with libsecret's `secret-tool`,
a program of its own, so the test does not take agentsess's word for where they are.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest
from helpers import agentsess, write_config

PY = sys.executable


def _need(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("AGENTSESS_CI") == "1":
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


def lookup(name: str) -> str | None:
    """The Secret Service's value for agentsess's entry ``name`` (as keyring stores it)."""
    out = subprocess.run(["secret-tool", "lookup", "service", "agentsess", "username", name],
                         capture_output=True, timeout=30)
    return out.stdout.decode() if out.returncode == 0 and out.stdout else None


def clear(name: str) -> None:
    subprocess.run(["secret-tool", "clear", "service", "agentsess", "username", name],
                   capture_output=True, timeout=30)


@pytest.fixture
def secret_service(monkeypatch):
    _need(bool(shutil.which("secret-tool")), "secret-tool (Debian package libsecret-tools) is not installed")
    _need(bool(os.environ.get("DBUS_SESSION_BUS_ADDRESS")), "no D-Bus session bus (run under dbus-run-session)")
    probe = f"probe-{uuid.uuid4().hex}"
    stored = subprocess.run(["secret-tool", "store", "--label=agentsess probe", "service", "agentsess-probe",
                             "username", probe], input=b"x", capture_output=True, timeout=30)
    _need(stored.returncode == 0, f"no unlocked Secret Service on the bus ({stored.stderr.decode().strip()[:200]})")
    subprocess.run(["secret-tool", "clear", "service", "agentsess-probe", "username", probe], timeout=30)
    monkeypatch.setenv("AGENTSESS_KEYRING", "system")
    made = []
    yield made
    for name in made:
        clear(name)


def test_keys_and_secrets_live_in_the_secret_service_and_are_read_back(secret_service, tmp_path):
    name = f"ci-{uuid.uuid4().hex[:12]}"
    value = f"gh-value-{uuid.uuid4().hex}"
    secret_service.append(f"secret:{name}")
    write_config(f'[profiles.bot]\nscopes = ["github:*"]\nenv = {{ GH_TOKEN = {{ secret = "{name}" }} }}\n')

    agentsess("secret", "set", name, input=value.encode(), check=0)
    assert lookup(f"secret:{name}") == value  # in the Secret Service itself
    listed = json.loads(agentsess("secret", "list", "--json", check=0).stdout)
    assert name in [s["name"] for s in listed] and value not in json.dumps(listed)

    out = tmp_path / "child.json"
    script = (
        "import os,sys,json,subprocess; "
        "v=subprocess.run([sys.executable,'-m','agentsess','token','verify','--scope','github:pr:create']).returncode; "
        "json.dump({'gh': os.environ.get('GH_TOKEN'), 'token': os.environ['AGENTSESS_TOKEN'], 'verify': v}, "
        "open(sys.argv[1],'w'))"
    )
    agentsess("run", "--no-pty", "--profile", "bot", "--scope", "github:*", "--", PY, "-c", script, str(out), check=0)
    child = json.loads(out.read_text())
    assert child["gh"] == value  # the supervisor read the secret back from the Secret Service
    assert child["verify"] == 0  # and token verify read the signing key back from it

    from agentsess.edges.keys import b64url_decode

    kid = json.loads(b64url_decode(child["token"].split(".")[0]))["kid"]
    secret_service.append(f"signing-key:{kid}")
    seed = lookup(f"signing-key:{kid}")
    assert seed and len(b64url_decode(seed)) == 32
    home = os.environ["AGENTSESS_HOME"]
    secret_service.extend(n for n in _key_list_names() if n)
    # nothing secret is kept in the data root: no file keyring, no value in any file
    assert not os.path.exists(os.path.join(home, "secrets.json"))
    for root, _, files in os.walk(home):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                data = fh.read()
            assert value.encode() not in data and seed.encode() not in data, f

    verified = json.loads(agentsess("verify", "last", "--json", check=0).stdout)[0]
    assert verified["ok"] and verified["sealed"] and verified["seal_kid"] == kid

    agentsess("secret", "rm", name, check=0)
    assert lookup(f"secret:{name}") is None


def _key_list_names() -> list:
    from agentsess.edges import keys

    return [keys.key_list_entry()]


def test_forced_system_keyring_without_a_bus_is_a_clear_state_error(tmp_path):
    env = {"AGENTSESS_KEYRING": "system", "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus",
           "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring"}
    proc = agentsess("secret", "set", "x", input=b"value-that-must-not-leak", env=env)
    assert proc.returncode == 4, proc.stderr
    assert b"value-that-must-not-leak" not in proc.stderr and proc.stderr.count(b"\n") == 1



def _bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    return subprocess.run(["bwrap", "--bind", "/", "/", "--unshare-pid", "--", "true"], capture_output=True).returncode == 0


# the child asks the Secret Service for its secret and for the signing key (its kid is in the
# token's header), with the bus's address put back (the run removed it), and connects to the
# bus's socket itself; it writes what it found to a file (the run's output masks the values)
REACH = r"""
import base64, json, os, socket, subprocess, sys
out, address, secret = sys.argv[1:4]
head = os.environ["AGENTSESS_TOKEN"].split(".")[0]
kid = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=address)
found = {}
for name in (secret, "signing-key:" + kid):
    p = subprocess.run(["secret-tool", "lookup", "service", "agentsess", "username", name], env=env,
                       capture_output=True, timeout=30)
    found[name] = p.stdout.decode()
path = address.split("path=", 1)[1].split(",", 1)[0] if "path=" in address else None
bus = False
if path:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        bus = True
    except OSError:
        pass
json.dump({"found": found, "bus": bus, "told": os.environ.get("DBUS_SESSION_BUS_ADDRESS"),
           "injected": os.environ.get("GH_TOKEN"), "kid": kid}, open(out, "w"))
"""


@pytest.mark.parametrize("contained", [True, False], ids=["contained", "advisory"])
def test_the_supervisor_reads_the_secret_service_and_a_contained_child_cannot_reach_it(secret_service, contained,
                                                                                          tmp_path):
    if contained:
        _need(_bwrap_works(), "bubblewrap with user namespaces is not available here")
    name = f"ci-{uuid.uuid4().hex[:12]}"
    value = f"gh-value-{uuid.uuid4().hex}"
    secret_service.append(f"secret:{name}")
    write_config(f'[profiles.bot]\nenv = {{ GH_TOKEN = {{ secret = "{name}" }} }}\n')
    agentsess("secret", "set", name, input=value.encode(), check=0)
    address = os.environ["DBUS_SESSION_BUS_ADDRESS"]
    out = tmp_path / "child.json"
    proc = agentsess("run", "--no-pty", "--profile", "bot", *([] if contained else ["--no-contain"]), "--",
                     PY, "-c", REACH, str(out), address, f"secret:{name}")
    assert proc.returncode == 0, proc.stderr
    child = json.loads(out.read_text())
    secret_service.append(f"signing-key:{child['kid']}")
    secret_service.extend(n for n in _key_list_names() if n)
    assert child["injected"] == value  # the supervisor read the secret from the Secret Service
    assert lookup(f"signing-key:{child['kid']}")  # and its signing key lives there
    if contained:
        assert child["told"] is None and child["bus"] is False
        assert child["found"] == {f"secret:{name}": "", f"signing-key:{child['kid']}": ""}, "the child reached the bus"
    else:  # advisory: same user, same bus (the README says so)
        assert child["bus"] is True and child["found"][f"secret:{name}"] == value
