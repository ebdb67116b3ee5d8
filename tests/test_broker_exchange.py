"""The broker in-process, against real upstream stand-ins and real clients (httpx, requests).

These drive :class:`agentsess.edges.broker.Broker` directly with a list for a recorder and a
switch for liveness, so streaming, revocation mid-stream and the leak guard can be observed
event by event. End-to-end runs through `agentsess run` are in test_broker_run.py.
"""

import base64
import os
import socket
import threading
import time

import httpx
import pytest
import requests

from agentsess.core.credentials import services as svc
from agentsess.edges.broker import Broker
from broker_standins import REAL, MintedCA, Upstream

OTHER_REAL = "other-real-secret-zzzzzzzzzzzzzzzz"


class Switch:
    def __init__(self):
        self.reason = None

    def __call__(self):
        return self.reason


@pytest.fixture
def upstream():
    up = Upstream()
    yield up
    up.close()


def make_broker(upstreams: dict, network=None, ca_files=None):
    declared = {
        name: {"secret": f"{name}-key", "upstream": up.url, "env_base_url": f"{name.upper()}_URL",
               "env_key": f"{name.upper()}_KEY", **({"ca_file": ca_files[name]} if ca_files and name in ca_files else {})}
        for name, up in upstreams.items()
    }
    specs = svc.resolve_services(svc.check_services(declared))
    values = {s.name: (REAL if s.name == "api" else OTHER_REAL) for s in specs}
    receipts: list = []
    live = Switch()
    broker = Broker("run_test", specs, values, network or svc.Network(), record=lambda t, d: receipts.append((t, d)),
                    liveness=live, expires_at=time.time() + 600)
    env = broker.start({})
    return broker, env, receipts, live


def wait_receipts(receipts, n, timeout=10):
    deadline = time.monotonic() + timeout
    while len(receipts) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(receipts) >= n, receipts
    return [d for _, d in receipts]


@pytest.mark.parametrize(
    "form",
    ["bearer", "x-api-key", "basic-password", "basic-user", "custom", "query"],
)
def test_placeholder_swapped_in_each_header_form(upstream, form):
    broker, env, receipts, _ = make_broker({"api": upstream})
    try:
        ph = env["API_KEY"]
        url = env["API_URL"] + "/v1/thing"
        headers = {}
        params = None
        auth = None
        if form == "bearer":
            headers["Authorization"] = f"Bearer {ph}"
        elif form == "x-api-key":
            headers["x-api-key"] = ph
        elif form == "basic-password":
            auth = ("x-access-token", ph)
        elif form == "basic-user":
            auth = (ph, "")
        elif form == "custom":
            headers["X-Custom-Token"] = f"token={ph};v=1"
        elif form == "query":
            params = {"key": ph}
        r = httpx.get(url, headers=headers, params=params, auth=auth, trust_env=False)
        assert r.status_code == 200, r.text
        seen = upstream.seen[-1]
        raw = seen["raw_headers"] + seen["path"]
        assert ph not in raw
        if form.startswith("basic"):
            decoded = base64.b64decode(seen["headers"]["authorization"].split()[1]).decode()
            assert REAL in decoded
        else:
            assert REAL in raw
        data = wait_receipts(receipts, 1)[0]
        assert data["secret"] == ["api-key"] and data["decision"] == "allow" and data["status"] == 200
        assert REAL not in repr(receipts) and ph not in repr(receipts)
    finally:
        broker.stop()


def test_receipt_masks_the_query_and_keeps_no_header_value(upstream):
    broker, env, receipts, _ = make_broker({"api": upstream})
    try:
        r = requests.get(env["API_URL"] + "/v1/search?q=hunter2&page=3", headers={"x-api-key": env["API_KEY"]},
                         proxies={"http": None, "https": None})
        assert r.status_code == 200
        data = wait_receipts(receipts, 1)[0]
        assert data["path"] == "/v1/search?q=…&page=…"
        assert "hunter2" not in repr(data)
        assert set(data) >= {"service", "method", "host", "path", "status", "bytes_sent", "bytes_received",
                             "duration", "secret", "decision"}
        assert data["method"] == "GET" and data["service"] == "api" and data["host"] == "127.0.0.1"
    finally:
        broker.stop()


