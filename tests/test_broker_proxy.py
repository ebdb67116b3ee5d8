"""Proxy mode: CONNECT allow/deny, TLS interception with the run's CA, tunnels, plain HTTP.

The upstreams listen on 127.0.0.2 and up (loopback, but outside NO_PROXY), with a test CA.
Clients are real programs (curl, git, Python requests and httpx) given the broker's
variables, as a run's child gets them.
"""

import datetime
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest
from cryptography import x509

from agentsess.core.credentials import services as svc
from agentsess.edges.broker import Broker
from broker_standins import REAL, GitUpstream, MintedCA, Upstream

PY = sys.executable
CI = os.environ.get("AGENTSESS_CI") == "1"


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        if CI:
            pytest.fail(f"{program} is required in CI")
        pytest.skip(f"{program} is not installed")
    return path


@pytest.fixture
def ca(tmp_path):
    return MintedCA(str(tmp_path))


@pytest.fixture
def service_up(ca):
    up = Upstream(host="127.0.0.2", ca=ca)
    yield up
    up.close()


def start(service_up, ca, allow=(), extra_services=None, child_env=None, liveness=lambda: None, **api):
    declared = {"api": {"secret": "api-key", "upstream": service_up.url, "env_key": "API_KEY", "ca_file": ca.ca_file,
                        **api}}
    declared.update(extra_services or {})
    specs = svc.resolve_services(svc.check_services(declared))
    network = svc.resolve_network(svc.check_network({"proxy": True, "allow_hosts": list(allow)}))
    receipts: list = []
    broker = Broker("run_proxy", specs, {s.name: REAL for s in specs}, network,
                    record=lambda t, d: receipts.append(d), liveness=liveness, expires_at=time.time() + 600)
    env = broker.start(child_env if child_env is not None else {"SSL_CERT_FILE": ca.ca_file})
    return broker, env, receipts


def child_env(env: dict) -> dict:
    full = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    full.update(env)
    return full


def wait_receipts(receipts, n, timeout=10):
    deadline = time.monotonic() + timeout
    while len(receipts) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(receipts) >= n, receipts
    return receipts


def test_proxy_variables_and_the_bundle(service_up, ca):
    broker, env, _ = start(service_up, ca)
    try:
        base = f"http://127.0.0.1:{broker.port}"
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            assert env[var] == base
        assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1,::1"
        bundle = env["SSL_CERT_FILE"]
        for var in ("REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE"):
            assert env[var] == bundle
        text = open(bundle).read()
        assert "PRIVATE KEY" not in text
        count = text.count("-----BEGIN CERTIFICATE-----")
        run_ca = x509.load_pem_x509_certificate(("-----BEGIN CERTIFICATE-----" + text.rsplit("-----BEGIN CERTIFICATE-----", 1)[1]).encode())
        assert "run_proxy" in run_ca.subject.rfc4514_string()
        assert run_ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        constraints = run_ca.extensions.get_extension_for_class(x509.NameConstraints).value
        assert [str(n.value) for n in constraints.permitted_subtrees] == ["127.0.0.2/32"]
        assert run_ca.not_valid_after_utc <= datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=601)
        # the child's own CA file (here: the test CA) is in the bundle, for tunnelled hosts
        assert open(ca.ca_file).read().strip() in text
        if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
            assert count > 10  # the system CAs come first
        assert os.stat(bundle).st_mode & 0o077 == 0
    finally:
        broker.stop()
    assert not os.path.exists(bundle)


