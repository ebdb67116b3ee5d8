"""Services through `agentsess run`: real clients in the child, real stand-ins upstream.

The child holds placeholders only; the stand-ins assert they received the real secret and
never the placeholder; the real secret is nowhere in the child's environment, the store,
the receipts or the output log.
"""

import json
import os
import subprocess
import sys

import pytest

from broker_standins import REAL, Upstream
from helpers import agentsess, running_run_id, show, spawn, write_config

PY = sys.executable


def net_requests(run: dict) -> list[dict]:
    return [r["data"] for r in run["receipts"] if r["type"] == "net.request"]


def set_secret(name: str, value: str = REAL) -> None:
    agentsess("secret", "set", name, input=value.encode(), check=0)


@pytest.fixture
def upstream():
    up = Upstream()
    yield up
    up.close()


def api_config(up, profile_keys: str = "") -> None:
    write_config(
        f"""
[profiles.t]
{profile_keys}
[profiles.t.services.api]
secret = "api-key"
upstream = "{up.url}"
env_base_url = "API_URL"
env_key = "API_KEY"
"""
    )
    set_secret("api-key")


def assert_secret_nowhere(run_id: str, home) -> None:
    """The real value is in the keychain and nowhere else under the data root."""
    keychain = {os.path.join(str(home), "secrets.json")}
    for folder, _, files in os.walk(home):
        for name in files:
            path = os.path.join(folder, name)
            if path in keychain:
                continue
            with open(path, "rb") as fh:
                assert REAL.encode() not in fh.read(), path


def test_curl_through_the_broker_and_the_secret_stays_out_of_reach(upstream, agentsess_home):
    api_config(upstream)
    script = (
        'env; echo "---"; '
        'curl -sS -H "Authorization: Bearer $API_KEY" "$API_URL/v1/messages" -d "{}"; echo; '
        'curl -sS -u "user:$API_KEY" "$API_URL/basic"; echo; '
        'cat /proc/self/environ | tr "\\0" "\\n" | grep -c agentsess-ph-'
    )
    proc = agentsess("run", "-p", "t", "--", "sh", "-c", script, check=0)
    out = proc.stdout.decode()
    assert REAL not in out and REAL not in proc.stderr.decode()
    env_dump = out.split("---")[0]
    assert "API_KEY=agentsess-ph-api-" in env_dump and "API_URL=http://127.0.0.1:" in env_dump
    assert out.count('"ok": true') == 2
    assert [s["path"] for s in upstream.seen] == ["/v1/messages", "/basic"]
    assert REAL in upstream.seen[0]["headers"]["authorization"]
    assert "agentsess-ph-" not in upstream.secrets_seen()
    run = show()
    reqs = net_requests(run)
    assert sorted((r["method"], r["path"], r["status"], r["secret"]) for r in reqs) == [
        ("GET", "/basic", 200, ["api-key"]), ("POST", "/v1/messages", 200, ["api-key"])]
    started = [r for r in run["receipts"] if r["type"] == "run.started"][0]["data"]
    broker = started["env"]["broker"]
    assert broker["services"][0]["name"] == "api" and broker["services"][0]["secret"] == "api-key"
    # net.request receipts land before the run's end
    types = [r["type"] for r in run["receipts"]]
    assert types.index("net.request") < types.index("run.exited")
    assert run["integrity"]["ok"]
    assert_secret_nowhere(run["id"], agentsess_home)