def test_leak_guard_refuses_a_placeholder_sent_to_another_service(upstream):
    other = Upstream()
    broker, env, receipts, _ = make_broker({"api": upstream, "other": other})
    try:
        # api's placeholder towards the other service's upstream: refused, nothing forwarded
        for headers in ({"Authorization": f"Bearer {env['API_KEY']}"},
                        {"X-Whatever": env["API_KEY"]},
                        {"Authorization": "Basic " + base64.b64encode(f"u:{env['API_KEY']}".encode()).decode()}):
            r = httpx.post(env["OTHER_URL"] + "/collect", headers=headers, content=b"x", trust_env=False)
            assert r.status_code == 403
            assert "placeholder of service api" in r.text
        r = httpx.get(env["OTHER_URL"] + f"/collect?k={env['API_KEY']}", trust_env=False)
        assert r.status_code == 403
        assert other.seen == []
        data = wait_receipts(receipts, 4)
        assert all(d["decision"] == "deny" and d["status"] == 403 for d in data)
        assert all(d["service"] == "other" for d in data)
        # and the other service's own placeholder still works there
        r = httpx.get(env["OTHER_URL"] + "/ok", headers={"x-api-key": env["OTHER_KEY"]}, trust_env=False)
        assert r.status_code == 200 and OTHER_REAL in other.seen[-1]["raw_headers"]
        assert REAL not in other.secrets_seen()
    finally:
        broker.stop()
        other.close()


def test_unknown_service_is_404_and_recorded(upstream):
    broker, env, receipts, _ = make_broker({"api": upstream})
    try:
        base = f"http://127.0.0.1:{broker.port}"
        for path in ("/nope/x", "/", "/API/x", "/api.x"):
            r = httpx.get(base + path, trust_env=False)
            assert r.status_code == 404, path
        for raw in (b"//api/x", b"api/x"):
            with socket.create_connection(("127.0.0.1", broker.port)) as s:
                s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % raw)
                assert s.recv(4096).split(b"\r\n")[0].split()[1] in (b"400", b"404"), raw
        # the service's root and a query right after its name reach the upstream as origin-form
        for path, want in (("/api", "/"), ("/api?q=1", "/?q=1"), ("/api/", "/")):
            r = httpx.get(base + path, trust_env=False)
            assert r.status_code == 200 and upstream.seen[-1]["path"] == want, path
        upstream.seen.clear()
        # dot segments, as a client library would never send them (raw socket)
        for path in (b"/api/../x", b"/api/./x", b"/api/%2e%2E/x", b"/api/.%2e/admin", b"/api/x/..", b"/api%2f..%2fx"):
            with socket.create_connection(("127.0.0.1", broker.port)) as s:
                s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
                assert s.recv(4096).split(b"\r\n")[0].split()[1] in (b"400", b"404"), path
        assert upstream.seen == []
        data = wait_receipts(receipts, 15)
        assert sum(d["decision"] == "deny" for d in data) >= 12
        # an absolute-form (proxy) request is refused when proxy mode is off
        with socket.create_connection(("127.0.0.1", broker.port)) as s:
            s.sendall(b"GET http://127.0.0.1:%d/x HTTP/1.1\r\nHost: x\r\n\r\n" % upstream.port)
            assert b" 403 " in s.recv(4096)
        assert upstream.seen == []
    finally:
        broker.stop()