def test_curl_through_an_intercepted_connect(service_up, ca):
    need("curl")
    broker, env, receipts = start(service_up, ca)
    try:
        out = subprocess.run(
            ["curl", "-sS", "-H", f"Authorization: Bearer {env['API_KEY']}", f"{service_up.url}/v1/thing?x=1"],
            env=child_env(env), capture_output=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert b'"ok": true' in out.stdout
        assert REAL in service_up.seen[-1]["raw_headers"] and "agentsess-ph-" not in service_up.secrets_seen()
        data = wait_receipts(receipts, 1)[0]
        assert data["mode"] == "intercept" and data["secret"] == ["api-key"] and data["path"] == "/v1/thing?x=…"
        assert data["host"] == "127.0.0.2" and data["status"] == 200
    finally:
        broker.stop()


@pytest.mark.parametrize("client", ["requests", "httpx"])
def test_python_clients_through_the_proxy(service_up, ca, client):
    code = {
        "requests": "import os, requests\nr = requests.get(os.environ['URL'], headers={'x-api-key': os.environ['API_KEY']})\n",
        "httpx": "import os, httpx\nr = httpx.get(os.environ['URL'], headers={'x-api-key': os.environ['API_KEY']})\n",
    }[client] + "print(r.status_code)\n"
    broker, env, receipts = start(service_up, ca)
    try:
        out = subprocess.run([PY, "-c", code], env={**child_env(env), "URL": service_up.url + "/p"},
                             capture_output=True, timeout=60)
        assert out.stdout.strip() == b"200", out.stderr
        assert service_up.seen[-1]["headers"]["x-api-key"] == REAL
    finally:
        broker.stop()


def test_allowed_host_is_tunnelled_untouched_and_others_are_refused(service_up, ca):
    need("curl")
    other = Upstream(host="127.0.0.3", ca=ca)
    denied = Upstream(host="127.0.0.4", ca=ca)
    broker, env, receipts = start(service_up, ca, allow=[f"127.0.0.3:{other.port}"])
    try:
        out = subprocess.run(["curl", "-sS", "-H", "x-api-key: hello", other.url + "/t"], env=child_env(env),
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert other.seen[-1]["headers"]["x-api-key"] == "hello"
        out = subprocess.run(["curl", "-sS", denied.url + "/d"], env=child_env(env), capture_output=True, timeout=30)
        assert out.returncode != 0 and b"403" in out.stderr
        assert denied.seen == []
        data = wait_receipts(receipts, 2)
        tunnel = next(d for d in data if d["mode"] == "tunnel" and d["decision"] == "allow")
        assert tunnel["host"] == "127.0.0.3" and tunnel["bytes_sent"] > 0 and tunnel["bytes_received"] > 0
        deny = next(d for d in data if d["decision"] == "deny")
        assert deny["method"] == "CONNECT" and deny["host"] == "127.0.0.4" and "allow_hosts" in deny["reason"]
    finally:
        broker.stop()
        other.close()
        denied.close()


def test_plain_http_through_the_proxy_and_the_leak_guard(service_up, ca):
    need("curl")
    plain = Upstream(host="127.0.0.5")
    broker, env, receipts = start(service_up, ca, allow=[f"127.0.0.5:{plain.port}"])
    try:
        ok = subprocess.run(["curl", "-sS", plain.url + "/p"], env=child_env(env), capture_output=True, timeout=30)
        assert b'"ok": true' in ok.stdout
        leak = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {env['API_KEY']}", plain.url + "/steal"],
                              env=child_env(env), capture_output=True, timeout=30)
        assert b"placeholder of service api" in leak.stdout
        assert [s["path"] for s in plain.seen] == ["/p"]
        denied = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.6:9/x"],
                                env=child_env(env), capture_output=True, timeout=30)
        assert denied.stdout == b"403"
    finally:
        broker.stop()
        plain.close()


@pytest.mark.parametrize(
    "target",
    [b"127.1:443", b"2130706433:443", b"0x7f.0.0.1:443", b"127.0.0.02:443", b"[::1:443", b"host:0",
     b"host:99999", b"ho st:443", b"127.0.0.2:%d extra", b"127.0.0.2.:%d@evil", b"xn--j1ail:443"],
)
def test_odd_connect_targets_are_refused(service_up, ca, target):
    broker, env, receipts = start(service_up, ca)
    try:
        if b"%d" in target:
            target = target % service_up.port
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
            s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target))
            first = s.recv(4096).split(b"\r\n")[0]
        assert first.split()[1] in (b"400", b"403"), first
        assert service_up.seen == []
    finally:
        broker.stop()


def test_a_trailing_dot_or_capitals_still_reach_the_service_intercepted(service_up, ca):
    broker, env, receipts = start(service_up, ca)
    try:
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
            s.sendall(b"CONNECT 127.0.0.2:%d HTTP/1.1\r\nHost: x\r\n\r\n" % service_up.port)
            assert b" 200 " in s.recv(4096)
            ctx = ssl.create_default_context(cafile=env["SSL_CERT_FILE"])
            with ctx.wrap_socket(s, server_hostname="127.0.0.2") as tls:
                # the Host header inside the tunnel cannot redirect the request elsewhere
                tls.sendall(b"GET /inner HTTP/1.1\r\nHost: evil.example\r\nx-api-key: %s\r\nConnection: close\r\n\r\n"
                            % env["API_KEY"].encode())
                got = b""
                while chunk := tls.recv(65536):
                    got += chunk
        assert b" 200 " in got.split(b"\r\n")[0]
        assert service_up.seen[-1]["headers"]["host"] == f"127.0.0.2:{service_up.port}"
        assert service_up.seen[-1]["headers"]["x-api-key"] == REAL
    finally:
        broker.stop()


def test_a_client_that_does_not_trust_the_run_ca_fails_closed(service_up, ca):
    need("curl")
    broker, env, receipts = start(service_up, ca)
    try:
        bare = {k: v for k, v in child_env(env).items() if k not in ("CURL_CA_BUNDLE", "SSL_CERT_FILE")}
        out = subprocess.run(["curl", "-sS", "--cacert", ca.ca_file, service_up.url + "/x"], env=bare,
                             capture_output=True, timeout=30)
        assert out.returncode != 0
        assert service_up.seen == []
        data = wait_receipts(receipts, 1)[0]
        assert "TLS handshake failed" in data["error"]
    finally:
        broker.stop()