CLIENTS = {
    "requests": (
        "import os, requests\n"
        "r = requests.post(os.environ['API_URL'] + '/v1/x', headers={'x-api-key': os.environ['API_KEY']}, json={})\n"
        "print(r.status_code, r.json()['path'])\n"
    ),
    "httpx": (
        "import os, httpx\n"
        "r = httpx.get(os.environ['API_URL'] + '/v1/x', headers={'Authorization': 'Bearer ' + os.environ['API_KEY']})\n"
        "print(r.status_code, r.json()['path'])\n"
    ),
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_python_clients_through_the_broker(upstream, client):
    api_config(upstream)
    proc = agentsess("run", "-p", "t", "--", PY, "-c", CLIENTS[client], check=0)
    assert proc.stdout.decode().split() == ["200", "/v1/x"]
    assert REAL in upstream.secrets_seen() and "agentsess-ph-" not in upstream.secrets_seen()


def _anthropic_reply(handler, seen):
    return json.dumps({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": "hello from the stand-in"}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 5},
    }).encode()


def _openai_reply(handler, seen):
    return json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi from the stand-in"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }).encode()


def test_anthropic_sdk_with_the_preset():
    up = Upstream(respond=_anthropic_reply)
    try:
        write_config(f'[profiles.claude]\nservices = ["anthropic"]\n'
                     f'[profiles.c2.services.anthropic]\nupstream = "{up.url}"\n')
        set_secret("anthropic-key")
        code = (
            "import os, anthropic\n"
            "assert os.environ['ANTHROPIC_API_KEY'].startswith('sk-ant-agentsess-ph-anthropic-')\n"
            "m = anthropic.Anthropic().messages.create(model='claude-test', max_tokens=10,"
            " messages=[{'role': 'user', 'content': 'hi'}])\n"
            "print(m.content[0].text)\n"
        )
        proc = agentsess("run", "-p", "c2", "--", PY, "-c", code, check=0)
        assert proc.stdout.decode().strip() == "hello from the stand-in"
        seen = up.seen[-1]
        assert seen["path"] == "/v1/messages"
        # this SDK sends the key as x-api-key or as a bearer token, depending on its version
        assert REAL in (seen["headers"].get("x-api-key"), seen["headers"].get("authorization", "")[7:])
        assert "agentsess-ph-" not in seen["raw_headers"]
        reqs = net_requests(show())
        assert reqs[-1]["service"] == "anthropic" and reqs[-1]["secret"] == ["anthropic-key"]
        # the preset alone points at the real API: its variables are set to the broker
        proc = agentsess("run", "-p", "claude", "--", "sh", "-c", 'echo "$ANTHROPIC_BASE_URL"', check=0)
        assert proc.stdout.decode().strip().endswith("/anthropic")
        started = [r for r in show()["receipts"] if r["type"] == "run.started"][0]["data"]
        assert started["env"]["broker"]["services"][0]["upstream"] == "https://api.anthropic.com"
    finally:
        up.close()


def _anthropic_stream(handler, seen):
    msg = {"id": "msg_02", "type": "message", "role": "assistant", "model": "claude-test", "content": [],
           "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 0}}
    events = [
        ("message_start", {"type": "message_start", "message": msg}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "streamed "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "reply"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 2}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]


def test_anthropic_sdk_streaming_through_the_broker():
    up = Upstream(respond=_anthropic_stream)
    try:
        write_config(f'[profiles.c.services.anthropic]\nupstream = "{up.url}"\n')
        set_secret("anthropic-key")
        code = (
            "import anthropic\n"
            "with anthropic.Anthropic().messages.stream(model='claude-test', max_tokens=10,"
            " messages=[{'role': 'user', 'content': 'hi'}]) as s:\n"
            "    for text in s.text_stream:\n"
            "        print('delta', repr(text), flush=True)\n"
        )
        proc = agentsess("run", "-p", "c", "--", PY, "-c", code, check=0)
        assert proc.stdout.decode().splitlines() == ["delta 'streamed '", "delta 'reply'"]
        assert REAL in up.secrets_seen() and "agentsess-ph-" not in up.secrets_seen()
        req = net_requests(show())[-1]
        assert req["status"] == 200 and req["bytes_received"] > 0 and "error" not in req
    finally:
        up.close()


def test_openai_sdk_with_the_preset():
    up = Upstream(respond=_openai_reply)
    try:
        write_config(f'[profiles.o.services.openai]\nupstream = "{up.url}/v1"\n')
        set_secret("openai-key")
        code = (
            "import openai\n"
            "r = openai.OpenAI().chat.completions.create(model='gpt-test', messages=[{'role': 'user', 'content': 'hi'}])\n"
            "print(r.choices[0].message.content)\n"
        )
        proc = agentsess("run", "-p", "o", "--", PY, "-c", code, check=0)
        assert proc.stdout.decode().strip() == "hi from the stand-in"
        assert up.seen[-1]["path"] == "/v1/chat/completions"
        assert up.seen[-1]["headers"]["authorization"] == f"Bearer {REAL}"
    finally:
        up.close()


def test_missing_secret_refuses_the_run_before_it_starts(upstream):
    write_config(f'[profiles.t.services.api]\nsecret = "nope"\nupstream = "{upstream.url}"\nenv_key = "K"\n')
    proc = agentsess("run", "-p", "t", "--", "sh", "-c", "echo ran")
    assert proc.returncode == 125
    err = proc.stderr.decode().strip().splitlines()[-1]
    assert err.startswith("agentsess: error: ") and "secret set nope" in err
    assert b"ran" not in proc.stdout


def test_revocation_refuses_the_next_request(upstream, tmp_path):
    api_config(upstream, 'on_revoke = "keep"')
    go = tmp_path / "go"
    code = (
        "import os, time, httpx\n"
        "h = {'x-api-key': os.environ['API_KEY']}\n"
        "print(httpx.get(os.environ['API_URL'] + '/one', headers=h).status_code, flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        "r = httpx.get(os.environ['API_URL'] + '/two', headers=h)\n"
        "print(r.status_code, r.text.strip(), flush=True)\n"
    )
    p = spawn("run", "-p", "t", "--", PY, "-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"200"
        run_id = running_run_id()
        agentsess("revoke", run_id, check=0)
        go.touch()
        line = p.stdout.readline().decode()
        assert line.startswith("403 ") and "revoked" in line
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    assert [s["path"] for s in upstream.seen] == ["/one"]
    reqs = net_requests(show(run_id))
    assert reqs[-1]["decision"] == "deny" and reqs[-1]["status"] == 403


def test_revocation_mid_stream_cuts_it(upstream):
    api_config(upstream)
    code = (
        "import os, sys, httpx\n"
        "n = 0\n"
        "try:\n"
        "    with httpx.stream('GET', os.environ['API_URL'] + '/forever', headers={'x-api-key': os.environ['API_KEY']},"
        " timeout=60) as r:\n"
        "        for line in r.iter_lines():\n"
        "            if line:\n"
        "                n += 1\n"
        "                print('event', n, flush=True)\n"
        "except httpx.HTTPError as e:\n"
        "    print('cut', type(e).__name__, flush=True)\n"
        "import time; time.sleep(30)\n"
    )
    p = spawn("run", "-p", "t", "--", PY, "-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline().startswith(b"event 1")
        run_id = running_run_id()
        agentsess("revoke", run_id, check=0)
        p.wait(60)
        out = p.stdout.read().decode()
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 124
    assert upstream.cut.wait(10)
    run = show(run_id)
    reqs = net_requests(run)
    assert reqs, [r["type"] for r in run["receipts"]]
    assert reqs[0]["error"] == "cut: revoked"
    assert "event 500" not in out


def test_raw_injection_is_recorded_as_raw():
    write_config('[profiles.r.env]\nTOKEN = { secret = "raw-one" }\n')
    set_secret("raw-one")
    agentsess("run", "-p", "r", "--", "true", check=0)
    injected = [r["data"] for r in show()["receipts"] if r["type"] == "secret.injected"]
    assert injected == [{"vars": ["TOKEN"], "secrets": ["raw-one"], "mode": "raw"}]


def test_secret_never_on_a_command_line_or_in_an_error(upstream):
    api_config(upstream)
    # the broker's threads live in the supervisor; its command line holds no secret
    p = spawn("run", "-p", "t", "--", "sleep", "30", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        running_run_id()
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        assert REAL.encode() not in fh.read()
                except OSError:
                    continue
    finally:
        p.kill()
        p.wait()


def test_bad_service_config_is_one_line_naming_the_key():
    write_config('[profiles.t.services.api]\nsecret = "k"\nupstream = "http://example.com"\n')
    proc = agentsess("run", "-p", "t", "--", "true")
    assert proc.returncode in (2, 125)
    err = proc.stderr.decode().strip()
    assert len(err.splitlines()) == 1
    assert "profiles.t.services.api.upstream" in err and "only on loopback" in err


def test_expired_run_gets_403(upstream, tmp_path):
    """A request before the run's expiry goes through, one after it gets 403. The first must be
    sent before the expiry: on a loaded machine the child's start (importing httpx) can outlast
    a short ttl, so the run says when it was late and is tried again with a longer ttl."""
    code = (
        "import os, time, datetime, httpx\n"
        "end = datetime.datetime.fromisoformat(os.environ['AGENTSESS_EXPIRES_AT'].replace('Z', '+00:00')).timestamp()\n"
        "if end - time.time() < 0.5: print('late'); raise SystemExit(0)\n"
        "h = {'x-api-key': os.environ['API_KEY']}\n"
        "print(httpx.get(os.environ['API_URL'] + '/one', headers=h).status_code)\n"
        "while time.time() < end + 0.2: time.sleep(0.05)\n"
        "r = httpx.get(os.environ['API_URL'] + '/two', headers=h)\n"
        "print(r.status_code, r.text.strip())\n"
    )
    for ttl in (2, 6, 20):
        api_config(upstream, f'ttl = "{ttl}s"\nexpiry_warning = "1s"')
        proc = agentsess("run", "-p", "t", "--", PY, "-c", code, check=0, timeout=60 + ttl)
        lines = proc.stdout.decode().splitlines()
        if lines != ["late"]:
            break
    assert lines[0] == "200"
    assert lines[1].startswith("403 ") and "expired" in lines[1]
    assert [s["path"] for s in upstream.seen] == ["/one"]


def test_proxy_mode_through_agentsess_run(tmp_path, agentsess_home):
    from broker_standins import MintedCA

    ca = MintedCA(str(tmp_path))
    up = Upstream(host="127.0.0.2", ca=ca)
    try:
        write_config(
            f'[profiles.p.network]\nproxy = true\nallow_hosts = []\n'
            f'[profiles.p.services.api]\nsecret = "api-key"\nupstream = "{up.url}"\nenv_key = "API_KEY"\n'
            f'ca_file = "{ca.ca_file}"\n'
        )
        set_secret("api-key")
        script = (
            f'curl -sS -H "x-api-key: $API_KEY" {up.url}/through; echo; '
            'curl -sS -o /dev/null -w "%{http_code}\\n" https://127.0.0.3:9/x; '
            'echo "bundle=$SSL_CERT_FILE"'
        )
        proc = agentsess("run", "-p", "p", "--", "sh", "-c", script, check=0)
        out = proc.stdout.decode()
        assert '"ok": true' in out
        assert up.seen[-1]["headers"]["x-api-key"] == REAL
        bundle = out.split("bundle=")[1].strip()
        assert not os.path.exists(bundle)  # removed with the run
        run = show()
        reqs = net_requests(run)
        # receipts of two connections are written in the order they ended, which may differ
        assert sorted((r["mode"], r["decision"]) for r in reqs) == [("intercept", "allow"), ("tunnel", "deny")]
        broker = [r for r in run["receipts"] if r["type"] == "run.started"][0]["data"]["env"]["broker"]
        assert broker["proxy"] is True and broker["intercepted"] == ["127.0.0.2"]
        assert_secret_nowhere(run["id"], agentsess_home)
        assert REAL not in out
    finally:
        up.close()


def test_node_fetch_in_base_url_mode(upstream):
    import shutil

    if shutil.which("node") is None:
        if os.environ.get("AGENTSESS_CI") == "1":
            pytest.fail("node is required in CI")
        pytest.skip("node is not installed")
    api_config(upstream)
    code = ("fetch(process.env.API_URL + '/node', {headers: {authorization: 'Bearer ' + process.env.API_KEY}})"
            ".then(r => r.json()).then(j => console.log(j.path))")
    proc = agentsess("run", "-p", "t", "--", "node", "-e", code, check=0)
    assert proc.stdout.decode().strip() == "/node"
    assert upstream.seen[-1]["headers"]["authorization"] == f"Bearer {REAL}"


def test_show_run_names_brokered_services_and_raw_secrets(upstream):
    api_config(upstream)
    write_config(open(os.environ["AGENTSESS_CONFIG"]).read() + '[profiles.t.env]\nRAWTOK = { secret = "api-key" }\n')
    agentsess("run", "-p", "t", "--", "sh", "-c", 'curl -sS -H "x-api-key: $API_KEY" "$API_URL/s" >/dev/null', check=0)
    out = agentsess("show-run", "last", check=0, env={"COLUMNS": "200"}).stdout.decode()
    assert "api through the broker, as placeholders" in out
    assert "RAWTOK: real values in the agent's environment" in out
    assert "GET 127.0.0.1:" in out and "/s -> 200 allow" in out


def test_a_run_without_services_does_not_load_the_broker():
    # the supervisor's own imports (-X importtime on agentsess run): the hot path stays lean
    proc = subprocess.run([PY, "-X", "importtime", "-m", "agentsess", "run", "--", "true"], capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert b"agentsess.core.runs.start" in proc.stderr  # the probe works
    assert b"brokering" not in proc.stderr and b"agentsess.edges.broker" not in proc.stderr
    assert b"h11" not in proc.stderr
    started = [r for r in show()["receipts"] if r["type"] == "run.started"][0]["data"]
    assert "broker" not in started["env"]


def test_unreadable_ca_file_refuses_the_run_in_one_line(upstream, tmp_path):
    write_config(f'[profiles.t.services.api]\nsecret = "api-key"\nupstream = "{upstream.url}"\n'
                 f'env_key = "K"\nca_file = "{tmp_path}/missing.pem"\n')
    set_secret("api-key")
    proc = agentsess("run", "-p", "t", "--", "sh", "-c", "echo ran")
    assert proc.returncode == 125
    err = proc.stderr.decode().strip().splitlines()[-1]
    assert err.startswith("agentsess: error: service api: cannot load ca_file") and "missing.pem" in err
    assert b"ran" not in proc.stdout


def test_services_in_pty_mode(upstream):
    import pexpect

    api_config(upstream)
    child = pexpect.spawn(PY, ["-m", "agentsess", "run", "-p", "t", "--", "sh", "-c",
                               'curl -sS -H "x-api-key: $API_KEY" "$API_URL/tty"; echo; tty'],
                          env=dict(os.environ), timeout=30)
    child.expect(pexpect.EOF)
    out = child.before.decode()
    child.close()
    assert child.exitstatus == 0, out
    assert '"path": "/tty"' in out and "/dev/pts/" in out
    assert upstream.seen[-1]["headers"]["x-api-key"] == REAL
    assert show()["mode"] == "pty"