def test_malformed_requests_are_refused_without_a_crash(upstream):
    broker, env, _, _ = make_broker({"api": upstream})
    try:
        for junk in (b"\x16\x03\x01\x00\xa5\x01\x00", b"GET /api/x HTTP/1.1\r\nHost: a\r\nHost b\r\n\r\n",
                     b"GET /api/x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                     b"GET /api/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := s.recv(4096):
                    got += chunk
                assert got == b"" or b" 400 " in got.split(b"\r\n")[0], got
        r = httpx.get(env["API_URL"] + "/still-fine", trust_env=False)
        assert r.status_code == 200
    finally:
        broker.stop()


def test_sse_events_reach_the_client_as_they_arrive(upstream):
    broker, env, receipts, _ = make_broker({"api": upstream})
    upstream.gate.clear()  # the stand-in sends one event, then waits for the gate
    try:
        with httpx.stream("GET", env["API_URL"] + "/sse", headers={"x-api-key": env["API_KEY"]},
                          trust_env=False, timeout=10) as r:
            assert r.headers["content-type"] == "text/event-stream"
            lines = r.iter_lines()
            first = next(lines)
            assert first == "event: tick"
            assert not upstream.gate.is_set()  # the first event came through before the rest existed
            upstream.gate.set()
            rest = list(lines)
        assert sum(1 for line in rest if line.startswith("data:")) == 5
        data = wait_receipts(receipts, 1)[0]
        assert data["status"] == 200 and data["bytes_received"] > 0 and "error" not in data
    finally:
        upstream.gate.set()
        broker.stop()


def test_revocation_refuses_the_next_request_at_once(upstream):
    broker, env, receipts, live = make_broker({"api": upstream})
    try:
        with httpx.Client(trust_env=False) as client:  # a kept-alive connection, too
            assert client.get(env["API_URL"] + "/a", headers={"x-api-key": env["API_KEY"]}).status_code == 200
            live.reason = "revoked"
            r = client.get(env["API_URL"] + "/b", headers={"x-api-key": env["API_KEY"]})
        assert r.status_code == 403 and "revoked" in r.text
        assert [s["path"] for s in upstream.seen] == ["/a"]
        data = wait_receipts(receipts, 2)
        assert data[1]["decision"] == "deny" and "revoked" in data[1]["reason"]
    finally:
        broker.stop()


def test_revocation_cuts_a_stream_in_flight(upstream):
    broker, env, receipts, live = make_broker({"api": upstream})
    try:
        got = []
        with pytest.raises(httpx.HTTPError):
            with httpx.stream("GET", env["API_URL"] + "/forever", headers={"x-api-key": env["API_KEY"]},
                              trust_env=False, timeout=30) as r:
                for line in r.iter_lines():
                    if line:
                        got.append(line)
                    if len(got) == 3:
                        live.reason = "revoked"
        assert 3 <= len(got) < 600
        assert upstream.cut.wait(10)  # the upstream side was closed too
        data = wait_receipts(receipts, 1)[0]
        assert data["error"] == "cut: revoked"
    finally:
        broker.stop()


def test_revocation_cuts_a_large_download_in_flight(upstream):
    broker, env, receipts, live = make_broker({"api": upstream})
    try:
        got = 0
        with pytest.raises(httpx.HTTPError):
            with httpx.stream("GET", env["API_URL"] + f"/bytes/{2 << 30}", trust_env=False, timeout=30) as r:
                for chunk in r.iter_bytes():
                    got += len(chunk)
                    if got >= 8 << 20 and live.reason is None:
                        live.reason = "revoked"
        assert got < 2 << 30
        data = wait_receipts(receipts, 1)[0]
        assert data["error"] == "cut: revoked"
        assert got <= data["bytes_received"] < 2 << 30
    finally:
        broker.stop()


def test_finished_broker_refuses(upstream):
    broker, env, receipts, _ = make_broker({"api": upstream})
    port = broker.port
    broker.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/api/x", trust_env=False, timeout=5)
    assert upstream.seen == []


def test_huge_upload_streams_through(upstream):
    broker, env, receipts, _ = make_broker({"api": upstream})
    size = 256 << 20
    sent = 0

    def body():
        nonlocal sent
        block = b"u" * (1 << 20)
        for _ in range(size >> 20):
            sent += len(block)
            yield block

    try:
        r = httpx.post(env["API_URL"] + "/upload", headers={"x-api-key": env["API_KEY"]}, content=body(),
                       trust_env=False, timeout=120)
        assert r.status_code == 200
        assert upstream.seen[-1]["body_bytes"] == size
        assert upstream.seen[-1]["headers"].get("transfer-encoding") == "chunked"
        data = wait_receipts(receipts, 1)[0]
        assert data["bytes_sent"] == size
    finally:
        broker.stop()


def test_large_download_with_content_length(upstream):
    broker, env, receipts, _ = make_broker({"api": upstream})
    try:
        r = requests.get(env["API_URL"] + f"/bytes/{50 << 20}", headers={"x-api-key": env["API_KEY"]},
                         proxies={"http": None, "https": None})
        assert len(r.content) == 50 << 20
        assert wait_receipts(receipts, 1)[0]["bytes_received"] == 50 << 20
    finally:
        broker.stop()


def test_slow_upstream_does_not_hold_up_other_requests(upstream):
    broker, env, receipts, _ = make_broker({"api": upstream})
    try:
        result = {}

        def slow():
            result["slow"] = httpx.get(env["API_URL"] + "/slow/2", trust_env=False, timeout=30).status_code

        thread = threading.Thread(target=slow)
        thread.start()
        while not any(s["path"].startswith("/slow") for s in upstream.seen):
            time.sleep(0.01)
        assert httpx.get(env["API_URL"] + "/fast", trust_env=False).status_code == 200
        assert "slow" not in result  # the fast one finished while the slow one still waited
        thread.join(30)
        assert result["slow"] == 200
    finally:
        broker.stop()


@pytest.mark.parametrize("path", ["/close-early", "/close-early-big"])
def test_upstream_closing_early_reaches_the_client_as_an_error(upstream, path):
    broker, env, receipts, _ = make_broker({"api": upstream})
    try:
        with pytest.raises(httpx.HTTPError):
            httpx.get(env["API_URL"] + path, trust_env=False, timeout=10).read()
        data = wait_receipts(receipts, 1)[0]
        assert data["status"] == 200 and "closed" in data["error"]
        # a closed upstream is gone from the pool: the next request works
        assert httpx.get(env["API_URL"] + "/next", trust_env=False).status_code == 200
    finally:
        broker.stop()


def test_unreachable_upstream_is_502(upstream):
    import socket

    # a port that is bound but never listens: no other test's server can take it meanwhile
    hold = socket.socket()
    hold.bind(("127.0.0.1", 0))
    port = hold.getsockname()[1]
    upstream.close()
    upstream.port, upstream.url = port, f"http://127.0.0.1:{port}"
    broker, env, receipts, _ = make_broker({"api": upstream})
    try:
        r = httpx.get(env["API_URL"] + "/x", trust_env=False)
        assert r.status_code == 502 and f"127.0.0.1:{port}" in r.text
        assert wait_receipts(receipts, 1)[0]["status"] == 502
    finally:
        broker.stop()
        hold.close()


def test_tls_upstream_is_verified(tmp_path):
    ca = MintedCA(str(tmp_path))
    up = Upstream(ca=ca)
    try:
        # without the CA: the broker refuses to talk to an upstream it cannot verify
        broker, env, receipts, _ = make_broker({"api": up})
        r = httpx.get(env["API_URL"] + "/x", headers={"x-api-key": env["API_KEY"]}, trust_env=False)
        assert r.status_code == 502 and "verification" in r.text
        assert up.seen == []
        broker.stop()
        broker, env, receipts, _ = make_broker({"api": up}, ca_files={"api": ca.ca_file})
        r = httpx.get(env["API_URL"] + "/x", headers={"x-api-key": env["API_KEY"]}, trust_env=False)
        assert r.status_code == 200 and REAL in up.seen[-1]["raw_headers"]
        broker.stop()
    finally:
        up.close()


def test_recorder_failure_fails_closed(upstream):
    specs = svc.resolve_services(svc.check_services({"api": {"secret": "k", "upstream": upstream.url, "env_key": "K"}}))

    def broken(rtype, data):
        raise OSError("disk full")

    broker = Broker("run_x", specs, {"api": REAL}, svc.Network(), record=broken, liveness=lambda: None,
                    expires_at=time.time() + 60)
    env = broker.start({})
    try:
        base = f"http://127.0.0.1:{broker.port}/api"
        assert httpx.get(base + "/a", headers={"x-api-key": env["K"]}, trust_env=False).status_code == 200
        deadline = time.monotonic() + 5
        while broker.dead is None and time.monotonic() < deadline:
            time.sleep(0.01)
        r = httpx.get(base + "/b", headers={"x-api-key": env["K"]}, trust_env=False)
        assert r.status_code == 403 and "receipts cannot be written" in r.text
    finally:
        broker.stop()


@pytest.mark.parametrize("size", [200, 3 << 20])
def test_a_secret_reflected_by_the_upstream_is_blanked_on_the_way_back(size):
    def echo(handler, seen):
        # an API that echoes the credential: in a header, and in a body (small or large,
        # straddling read boundaries)
        key = seen["headers"].get("x-api-key", "")
        filler = b"f" * size
        return filler + b"[" + key.encode() + b"]" + filler, {"X-Echo": f"you sent {key}"}

    up = Upstream(respond=echo)
    broker, env, receipts, _ = make_broker({"api": up})
    try:
        r = httpx.get(env["API_URL"] + "/echo", headers={"x-api-key": env["API_KEY"]}, trust_env=False)
        assert r.status_code == 200
        assert REAL.encode() not in r.content
        assert b"[" + b"*" * len(REAL) + b"]" in r.content
        assert len(r.content) == 2 * size + len(REAL) + 2
        assert r.headers["x-echo"] == "you sent " + "*" * len(REAL)
    finally:
        broker.stop()
        up.close()


def test_reflection_blanking_across_chunks():
    back = svc.Reflection([REAL])
    data = b"a" * 10 + REAL.encode() + b"b" * 10
    for cut in range(1, len(data)):
        back = svc.Reflection([REAL])
        out = bytes(back.feed(data[:cut])) + bytes(back.feed(data[cut:])) + back.flush()
        assert out == b"a" * 10 + b"*" * len(REAL) + b"b" * 10, cut


def test_curl_upload_with_expect_100_continue(upstream, tmp_path):
    import shutil
    import subprocess

    if shutil.which("curl") is None:
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail("curl is required in CI")
        pytest.skip("curl is not installed")
    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * (20 << 20))
    broker, env, receipts, _ = make_broker({"api": upstream})
    try:
        out = subprocess.run(
            ["curl", "-sS", "-T", str(big), "-H", f"x-api-key: {env['API_KEY']}", env["API_URL"] + "/put"],
            capture_output=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
        )
        assert out.returncode == 0, out.stderr
        assert upstream.seen[-1]["body_bytes"] == 20 << 20 and upstream.seen[-1]["method"] == "PUT"
        assert "expect" not in {k.lower() for k in upstream.seen[-1]["headers"]}
        assert wait_receipts(receipts, 1)[0]["bytes_sent"] == 20 << 20
    finally:
        broker.stop()