def test_git_clone_over_https_through_the_intercepting_proxy(tmp_path, ca):
    need("git")
    repo = tmp_path / "srv" / "repo.git"
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "hello"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo)], check=True)
    up = GitUpstream(str(tmp_path / "srv"), ca, "127.0.0.2", "x-access-token", REAL)
    broker, env, receipts = start(up, ca, extra_services=None)
    try:
        genv = child_env(env)
        genv.update({"GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"})
        url = up.url.replace("https://", f"https://x-access-token:{env['API_KEY']}@") + "/repo.git"
        out = subprocess.run(["git", "clone", "-q", url, str(tmp_path / "clone")], env=genv, capture_output=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        log = subprocess.run(["git", "-C", str(tmp_path / "clone"), "log", "--format=%s"], capture_output=True)
        assert log.stdout.strip() == b"hello"
        assert all("agentsess-ph-" not in s["raw_headers"] for s in up.seen)
        data = wait_receipts(receipts, 2)
        assert any(d["secret"] == ["api-key"] and d["status"] == 200 for d in data)
    finally:
        broker.stop()
        up.close()


def test_revocation_cuts_an_open_tunnel_and_refuses_new_connects(service_up, ca):
    other = Upstream(host="127.0.0.3", ca=ca)
    state = {"reason": None}
    broker, env, receipts = start(service_up, ca, allow=[f"127.0.0.3:{other.port}"], liveness=lambda: state["reason"])
    try:
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
        s.sendall(b"CONNECT 127.0.0.3:%d HTTP/1.1\r\nHost: x\r\n\r\n" % other.port)
        assert b" 200 " in s.recv(4096)
        tls = ssl.create_default_context(cafile=ca.ca_file).wrap_socket(s, server_hostname="127.0.0.3")
        state["reason"] = "revoked"
        got = b""
        try:
            while chunk := tls.recv(4096):
                got += chunk
        except (OSError, ssl.SSLError):
            pass
        assert got == b""  # the tunnel was closed under it
        tls.close()
        with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s2:
            s2.sendall(b"CONNECT 127.0.0.3:%d HTTP/1.1\r\nHost: x\r\n\r\n" % other.port)
            assert b" 403 " in s2.recv(4096)
        data = wait_receipts(receipts, 2)
        assert any(d["mode"] == "tunnel" and d.get("error") == "cut: revoked" for d in data)
    finally:
        broker.stop()
        other.close()


@pytest.mark.parametrize("allow", [[], ["127.0.0.2:*"]])
def test_an_https_service_secret_never_goes_out_as_plain_http(service_up, ca, allow):
    # http://<the service's host>:<its TLS port>/ through the proxy: same host and port, no TLS
    broker, env, receipts = start(service_up, ca, allow=allow)
    try:
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
            s.sendall(b"GET http://127.0.0.2:%d/x HTTP/1.1\r\nHost: 127.0.0.2\r\nx-api-key: %s\r\n\r\n"
                      % (service_up.port, env["API_KEY"].encode()))
            first = s.recv(4096).split(b"\r\n")[0]
        assert first.split()[1] == b"403", first
        assert service_up.seen == []
        data = wait_receipts(receipts, 1)[0]
        assert data["decision"] == "deny"
        assert ("placeholder of service api" if allow else "allow_hosts") in data["reason"]
    finally:
        broker.stop()


def test_git_is_handed_the_placeholder_for_the_service_hosts(tmp_path, ca):
    need("git")
    repo = tmp_path / "srv" / "repo.git"
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "via helper"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo)], check=True)
    up = GitUpstream(str(tmp_path / "srv"), ca, "127.0.0.2", "x-access-token", REAL)
    broker, env, receipts = start(up, ca, child_env={"SSL_CERT_FILE": ca.ca_file, "GIT_CONFIG_COUNT": "1",
                                                     "GIT_CONFIG_KEY_0": "user.name", "GIT_CONFIG_VALUE_0": "kept"},
                                  git_user="x-access-token")
    try:
        assert env["GIT_CONFIG_COUNT"] == "3" and env["GIT_CONFIG_KEY_2"] == f"credential.{up.url}.helper"
        # a helper of the human's (here: one that would answer with junk) is not asked
        (tmp_path / ".gitconfig").write_text("[credential]\n\thelper = \"!f() { echo username=human; echo password=human-token; }; f\"\n")
        assert REAL not in repr(env)
        genv = child_env(env)
        genv.update({"GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1",
                     "GIT_CONFIG_KEY_0": "user.name", "GIT_CONFIG_VALUE_0": "kept"})
        genv.pop("XDG_CONFIG_HOME", None)
        out = subprocess.run(["git", "clone", "-q", up.url + "/repo.git", str(tmp_path / "clone")], env=genv,
                             capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        log = subprocess.run(["git", "-C", str(tmp_path / "clone"), "log", "--format=%s"], capture_output=True)
        assert log.stdout.strip() == b"via helper"
        import base64

        sent = [base64.b64decode(line.split()[-1]).decode() for s in up.seen for line in s["raw_headers"].splitlines()
                if line.lower().startswith("authorization: basic")]
        assert sent and all(user_pass == f"x-access-token:{REAL}" for user_pass in sent)
    finally:
        broker.stop()
        up.close()