def test_a_header_value_with_a_placeholder_and_junk_is_not_a_crash(upstream):
    broker, env, receipts, _ = make_broker({"api": upstream})
    try:
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
            s.sendall(b"GET /api/x HTTP/1.1\r\nHost: x\r\nx-api-key: %s\x01\x7f\r\n\r\n" % env["API_KEY"].encode())
            first = s.recv(4096).split(b"\r\n")[0]
        assert first.split()[1] in (b"200", b"400", b"502"), first
        assert REAL not in repr(receipts)
        assert httpx.get(env["API_URL"] + "/after", trust_env=False).status_code == 200
    finally:
        broker.stop()


def test_upstream_connections_are_reused_and_a_stale_one_is_replaced(upstream):
    broker, env, receipts, _ = make_broker({"api": upstream})
    try:
        with httpx.Client(trust_env=False) as client:
            for i in range(5):
                assert client.get(env["API_URL"] + f"/k{i}").status_code == 200
            # the upstream closes its side after answering: the next request must not fail
            for i in range(5):
                assert client.get(env["API_URL"] + f"/then-close{i}").status_code == 200
                assert client.get(env["API_URL"] + f"/after{i}").status_code == 200
        assert len(upstream.seen) == 15
        assert len({s["peer"] for s in upstream.seen[:5]}) == 1  # one kept-alive upstream connection
    finally:
        broker.stop()


def test_too_many_connections_get_503_not_threads(upstream, monkeypatch):
    from agentsess.edges.broker import listener

    monkeypatch.setattr(listener, "MAX_CONNECTIONS", 4)
    broker, env, receipts, _ = make_broker({"api": upstream})
    held = []
    try:
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
            held.append(s)
        deadline = time.monotonic() + 5
        while len(broker._handlers) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as extra:
            assert b" 503 " in extra.recv(4096).split(b"\r\n")[0]
        for s in held:
            s.close()
        deadline = time.monotonic() + 5
        while broker._handlers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert httpx.get(env["API_URL"] + "/ok", trust_env=False).status_code == 200
    finally:
        for s in held:
            s.close()
        broker.stop()
